"""Benchmark of real-scale models (issue 13): VTCD on VideoMAE-B, the VCC on ResNet-50 and VGG16.

    python benchmarks/scale_models.py [--models videomae resnet50 vgg16] [--device auto] [--precision fp32]
        [--clips 30] [--vmae-layers 12] [--vmae-heads 12] [--masks 4000] [--vtcd-batch 256]
        [--images 50] [--resnet-layers 16] [--vgg-layers 13] [--image-size 224] [--vcc-batch 256]
        [--min-segment-size 0] [--concept-kmeans sklearn] [--slic-backend skimage] [--append]

Every model has random weights (timing only; nothing is downloaded):

- ``videomae``: VideoMAE-B (transformers' ``VideoMAEConfig()``: 12 layers x 12 heads, 768 wide, 16 x 224 x
  224 input, 1,568 tokens) saved as a Hugging Face folder in a temporary directory and loaded through
  ``hf:``; VTCD (``core.vtcd.discover`` and ``core.vtcd.cris``) on ``--clips`` synthetic clips, the first
  ``--vmae-heads`` heads of ``--vmae-layers`` evenly spaced layers, ``--masks`` CRIS masks per clip for
  concepts and as many for heads.
- ``resnet50``: torchvision's ResNet-50, ``--resnet-layers`` of its 16 bottleneck blocks (evenly
  spaced, the deepest included); ``vgg16``: torchvision's VGG16, ``--vgg-layers`` of its 13 conv
  layers; the VCC (``core.vcc.build_vcc``, fidelity off) of one class on ``--images`` images
  (scikit-image's cat photo and crops of it), 20 random sets of 50 other images.

Per model: seconds per stage and per unit of work; model passes per second of the stage that is
mostly forward passes (VTCD: CRIS masked passes; VCC: segment images), against the *measured
batched forward limit* (a plain loop of batched forward passes of the same model, batch size and
precision, no hooks) and the fraction of it reached; peak host memory (max RSS of a process that
runs one model) and, on CUDA, peak allocated device memory. Several ``--models`` run one process
each. Goals (on one H100/H200): VTCD with 30 clips, 12 x 12 heads and 4,000 masks under 5 minutes
with CRIS at >= 50% of the limit; each VCC with 50 images and every layer under 10 minutes. A row
at other counts or on another device says the goal is open. ``--append`` adds the rows to
``benchmarks/results.md`` (section "Real-scale models").
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_table import add_row  # noqa: E402
from core.models import ModelBundle  # noqa: E402
from core.models.loading import load_model, resolve_device  # noqa: E402
from core.precision import PRECISIONS, autocast  # noqa: E402

MODELS = ("videomae", "resnet50", "vgg16")
SECTION = "Real-scale models"
GOALS = {"videomae": "30 clips, 12x12 heads, 4000 masks: < 300 s, CRIS >= 50% of the limit",
         "resnet50": "16 layers, 50 images: < 600 s", "vgg16": "13 layers, 50 images: < 600 s"}
FULL_COUNTS = {"videomae": {"clips": 30, "layers": 12, "heads": 12, "masks": 4000, "input": "16x224x224"},
               "resnet50": {"images": 50, "layers": 16, "input": "224x224"},
               "vgg16": {"images": 50, "layers": 13, "input": "224x224"}}
VCC_STAGES = {"forward": ("feature grids", "segment features"), "segmentation": ("segmentation",),
              "concepts": ("concepts",), "CAVs": ("CAVs",), "ITCAV": ("ITCAV",)}


@dataclass
class Row:
    """One model's measurements (JSON between processes)."""

    model: str
    device: str
    precision: str
    input: str
    counts: dict[str, Any]
    work: str
    wall: float
    cpu: float
    stages: dict[str, float]
    per_unit: dict[str, str]
    rate: float
    limit: float
    peak_host_mib: float
    peak_device_mib: float | None
    goal: str = ""
    notes: list[str] = field(default_factory=list)
    cpu_stages: bool = False

    @property
    def fraction(self) -> float:
        return self.rate / self.limit if self.limit > 0 else float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evenly(names: list[str], n: int) -> list[str]:
    """``n`` of ``names`` evenly spaced, the last (deepest) always included."""
    if n >= len(names):
        return list(names)
    picks = np.round(np.linspace(len(names) - 1, 0, n)[::-1]).astype(int) if n > 1 else np.array([len(names) - 1])
    return [names[i] for i in dict.fromkeys(picks.tolist())]


