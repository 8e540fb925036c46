"""core.static_dynamic.analyse from Python: the job's numbers, resume through the core store, save and load,
the config's checks, and the example script."""

from __future__ import annotations

import json
import os
import runpy
from pathlib import Path

import numpy as np
import pytest

from core.checkpoint import MemoryStore
from core.errors import ConfigError, DataError, UserError
from core.static_dynamic import StaticDynamicConfig, StaticDynamicResult, analyse
from core.static_dynamic import analysis as sd
from precompute import cli

REPO = Path(__file__).resolve().parents[1]
MODEL = "r3d-motion"
VIDEOS = "synthetic:motion:4"
# Tiny: 6 pairs per factor in batches of 4 (3 batches), removal of the last layer at 3 fractions, 1 seed.
CONFIG = StaticDynamicConfig(pairs=6, batch_size=4, removal=True, removal_fractions=(0.0, 0.5, 1.0),
                             removal_seeds=1, examples=0)
FLAGS = ["--pairs", "6", "--batch-size", "4", "--removal", "--removal-fractions", "0", "0.5", "1",
         "--removal-seeds", "1", "--examples", "0"]
N_BATCHES = 3  # 12 pairs (6 static + 6 dynamic) in batches of 4


def job(tmp_path: Path, run_id: str, *extra: str) -> Path:
    argv = ["static-dynamic", "--model", MODEL, "--videos", VIDEOS, *FLAGS, "--out", str(tmp_path / "runs"),
            "--cache-dir", "", "--device", "cpu", "--run-id", run_id, *extra]
    assert cli.main(argv) == 0
    return tmp_path / "runs" / "static-dynamic" / run_id


def assert_same(a: StaticDynamicResult, b: StaticDynamicResult) -> None:
    """Exactly the same numbers: layer rows, per-unit arrays (NaN where dead) and removal curves."""
    assert a.layer_table() == b.layer_table()
    for ma, mb in zip(a.models, b.models, strict=True):
        for sa, sb in zip(ma.scores, mb.scores, strict=True):
            np.testing.assert_array_equal(sa.s_static, sb.s_static)
            np.testing.assert_array_equal(sa.s_dynamic, sb.s_dynamic)
    assert a.removal_curves() == b.removal_curves()


@pytest.fixture(scope="module")
def api_result() -> StaticDynamicResult:
    return analyse(MODEL, VIDEOS, CONFIG, device="cpu")


def test_python_and_the_job_give_the_same_numbers(tmp_path: Path, api_result: StaticDynamicResult) -> None:
    run = job(tmp_path, "cli")
    from_job = StaticDynamicResult.load(run)
    assert_same(api_result, from_job)
    assert api_result.removal_curves() and api_result.layer_table()[-1]["model"] == MODEL
    assert from_job.config == CONFIG  # the run's settings read back as the config
    # The files themselves, as pages read them.
    rows = json.loads((run / "layers.json").read_text())
    assert [r["S_static"] for r in rows] == [sc.S_static for sc in api_result.models[0].scores]


def test_save_and_load_round_trip(tmp_path: Path, api_result: StaticDynamicResult) -> None:
    path = api_result.save(tmp_path / "runs", run_id="saved")
    assert path == tmp_path / "runs" / "static-dynamic" / "saved"
    back = StaticDynamicResult.load(path)
    assert_same(api_result, back)
    assert back.summary() == api_result.summary()
    assert back.pairs == api_result.pairs and back.n_clips == 4
    with pytest.raises(UserError, match="already exists"):
        api_result.save(tmp_path / "runs", run_id="saved")


class Killed(Exception):
    """Stands for a kill: raised by the store right after a unit of work was saved."""


