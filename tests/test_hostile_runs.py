"""Property tests: hostile runs, run ids, config files and media are read correctly or refused with one message.

Every generated input is either read (and then usable by the code that consumes it) or refused with a
RunError / UserError / DataError naming the run or file: never another exception, never a read outside the
run folder.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import artifacts
from core.artifacts import MANIFEST, RunWriter, list_runs, open_run, sha256_file
from core.errors import DataError, RunError, UserError

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# -- a base run to damage ------------------------------------------------------------------------------------


def make_run(root: Path) -> Path:
    """A small valid ``predictions`` run, plus a secret next to it and symlinks inside it pointing there."""
    secret = root / "secret"
    secret.mkdir(parents=True)
    (secret / "x.json").write_text('{"images": []}')
    with RunWriter(root / "runs", "predictions", model={"spec": "tiny"}, data={"source": "t"}, config={},
                   run_id="base") as w:
        w.write_json("predictions.json", {"model": {"spec": "tiny", "preprocessing": {"input": "image"}}, "images": [
            {"id": f"im{i}", "file": f"images/{i}.png", "source": "s", "label": 0, "label_name": "cat",
             "top": [{"index": 0, "name": "cat", "prob": 0.75}, {"index": 1, "name": "dog", "prob": 0.25}],
             "predicted": 0, "predicted_name": "cat", "correct": True} for i in range(2)]})
        w.write_json("layers.json", [{"layer": "conv", "shape": [4, 2, 2]}, {"layer": "head", "shape": [2]}])
        w.write_npz("features.npz", logits=np.arange(4, dtype=np.float32).reshape(2, 2),
                    conv=np.ones((2, 4), np.float32))
        for i in range(2):
            w.write_image(f"images/{i}.png", np.full((6, 6, 3), 40 * i, np.uint8))
        path = w.finish({"n_images": 2})
    os.symlink(secret / "x.json", path / "link.json")
    os.symlink(secret, path / "sub")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("hostile"))


@contextlib.contextmanager
def copy_of(base: Path) -> Iterator[Path]:
    """A fresh copy of the base run (``<tmp>/runs/predictions/base``) and its outside secret."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(base.parents[2] / "secret", root / "secret")
        shutil.copytree(base.parent, root / "runs" / "predictions", symlinks=True)
        run = root / "runs" / "predictions" / "base"
        for link in ("link.json", "sub"):
            (run / link).unlink()
        os.symlink(root / "secret" / "x.json", run / "link.json")
        os.symlink(root / "secret", run / "sub")
        yield run


def manifest_of(run: Path) -> dict[str, Any]:
    return json.loads((run / MANIFEST).read_text())


def forge(run: Path, name: str, data: bytes) -> None:
    """Replace file ``name`` and fix its hash in the manifest, as someone sharing a hostile run would."""
    (run / name).write_bytes(data)
    m = manifest_of(run)
    m["files"][name] = {"sha256": sha256_file(run / name), "bytes": len(data)}
    (run / MANIFEST).write_text(json.dumps(m))


@contextlib.contextmanager
def reads_stay_inside(run: Path) -> Iterator[None]:
    """Fail when a file outside ``run`` is hashed (every reader hashes a file before it reads it)."""
    real = artifacts.sha256_file
    inside = run.resolve()

    def spy(path: Path) -> str:
        assert Path(path).resolve().is_relative_to(inside), f"read outside the run: {path}"
        return real(path)

    with mock.patch.object(artifacts, "sha256_file", spy):
        yield


def read_everything(run: Path) -> None:
    """Open ``run`` and read every listed file as the dashboard would; RunError naming the run is the only
    acceptable failure."""
    try:
        opened = open_run(run, verify=True)
        for name in opened.files():
            if name.endswith(".json"):
                opened.load_json(name)
            elif name.endswith(".npz"):
                arrays = opened.load_npz(name)
                assert all(isinstance(a, np.ndarray) and not a.dtype.hasobject for a in arrays.values())
            elif name.endswith(".png"):
                assert opened.load_image(name).ndim == 3
            else:
                opened.read_bytes(name)
    except RunError as e:
        assert str(run) in str(e), e


