"""`precompute demo`: regenerate every shipped demo run (on CPU, from scratch).

Each analysis adds its demo runs here. Demo runs have fixed run ids and replace the previous
ones, so regenerating keeps ``assets/demo`` at one run per demo.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.models.resolve import ASSETS_MODELS
from precompute import predict


def run(out: Path, device: str = "auto") -> list[Path]:
    """Write the demo runs under ``out``; returns their folders."""
    def predictions(model: str, run_id: str, batch_size: int, **data: object) -> Path:
        args = {"model": model, "layers": None, "out": str(out), "device": device, "seed": 0, "run_id": run_id,
                "overwrite": True, "images": None, "videos": None, "clips_per_video": None, "batch_size": batch_size}
        return predict.run(argparse.Namespace(**{**args, **data}))

    paths = [predictions("efficientnet_lite0", "efficientnet_lite0-photos", 8, images=["demo"])]
    for model in ("r3d-motion", "c2d-motion"):  # the zoo on held-out synthetic clips: C2D cannot see direction
        if (ASSETS_MODELS / model / "model.json").is_file():
            paths.append(predictions(model, f"{model}-synthetic", 16, videos="synthetic:motion:45"))
    return paths
