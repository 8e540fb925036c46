"""The run store: round trips, validation, refusal of bad files, atomic and resumable writes."""

from __future__ import annotations

import io
import json
import os
import shutil
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
    runs_signature,
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


def test_the_runs_signature_changes_exactly_when_the_listing_may(tmp_path):
    """The dashboard caches the run list under this signature: it must change when a run is added, removed
    or its manifest rewritten, stay put otherwise, and carry a time slot while a partial run is listed."""
    assert runs_signature(tmp_path / "missing") == ()
    first = write_run(tmp_path, "first")
    one = runs_signature(tmp_path)
    assert runs_signature(tmp_path) == one and one[1] is None
    second = write_run(tmp_path, "second")
    two = runs_signature(tmp_path)
    assert two != one
    manifest = json.loads((second / MANIFEST).read_text())
    (second / MANIFEST).write_text(json.dumps({**manifest, "status": "failed"}, indent=2))
    assert runs_signature(tmp_path) != two
    other = tmp_path / "vtcd" / "elsewhere"  # a second kind (only the manifest's stats count)
    other.mkdir(parents=True)
    (other / MANIFEST).write_text("{}")
    shutil.rmtree(first)
    assert [r[:2] for r in runs_signature(tmp_path)[0]] == [("predictions", "second"), ("vtcd", "elsewhere")]
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={}):
        slot = runs_signature(tmp_path, slot_s=3600)[1]
        assert slot is not None and slot == runs_signature(tmp_path, slot_s=3600)[1]


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


# -- item 3: readers never leave the run folder ----------------------------------------------------------------


def relist(path: Path, name: str, target: Path) -> None:
    """List ``name`` in the run's manifest with the sha256 and size of ``target`` (as a forger would)."""
    m = json.loads((path / MANIFEST).read_text())
    m["files"][name] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
    (path / MANIFEST).write_text(json.dumps(m))


@pytest.mark.parametrize("name", ["../../secret.txt", "../r2/table.json", "ABSOLUTE", "images/../../../secret.txt",
                                  "a\\..\\..\\secret.txt", "a\x00b", "images//pic.png", "./table.json", "",
                                  "images/", "/", ".hidden", "images/.pic.png", "-rf", "ü.json"])
def test_a_manifest_naming_a_file_outside_the_run_is_refused(tmp_path, name):
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    path = write_run(tmp_path / "root")
    name = str(secret) if name == "ABSOLUTE" else name
    relist(path, name, secret)
    with pytest.raises(RunError, match=r"r1: manifest lists the file .*(plain names inside|refusing)"):
        open_run(path)
    [entry] = list_runs(tmp_path / "root")
    assert entry.run is None and "manifest lists the file" in entry.error
    from precompute.cli import main

    assert main(["runs", "--root", str(tmp_path / "root"), "--verify"]) == 0


