"""One of a few options, as a segmented control that always holds a value.

The pages pick among a handful of options with these rather than radios, sliders or select boxes: every
segmented control on a page (the sidebar's chart mode included) shares one script in the browser, while each
other widget type loads, compiles and renders its own, which is most of what a page costs a new tab beyond a
trivial page (benchmarks/results.md). A segmented control can be cleared by clicking its chosen option again;
this one keeps its value then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st


def choice(label: str, options: Sequence[Any], *, key: str, default: Any = None,
           format_func: Callable[[Any], str] = str, help: str | None = None, container: Any = None) -> Any:
    """The chosen option of ``options`` (``default``, else the first, until one is clicked), kept in
    ``st.session_state[key]``; ``container``: where to draw it (default: the current one). Labels from
    ``format_func`` are markdown: escape text from a run."""
    options = list(options)
    state = st.session_state
    kept = f"_choice_kept-{key}"
    if state.get(key) not in options:
        state[key] = state.get(kept) if state.get(kept) in options else default if default in options else options[0]

    def changed() -> None:
        if state.get(key) is None:  # the chosen option clicked again: keep it
            state[key] = state.get(kept)

    value = (container or st).segmented_control(label, options, key=key, format_func=format_func, help=help,
                                                on_change=changed)
    state[kept] = value
    return value
