"""The run store: round trips, validation, refusal of bad files, atomic and resumable writes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.artifacts import (
    MANIFEST,
    REQUIRED_KEYS,
    SCHEMA_VERSION,
    RunWriter,
    list_runs,
    open_run,
    sha256_file,
)
from core.errors import RunError

ROOT = Path(__file__).resolve().parents[1]


def write_run(root: Path, run_id: str = "r1", **config) -> Path:
    with RunWriter(root, "predictions", model={"spec": "tiny"}, data={"source": "test"},
                   config={"k": 3, **config}, run_id=run_id) as w:
        w.write_json("table.json", [{"layer": "a", "value": 1.5}, {"layer": "b", "value": None}])
        w.write_npz("arrays.npz", x=np.arange(12, dtype=np.float32).reshape(3, 4), y=np.array([1, 2]))
        w.write_image("images/pic.png", np.full((4, 5, 3), 7, np.uint8))
        return w.finish({"n": 3})


def test_round_trip_is_identical(tmp_path):
    path = write_run(tmp_path)
    assert path == tmp_path / "predictions" / "r1"
    run = open_run(path, verify=True)
    assert set(REQUIRED_KEYS) <= set(run.manifest)
    m = run.manifest
    assert m["schema_version"] == SCHEMA_VERSION and m["status"] == "complete" and m["kind"] == "predictions"
    assert m["config"] == {"k": 3} and m["summary"] == {"n": 3} and "torch" in m["versions"]
    assert set(m["files"]) == {"table.json", "arrays.npz", "images/pic.png"}
    assert m["files"]["arrays.npz"]["sha256"] == sha256_file(path / "arrays.npz")
    assert run.load_json("table.json") == [{"layer": "a", "value": 1.5}, {"layer": "b", "value": None}]
    arrays = run.load_npz("arrays.npz")
    assert arrays["x"].dtype == np.float32 and np.array_equal(arrays["x"], np.arange(12).reshape(3, 4))
    assert np.array_equal(arrays["y"], [1, 2])
    from PIL import Image

    assert (np.asarray(Image.open(run.file("images/pic.png"))) == 7).all()
    assert not any(p.name.startswith(".") for p in (tmp_path / "predictions").iterdir())


def test_truncated_file_is_refused(tmp_path):
    path = write_run(tmp_path)
    data = (path / "arrays.npz").read_bytes()
    (path / "arrays.npz").write_bytes(data[: len(data) // 2])
    run = open_run(path)  # the manifest alone is fine
    with pytest.raises(RunError, match=r"run .*r1: file arrays.npz is \d+ bytes .*truncated"):
        run.load_npz("arrays.npz")


def test_truncated_manifest_is_refused(tmp_path):
    path = write_run(tmp_path)
    text = (path / MANIFEST).read_text()
    (path / MANIFEST).write_text(text[: len(text) // 2])
    with pytest.raises(RunError, match=r"r1: manifest.json is truncated"):
        open_run(path)


def test_bad_hash_is_refused(tmp_path):
    path = write_run(tmp_path)
    table = path / "table.json"
    text = table.read_text().replace("1.5", "2.5")  # same length, other content
    table.write_text(text)
    with pytest.raises(RunError, match=r"table\.json does not match its sha256"):
        open_run(path).load_json("table.json")
    with pytest.raises(RunError, match="sha256"):
        open_run(path, verify=True)


@pytest.mark.parametrize("version, words", [(SCHEMA_VERSION + 1, "newer"), (0, "older")])
def test_unknown_schema_version_is_refused(tmp_path, version, words):
    path = write_run(tmp_path)
    m = json.loads((path / MANIFEST).read_text())
    m["schema_version"] = version
    (path / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(RunError, match=f"r1: written with artifact schema {version}, {words}"):
        open_run(path)


def test_missing_manifest_keys_are_named(tmp_path):
    path = write_run(tmp_path)
    m = json.loads((path / MANIFEST).read_text())
    del m["files"], m["versions"]
    (path / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(RunError, match="lacks versions, files"):
        open_run(path)


def test_pickle_inside_npz_is_refused(tmp_path):
    """An npz whose hash matches the manifest but which holds an object array."""
    path = write_run(tmp_path)
    buf = io.BytesIO()
    np.savez(buf, x=np.array([{"a": 1}], dtype=object))  # object arrays are stored pickled
    (path / "arrays.npz").write_bytes(buf.getvalue())
    m = json.loads((path / MANIFEST).read_text())
    m["files"]["arrays.npz"] = {"sha256": sha256_file(path / "arrays.npz"), "bytes": len(buf.getvalue())}
    (path / MANIFEST).write_text(json.dumps(m))
    with zipfile.ZipFile(path / "arrays.npz") as z:
        assert b"\x80" in z.read("x.npy")  # a pickle stream really is in there
    with pytest.raises(RunError, match=r"arrays\.npz holds pickled objects; refusing"):
        open_run(path).load_npz("arrays.npz")


def test_writer_refuses_object_arrays(tmp_path):
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={}) as w, \
            pytest.raises(TypeError, match="pickle"):
        w.write_npz("x.npz", a=np.array([object()], dtype=object))


KILLED_JOB = """
import os, signal, sys
import numpy as np
sys.path.insert(0, {root!r})
from core.artifacts import RunWriter
w = RunWriter({out!r}, "predictions", model="m", data="d", config={{"n": 2}})
w.write_npz("parts/0.npz", x=np.zeros(3))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_write_leaves_no_complete_run_and_resumes(tmp_path):
    script = KILLED_JOB.format(root=str(ROOT), out=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    entries = list_runs(tmp_path)
    assert len(entries) == 1 and entries[0].partial and entries[0].partial_status == "killed"
    assert entries[0].run is None
    with pytest.raises(RunError, match="status is 'running', not complete"):
        open_run(entries[0].path)
    # The same job again picks up the finished part.
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={"n": 2}) as w:
        assert w.resumed and w.has("parts/0.npz")
        w.write_npz("parts/1.npz", x=np.ones(3))
        final = w.finish({"parts": 2})
    run = open_run(final, verify=True)
    assert run.files() == ["parts/0.npz", "parts/1.npz"]
    assert [e.partial for e in list_runs(tmp_path)] == [False]