def test_runs_verify_reports_an_escaping_run_invalid(tmp_path, capsys):
    from precompute.cli import main

    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    write_run(tmp_path / "root", "good")
    bad = write_run(tmp_path / "root", "bad", other=1)
    relist(bad, "../../../secret.txt", secret)
    assert main(["runs", "--root", str(tmp_path / "root"), "--verify"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == ["INVALID", "complete"] or \
        sorted(line.split()[0] for line in out.splitlines()) == ["INVALID", "complete"]
    assert "bad" in next(line for line in out.splitlines() if line.startswith("INVALID"))


@pytest.mark.parametrize("where", ["file", "folder"])
def test_listed_symlinks_are_not_followed(tmp_path, where):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.json").write_text('{"secret": 1}')
    path = write_run(tmp_path / "root")
    if where == "file":
        os.symlink(outside / "x.json", path / "x.json")
        name = "x.json"
    else:
        os.symlink(outside, path / "sub")
        name = "sub/x.json"
    relist(path, name, outside / "x.json")
    run = open_run(path)  # the names are plain: the manifest alone is fine
    with pytest.raises(RunError, match=rf"r1: refusing file {name}: .* is a symlink"):
        run.load_json(name)
    with pytest.raises(RunError, match="is a symlink"):
        run.verify()


def test_a_symlinked_manifest_is_refused(tmp_path):
    path = write_run(tmp_path / "root")
    real = tmp_path / "manifest.json"
    os.replace(path / MANIFEST, real)
    os.symlink(real, path / MANIFEST)
    with pytest.raises(RunError, match=r"manifest\.json is a symlink"):
        open_run(path)


def test_run_file_refuses_escaping_names_even_past_validation(tmp_path):
    """Defence in depth: a Run built around an unchecked manifest still serves nothing outside."""
    from core.artifacts import Run

    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    path = write_run(tmp_path / "root")
    m = json.loads((path / MANIFEST).read_text())
    for name in ("../../../secret.txt", str(secret)):
        m["files"][name] = {"sha256": sha256_file(secret), "bytes": secret.stat().st_size}
        with pytest.raises(RunError, match="refusing file name"):
            Run(path, m).file(name)


# -- item 6: wrong types in a manifest or a file are a RunError, and the listing goes on ---------------------


@pytest.mark.parametrize("key, value", [("summary", [1, 2]), ("summary", "n=3"), ("model", 5), ("data", 7),
                                        ("config", "k=3"), ("files", ["table.json"]), ("created", 20260101),
                                        ("run_id", ["r1"]), ("kind", {"a": 1}), ("status", ["complete"]),
                                        ("versions", None), ("finished", 3), ("schema_version", True),
                                        ("files", {"table.json": {"sha256": 5}}),
                                        ("files", {"table.json": {"sha256": "0" * 64, "bytes": "12"}}),
                                        ("run_id", "../r2"), ("kind", "../x")])
def test_a_manifest_value_of_the_wrong_type_spoils_only_its_run(tmp_path, capsys, key, value):
    from precompute.cli import main

    write_run(tmp_path, "good")
    bad = write_run(tmp_path, "bad", other=1)
    m = json.loads((bad / MANIFEST).read_text())
    m[key] = value
    (bad / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(RunError, match=r"run .*bad: "):
        open_run(bad)
    entries = {e.path.name: e for e in list_runs(tmp_path)}
    assert entries["good"].run is not None and entries["bad"].run is None and entries["bad"].error
    assert main(["runs", "--root", str(tmp_path), "--verify"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert any(line.startswith("complete") and "good" in line for line in lines)
    assert any(line.startswith("INVALID") and "bad" in line for line in lines)


def test_a_run_whose_manifest_kind_differs_from_its_folder_is_invalid(tmp_path):
    bad = write_run(tmp_path, "bad")
    m = json.loads((bad / MANIFEST).read_text())
    m["kind"] = "vtcd"
    (bad / MANIFEST).write_text(json.dumps(m))
    [entry] = list_runs(tmp_path)
    assert entry.run is None and "manifest says kind 'vtcd'" in entry.error


def forge(path: Path, name: str, data: bytes) -> None:
    """Replace file ``name`` of the run and fix its hash in the manifest."""
    (path / name).parent.mkdir(parents=True, exist_ok=True)
    (path / name).write_bytes(data)
    relist(path, name, path / name)


def write_predictions(root: Path) -> Path:
    with RunWriter(root, "predictions", model={"spec": "tiny"}, data={}, config={}, run_id="p") as w:
        w.write_json("predictions.json", {"model": {"spec": "tiny"}, "images": [
            {"id": "a", "file": "images/a.png", "top": [{"index": 0, "name": "cat", "prob": 0.9}], "correct": True}]})
        w.write_json("layers.json", [{"layer": "conv", "shape": [4, 2, 2]}])
        w.write_image("images/a.png", np.zeros((4, 4, 3), np.uint8))
        return w.finish()


@pytest.mark.parametrize("name, doc, words", [
    ("predictions.json", [], "the document: expected an object, got a list"),
    ("predictions.json", {"model": {}}, "the document: lacks 'images'"),
    ("predictions.json", {"images": [{"id": "a"}]}, r"images\.0: lacks 'file'"),
    ("predictions.json", {"images": [{"id": 3, "file": "x"}]}, r"images\.0\.id: expected a string, got a number"),
    ("predictions.json", {"images": [], "model": []}, "model: expected an object"),
    ("predictions.json", {"images": [{"id": "a", "file": "f", "top": [{"name": "x"}]}]},
     r"images\.0\.top\.0: lacks 'index', 'prob'"),
    ("layers.json", {"layer": "conv"}, "the document: expected a list, got an object"),
    ("layers.json", [{"layer": ["conv"]}], r"0\.layer: expected a string"),
])
def test_malformed_json_with_a_matching_hash_is_a_run_error(tmp_path, name, doc, words):
    path = write_predictions(tmp_path)
    forge(path, name, json.dumps(doc).encode())
    with pytest.raises(RunError, match=rf"run .*p: file {name} is malformed: {words}"):
        open_run(path).load_json(name)


def test_every_demo_json_file_has_the_shape_its_kind_expects():
    from core import run_schema

    n = 0
    for manifest in sorted((ROOT / "assets" / "demo").glob("*/*/manifest.json")):
        run = open_run(manifest.parent)
        for name in run.files():
            if name.endswith(".json"):
                assert run_schema.spec_for(run.kind, name) is not None, (run.label, name)
                run.load_json(name)
                n += 1
    assert n > 40


def test_graph_references_are_checked(tmp_path):
    from core import run_schema

    graph = {"layers": ["a"], "nodes": [{"id": "a:0", "layer": "a", "index": 0, "size": 3, "members": [0],
                                          "exemplars": [0]}],
             "edges": [{"source": "a:0", "target": "class:1", "weight": 0.5}]}
    assert "names a node the graph does not have" in run_schema.check("vcc", "classes/x/graph.json", graph)
    graph["edges"] = []
    graph["nodes"][0]["layer"] = "b"
    assert "not among its layers" in run_schema.check("vcc", "classes/x/graph.json", graph)
    graph["nodes"][0]["layer"] = "a"
    assert run_schema.check("vcc", "classes/x/graph.json", graph) is None


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_an_undecodable_image_with_a_matching_hash_is_a_run_error(tmp_path, data):
    path = write_predictions(tmp_path)
    run = open_run(path)
    assert run.load_image("images/a.png").shape == (4, 4, 3)
    good = (path / "images" / "a.png").read_bytes()
    forge(path, "images/a.png", data or good[: len(good) // 2])
    with pytest.raises(RunError, match=r"run .*p: image images/a.png cannot be decoded"):
        open_run(path).load_image("images/a.png")


def test_run_error_messages_quote_run_text_on_one_line(tmp_path):
    """Text from a run reaches a message only as a repr (one line, control characters escaped); the pages
    escape messages for Markdown at display (viz.md_text)."""
    path = write_predictions(tmp_path)
    m = json.loads((path / MANIFEST).read_text())
    hostile = "![x](http://example.com/x.png)\n\n<img src=x onerror=alert(1)>"
    (path / MANIFEST).write_text(json.dumps({**m, "status": hostile}))
    with pytest.raises(RunError) as info:
        open_run(path)
    assert repr(hostile) in str(info.value) and "\n" not in str(info.value)
    (path / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(RunError) as info:
        open_run(path).file(hostile)
    assert repr(hostile) in str(info.value) and "\n" not in str(info.value)


# -- item 4: a full disk ------------------------------------------------------------------------------------------


def test_a_full_disk_is_one_line_leaves_no_temporaries_and_resumes(tmp_path, monkeypatch, capsys):
    import errno

    from core import artifacts
    from core.artifacts import DiskFullError
    from core.errors import UserError
    from precompute import cli

    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    def job(args):
        with RunWriter(tmp_path, "predictions", model="m", data="d", config={"n": 2}) as w:
            if not w.has("a.json"):
                w.write_json("a.json", [1])
            monkeypatch.setattr(artifacts.os, "fsync", full)
            w.write_json("b.json", [2])

    monkeypatch.setitem(cli.COMMANDS, "runs", job)
    assert cli.main(["runs", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: disk full while writing b.json in ") and ".partial-" in err
    assert err.rstrip().endswith("free space and rerun the same command to resume")
    assert issubclass(DiskFullError, UserError)
    [partial] = (tmp_path / "predictions").iterdir()
    assert sorted(p.name for p in partial.iterdir()) == ["a.json", "manifest.json"]  # no .tmp, no lock
    # Space is back: the same job resumes and finishes.
    monkeypatch.setattr(artifacts.os, "fsync", real_fsync)
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={"n": 2}) as w:
        assert w.resumed and w.has("a.json") and not w.has("b.json")
        w.write_json("b.json", [2])
        final = w.finish()
    assert open_run(final, verify=True).files() == ["a.json", "b.json"]
    assert not [p for p in final.rglob("*") if p.name.startswith(".")]


def test_a_full_disk_while_writing_the_manifest_is_one_line_too(tmp_path, monkeypatch):
    import errno

    from core import artifacts
    from core.artifacts import DiskFullError

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts, "_atomic_write", full)
    with pytest.raises(DiskFullError, match=r"disk full while writing manifest\.json"):
        RunWriter(tmp_path, "predictions", model="m", data="d", config={})


def test_temporaries_of_a_killed_writer_never_reach_the_final_run(tmp_path):
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={}) as w:
        w.write_json("a.json", 1)
        (w.dir / ".a.json.tmp12345").write_bytes(b"half")
        (w.dir / "sub").mkdir()
        (w.dir / "sub" / ".b.npz.tmp99").write_bytes(b"half")
        final = w.finish()
    assert open_run(final).files() == ["a.json"]
    assert not [p for p in final.rglob("*") if p.name.startswith(".")]


def test_an_external_writer_failing_midway_leaves_nothing_to_resume_from(tmp_path):
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={}) as w:
        with pytest.raises(OSError), w.writing("media/clip.mp4") as tmp:
            assert tmp.suffix == ".mp4" and tmp.parent == w.dir / "media"
            tmp.write_bytes(b"half a video")
            raise OSError("encoder died")
        assert not w.has("media/clip.mp4") and list((w.dir / "media").iterdir()) == []
        with w.writing("media/clip.mp4") as tmp:
            tmp.write_bytes(b"a video")
        assert w.has("media/clip.mp4")
        (w.dir / "media" / ".tmp999-other.mp4").write_bytes(b"left by a killed job")
        final = w.finish()
    assert open_run(final).files() == ["media/clip.mp4"] and sorted(os.listdir(final / "media")) == ["clip.mp4"]


def test_atomic_write_removes_its_temporary_on_any_failure(tmp_path, monkeypatch):
    from core import artifacts

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        artifacts._atomic_write(tmp_path / "x.json", b"{}")
    assert list(tmp_path.iterdir()) == []


# -- item 7: two jobs on one run ------------------------------------------------------------------------------


def test_a_second_writer_of_the_same_run_fails_at_once_naming_the_holder(tmp_path):
    import socket

    from core.errors import UserError

    with RunWriter(tmp_path, "predictions", model="m", data="d", config={"n": 1}) as first:
        first.write_json("a.json", 1)
        with pytest.raises(UserError, match=rf"run predictions/\.partial-\w+ is being written by pid {os.getpid()} "
                                            rf"on host {socket.gethostname()}; wait for it or use another --run-id"):
            RunWriter(tmp_path, "predictions", model="m", data="d", config={"n": 1})
        assert json.loads((first.dir / MANIFEST).read_text())["status"] == "running"  # the loser left it alone
        first.write_json("b.json", 2)
        final = first.finish()
    assert open_run(final, verify=True).files() == ["a.json", "b.json"]
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == [final.name]  # no lock files left


def test_the_lock_is_released_when_a_job_fails(tmp_path):
    with pytest.raises(ValueError), RunWriter(tmp_path, "predictions", model="m", data="d", config={}) as w:
        w.write_json("a.json", 1)
        raise ValueError("boom")
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={}) as w2:
        assert w2.resumed and w2.has("a.json")


def test_same_run_id_other_config_fails_at_start(tmp_path):
    from core.errors import UserError

    write_run(tmp_path, "r1")
    started = []
    with pytest.raises(UserError, match="r1 already exists; choose another --run-id or pass --overwrite"), \
            RunWriter(tmp_path, "predictions", model="m", data="d", config={"other": 1}, run_id="r1"):
        started.append(True)
    assert not started
    # Both running at once: the second is refused at start, naming the first.
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={"a": 1}, run_id="r2"), \
            pytest.raises(UserError, match=rf"run predictions/r2 is being written by pid {os.getpid()}"):
        RunWriter(tmp_path, "predictions", model="m", data="d", config={"b": 2}, run_id="r2")


HOLDER = """
import sys
sys.path.insert(0, {root!r})
from core.artifacts import RunWriter
with RunWriter({out!r}, "predictions", model="m", data="d", config={{"n": 2}}) as w:
    print("ready", flush=True)
    sys.stdin.readline()
    w.write_json("a.json", 1)
    w.finish()
"""


def test_a_writer_in_another_process_holds_the_run(tmp_path):
    from core.errors import UserError

    script = HOLDER.format(root=str(ROOT), out=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(UserError, match=rf"is being written by pid {proc.pid} on host"):
            RunWriter(tmp_path, "predictions", model="m", data="d", config={"n": 2})
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    [entry] = list_runs(tmp_path)
    assert entry.run is not None and entry.run.files() == ["a.json"]
