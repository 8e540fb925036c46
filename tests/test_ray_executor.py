"""`--executor ray` on a local Ray cluster (2 CPUs, started once for the module): each job's run is the serial
run file for file (timing fields aside), a worker killed mid-task is retried, a driver killed mid-run resumes from
the parts its workers wrote, and a unit failing on bad input fails the job with the serial job's one line.

End to end (serial job vs Ray job): VCC (one class per task), vcc-debug (one image per task), static/dynamic (one
model or checkpoint per task), predict (one batch per task), VTCD (one layer, then one clip per task).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from precompute import cli, units
from precompute import executor as ex
from tests.models import MODEL_PY
from tests.test_static_dynamic import ORDER_BLIND, _video_folder
from tests.test_vcc_job import make_inputs, one_line_error, vcc_args
from tests.test_vtcd_job import FAST, VIDEOS, make_tiny_ckpt

ray = pytest.importorskip("ray")

TIMING_KEYS = {"created", "finished", "timings"}
"""Fields that differ between any two runs of the same command (wall-clock times)."""


@pytest.fixture(scope="module")
def cluster():
    started = ex.RayExecutor(init_kwargs={"num_cpus": 2, "include_dashboard": False})
    started.start()
    yield started
    ray.shutdown()


def _without_timings(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def snapshot(run: Path) -> dict[str, Any]:
    """Every file of a finished run: its bytes, or for JSON holding timing fields its value without them
    (the manifest: without them and with its files' names only, since their contents are compared here)."""
    out: dict[str, Any] = {}
    for p in sorted(run.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(run).as_posix()
        raw = p.read_bytes()
        if p.suffix == ".json":
            doc = json.loads(raw)
            if rel == "manifest.json":
                doc = {**doc, "files": sorted(doc["files"])}
            if _without_timings(doc) != doc:
                out[rel] = _without_timings(doc)
                continue
        out[rel] = raw
    return out


def assert_same_run(serial: Path, parallel: Path) -> None:
    a, b = snapshot(serial), snapshot(parallel)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []
    assert len(a) > 3


def main(argv: list[str]) -> int:
    return cli.main(argv)


def with_hook(hook):
    """An ``executor_from_args`` whose executor calls ``hook(stage, unit, seconds)`` as each Ray task finishes."""
    def make(args):
        executor = ex.executor_from_args(args)
        executor.on_done = hook
        return executor
    return make


def track(monkeypatch: pytest.MonkeyPatch, job: Any, ran: list[tuple[str, str]] | None = None
          ) -> list[tuple[str, str]]:
    """``(stage, unit)`` of every Ray task the job ``job`` (a precompute module) runs from now on (appended
    to ``ran``)."""
    ran = [] if ran is None else ran
    monkeypatch.setattr(job, "executor_from_args", with_hook(lambda stage, unit, _: ran.append((stage, unit.key))))
    return ran


# ----------------------------------------------------------------------------------------------
# VCC and vcc-debug


@pytest.fixture(scope="module")
def vcc(tmp_path_factory: pytest.TempPathFactory, cluster) -> dict[str, Any]:
    """Inputs and the serial runs: vcc of two classes (run id 'v') and vcc-debug of its mistakes ('d')."""
    root = tmp_path_factory.mktemp("ray-vcc")
    inp = make_inputs(root / "inputs")
    serial = root / "serial"
    assert main(vcc_args(inp, serial, "--classes", "red", "green", "--run-id", "v")) == 0
    assert main(["vcc-debug", "--model", inp["model"], "--runs", "v", "--out", str(serial), "--device", "cpu",
                 "--run-id", "d"]) == 0
    return {**inp, "root": root, "serial": serial}


def test_vcc_and_vcc_debug_on_ray_are_the_serial_runs(vcc: dict[str, Any], capsys, monkeypatch) -> None:
    from precompute import vcc as vcc_job
    from precompute import vcc_debug

    out = vcc["root"] / "ray"
    ray_flags = ["--executor", "ray"]
    ran = track(monkeypatch, vcc_job)
    assert main(vcc_args(vcc, out, "--classes", "red", "green", "--run-id", "v", *ray_flags)) == 0
    assert sorted(ran) == [("classes", "class green"), ("classes", "class red")]  # computed by Ray workers
    assert "classes (ray)" in capsys.readouterr().err  # the driver's bar counts the classes done
    assert_same_run(vcc["serial"] / "vcc" / "v", out / "vcc" / "v")
    track(monkeypatch, vcc_debug, ran)
    # against the same vcc run as the serial one (the debug run records its path and fingerprint)
    assert main(["vcc-debug", "--model", vcc["model"], "--runs", str(vcc["serial"] / "vcc" / "v"), "--out", str(out),
                 "--device", "cpu", "--run-id", "d", *ray_flags]) == 0
    assert len(ran) == 2 + len(json.loads((out / "vcc-debug" / "d" / "debug.json").read_text())["images"])
    assert_same_run(vcc["serial"] / "vcc-debug" / "d", out / "vcc-debug" / "d")


# ----------------------------------------------------------------------------------------------
# static/dynamic


@pytest.fixture(scope="module")
def sd_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ray-sd")
    for name in ("a", "b", "c"):
        (root / f"{name}.py").write_text(ORDER_BLIND)
    return {"root": root, "videos": _video_folder(root / "videos"),
            "models": [f"py:{root / 'a.py'}:make", f"py:{root / 'b.py'}:make"],
            "checkpoint": f"py:{root / 'c.py'}:make"}


def sd_args(inp: dict[str, Any], out: Path, *extra: str) -> list[str]:
    return ["static-dynamic", "--model", *inp["models"], "--videos", str(inp["videos"]), "--pairs", "6",
            "--batch-size", "4", "--removal", "--removal-fractions", "0", "0.5", "--removal-seeds", "1",
            "--examples", "1", "--out", str(out), "--run-id", "sd", "--device", "cpu", *extra]


def test_static_dynamic_on_ray_is_the_serial_run(sd_inputs: dict[str, Any], cluster, monkeypatch) -> None:
    from precompute import static_dynamic

    extra = ["--checkpoints", sd_inputs["checkpoint"]]
    assert main(sd_args(sd_inputs, sd_inputs["root"] / "serial", *extra)) == 0
    ran = track(monkeypatch, static_dynamic)
    assert main(sd_args(sd_inputs, sd_inputs["root"] / "ray", *extra, "--executor", "ray")) == 0
    assert sorted(key.split()[0] for _, key in ran) == ["checkpoint", "model", "model"]
    assert_same_run(sd_inputs["root"] / "serial" / "static-dynamic" / "sd",
                    sd_inputs["root"] / "ray" / "static-dynamic" / "sd")


def test_a_unit_failing_on_bad_input_fails_the_job_with_the_serial_line(sd_inputs: dict[str, Any], cluster,
                                                                          capsys) -> None:
    bad = ["--checkpoints", str(sd_inputs["root"] / "no-such-checkpoint")]
    lines = []
    for name, flags in (("serial-bad", []), ("ray-bad", ["--executor", "ray"])):
        rc = main(sd_args(sd_inputs, sd_inputs["root"] / name, *bad, *flags))
        err = "\n".join(line for line in capsys.readouterr().err.splitlines() if line.startswith("error: "))
        lines.append(one_line_error(rc, err, "no-such-checkpoint"))
    assert lines[0] == lines[1]


# ----------------------------------------------------------------------------------------------
# predict and VTCD


def predict_args(vcc: dict[str, Any], out: Path, *extra: str) -> list[str]:
    return ["predict", "--model", vcc["model"], "--images", str(vcc["images"]), "--batch-size", "2", "--device", "cpu",
            "--run-id", "p", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def predicted(vcc: dict[str, Any]) -> Path:
    """The serial predict run (8 batches of the 15 images)."""
    assert main(predict_args(vcc, vcc["root"] / "serial")) == 0
    return vcc["root"] / "serial" / "predictions" / "p"


def test_predict_on_ray_is_the_serial_run(vcc: dict[str, Any], predicted: Path, monkeypatch) -> None:
    from precompute import predict as predict_job

    ran = track(monkeypatch, predict_job)
    monkeypatch.chdir(vcc["root"])  # a relative --out: the workers write where the driver means
    assert main(predict_args(vcc, Path("ray"), "--executor", "ray")) == 0
    assert len(ran) == 8
    assert_same_run(predicted, vcc["root"] / "ray" / "predictions" / "p")


def die_once(marker: str, fn: Any, *args: Any) -> None:
    """A unit whose worker process dies (no exception, no cleanup) the first time any unit runs it."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return fn(*args)
    os.close(fd)
    os._exit(1)


def test_a_worker_killed_mid_task_is_retried_and_the_run_is_the_same(vcc: dict[str, Any], predicted: Path,
                                                                      monkeypatch) -> None:
    marker = vcc["root"] / "died"
    monkeypatch.setattr(units, "predict_unit", functools.partial(die_once, str(marker), units.predict_unit))
    out = vcc["root"] / "retried"
    assert main(predict_args(vcc, out, "--executor", "ray")) == 0
    assert marker.exists()  # a worker did die
    assert_same_run(predicted, out / "predictions" / "p")


def test_a_killed_driver_resumes_from_the_parts_its_workers_wrote(vcc: dict[str, Any], predicted: Path, monkeypatch,
                                                                  capsys) -> None:
    from precompute import predict as predict_job

    ran: list[str] = []

    def interrupt_after_three(stage: str, unit: ex.Unit, seconds: float) -> None:
        ran.append(unit.key)
        if len(ran) == 3:
            raise KeyboardInterrupt

    out = vcc["root"] / "resumed"
    monkeypatch.setattr(predict_job, "executor_from_args", with_hook(interrupt_after_three))
    assert main(predict_args(vcc, out, "--executor", "ray")) == 130  # the driver stopped after 3 of 8 batches
    assert not (out / "predictions" / "p").exists()
    first, ran[:] = list(ran), []
    monkeypatch.setattr(predict_job, "executor_from_args", with_hook(lambda s, u, t: ran.append(u.key)))
    capsys.readouterr()
    assert main(predict_args(vcc, out, "--executor", "ray")) == 0, \
        [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert not set(first) & set(ran) and len(ran) <= 8 - 3  # the finished batches were not computed again
    assert_same_run(predicted, out / "predictions" / "p")


def test_vtcd_on_ray_is_the_serial_run(tmp_path: Path, cluster, monkeypatch) -> None:
    import torch

    from precompute import vtcd as vtcd_job

    ran = track(monkeypatch, vtcd_job)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the Ray workers (1 CPU each): the same float reductions
    try:
        ckpt = make_tiny_ckpt(tmp_path / "tiny-vit")
        argv = ["vtcd", "--model", f"ckpt:{ckpt}", "--videos", VIDEOS, "--run-id", "t", *FAST]
        assert main([*argv, "--out", str(tmp_path / "serial")]) == 0
        assert main([*argv, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    finally:
        torch.set_num_threads(threads)
    stages = [stage for stage, _ in ran]
    assert stages.count("VTCD discovery (layers)") == 2 and stages.count("VTCD CRIS (clips)") == 2 * (3 - 1)
    assert_same_run(tmp_path / "serial" / "vtcd" / "t", tmp_path / "ray" / "vtcd" / "t")


# ----------------------------------------------------------------------------------------------
# Flags


def test_without_ray_installed_the_job_says_how_to_install_it(monkeypatch, capsys, tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(MODEL_PY)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    rc = main(["predict", "--model", f"py:{tmp_path / 'tiny.py'}:build", "--out", str(tmp_path), "--device", "cpu",
               "--executor", "ray"])
    line = one_line_error(rc, capsys.readouterr().err, "pip install ray")
    assert "--executor ray" in line


def test_a_ray_address_without_the_ray_executor_is_one_line(capsys, tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(MODEL_PY)
    rc = main(["predict", "--model", f"py:{tmp_path / 'tiny.py'}:build", "--out", str(tmp_path), "--device", "cpu",
               "--ray-address", "auto"])
    one_line_error(rc, capsys.readouterr().err, "--ray-address needs --executor ray")


def test_every_analysis_job_takes_the_executor_flags() -> None:
    parsers = cli._subparsers(cli.build_parser())
    for command in ("predict", "static-dynamic", "vcc", "vcc-debug", "vtcd", "rosetta"):
        text = parsers[command].format_help()
        assert "--executor" in text and "--ray-address" in text, command


def test_core_never_imports_ray() -> None:
    import re

    core = Path(__file__).resolve().parents[1] / "core"
    found = [p.name for p in core.rglob("*.py") if re.search(r"^\s*(import|from)\s+ray\b", p.read_text(), re.M)]
    assert found == []