# -- strategies ------------------------------------------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
HOSTILE_NAMES = st.sampled_from([
    "../../secret/x.json", "../base/predictions.json", "/etc/passwd", "..", ".", "a/../../x", "a\\..\\x",
    "a\x00b", "a//b", "images/", "/", "link.json", "sub/x.json", ".hidden", "images/.0.png", "C:\\x", "~/x",
    "ü.json", "images/0.png\n", "-x", "a" * 2000, "manifest.json", "images/../predictions.json",
]) | st.text(alphabet="ab./\\\x00-_ü:~ \n", max_size=16)
MANIFEST_KEYS = st.sampled_from(["schema_version", "kind", "run_id", "status", "created", "finished", "model", "data",
                                 "config", "versions", "files", "summary", "warnings", "writer", "error"])


@st.composite
def manifest_edits(draw: st.DrawFn) -> list[tuple[str, Any, Any]]:
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "delete", "list_file", "file_entry"]))
        if op in ("set", "delete"):
            ops.append((op, draw(MANIFEST_KEYS), draw(JSON)))
        elif op == "list_file":  # list a hostile name with the hash of the secret, as a forger would
            ops.append((op, draw(HOSTILE_NAMES), draw(st.booleans())))
        else:
            ops.append((op, draw(st.sampled_from(["predictions.json", "features.npz", "images/0.png"])), draw(JSON)))
    return ops


def apply_edits(run: Path, ops: list[tuple[str, Any, Any]]) -> None:
    m = manifest_of(run)
    secret = run.parents[2] / "secret" / "x.json"
    for op, key, value in ops:
        if op == "set":
            m[key] = value
        elif op == "delete":
            m.pop(key, None)
        elif op == "list_file" and isinstance(m.get("files"), dict):
            m["files"][key] = ({"sha256": sha256_file(secret), "bytes": secret.stat().st_size} if value
                               else {"sha256": "0" * 64})
        elif op == "file_entry" and isinstance(m.get("files"), dict):
            m["files"][key] = value
    (run / MANIFEST).write_text(json.dumps(m))


# -- manifests ----------------------------------------------------------------------------------------------------


@SETTINGS
@given(ops=manifest_edits())
def test_hostile_manifests_are_read_or_refused_never_escape(base: Path, ops) -> None:
    from precompute.cli import main

    with copy_of(base) as run:
        apply_edits(run, ops)
        with reads_stay_inside(run):
            read_everything(run)
            entries = list_runs(run.parents[1])
            assert len(entries) == 1 and (entries[0].run is None) == bool(entries[0].error)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                assert main(["runs", "--root", str(run.parents[1]), "--verify"]) == 0
            assert len(out.getvalue().splitlines()) == 1 and not err.getvalue()


def test_a_forged_listing_of_the_secret_really_is_tried(base: Path) -> None:
    """The property above can fail: without the name check, this manifest would read the secret."""
    with copy_of(base) as run:
        apply_edits(run, [("list_file", "link.json", True), ("list_file", "../../../secret/x.json", True)])
        with pytest.raises(RunError, match="manifest lists the file"):
            open_run(run)


# -- npz and JSON files with a matching hash ---------------------------------------------------------------------

DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=6)),
    st.tuples(st.just("garbage"), st.binary(max_size=300)),
)


def damage(data: bytes, how: tuple[str, Any]) -> bytes:
    kind, arg = how
    if kind == "truncate":
        return data[: int(len(data) * arg)]
    if kind == "garbage":
        return arg
    out = bytearray(data)
    for where, bit in arg:
        i = min(int(where * len(out)), len(out) - 1)
        out[i] ^= 1 << bit
    return bytes(out)


@SETTINGS
@given(how=DAMAGE)
def test_damaged_npz_is_read_or_refused(base: Path, how) -> None:
    with copy_of(base) as run:
        forge(run, "features.npz", damage((run / "features.npz").read_bytes(), how))
        try:
            arrays = open_run(run).load_npz("features.npz")
        except RunError as e:
            assert "features.npz" in str(e) and str(run) in str(e)
        else:
            assert all(isinstance(a, np.ndarray) and not a.dtype.hasobject for a in arrays.values())


def test_an_npz_declaring_a_huge_array_is_refused_before_allocating(base: Path) -> None:
    import zipfile

    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "<f4", "fortran_order": False, "shape": (400000000000,)})
    npy.write(bytes(16))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.npy", npy.getvalue())
    data = buf.getvalue()
    with copy_of(base) as run:
        forge(run, "features.npz", data)
        with pytest.raises(RunError, match=r"features.npz is damaged: member x.npy declares 1600000000000 bytes"):
            open_run(run).load_npz("features.npz")


