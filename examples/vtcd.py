"""VTCD from Python: concepts of a video transformer and their CRIS importance (methods.md section 2).

Runs on the shipped ``vit-appearance`` model and 4 synthetic clips with tiny settings (seconds on a CPU);
each block below also works as a notebook cell. ``python examples/vtcd.py [artifact root]`` (default
``artifacts``) saves the run where the dashboard finds it.
"""

import sys

from core.checkpoint import MemoryStore
from core.vtcd import VTCDAnalysis, VTCDConfig, analyse

# Every setting is a field of VTCDConfig (the `precompute vtcd` flags are generated from it).
config = VTCDConfig(n_masks=24, head_masks=8, max_concepts=4, kmeans_n_init=2, cnmf_max_iter=200, bootstrap=50,
                    diagnostics=False, attribution_steps=5, n_random_orders=2, batch_size=32)

# A MemoryStore keeps finished parts: calling analyse again with it skips them.
store = MemoryStore()
result = analyse("vit-appearance", "synthetic:appearance:4", config, store=store, layers=["blocks.0"],
                 device="cpu")

for name, importance in result.top_concepts(5):
    print(f"{name:20s} CRIS importance {importance:+.4f}")
print("AUC of removing concepts most important first:", round(result.attribution["auc"]["positive"], 3))
print(len(result.warnings), "warnings (result.warnings; saving the run prints them)")

# Save as a run (artifacts/vtcd/<run id>) and read it back.
path = result.save(sys.argv[1] if len(sys.argv) > 1 else "artifacts", media_videos=1, media_concepts=2)
saved = VTCDAnalysis.load(path)
print(path, len(saved.concept_names), "concepts")
