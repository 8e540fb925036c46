"""Benchmark of ``--executor ray`` against the serial jobs on this machine: a multi-class VCC and a
multi-model static/dynamic analysis.

    python benchmarks/scale.py [--jobs vcc static-dynamic] [--classes 4] [--models c2d-motion r3d-motion ...]
                               [--num-cpus N] [--device cpu] [--append]

Each job runs twice into a temporary artifact root, serial (``--executor local``) and on a local Ray
instance of ``--num-cpus`` CPUs (started once before, its start time reported apart), and the two runs are
checked to hold the same files. Reported per job: the serial wall time, the Ray job's wall time, their
ratio, the fan-out (the stage(s) of Ray tasks, wall), each task's time (mean, min-max), and the driver's
overhead: the Ray job's wall time outside its fan-out (loading the models, reading the parts back,
assembling and writing the run). VCC: ``efficientnet_lite0`` on ``--classes`` of the shipped photos'
classes, each filled to ``--images`` with crops and flips, small settings (``VCC_SETTINGS``);
static/dynamic: ``--models`` on ``synthetic:motion:<clips>`` with ``--pairs`` pairs. ``--append`` adds
the rows to ``benchmarks/results.md`` (section "Scale out (Ray)").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_table import add_row  # noqa: E402
from precompute import cli  # noqa: E402
from precompute import executor as ex  # noqa: E402
from precompute.train import machine  # noqa: E402

VCC_SETTINGS = ["--layers", "blocks.3", "conv_head", "--n-concepts", "6", "--prune", "A=0", "K=2",
                "--n-random-sets", "4", "--random-set-size", "6", "--suppression-scales", "0", "2",
                "--n-random-directions", "2", "--kmeans-n-init", "2", "--random-augment", "16", "--jobs", "1"]


def timed(argv: list[str], job: Any, executor: str) -> dict[str, Any]:
    """Run ``precompute <argv> --executor <executor>``; wall time, and for Ray the fan-out and tasks."""
    fan_out: list[float] = []
    tasks: list[tuple[str, float]] = []
    real = job.executor_from_args

    def make(args: Any) -> Any:
        e = real(args)
        if isinstance(e, ex.RayExecutor):
            inner = e.fan_out

            def fan(*a: Any, **k: Any) -> None:
                t0 = time.perf_counter()
                inner(*a, **k)
                fan_out.append(time.perf_counter() - t0)

            e.fan_out = fan  # type: ignore[method-assign]
            e.on_done = lambda stage, unit, seconds: tasks.append((unit.key, seconds))
        return e

    job.executor_from_args = make
    try:
        t0 = time.perf_counter()
        rc = cli.main([*argv, "--executor", executor])
        wall = time.perf_counter() - t0
    finally:
        job.executor_from_args = real
    if rc != 0:
        raise SystemExit(f"{' '.join(argv[:1])} failed ({rc})")
    return {"wall": wall, "fan_out": sum(fan_out), "tasks": tasks}


def same_files(a: Path, b: Path) -> bool:
    """The two runs hold the same files with the same bytes, timing fields of JSON aside."""
    def body(p: Path) -> Any:
        if p.suffix != ".json":
            return p.read_bytes()
        doc = json.loads(p.read_text())
        if p.name == "manifest.json":  # its files' hashes: the files themselves are compared
            doc["files"] = sorted(doc["files"])

        def clean(o: Any) -> Any:
            if isinstance(o, dict):
                return {k: clean(v) for k, v in o.items() if k not in ("created", "finished", "timings")}
            return [clean(v) for v in o] if isinstance(o, list) else o
        return clean(doc)

    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and \
        all(body(a / f) == body(b / f) for f in files)


def compare(name: str, argv: list[str], job: Any, kind: str, units: str, tmp: Path) -> dict[str, Any]:
    serial = timed([*argv, "--out", str(tmp / "serial"), "--run-id", name], job, "local")
    ray = timed([*argv, "--out", str(tmp / "ray"), "--run-id", name], job, "ray")
    per = [s for _, s in ray["tasks"]]
    row = {"job": name, "units": f"{len(per)} {units}", "serial": serial["wall"], "ray": ray["wall"],
           "ratio": serial["wall"] / ray["wall"], "fan_out": ray["fan_out"],
           "task_mean": sum(per) / max(1, len(per)), "task_min": min(per, default=0.0),
           "task_max": max(per, default=0.0), "driver": ray["wall"] - ray["fan_out"],
           "same": same_files(tmp / "serial" / kind / name, tmp / "ray" / kind / name)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", nargs="+", choices=("vcc", "static-dynamic"), default=["vcc", "static-dynamic"])
    ap.add_argument("--classes", type=int, default=4, help="VCC classes (of the shipped photos' 5)")
    ap.add_argument("--images", type=int, default=8, help="VCC images per class (crops and flips of its photo)")
    ap.add_argument("--models", nargs="+", default=["c2d-motion", "r3d-motion", "slowfast-motion", "vit-motion"])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray instance")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--load", default="", help="a note on the machine's load, put in the rows")
    ap.add_argument("--append", action="store_true", help="add the rows to benchmarks/results.md")
    args = ap.parse_args()

    from precompute import static_dynamic, vcc

    t0 = time.perf_counter()
    cluster = ex.RayExecutor(init_kwargs={"num_cpus": args.num_cpus, "include_dashboard": False})
    cluster.start()
    start = time.perf_counter() - t0
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="scale-"))
    try:
        if "vcc" in args.jobs:
            argv = ["vcc", "--model", "efficientnet_lite0", "--num-classes", str(args.classes), "--augment",
                    str(args.images), "--n-images", str(args.images), "--device", args.device, *VCC_SETTINGS]
            rows.append(compare("vcc", argv, vcc, "vcc", "classes", tmp))
        if "static-dynamic" in args.jobs:
            argv = ["static-dynamic", "--model", *args.models, "--videos", f"synthetic:motion:{args.clips}",
                    "--pairs", str(args.pairs), "--examples", "0", "--device", args.device]
            rows.append(compare("static-dynamic", argv, static_dynamic, "static-dynamic", "models", tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        import ray

        ray.shutdown()
    where = machine() + (f" ({args.load})" if args.load else "")
    for r in rows:
        line = (f"| {time.strftime('%Y-%m-%d')} | {where} | {r['job']} | {r['units']} | {args.num_cpus} | "
                f"{r['serial']:.1f} s | {r['ray']:.1f} s | **{r['ratio']:.2f}x** | {start:.1f} s | "
                f"{r['fan_out']:.1f} s | {r['task_mean']:.1f} s ({r['task_min']:.1f}-{r['task_max']:.1f}) | "
                f"{r['driver']:.1f} s | "
                f"{'yes' if r['same'] else 'NO'} |")
        print(line)
        if args.append:
            add_row("Scale out (Ray)", line, table=0)


if __name__ == "__main__":
    main()