def test_failed_job_is_marked_and_a_different_config_starts_fresh(tmp_path):
    with pytest.raises(ValueError), RunWriter(tmp_path, "predictions", model="m", data="d", config={"n": 1}) as w:
        w.write_json("a.json", 1)
        raise ValueError("bad input")
    entry = list_runs(tmp_path)[0]
    assert entry.partial_status == "failed" and "bad input" in entry.error
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={"n": 9}) as w2:
        assert not w2.resumed and not w2.has("a.json")


def test_finish_never_clobbers_without_overwrite(tmp_path):
    first = write_run(tmp_path)
    before = (first / MANIFEST).read_text()
    from core.errors import UserError

    with pytest.raises(UserError, match="already exists"):
        write_run(tmp_path, k2=1)
    assert (first / MANIFEST).read_text() == before
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={}, run_id="r1", overwrite=True) as w:
        w.write_json("new.json", 1)
        w.finish()
    assert open_run(first).files() == ["new.json"]


def test_list_runs_reports_invalid_runs_without_failing(tmp_path):
    good = write_run(tmp_path, "good")
    bad = write_run(tmp_path, "bad", other=1)
    (bad / MANIFEST).write_text("{")
    os.makedirs(tmp_path / "predictions" / "not-a-run")
    entries = {e.path.name: e for e in list_runs(tmp_path)}
    assert entries["good"].run is not None and entries["good"].run.path == good
    assert "manifest.json is truncated" in entries["bad"].error
    assert "not-a-run" not in entries  # no manifest: not a run, not an error either


def test_a_running_job_is_not_reported_killed(tmp_path):
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={}):
        [entry] = list_runs(tmp_path)
        assert entry.partial_status == "running" and entry.manifest["writer"]["pid"] == os.getpid()


def test_file_names_cannot_escape_the_run(tmp_path):
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={}) as w:
        for name in ("../x.json", "/etc/x.json", "manifest.json", ".hidden"):
            with pytest.raises(ValueError):
                w.write_json(name, 1)


def test_warnings_are_printed_kept_in_the_manifest_and_deduplicated(tmp_path, capsys):
    from core.artifacts import RunWriter, open_run

    with RunWriter(tmp_path, "predictions", model={"spec": "m"}, data={}, config={}) as w:
        w.warn("x.empty", "layer a kept no concepts; lower --min-cluster", setting="--min-cluster", layer="a")
        w.warn("x.empty", "layer a kept no concepts (again)", layer="a")
        w.warn("x.few", "only 3 images", setting="--n-images")
        final = w.finish()
    assert "warning [a]: layer a kept no concepts" in capsys.readouterr().err
    ws = open_run(final).warnings
    assert [(x["code"], x["layer"]) for x in ws] == [("x.empty", "a"), ("x.few", None)]
    assert ws[0]["message"].endswith("(again)")