@st.composite
def json_edits(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with one value somewhere inside replaced by arbitrary JSON, or a key deleted."""
    doc = copy.deepcopy(doc)
    node, path = doc, []
    while isinstance(node, (dict, list)) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        path.append(key)
        node = node[key]
    if not path:
        return draw(JSON)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(JSON)
    return doc


def use_predictions(doc: dict[str, Any], layers: list[dict[str, Any]]) -> None:
    """What the Predictions page does with its two JSON files."""
    from core import viz

    images = doc.get("images", [])
    viz.accuracy(images)
    viz.misclassified(images)
    viz.predictions_table(images)
    viz.layers_table(layers)
    for im in images:
        viz.tile_caption(im)
        viz.topk_bar(im.get("top", []), im.get("label"))
    _ = doc.get("model", {}).get("preprocessing", {}).get("input", "image")


@SETTINGS
@given(data=st.data(), text_damage=st.none() | DAMAGE)
def test_damaged_or_malformed_json_is_read_or_refused(base: Path, data, text_damage) -> None:
    with copy_of(base) as run:
        name = data.draw(st.sampled_from(["predictions.json", "layers.json"]))
        doc = json.loads((run / name).read_text())
        raw = (json.dumps(data.draw(json_edits(doc))).encode() if text_damage is None
               else damage((run / name).read_bytes(), text_damage))
        forge(run, name, raw)
        opened = open_run(run)
        try:
            preds, layers = opened.load_json("predictions.json"), opened.load_json("layers.json")
        except RunError as e:
            assert name in str(e) and str(run) in str(e)
        else:
            use_predictions(preds, layers)


GRAPH = (Path(__file__).resolve().parents[1] / "assets/demo/vcc/efficientnet_lite0-photos/classes/285-Egyptian-cat"
         / "graph.json")


@SETTINGS
@given(data=st.data())
def test_malformed_vcc_graphs_are_refused_or_drawable(data) -> None:
    from core import run_schema
    from core import viz_vcc as vv

    graph = data.draw(json_edits(json.loads(GRAPH.read_text())))
    problem = run_schema.check("vcc", "classes/x/graph.json", graph)
    if problem is None:  # what the Concept connectome page computes before drawing
        vv.node_by_id(graph)
        vv.level_of(graph)
        vv.nodes_table(graph)
        vv.weight_range(graph)
        vv.visible_edges(graph)
        for n in graph["nodes"][:3]:
            vv.node_text(n)
            vv.edges_table(graph, n["id"], "in")
            vv.edges_table(graph, n["id"], "out")
    else:
        assert isinstance(problem, str) and problem


# -- run ids --------------------------------------------------------------------------------------------------

RUN_IDS = st.text(max_size=140) | st.sampled_from(["..", ".", "../x", "a/b", "/abs", "a\x00", "ok\n", "ok-1.2_3",
                                                   "x" * 128, "x" * 129, "-x", ".x", "ü"])


@settings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(run_id=RUN_IDS)
def test_run_ids_are_safe_or_refused(run_id: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with RunWriter(tmp, "predictions", model="m", data="d", config={}, run_id=run_id) as w:
                w.write_json("a.json", 1)
                final = w.finish()
        except UserError as e:
            assert "run id" in str(e)
            assert not artifacts._NAME_RE.fullmatch(run_id) or len(run_id) > artifacts.MAX_RUN_ID
            assert sorted(os.listdir(tmp)) in ([], ["predictions"])
        else:
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", run_id), "an unsafe run id was accepted"
            assert final.parent == Path(tmp) / "predictions" and final.name == run_id
            assert final.resolve().parent == (Path(tmp) / "predictions").resolve()
            assert open_run(final).run_id == run_id


# -- config files ---------------------------------------------------------------------------------------------

CONFIG_TEXT = st.one_of(
    JSON.map(json.dumps),
    st.text(max_size=200),
    st.sampled_from(["a: [1, 2", "{", "a: &x [*x]", "!!python/object:os.system {}", "- 1\n- 2", "images: /data/cats",
                     "seed: [1, 2]", "batch_size: 2.5", "? [a]\n: 1", "[" * 2000 + "]" * 2000, "a: b: c"]),
)


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(text=CONFIG_TEXT, suffix=st.sampled_from([".yaml", ".yml", ".json", ".txt"]), raw=st.binary(max_size=40))
def test_config_files_load_or_are_refused(text: str, suffix: str, raw: bytes) -> None:
    from precompute.cli import _load_config

    with tempfile.TemporaryDirectory() as tmp:
        for data in (text.encode(), raw):
            path = Path(tmp) / f"c{suffix}"
            path.write_bytes(data)
            try:
                config = _load_config(str(path))
            except UserError as e:
                assert str(path) in str(e)
            else:
                assert isinstance(config, dict) and all(isinstance(k, str) for k in config)


# -- media inputs ---------------------------------------------------------------------------------------------


def png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)).save(buf, format="PNG")
    return buf.getvalue()


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(how=DAMAGE, suffix=st.sampled_from([".png", ".jpg", ".webp"]))
def test_damaged_images_load_or_raise_data_error(how, suffix: str) -> None:
    from core.data.images import load_image

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x{suffix}"
        path.write_bytes(damage(png_bytes(), how))
        try:
            image = load_image(path)
        except DataError as e:
            assert str(path) in str(e)
        else:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def mp4_bytes() -> bytes:
    from core.data.videos import write_video

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.mp4"
        write_video(path, np.zeros((4, 16, 16, 3), np.uint8), fps=4)
        return path.read_bytes()


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(how=DAMAGE)
def test_damaged_videos_load_or_raise_data_error(how) -> None:
    from core.data.videos import read_video

    good = mp4_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.mp4"
        path.write_bytes(damage(good, how))
        try:
            frames, _ = read_video(path)
        except DataError as e:
            assert str(path) in str(e)
        else:
            assert frames.dtype == np.uint8 and frames.ndim == 4


def test_dashboard_loaders_give_run_errors_for_undecodable_images(base: Path) -> None:
    """The pages catch RunError: an image with a matching hash that PIL cannot decode must arrive as one."""
    from core import ui_cache

    with copy_of(base) as run:
        forge(run, "images/0.png", b"\x89PNG\r\n\x1a\n" + bytes(40))
        key = open_run(run).fingerprint
        assert ui_cache.load_run_image(str(run), "images/1.png", key).shape == (6, 6, 3)
        with pytest.raises(RunError, match=r"image images/0\.png cannot be decoded"):
            ui_cache.load_run_image(str(run), "images/0.png", key)
        with pytest.raises(RunError, match=r"image images/0\.png cannot be decoded"):
            ui_cache.thumbnail(str(run), "images/0.png", key)
        with pytest.raises(RunError, match=r"refusing file sub/x\.json: sub is a symlink"):
            m = manifest_of(run)
            m["files"]["sub/x.json"] = {"sha256": sha256_file(run / "sub" / "x.json")}
            (run / MANIFEST).write_text(json.dumps(m))
            ui_cache.run_file(str(run), "sub/x.json", open_run(run).fingerprint)


# -- reports -------------------------------------------------------------------------------------------------------

MARKUP = st.text(alphabet="<>&\"'/= abcimgscript", min_size=1, max_size=30).map(lambda s: f"<zq{s}>")


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=MARKUP)
def test_a_report_escapes_every_string_of_a_hostile_run(base: Path, text: str) -> None:
    """Markup in a run's model, data, settings, warnings and image names reaches a report only as text."""
    from core.report import ReportConfig, build_report

    with copy_of(base) as run:
        doc = json.loads((run / "predictions.json").read_text())
        for im in doc["images"]:
            im["id"] = im["predicted_name"] = im["source"] = text
        forge(run, "predictions.json", json.dumps(doc).encode())
        m = manifest_of(run)
        m.update(model={"spec": text}, data={"description": text}, config={text: text},
                 warnings=[{"code": "x", "message": text, "setting": text, "layer": text, "figure": None}])
        (run / MANIFEST).write_text(json.dumps(m))
        with reads_stay_inside(run):
            report = build_report([open_run(run)], ReportConfig(max_images=2))
    assert text not in report
    assert all(tag.startswith('<img src="data:') for tag in re.findall(r"<img\b[^>]*>", report))