@torch.no_grad()
def forward_limit(bundle: ModelBundle, x1: torch.Tensor, batch: int, precision: str, reps: int,
                  clock: Any = time.perf_counter) -> float:
    """Passes per second (by ``clock``) of a plain loop of batched forward passes (``batch`` copies of ``x1``
    ``(1, ...)``)."""
    xb = x1.expand(batch, *x1.shape[1:]).contiguous().to(bundle.device)
    with autocast(precision, bundle.device):
        bundle(xb)  # warm-up
        _sync(bundle.device)
        t0 = clock()
        for _ in range(reps):
            bundle(xb)
        _sync(bundle.device)
    return reps * batch / (clock() - t0)


def videomae_folder(root: Path, tiny: bool = False) -> Path:
    """A random-init VideoMAE-B (``tiny``: 2 layers x 2 heads, 32 wide, 4 x 32 x 32, for smoke tests) saved
    as a Hugging Face folder (safetensors) under ``root``."""
    import transformers

    cfg = (transformers.VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32,
                                       num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=4)
           if tiny else transformers.VideoMAEConfig(num_labels=400))
    torch.manual_seed(0)
    folder = root / "videomae-b"
    transformers.VideoMAEForVideoClassification(cfg).eval().save_pretrained(folder)
    return folder


def _clock(args: argparse.Namespace) -> Any:
    return time.process_time if args.cpu_stages else time.perf_counter


def _memory(device: torch.device) -> tuple[float, float | None]:
    host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    dev = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return host, dev


def _goal(model: str, counts: dict[str, Any], device: torch.device, met: bool) -> str:
    if device.type != "cuda" or not any(k in torch.cuda.get_device_name(device) for k in ("H100", "H200")):
        return "open (no H100/H200)"
    if any(counts.get(k) != v for k, v in FULL_COUNTS[model].items()):
        return "open (reduced counts)"
    return "**met**" if met else "**missed**"


