"""The Visual Concept Connectome of an image class, from Python (methods.md section 3).

Each ``# %%`` block is a notebook cell. Run as a script from the repository root:

    PYTHONPATH=. python examples/vcc.py

The settings are tiny so it runs in well under a minute on a CPU: six crops and flips of one shipped
photo, two layers, three clusters per layer. Real VCCs keep the defaults (50 images per class, 20
random sets of 50). The run it saves goes under ``$CONCEPT_LENS_ARTIFACTS`` (default ``artifacts/``),
where the dashboard finds it.
"""

# %% Settings: every one has a default, help text and a check in VCCConfig
import os
from pathlib import Path

import numpy as np

from core.checkpoint import MemoryStore
from core.data.images import demo_images
from core.vcc import VCCConfig, VCCResult, analyse

config = VCCConfig(n_images=6, grid=14, n_concepts=3, prune={"A": 0, "K": 2}, kmeans_n_init=2, n_random_sets=3,
                   random_set_size=2, suppression_scales=(0, 1, 2), n_random_directions=2, batch_size=16)
store = MemoryStore()  # finished classes stay here: calling analyse again reads them back

# %% The class images: crops and flips of the shipped cat photo (scikit-image's chelsea)
cat = demo_images(["chelsea"])[0].image
h, w = cat.shape[:2]
images = [cat[: h * 3 // 4, : w * 3 // 4], cat[h // 4:, w // 4:], cat[h // 8:, : w * 7 // 8], cat]
images += [np.ascontiguousarray(im[:, ::-1]) for im in images[:2]]

# %% The VCC of "Egyptian cat" on EfficientNet-Lite0; the other shipped photos form the random sets
result = analyse("efficientnet_lite0", images, "Egyptian cat", config, store=store, random="demo",
                 layers=["blocks.5", "conv_head"], device="cpu")
graph = result.graph
for layer in graph.layers:
    print(f"{layer:<10} {len(graph.layer_nodes(layer))} concepts")
for e in sorted(graph.kept_edges(), key=lambda e: -e.weight)[:5]:
    print(f"edge {e.source} -> {e.target}: weight {e.weight:.2f} (p = {e.p_value:.3g})")
for w in result.warnings:  # e.g. too few images for stable concepts
    print("warning:", w["message"][:100], "...")

# %% Save it as a run the dashboard shows, and read the class back
root = Path(os.environ.get("CONCEPT_LENS_ARTIFACTS", "artifacts"))
path = result.save(root, model="efficientnet_lite0", run_id="example-vcc-cat", overwrite=True)
again = VCCResult.load(path, "Egyptian cat")
print("saved", path, "with", len(again.graph.edges), "edges")