class KillAfter(MemoryStore):
    """A memory store that raises :class:`Killed` after its ``n``-th save (then behaves normally)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def _tick(self) -> None:
        self.left -= 1
        if self.left == 0:
            raise Killed

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        super().save_arrays(name, **arrays)
        self._tick()

    def save_json(self, name: str, obj: object) -> None:
        super().save_json(name, obj)
        self._tick()


def count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(sd, name)
    monkeypatch.setattr(sd, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_a_killed_analysis_resumes_from_the_store(monkeypatch: pytest.MonkeyPatch,
                                                  api_result: StaticDynamicResult) -> None:
    store = KillAfter(1)  # killed right after the first batch of pair features was saved
    features = count_calls(monkeypatch, "gap_features")
    with pytest.raises(Killed):
        analyse(MODEL, VIDEOS, CONFIG, store, device="cpu", tag="t")
    assert len(features) == 2 and list(store.arrays) == ["parts/t/batch-0000.npz"]
    features.clear()
    accuracy = count_calls(monkeypatch, "_accuracy")
    store.left = (N_BATCHES - 1) + 1  # now the kill comes after the first removal step
    with pytest.raises(Killed):
        analyse(MODEL, VIDEOS, CONFIG, store, device="cpu", tag="t")
    assert len(features) == 2 * (N_BATCHES - 1)  # the first batch came from the store
    assert len(accuracy) == 1
    features.clear()
    accuracy.clear()
    resumed = analyse(MODEL, VIDEOS, CONFIG, store, device="cpu", tag="t")
    assert features == []  # every batch from the store
    assert len(accuracy) == 3 * 3 - 1  # (static, dynamic, 1 random) x 3 fractions, less the one saved
    assert_same(resumed, api_result)


def test_the_default_tag_keeps_other_settings_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    small = StaticDynamicConfig(pairs=2, batch_size=4, examples=0)
    analyse(MODEL, VIDEOS, small, store, device="cpu")
    features = count_calls(monkeypatch, "gap_features")
    analyse(MODEL, VIDEOS, small, store, device="cpu")
    assert features == []
    analyse(MODEL, VIDEOS, StaticDynamicConfig(pairs=2, batch_size=4, examples=0, seed=1), store, device="cpu")
    assert len(features) == 2  # another seed draws other pairs: nothing reused


def test_a_killed_job_resumes_through_its_run_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     api_result: StaticDynamicResult) -> None:
    calls: list[int] = []
    real = sd.gap_features

    def dies_on_the_second_batch(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise Killed
        return real(*a, **k)

    monkeypatch.setattr(sd, "gap_features", dies_on_the_second_batch)
    with pytest.raises(Killed):
        job(tmp_path, "killed")
    assert [p.name for p in (tmp_path / "runs").rglob("parts/m0/*")] == ["batch-0000.npz"]
    calls.clear()
    monkeypatch.setattr(sd, "gap_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    run = job(tmp_path, "killed")
    assert len(calls) == 2 * (N_BATCHES - 1)
    assert_same(StaticDynamicResult.load(run), api_result)
    assert not (run / "parts").exists()


def test_in_memory_clips_with_labels() -> None:
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 255, (3, 16, 32, 32, 3), dtype=np.uint8)
    cfg = StaticDynamicConfig(pairs=4, batch_size=8, examples=1, removal=True, removal_fractions=(0.0, 1.0),
                              removal_seeds=1)
    with pytest.raises(DataError, match="labelled"):
        analyse(MODEL, clips, cfg, device="cpu")
    got = analyse(MODEL, clips, cfg, device="cpu", labels=["left_to_right", "up", None])
    assert got.n_labelled == 2 and got.n_clips == 3 and got.data["source"] == "in-memory"
    assert len(got.removal_curves()) == 1 and set(got.examples[0]["clips"]) >= {"original", "shuffled"}
    with pytest.raises(DataError, match="uint8"):
        analyse(MODEL, clips.astype(np.float32), cfg, device="cpu")


@pytest.mark.parametrize("kwargs, field", [
    ({"pairs": 1}, "pairs"), ({"pairs": 10**7}, "pairs"), ({"lam": 2.0}, "lam"), ({"lam": float("nan")}, "lam"),
    ({"batch_size": 0}, "batch_size"), ({"seed": -1}, "seed"), ({"clips_per_video": 0}, "clips_per_video"),
    ({"examples": 101}, "examples"), ({"removal_seeds": 0}, "removal_seeds"), ({"pairs": "10"}, "pairs"),
    ({"removal_fractions": (0.5, 0.2)}, "removal_fractions"), ({"removal_fractions": (0.0, 1.5)}, "removal_fractions"),
    ({"styles": ("watercolour", "palette")}, "styles"), ({"styles": ("palette",)}, "styles"),
    ({"layers": (",",)}, "layers"),
])
def test_config_checks_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        StaticDynamicConfig(**kwargs)
    assert e.value.field == field and str(e.value).startswith(field + " ") and "--" not in str(e.value)


def test_config_normalises_names() -> None:
    c = StaticDynamicConfig(styles="palette,texture", removal_layers=["layer3,layer4"], removal_fractions=[0, 1])
    assert c.styles == ("palette", "texture") and c.removal_layers == ("layer3", "layer4")
    assert c.removal_fractions == (0.0, 1.0) and c.style_names == ["palette", "texture"]
    assert StaticDynamicConfig().style_names == ["edge_preserving", "pencil", "palette", "texture"]


def test_the_job_maps_config_errors_to_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["static-dynamic", "--model", MODEL, "--out", str(tmp_path), "--removal-fractions", "0", "2"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --removal-fractions must be increasing values between 0 and 1")


def test_example_script_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(REPO / "examples" / "static_dynamic.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "layer" in out
    runs = list((tmp_path / "static-dynamic").iterdir())
    assert len(runs) == 1 and (runs[0] / "layers.json").is_file() and os.access(runs[0], os.R_OK)


@pytest.mark.parametrize("run", sorted(p.parent for p in (REPO / "assets" / "demo" / "static-dynamic")
                                       .glob("*/manifest.json")), ids=lambda p: p.name)
def test_shipped_runs_load_as_results(run: Path) -> None:
    got = StaticDynamicResult.load(run)
    assert got.layer_table() == json.loads((run / "layers.json").read_text())
    units = np.load(run / "units.npz")
    for i, sc in enumerate(sc for m in got.models for sc in m.scores):
        np.testing.assert_array_equal(sc.s_dynamic, units[f"s_dynamic_{i}"])


def test_a_run_missing_unit_scores_is_one_clear_error(tmp_path: Path) -> None:
    from core.artifacts import RunWriter
    from core.errors import RunError

    row = {"model": "m", "layer": "l", "depth": 0, "n_units": 2, "S_static": 0.5, "S_dynamic": 0.1,
           "pct_static": 40.0, "pct_dynamic": 20.0, "pct_identical": 40.0, "n_static": 1, "n_dynamic": 0,
           "n_joint": 0, "n_residual": 1, "n_dead": 0, "lambda": 0.5}
    with RunWriter(tmp_path, "static-dynamic", model={"spec": "m"}, data={}, config={}, run_id="bad") as w:
        w.write_json("models.json", [{"label": "m", "layers": ["l"]}])
        w.write_json("layers.json", [row])
        w.write_npz("units.npz", s_static_0=np.zeros(2))
        w.write_json("pairs.json", {})
        path = w.finish({})
    with pytest.raises(RunError, match=r"units\.npz has no s_dynamic_0"):
        StaticDynamicResult.load(path)