def run_vtcd(args: argparse.Namespace, device: torch.device) -> Row:
    from core.data import synthetic
    from core.vtcd import VTCDConfig, cris, discover
    from core.vtcd.features import prepare_videos

    with tempfile.TemporaryDirectory() as tmp:
        bundle, _ = load_model(f"hf:{videomae_folder(Path(tmp), args.vmae_tiny)}", device, None)
    prep = bundle.preprocessing
    layers = evenly(list(bundle.stages), args.vmae_layers)
    heads = list(range(args.vmae_heads))
    data = synthetic.make_split(synthetic.SyntheticConfig(task="motion", frames=prep.frames, size=prep.size[0]),
                                args.clips, "test")
    clips = list(data["frames"])
    extra = {"slic_backend": args.slic_backend} if args.slic_backend else {}
    cfg = VTCDConfig(n_masks=args.masks, batch_size=args.vtcd_batch, precision=args.precision, **extra)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    c0, t0 = time.process_time(), time.perf_counter()
    result = discover(bundle, clips, layers, heads, config=cfg, targets=(data["labels"] % 4).tolist()
                      if args.vmae_tiny else data["labels"].tolist())
    imp = cris(bundle, clips, result)
    _sync(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    stages = {**result.timings, **{k: v for k, v in imp.timings.items() if k.startswith("cris")}}
    passes = args.clips * (cfg.n_masks + cfg.n_head_masks)
    cris_s = sum(v for k, v in stages.items() if k.startswith("cris"))
    rate = passes / cris_s if cris_s > 0 else float("nan")
    limit = forward_limit(bundle, prepare_videos(bundle, clips[:1]), cfg.batch_size, args.precision, args.limit_reps,
                          _clock(args))
    host, dev = _memory(device)
    n_units = len(result.units)
    counts = {"clips": args.clips, "layers": len(layers), "heads": len(heads), "masks": args.masks,
              "input": f"{prep.frames}x{prep.size[0]}x{prep.size[1]}"}
    per_unit = {"features": f"{stages.get('features', 0) / args.clips:.2f} s/clip",
                "tubelets": f"{1000 * stages.get('tubelets', 0) / max(1, args.clips * n_units):.0f} ms/(clip, head)",
                "cnmf": f"{stages.get('cnmf', 0) / max(1, n_units):.2f} s/head",
                "CRIS": f"{1000 / rate:.1f} ms/pass" if rate == rate else "n/a"}
    return Row("videomae", str(device), args.precision, counts["input"], counts,
               f"{n_units} heads, {result.n_concepts} concepts, {passes} CRIS passes", wall, cpu, stages, per_unit,
               rate, limit, host, dev, _goal("videomae", counts, device, wall < 300 and rate >= 0.5 * limit))


def vcc_layers(bundle: ModelBundle, model: str, n: int) -> list[str]:
    """ResNet-50: the bottleneck blocks; VGG16: the conv layers; ``n`` of them evenly spaced."""
    mods = dict(bundle.model.named_modules())
    if model == "resnet50":
        every = [k for k, m in mods.items() if type(m).__name__ == "Bottleneck"]
    else:
        every = [k for k, m in mods.items() if isinstance(m, torch.nn.Conv2d)]
    return evenly(every, n)


def run_vcc(args: argparse.Namespace, model: str, device: torch.device) -> Row:
    from core.vcc import VCCConfig
    from core.vcc.pipeline import build_vcc
    from precompute.vcc import augmented, load_pool

    torch.manual_seed(0)  # the same random weights in every run: segment counts comparable across settings
    bundle, _ = load_model(f"torchvision:{model}#size={args.image_size}", device, None)
    layers = vcc_layers(bundle, model, args.resnet_layers if model == "resnet50" else args.vgg_layers)
    pool = load_pool(["demo"])
    cls = [it for it in pool.items if it.id == "chelsea"]
    images, _ = augmented(cls, args.images, 0, "bench-class")
    randoms, _ = augmented([it for it in pool.items if it.id != "chelsea"], args.random_images, 0, "bench-random")
    cfg = VCCConfig(n_images=args.images, fidelity=False, batch_size=args.vcc_batch, precision=args.precision,
                    min_segment_size=args.min_segment_size, concept_kmeans=args.concept_kmeans,
                    n_random_sets=args.random_sets, random_set_size=args.random_set_size)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    c0, t0 = time.process_time(), time.perf_counter()
    result = build_vcc(bundle, layers, [it.image for it in images], [it.image for it in randoms], 285, cfg,
                       n_jobs=args.jobs)
    _sync(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    stages = {k: sum(result.timings.get(s, 0.0) for s in v) for k, v in VCC_STAGES.items()}
    segs = result.segments
    distinct = len({(int(segs.image[i]), np.packbits(segs.masks[i]).tobytes()) for i in range(len(segs))})
    feat_s = result.timings.get("segment features", 0.0)
    rate = distinct / feat_s if feat_s > 0 else float("nan")
    from core.data.images import preprocess_images

    limit = forward_limit(bundle, preprocess_images([images[0].image], bundle.preprocessing), cfg.batch_size,
                          args.precision, args.limit_reps, _clock(args))
    host, dev = _memory(device)
    g = result.graph
    n_concepts = sum(1 for nd in g.nodes if nd.kind != "class")
    counts = {"images": args.images, "layers": len(layers), "input": f"{args.image_size}x{args.image_size}"}
    n = max(1, len(images))
    per_unit = {"segmentation": f"{stages['segmentation'] / n:.2f} s/image",
                "forward": f"{1000 * feat_s / max(1, distinct):.1f} ms/segment image",
                "concepts": f"{stages['concepts'] / len(layers):.2f} s/layer",
                "CAVs + ITCAV": f"{(stages['CAVs'] + stages['ITCAV']) / max(1, n_concepts):.2f} s/concept"}
    return Row(model, str(device), args.precision, counts["input"], counts,
               f"{len(segs)} segments ({len(segs) / n:.0f}/image, {distinct} distinct images), {n_concepts} concepts, "
               f"{len(g.edges)} edges", wall, cpu, stages, per_unit, rate, limit, host, dev,
               _goal(model, counts, device, wall < 600),
               [f"min_segment_size {args.min_segment_size}"] if args.min_segment_size else [])


def markdown(rows: list[Row], machine: str) -> list[str]:
    """One table line per row, as in ``benchmarks/results.md``."""
    out = []
    day = time.strftime("%Y-%m-%d")
    for r in rows:
        counts = ", ".join(f"{k} {v}" for k, v in r.counts.items() if k != "input")
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r.stages.items())
        stages += " (CPU s)" if r.cpu_stages else ""
        units = ", ".join(f"{k} {v}" for k, v in r.per_unit.items())
        dev = f" (device {r.peak_device_mib:.0f} MiB)" if r.peak_device_mib is not None else ""
        note = f" ({'; '.join(r.notes)})" if r.notes else ""
        out.append(f"| {day} | {machine} | `{r.model}`{note} | {r.precision} | {r.input} | {counts} | {r.work} | "
                   f"**{r.wall:.1f} s** (CPU {r.cpu:.0f} s) | {stages} | {units} | {r.rate:.3g} | {r.limit:.3g} | "
                   f"{100 * r.fraction:.0f}% | {r.peak_host_mib:.0f} MiB{dev} | {r.goal} |")
    return out


HEADER = ("| date | machine | model | precision | input | counts | work | wall (process CPU) | stages (s) | "
          "per unit of work | passes/s | batched limit (passes/s) | fraction | peak memory | goal |")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32")
    ap.add_argument("--limit-reps", type=int, default=5, help="batched passes timed for the forward limit")
    ap.add_argument("--cpu-stages", action="store_true", help="stage seconds in process CPU time (a shared CPU "
                    "machine: with one thread and one segmentation process they are what an idle machine's wall "
                    "seconds would be; the total wall time stays wall time)")
    g = ap.add_argument_group("VTCD (videomae)")
    g.add_argument("--clips", type=int, default=30)
    g.add_argument("--vmae-layers", type=int, default=12, help="layers, evenly spaced, the deepest included")
    g.add_argument("--vmae-heads", type=int, default=12, help="the first N heads of each layer")
    g.add_argument("--masks", type=int, default=4000, help="CRIS masks per clip (concepts; as many for heads)")
    g.add_argument("--vtcd-batch", type=int, default=256, help="CRIS masked passes per model call")
    g.add_argument("--slic-backend", default=None, help="VTCD's slic_backend (default: the config's)")
    g.add_argument("--vmae-tiny", action="store_true", help="a 2-layer, 32-wide VideoMAE at 4x32x32 (smoke test)")
    g = ap.add_argument_group("VCC (resnet50, vgg16)")
    g.add_argument("--images", type=int, default=50)
    g.add_argument("--random-images", type=int, default=150)
    g.add_argument("--random-sets", type=int, default=20)
    g.add_argument("--random-set-size", type=int, default=50)
    g.add_argument("--resnet-layers", type=int, default=16)
    g.add_argument("--vgg-layers", type=int, default=13)
    g.add_argument("--image-size", type=int, default=224)
    g.add_argument("--vcc-batch", type=int, default=256, help="VCC forward batch size")
    g.add_argument("--min-segment-size", type=int, default=0, help="VCCConfig.min_segment_size (0: off)")
    g.add_argument("--concept-kmeans", default="sklearn", help="VCCConfig.concept_kmeans")
    g.add_argument("--jobs", type=int, default=1, help="segmentation processes")
    ap.add_argument("--append", action="store_true", help="add the rows to benchmarks/results.md")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one model, a JSON row (subprocesses)
    return ap.parse_args(argv)


def run_one(args: argparse.Namespace, model: str) -> Row:
    device = resolve_device(args.device)
    if args.cpu_stages:  # the pipelines' stage clocks read this process's CPU time instead of the wall clock
        import types

        from core.vcc import pipeline as vcc_pipeline
        from core.vtcd import pipeline as vtcd_pipeline

        shim = types.SimpleNamespace(perf_counter=time.process_time)
        vcc_pipeline.time = vtcd_pipeline.time = shim  # type: ignore[assignment]
    row = run_vtcd(args, device) if model == "videomae" else run_vcc(args, model, device)
    row.cpu_stages = args.cpu_stages
    return row


def main(argv: list[str] | None = None) -> list[Row]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    warnings.simplefilter("ignore")
    if args.json:
        print("ROW " + json.dumps(asdict(run_one(args, args.models[0]))))
        return []
    rows = []
    if len(args.models) == 1:
        rows.append(run_one(args, args.models[0]))
    else:
        rest = [a for i, a in enumerate(argv) if a != "--append"]
        rest = _without_models(rest)
        for model in args.models:  # one process each: its peak memory is its own
            out = subprocess.run([sys.executable, __file__, *rest, "--models", model, "--json"], capture_output=True,
                                 text=True, check=False)
            line = next((ln for ln in out.stdout.splitlines() if ln.startswith("ROW ")), None)
            if line is None:
                print(f"{model}: failed (exit {out.returncode})\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(Row(**json.loads(line[4:])))
    from precompute.train import machine

    where = machine() if resolve_device(args.device).type == "cuda" else f"{machine()} (shared)"
    lines = markdown(rows, where)
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    print("\n".join(lines))
    if args.append:
        for line in lines:
            add_row(SECTION, line)
    return rows


def _without_models(argv: list[str]) -> list[str]:
    """``argv`` less ``--models`` and its values."""
    out, skipping = [], False
    for a in argv:
        if a == "--models":
            skipping = True
            continue
        if skipping and not a.startswith("--"):
            continue
        skipping = False
        out.append(a)
    return out


if __name__ == "__main__":
    main()
