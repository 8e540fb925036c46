"""Rosetta concepts from Python: concepts two video transformers share on the same clips (methods.md
section 2, eq. 4.7-4.8).

Runs VTCD on the shipped ``vit-appearance`` and ``vit-motion`` models with tiny settings, then pairs their
concepts by the overlap of their supports. Each block also works as a notebook cell. ``python
examples/rosetta.py [artifact root]`` (default ``artifacts``) saves the Rosetta run.
"""

import sys

from core.vtcd import RosettaConfig, VTCDConfig, analyse, rosetta

config = VTCDConfig(n_masks=16, head_masks=0, max_concepts=4, kmeans_n_init=2, cnmf_max_iter=200, bootstrap=0,
                    diagnostics=False, batch_size=16)
videos = "synthetic:appearance:3"
results = [analyse(model, videos, config, layers=["blocks.0"], attribution=False, device="cpu")
           for model in ("vit-appearance", "vit-motion")]

# rosetta also takes saved vtcd runs (folders) in place of the results.
shared = rosetta(results, RosettaConfig(epsilon=0.5, delta=0.1))
print(f"{len(shared.tuples)} tuples, mean R of all pairs {shared.result.mean_r.get(2, float('nan')):.3f}")
for t in shared.tuples[:5]:
    print(" + ".join(t["concepts"]), f"R={t['r']:.3f}")

path = shared.save(sys.argv[1] if len(sys.argv) > 1 else "artifacts", media_tuples=2, media_videos=1)
print(path)
