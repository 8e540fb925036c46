"""``core.vcc.analyse`` from Python: the same graph as the `vcc` job, resume through a checkpoint store,
``VCCResult.save``/``load`` round trip, the failure debugger entry point and the config's checks."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.checkpoint import MemoryStore
from core.errors import ConfigError
from core.vcc import VCCConfig, VCCDebugConfig, VCCResult, analyse, debug
from core.vcc import analysis as vcc_analysis
from core.vcc import store as vcc_store
from precompute import cli
from tests.test_vcc_job import TINY, make_inputs, vcc_args

# TINY's settings as a config (the flags of tests/test_vcc_job.py)
CONFIG = VCCConfig(grid=8, n_concepts=3, prune={"A": 0, "K": 2}, n_random_sets=3, random_set_size=3,
                   suppression_scales=(0, 2), n_random_directions=2, kmeans_n_init=2)
LAYERS = ["block1", "block2"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_inputs(tmp_path_factory.mktemp("vcc-api") / "inputs")


def run_api(inp: dict[str, Any], classes: Any, store: Any = None) -> Any:
    return analyse(inp["model"], str(inp["images"]), classes, CONFIG, store, random=str(inp["random"]),
                   layers=LAYERS, device="cpu")


def same_result(a: VCCResult, b: VCCResult) -> None:
    assert a.graph.layers == b.graph.layers and a.graph.class_index == b.graph.class_index
    assert a.graph.nodes == b.graph.nodes
    assert a.graph.edges == b.graph.edges  # weights, p-values and per-set values exactly
    assert [e.weight for e in a.graph.edges] == [e.weight for e in b.graph.edges]
    np.testing.assert_array_equal(a.segments.masks, b.segments.masks)
    np.testing.assert_array_equal(a.segment_concept, b.segment_concept)
    for layer in a.graph.layers:
        np.testing.assert_array_equal(a.centroids[layer], b.centroids[layer])


def test_tiny_flags_are_the_config() -> None:
    args = cli.parse_args(["vcc", "--model", "m", *TINY])
    from precompute import vcc as vcc_job

    assert vcc_job.config_from_args(args) == CONFIG


def test_python_and_the_job_give_the_same_graph(inputs: dict[str, Any], tmp_path: Path) -> None:
    result = run_api(inputs, "red")
    assert isinstance(result, VCCResult) and result.graph.edges
    assert cli.main(vcc_args(inputs, tmp_path, "--classes", "red", "--run-id", "job", "--jobs", "1")) == 0
    job = VCCResult.load(tmp_path / "vcc" / "job", "red")
    same_result(result, job)
    assert job.records["fidelity"] == vcc_store.fidelity_record(result)


def test_resume_recomputes_no_finished_class(inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    real = vcc_analysis.build_vcc
    calls: list[int] = []

    def killed_after_first(bundle: Any, layers: Any, images: Any, random_images: Any, class_index: int,
                           *a: Any, **k: Any) -> Any:
        calls.append(class_index)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(bundle, layers, images, random_images, class_index, *a, **k)

    monkeypatch.setattr(vcc_analysis, "build_vcc", killed_after_first)
    store = MemoryStore()
    with pytest.raises(KeyboardInterrupt):
        run_api(inputs, ["red", "green"], store)
    assert vcc_store.is_finished(store, "0-red") and not vcc_store.is_finished(store, "1-green")
    red, green = run_api(inputs, ["red", "green"], store)
    assert calls == [0, 1, 1]  # red is read back from the store, not computed again
    assert red.graph.class_name == "red" and green.graph.class_name == "green"
    again = run_api(inputs, "red", store)
    assert calls == [0, 1, 1]
    same_result(red, again)
    other = analyse(inputs["model"], str(inputs["images"]), "red", dataclasses.replace(CONFIG, n_concepts=2), store,
                    random=str(inputs["random"]), layers=LAYERS, device="cpu")
    assert calls == [0, 1, 1, 0] and other.config.n_concepts == 2  # other settings: not the stored class


def test_save_and_load_round_trip(inputs: dict[str, Any], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_api(inputs, "green")
    run_dir = result.save(tmp_path, model=inputs["model"], run_id="saved")
    loaded = VCCResult.load(run_dir, "green")
    same_result(result, loaded)
    assert loaded.config == CONFIG
    entry = vcc_store.entry_for(vcc_store.find_run("saved", tmp_path), 1)
    assert entry["slug"] == "1-green" and entry["n_images"] == len(result.images)
    assert all(n.get("exemplar_files") for n in loaded.records["graph"]["nodes"] if n["kind"] == "concept")
    records = debug(inputs["model"], str(inputs["images"] / "green"), [run_dir], "green", device="cpu")
    assert len(records) == 5 and all(r.record["true_name"] == "green" for r in records)
    kept = []  # the tiny VCC has no path to cut: check the number asked of strongest_paths instead
    monkeypatch.setattr(importlib.import_module("core.vcc.debug"), "strongest_paths",
                        lambda graph, starts, n: kept.append(n) or [])
    debug(inputs["model"], str(inputs["images"] / "green"), [run_dir], "green", device="cpu",
          config=VCCDebugConfig(n_paths=2, batch_size=3))
    assert kept and set(kept) == {2}


def test_find_run_is_one_line_errors(tmp_path: Path) -> None:
    from core.errors import RunError

    with pytest.raises(RunError, match="no such run folder"):
        vcc_store.find_run("nope", tmp_path)


def test_config_is_frozen_and_checked() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CONFIG.grid = 3  # type: ignore[misc]
    for kw, field in [({"n_images": 0}, "n_images"), ({"n_images": 200_000}, "n_images"),
                      ({"max_members": 10**9}, "max_members"), ({"split_range": (1, 3)}, "split_range"),
                      ({"prune": {"Z": 1}}, "prune"), ({"cav_alpha": float("nan")}, "cav_alpha")]:
        with pytest.raises(ConfigError) as e:
            VCCConfig(**kw)
        assert e.value.field == field and "\n" not in str(e.value)
    assert VCCConfig(suppression_concepts=0).suppression_concepts is None  # the CLI's "0: all"
    assert all(f.metadata.get("help") for f in dataclasses.fields(VCCConfig))


def test_debug_config_is_frozen_and_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = VCCDebugConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_paths = 3  # type: ignore[misc]
    for kw, field in [({"n_paths": 0}, "n_paths"), ({"n_paths": 2.5}, "n_paths"), ({"batch_size": 0}, "batch_size"),
                      ({"batch_size": True}, "batch_size")]:
        with pytest.raises(ConfigError) as e:
            VCCDebugConfig(**kw)
        assert e.value.field == field and "\n" not in str(e.value)
    assert all(f.metadata.get("help") for f in dataclasses.fields(VCCDebugConfig))
    from precompute import vcc_debug

    conf = tmp_path / "debug.yaml"
    conf.write_text("paths: 3\nbatch-size: 4\n")
    args = cli.parse_args(["vcc-debug", "--model", "m", "--runs", "r", "--config", str(conf)])
    assert vcc_debug.build_config(args) == VCCDebugConfig(n_paths=3, batch_size=4)
    assert vcc_debug.build_config(cli.parse_args(["vcc-debug", "--model", "m"])) == VCCDebugConfig()
    assert cli.main(["vcc-debug", "--model", "m", "--runs", "r", "--paths", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --paths ") and "\n" not in err


def test_example_script_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import runpy

    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / "vcc.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "conv_head" in out and "saved" in out
    loaded = VCCResult.load(tmp_path / "vcc" / "example-vcc-cat", 285)
    assert loaded.graph.class_name == "Egyptian cat" and loaded.graph.edges
