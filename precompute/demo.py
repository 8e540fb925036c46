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
    paths = []
    args = argparse.Namespace(
        model="efficientnet_lite0", layers=None, out=str(out), device=device, seed=0,
        run_id="efficientnet_lite0-photos", overwrite=True, images=["demo"], videos=None, clips_per_video=None,
        batch_size=8,
    )
    paths.append(predict.run(args))
    for model in ("r3d-motion", "c2d-motion"):  # the zoo on held-out synthetic clips: C2D cannot see direction
        if (ASSETS_MODELS / model / "model.json").is_file():
            paths.append(predict.run(argparse.Namespace(
                model=model, layers=None, out=str(out), device=device, seed=0, run_id=f"{model}-synthetic",
                overwrite=True, images=None, videos="synthetic:motion:45", clips_per_video=None, batch_size=16,
            )))
    return paths
