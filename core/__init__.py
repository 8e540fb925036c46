"""Concept Lens core library: algorithms, model adapters and the artifact store.

Nothing in here imports Streamlit (except the small glue module ``core.ui_cache``),
``precompute`` or ``pages``; ``tests/test_layering.py`` checks that.
"""

__version__ = "0.1.0"
