"""Benchmark of the VCC: wall time, peak memory and where the time goes, for one class.

    python benchmarks/vcc.py [--model efficientnet_lite0] [--layers 4 | --all-blocks] [--images 50]
                             [--device auto] [--fidelity] [--append]

The class set is scikit-image's cat photo (``chelsea``) filled to ``--images`` with crops and flips
of it; the random pool is the other shipped photos, filled to ``--random-images`` the same way
(what ``precompute vcc --augment/--random-augment`` does). Every other setting is methods.md's
default (grid 28, split range 2-4, k = 25, 20 random sets of 50, adjacent layers, t-test).

Stages, as ``build_vcc`` times them: *forward* (the feature grids of the images and the GAP
features of every segment image), *segmentation* (top-down maskSLIC, CPU), *concepts* (k-means
and pruning), *CAVs* (activations of the concept members and random images, the CAV fits),
*gradients* (ITCAV: one backward pass per upper concept member, applied to every lower CAV),
*fidelity* (suppression curves and APS/LS, off unless ``--fidelity``). ``--layers N`` picks N of
the model's stages evenly (as the job does); ``--all-blocks`` takes every block of every stage
(ResNet-50: 16). Peak memory: the process's max RSS and, on CUDA, peak allocated GPU memory.
``--append`` adds the row to ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_table import add_row  # noqa: E402
from core.models import ModelBundle  # noqa: E402
from core.vcc import VCCConfig  # noqa: E402
from core.vcc.pipeline import build_vcc  # noqa: E402
from precompute.common import load_model, resolve_device  # noqa: E402
from precompute.train import machine  # noqa: E402
from precompute.vcc import StageBars, augmented, default_layers, load_pool  # noqa: E402

STAGES = {"forward": ("feature grids", "segment features"), "segmentation": ("segmentation",),
          "concepts": ("concepts",), "CAVs": ("CAVs",), "gradients": ("ITCAV",), "fidelity": ("fidelity",)}
CLASS_PHOTO = "chelsea"


def every_block(bundle: ModelBundle, stages: list[str]) -> list[str]:
    """The direct children of each stage (a stage without children stands for itself)."""
    modules = dict(bundle.model.named_modules())
    out = []
    for s in stages:
        children = [f"{s}.{n}" for n, _ in modules[s].named_children()]
        out.extend(children or [s])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--layers", type=int, default=4, help="how many of the model's stages (evenly spaced)")
    ap.add_argument("--all-blocks", action="store_true", help="every block of every stage")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--random-images", type=int, default=150)
    ap.add_argument("--class-index", type=int, default=285, help="the class the edges and logits are taken for")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--fidelity", action="store_true", help="also time the validation (suppression, APS/LS)")
    ap.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1), help="segmentation processes")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--append", action="store_true", help="add the row to benchmarks/results.md")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    device = resolve_device(args.device)
    bundle, _ = load_model(args.model, device)
    layers = every_block(bundle, list(bundle.stages)) if args.all_blocks else default_layers(bundle, False, args.layers)

    pool = load_pool(["demo"])
    cls = [it for it in pool.items if it.id == CLASS_PHOTO]
    images, _ = augmented(cls, args.images, 0, "bench-class")
    randoms, _ = augmented([it for it in pool.items if it.id != CLASS_PHOTO], args.random_images, 0, "bench-random")
    cfg = VCCConfig(fidelity=args.fidelity, batch_size=args.batch_size)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    bars = StageBars(args.model)
    try:
        result = build_vcc(bundle, layers, [it.image for it in images], [it.image for it in randoms],
                           args.class_index, cfg, progress=bars, n_jobs=args.jobs)
    finally:
        bars.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    split = {k: sum(result.timings.get(s, 0.0) for s in v) for k, v in STAGES.items()}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    g = result.graph
    n_concepts = sum(1 for n in g.nodes if n.kind != "class")
    n_edges = sum(1 for e in g.edges if e.significant)
    print(f"{args.model} on {device} ({args.jobs} segmentation processes): {len(layers)} layers, "
          f"{len(images)} images, {len(result.segments)} segments, "
          f"{n_concepts} concepts, {len(g.edges)} edges ({n_edges} significant)")
    print(f"wall {wall:.1f} s; " + ", ".join(f"{k} {v:.1f} s" for k, v in split.items()))
    print(f"peak RSS {rss:.0f} MiB" + (f", peak GPU {gpu:.0f} MiB" if gpu is not None else ""))

    if args.append:
        mem = f"{rss:.0f} MiB" + (f" (GPU {gpu:.0f} MiB)" if gpu is not None else "")
        row = (f"| {time.strftime('%Y-%m-%d')} | {machine()} | `{args.model}` | {len(layers)} | {len(images)} | "
               f"{len(result.segments)} | {n_concepts} | **{wall:.1f} s** | "
               + " | ".join(f"{split[k]:.1f}" for k in STAGES) + f" | {mem} |\n")
        add_row("VCC", row)


if __name__ == "__main__":
    main()
