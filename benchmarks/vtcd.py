"""Benchmark of VTCD: CRIS masked forward passes per second, batched against one mask per forward
pass (the released code's way), and the whole pipeline's wall time.

    python benchmarks/vtcd.py [--model vit-motion] [--videos 30] [--masks 4000] [--batch-sizes 64]
                              [--reference-masks 64] [--device auto] [--append]

Held-out synthetic clips of the motion task (``synthetic:motion``, the test split), every layer and
head of the model, methods.md's settings otherwise.

1. *Pipeline*: ``discover`` (features, SLIC tubelets, convex NMF) and ``cris`` (concept and head
   importance with ``--masks`` masks per video) on ``--videos`` clips; seconds per stage.
2. *CRIS throughput* on the first clip, with the concepts just found and the same random masks:
   ``masked_metrics`` (``--batch-sizes``, masks batched along the model's batch, the layers before
   the first masked one run once per batch) against ``masked_metrics_reference`` (one forward pass
   per mask, index assignment in a hook). Both are checked to give the same metrics.
   On CUDA the rate is also given as a fraction of the card's dense fp32 peak (the models run in fp32),
   with FLOPs per pass counted by ``torch.utils.flop_counter`` (matrix products and convolutions).

``--append`` adds the rows to ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_table import add_row  # noqa: E402
from core.data import synthetic  # noqa: E402
from core.models import ModelBundle  # noqa: E402
from core.vtcd import VTCDConfig  # noqa: E402
from core.vtcd.features import prepare_videos  # noqa: E402
from core.vtcd.importance import draw_masks  # noqa: E402
from core.vtcd.masking import masked_metrics, masked_metrics_reference, prefix_module  # noqa: E402
from core.vtcd.pipeline import cris, discover  # noqa: E402
from precompute.common import load_model, resolve_device  # noqa: E402
from precompute.train import machine  # noqa: E402

# Dense fp32 (no tensor cores) peak FLOP/s by device name; SXM parts, from NVIDIA's data sheets.
FP32_PEAK = {"H100": 67e12, "H200": 67e12, "A100": 19.5e12}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_pass(bundle: ModelBundle, x: torch.Tensor) -> float:
    """FLOPs of one unmasked forward pass of a batch-1 input. Attention runs in its plain-math form while
    counting: the counter has no formula for the CPU's fused attention kernel (it would count 0 there)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        bundle(x)
    return float(counter.get_total_flops())


def peak_fp32(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in FP32_PEAK.items() if k in name), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vit-motion")
    ap.add_argument("--videos", type=int, default=30)
    ap.add_argument("--masks", type=int, default=4000, help="CRIS masks per video in the pipeline")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64], help="masks per model call to time")
    ap.add_argument("--throughput-masks", type=int, default=512, help="masks timed per batch size")
    ap.add_argument("--reference-masks", type=int, default=64, help="masks timed one per forward pass")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--append", action="store_true", help="add the rows to benchmarks/results.md")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    device = resolve_device(args.device)
    torch.set_grad_enabled(False)
    bundle, layers = load_model(args.model, device)
    prep = bundle.preprocessing
    data = synthetic.make_split(synthetic.SyntheticConfig(task="motion", frames=prep.frames, size=prep.size[0]),
                                args.videos, "test")
    clips = list(data["frames"])
    cfg = VTCDConfig(n_masks=args.masks, batch_size=max(args.batch_sizes))

    # 1. the whole pipeline
    t0 = time.perf_counter()
    result = discover(bundle, clips, layers, config=cfg, targets=data["labels"].tolist())
    imp = cris(bundle, clips, result)
    _sync(device)
    wall = time.perf_counter() - t0
    stages = {**result.timings, **imp.timings}
    print(f"pipeline: {args.videos} videos, {len(result.units)} heads, {result.n_concepts} concepts, "
          f"{args.masks} masks: {wall:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()) + ")")

    # 2. CRIS throughput on one clip
    x = prepare_videos(bundle, clips[:1])
    units = result.concept_units()
    target = int(data["labels"][0])
    expand = prefix_module(result.sites, result.layer_order) if cfg.share_prefix else None
    n = max(args.throughput_masks, args.reference_masks)
    removed = draw_masks(n, units.n_units, cfg.rho, np.random.default_rng(0))
    rates = {}
    for b in args.batch_sizes:
        masked_metrics(bundle, x, units, 0, removed[:b], target, cfg.metric, b, expand)  # warm-up
        _sync(device)
        t1 = time.perf_counter()
        batched = masked_metrics(bundle, x, units, 0, removed[: args.throughput_masks], target, cfg.metric, b, expand)
        _sync(device)
        rates[b] = args.throughput_masks / (time.perf_counter() - t1)
    masked_metrics_reference(bundle, x, units, 0, removed[:2], target, cfg.metric)  # warm-up
    _sync(device)
    t1 = time.perf_counter()
    ref = masked_metrics_reference(bundle, x, units, 0, removed[: args.reference_masks], target, cfg.metric)
    _sync(device)
    ref_rate = args.reference_masks / (time.perf_counter() - t1)
    m = min(len(ref), len(batched))
    agree = float(np.max(np.abs(ref[:m] - batched[:m])))
    best_b = max(rates, key=rates.get)
    flops = flops_per_pass(bundle, x)
    peak = peak_fp32(device)
    print(f"CRIS: {units.n_units} units; one mask per pass {ref_rate:.1f} passes/s; batched "
          + ", ".join(f"batch {b}: {r:.1f} passes/s" for b, r in rates.items())
          + f"; speed-up {rates[best_b] / ref_rate:.1f}x; max |difference| {agree:.2e}; "
          f"{flops / 1e9:.2f} GFLOP per pass" + (f"; {100 * rates[best_b] * flops / peak:.1f}% of fp32 peak"
                                                  if peak else ""))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    mem = f"{rss:.0f} MiB" + (f" (GPU {gpu:.0f} MiB)" if gpu is not None else "")
    print(f"peak memory {mem}")

    if args.append:
        day = time.strftime("%Y-%m-%d")
        add_row("VTCD",
                f"| {day} | {machine()} | `{args.model}` | {units.n_units} | {ref_rate:.1f} | "
                + ", ".join(f"{r:.1f} (batch {b})" for b, r in rates.items())
                + f" | **{rates[best_b] / ref_rate:.1f}x** | {agree:.0e} | {flops / 1e9:.2f} | "
                + (f"{100 * rates[best_b] * flops / peak:.1f}%" if peak else "n/a") + " |", table=0)
        add_row("VTCD",
                f"| {day} | {machine()} | `{args.model}` | {args.videos} | {len(result.units)} | {result.n_concepts} | "
                f"{args.masks} | **{wall:.0f} s** | {stages['features']:.1f} | {stages['tubelets']:.1f} | "
                f"{stages['cnmf']:.1f} | {stages['cris_concepts']:.1f} | {stages['cris_heads']:.1f} | {mem} |", table=1)


if __name__ == "__main__":
    main()
