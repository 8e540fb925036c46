"""The static / dynamic units page and its figure builders, on a fake but consistent run."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from core import viz_static_dynamic as vsd  # noqa: E402
from core.artifacts import RunWriter  # noqa: E402
from core.static_dynamic import ModelResult, StaticDynamicResult, store  # noqa: E402
from core.static_dynamic.scores import LayerScores  # noqa: E402
from tests.page_helpers import texts  # noqa: E402

APP = str(REPO / "app.py")
PAGE = "pages/static_dynamic.py"
KIND = "static-dynamic"
TIMEOUT = 60
LAM = 0.5
# label -> (layer name, units, mean s_static, mean s_dynamic, dead units)
MODELS = {
    "r3d-motion": [("stem", 8, 0.7, 0.2, 0), ("layer1", 16, 0.5, 0.4, 2), ("layer2", 24, 0.3, 0.6, 0),
                   ("layer3", 32, 0.2, 0.75, 3)],
    "c2d-appearance": [("stem", 8, 0.8, 0.1, 1), ("layer1", 12, 0.75, 0.2, 0), ("layer2", 20, 0.7, 0.3, 0)],
}
FRACTIONS = [round(0.1 * k, 1) for k in range(11)]
EXAMPLE_KEYS = ["original", "static", "shuffled", "style_a", "style_b", "flow", "flow_jittered"]

@pytest.fixture(autouse=True)
def interactive_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read the pages' plotly figures: the interactive chart mode (the default light mode's SVG
    figures are tested in tests/test_light_charts.py)."""
    monkeypatch.setenv("CONCEPT_LENS_CHARTS", "interactive")



def softmax_pct(s_dynamic: float, s_static: float) -> tuple[float, float, float]:
    e = np.exp([s_dynamic, s_static, 1.0])
    return tuple(float(v) for v in 100 * e / e.sum())


def fake_layers(seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """layers.json records and units.npz arrays whose counts follow from the scores (eq. 3.3)."""
    rng = np.random.default_rng(seed)
    records, arrays = [], {}
    for label, specs in MODELS.items():
        for depth, (layer, n, mu_s, mu_d, dead) in enumerate(specs):
            s_static = np.clip(rng.normal(mu_s, 0.25, n), -1, 1)
            s_dynamic = np.clip(rng.normal(mu_d, 0.25, n), -1, 1)
            s_static[n - dead:] = np.nan
            s_dynamic[n - dead:] = np.nan
            live = np.isfinite(s_static)
            st, dy = live & (s_static > LAM), live & (s_dynamic > LAM)
            i = len(records)
            arrays[store.units_key("static", i)], arrays[store.units_key("dynamic", i)] = s_static, s_dynamic
            S_static, S_dynamic = float(np.nanmean(s_static)), float(np.nanmean(s_dynamic))
            pct_dynamic, pct_static, pct_identical = softmax_pct(S_dynamic, S_static)
            records.append({
                "model": label, "layer": layer, "depth": depth, "n_units": n, "S_static": S_static,
                "S_dynamic": S_dynamic, "pct_static": pct_static, "pct_dynamic": pct_dynamic,
                "pct_identical": pct_identical, "n_static": int((st & ~dy).sum()), "n_dynamic": int((dy & ~st).sum()),
                "n_joint": int((st & dy).sum()), "n_residual": int((live & ~st & ~dy).sum()), "n_dead": int(dead),
                "lambda": LAM,
            })
    return records, arrays


def fake_removal() -> dict[str, Any]:
    curves = []
    for label, specs in MODELS.items():
        for layer, *_ in specs[-2:]:
            x = np.array(FRACTIONS)
            static, dynamic, rnd = 0.9 - 0.5 * x, 0.9 - 0.8 * np.sqrt(x), 0.9 - 0.3 * x
            curves.append({"model": label, "layer": layer, "static": static.tolist(), "dynamic": dynamic.tolist(),
                           "random_mean": rnd.tolist(), "random_std": (0.02 + 0 * x).tolist(),
                           "auc": {"static": float(np.trapezoid(static, x)),
                                   "dynamic": float(np.trapezoid(dynamic, x)),
                                   "random": float(np.trapezoid(rnd, x))}})
    return {"metric": "top-1 accuracy", "n_videos": 90, "fractions": FRACTIONS, "seeds": 3, "curves": curves}


def fake_dynamics() -> dict[str, Any]:
    checkpoints = [{"label": f"epoch-{e:02d}", "epoch": e, "val_accuracy": 0.1 + 0.08 * e} for e in range(1, 6)]
    records = []
    for c in checkpoints:
        for depth, (layer, n, *_) in enumerate(MODELS["r3d-motion"]):
            s_d, s_s = 0.1 * c["epoch"] * (depth + 1) / 4, 0.6 - 0.05 * c["epoch"]
            pd_, ps, pi = softmax_pct(s_d, s_s)
            n_dyn = min(n, c["epoch"] * (depth + 1))
            records.append({"checkpoint": c["label"], "epoch": c["epoch"], "layer": layer, "S_static": s_s,
                            "S_dynamic": s_d, "pct_static": ps, "pct_dynamic": pd_, "pct_identical": pi,
                            "n_units": n, "n_static": 0, "n_dynamic": n_dyn, "n_joint": 0,
                            "n_residual": n - n_dyn, "n_dead": 0})
    return {"checkpoints": checkpoints, "records": records}


def kill_layer(records: list[dict[str, Any]], arrays: dict[str, np.ndarray], model: str, layer: str) -> None:
    """Make ``model``'s ``layer`` a layer with no live unit, as :func:`core.static_dynamic.scores.score_layer`
    reports one: every unit dead (NaN scores), the layer scores and percentages NaN."""
    i = next(i for i, r in enumerate(records) if (r["model"], r["layer"]) == (model, layer))
    for factor in ("static", "dynamic"):
        arrays[store.units_key(factor, i)] = np.full(records[i]["n_units"], np.nan)
    records[i].update({k: float("nan") for k in store.LAYER_SCORES})
    records[i].update({"n_static": 0, "n_dynamic": 0, "n_joint": 0, "n_residual": 0, "n_dead": records[i]["n_units"]})


def make_static_dynamic_run(root: Path, run_id: str = "sd-run", optional: bool = True, seed: int = 0,
                            warnings: tuple[dict[str, Any], ...] = (), dead: tuple[str, str] | None = None) -> Path:
    """A complete fake ``static-dynamic`` run, saved by :func:`core.static_dynamic.store.save`: two models; with
    ``optional`` also removal, dynamics, examples; ``warnings`` are recorded in the manifest (keys: code, message
    and optionally setting, layer, figure); ``dead``: a (model, layer) with no live unit."""
    records, arrays = fake_layers(seed)
    if dead is not None:
        kill_layer(records, arrays, *dead)
    removal = fake_removal() if optional else {"curves": []}
    fields = [f for f in LayerScores.__dataclass_fields__ if f not in ("s_static", "s_dynamic")]
    results = []
    for label, specs in MODELS.items():
        rows = [(i, r) for i, r in enumerate(records) if r["model"] == label]
        scores = [LayerScores(**{f: r[f] for f in fields}, s_static=arrays[store.units_key("static", i)],
                              s_dynamic=arrays[store.units_key("dynamic", i)]) for i, r in rows]
        record = {"label": label, "spec": label, "description": f"{label} (fake)", "architecture": label.split("-")[0],
                  "task": label.split("-")[1], "input": "video", "val_accuracy": 0.8 if label == "r3d-motion" else None,
                  "layers": [s[0] for s in specs]}
        curves = [{k: v for k, v in c.items() if k != "model"} for c in removal["curves"] if c["model"] == label]
        results.append(ModelResult(label, record, [r["layer"] for _, r in rows], scores, curves))
    examples = []
    if optional:
        rng = np.random.default_rng(seed)
        clips = {key: rng.integers(0, 255, size=(6, 32, 32, 3), dtype=np.uint8) for key in EXAMPLE_KEYS}
        examples = [{"video": "bikes.mp4", "caption": "bikes.mp4, clip 0", "clips": clips,
                     "styles": {"static": "pencil", "style_a": "pencil", "style_b": "palette"}}]
    config = {"lambda": LAM, "pairs": 40}
    if optional:
        config |= {"removal": True, "removal_fractions": FRACTIONS, "removal_seeds": removal["seeds"]}
    result = StaticDynamicResult(
        config=None, models=results, pairs={}, data={"description": "synthetic:motion"}, n_clips=0,
        n_labelled=removal.get("n_videos", 0), styles=[], model_spec=[{"spec": label} for label in MODELS],
        manifest_config=config, examples=examples, dynamics=fake_dynamics() if optional else None,
        warnings=[dict(w) for w in warnings])
    return store.save(result, root, run_id=run_id)


def make_bare_run(root: Path, run_id: str, summary: dict[str, Any], lam: Any = None) -> Path:
    """A ``static-dynamic`` run with only the required files, written file by file (an older or foreign
    writer): its layer records carry ``lambda`` only when ``lam`` is given."""
    records, arrays = fake_layers()
    records = [{k: v for k, v in r.items() if k != "lambda"} | ({"lambda": lam} if lam is not None else {})
               for r in records]
    models = [{"label": label, "spec": label} for label in MODELS]
    with RunWriter(root, KIND, model=[{"spec": label} for label in MODELS], data={}, config={},
                   run_id=run_id) as run:
        run.write_json(store.MODELS, models)
        run.write_json(store.LAYERS, records)
        run.write_npz(store.UNITS, **arrays)
        return run.finish(summary=summary)


@pytest.fixture(scope="module")
def sd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sd")
    make_static_dynamic_run(root)
    return root


def plain(markdown: str) -> str:
    """Markdown with its backslash escapes removed: the text a reader sees."""
    return re.sub(r"\\(.)", r"\1", markdown)


def open_page(root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    return at.switch_page(PAGE).run()


def charts(at: AppTest) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(figure, config) of every plotly chart on the page."""
    return [(json.loads(c.proto.spec), json.loads(c.proto.config)) for c in at.get("plotly_chart")]


def values(v: Any) -> list[Any]:
    """A figure JSON array as a list: plotly writes numpy arrays as base64 typed arrays."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape(v["shape"]).tolist() if "shape" in v else a.tolist()
    return list(v)


def traces(fig: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [t for t in fig["data"] if t.get("name") == name]


# -- page ---------------------------------------------------------------------------------------------------------


def test_page_shows_every_section(sd_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(sd_root, monkeypatch)
    assert not at.exception
    assert not at.error
    assert at.title[0].value == "Static / dynamic units"
    text = plain(texts(at))
    assert "r3d-motion, c2d-appearance" in text and "40 pairs" in text and "λ = 0.5" in text
    assert "**joint** when both are" in text
    assert [s.value for s in at.subheader] == ["Units of one layer", "Removal, training, examples"]
    assert [t.label for t in at.tabs] == ["Unit categories", "Layer scores", "Unit removal", "Training dynamics",
                                          "Example pairs"]
    figs = charts(at)
    assert len(figs) == 4  # only the open tabs: unit categories, unit scatter, score histograms, removal
    assert all(cfg["toImageButtonOptions"]["format"] == "png" for _, cfg in figs)
    assert not at.get("video")
    labels = [b.label for b in at.get("download_button") if "(CSV)" in b.label]
    # figure exports: a closed popover per figure, its widgets drawn once it is opened
    assert [p.proto.popover.label for p in at.get("popover")].count("Export figure") == 4
    assert not [b for b in at.get("download_button") if b.label.startswith("Download SVG")]
    at.session_state["sd_x_units-pop"] = True
    at.run()
    assert [b.label for b in at.get("download_button") if b.label.startswith("Download SVG")]
    assert labels == ["Download layers (CSV)", "Download unit scores (CSV)", "Download AUCs (CSV)",
                      "Download removal curves (CSV)"]
    models = at.dataframe[0].value
    assert list(models["model"]) == list(MODELS)
    assert list(models["units"]) == [sum(s[1] for s in specs) for specs in MODELS.values()]

    records, _ = fake_layers()
    hist = figs[0][0]
    static = traces(hist, "static")
    assert len(static) == 2
    assert values(static[0]["y"]) == [r["n_static"] for r in records if r["model"] == "r3d-motion"]
    assert values(static[1]["x"]) == [s[0] for s in MODELS["c2d-appearance"]]
    assert [t["marker"]["color"] for t in hist["data"][:5]] == [vsd.COLORS[c] for c in vsd.CATEGORIES]

    at.session_state["sd_view"] = "Layer scores"  # the other overview tab: drawn instead
    at.run()
    assert not at.exception
    figs = charts(at)
    assert len(figs) == 4 and not traces(figs[0][0], "joint")
    assert values(traces(figs[0][0], "dynamic")[0]["y"]) == pytest.approx(
        [r["pct_dynamic"] for r in records if r["model"] == "r3d-motion"])
    assert "under 47%" in texts(at)

    at.session_state["sd_more"] = "Training dynamics"
    at.run()
    assert not at.exception
    assert len(charts(at)) == 4 and "Download dynamics (CSV)" in [b.label for b in at.get("download_button")]
    at.session_state["sd_more"] = "Example pairs"
    at.run()
    assert not at.exception
    assert len(at.get("video")) == len(EXAMPLE_KEYS) and len(charts(at)) == 3
    text = plain(texts(at))
    assert "static pair: frames shuffled" in text and "static pair: flow, hue-jittered" in text
    assert "dynamic pair: style B (palette)" in text


def test_page_unit_selection_and_export_format(sd_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(sd_root, monkeypatch)
    _, arrays = fake_layers()
    row = 3  # r3d-motion · layer3, the deepest layer of the first model: the default
    assert at.selectbox(key="sd_layer-r3d-motion").value == "layer3"
    at.selectbox(key=f"sd_unit-{row}").set_value(5).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["s_static"] == f"{arrays[f's_static_{row}'][5]:.3f}"
    assert metrics["s_dynamic"] == f"{arrays[f's_dynamic_{row}'][5]:.3f}"
    expected = vsd.classify_units(arrays[f"s_static_{row}"][5:6], arrays[f"s_dynamic_{row}"][5:6], LAM)[0]
    assert metrics["category"] == expected
    scatter = charts(at)[1][0]
    ring = traces(scatter, "unit 5")[0]
    assert values(ring["customdata"]) == [[5]] and values(ring["x"])[0] == pytest.approx(arrays[f"s_static_{row}"][5])
    assert len(at.dataframe) == 2  # models, AUCs: the layer and unit tables wait in closed expanders
    at.session_state["sd_unit_table"] = True
    at.run()
    units_table = at.dataframe[1].value  # models, unit scores, AUCs
    assert list(units_table.columns) == vsd.UNIT_COLUMNS and len(units_table) == 32
    assert units_table["s_dynamic"][7] == pytest.approx(arrays[f"s_dynamic_{row}"][7])
    assert "3 dead units" in texts(at)
    url = at.query_params
    assert (url["model"], url["layer"], url["unit"]) == ("r3d-motion", "layer3", "5")
    assert at.query_params["run"] == "sd-run"

    at.selectbox(key=f"sd_unit-{row}").set_value(31).run()  # the last 3 units are dead
    assert {m.label: m.value for m in at.metric}["category"] == "dead"

    at.segmented_control(key="sd_export").set_value("SVG").run()
    assert not at.exception
    figs = charts(at)
    assert len(figs) == 4
    assert {cfg["toImageButtonOptions"]["format"] for _, cfg in figs} == {"svg"}
    assert figs[1][1]["toImageButtonOptions"]["filename"] == "sd-run-units-r3d-motion-layer3"

    at.segmented_control(key="sd_share").set_value(True).run()
    hist = charts(at)[0][0]
    heights = np.sum([values(t["y"]) for t in hist["data"] if t["xaxis"] == "x"], axis=0)
    assert heights == pytest.approx([100.0] * 4)

    at.selectbox(key="sd_layer_model").set_value("c2d-appearance").run()
    assert not at.exception
    assert at.selectbox(key="sd_layer-c2d-appearance").value == "layer2"
    assert {m.label: m.value for m in at.metric}["s_static"] == f"{arrays['s_static_6'][0]:.3f}"


def test_page_view_from_the_url(sd_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pasted link restores the run's one-layer view: model, layer and unit."""
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(sd_root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"run": "sd-run", "model": "c2d-appearance", "layer": "layer1", "unit": "4",
                            "models": "c2d-appearance,no-such-model"})
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.multiselect(key="sd_models-sd-run").value == ["c2d-appearance"]
    assert [a["text"] for a in charts(at)[0][0]["layout"]["annotations"]] == ["c2d-appearance"]
    assert at.query_params["models"] == "c2d-appearance"
    at.multiselect(key="sd_models-sd-run").select("r3d-motion").run()
    assert at.query_params["models"] == "c2d-appearance,r3d-motion"
    assert at.selectbox(key="sd_layer_model").value == "c2d-appearance"
    assert at.selectbox(key="sd_layer-c2d-appearance").value == "layer1"
    assert at.selectbox(key="sd_unit-5").value == 4
    _, arrays = fake_layers()
    assert {m.label: m.value for m in at.metric}["s_static"] == f"{arrays['s_static_5'][4]:.3f}"
    at.selectbox(key="sd_layer-c2d-appearance").set_value("stem").run()
    assert at.query_params["layer"] == "stem" and at.query_params["model"] == "c2d-appearance"


def strict_json(path: Path) -> Any:
    """``path`` parsed as strict JSON: NaN or Infinity in it fails the test."""
    def refuse(name: str) -> None:
        raise AssertionError(f"{path.name} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_layer_without_live_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its scores are null on disk (strict JSON), NaN once loaded, and ``—`` on the page, which does not fail."""
    run = make_static_dynamic_run(tmp_path, "sd-dead", optional=False, dead=("r3d-motion", "layer3"))
    rows = strict_json(run / store.LAYERS)
    strict_json(run / "manifest.json")
    dead = next(r for r in rows if (r["model"], r["layer"]) == ("r3d-motion", "layer3"))
    assert {k: dead[k] for k in store.LAYER_SCORES} == dict.fromkeys(store.LAYER_SCORES)
    assert dead["n_dead"] == dead["n_units"] == 32
    back = StaticDynamicResult.load(run).scores("r3d-motion")["layer3"]
    assert all(np.isnan(getattr(back, k)) for k in store.LAYER_SCORES) and back.n_dead == 32
    assert np.isnan(back.s_static).all()

    at = open_page(tmp_path, monkeypatch)
    assert not at.exception and not at.error
    assert at.selectbox(key="sd_layer-r3d-motion").value == "layer3"  # the deepest layer, shown first
    text = texts(at)
    assert "S_static —, S_dynamic —" in text and "the 32 dead units" in text
    assert {m.label: m.value for m in at.metric}["s_static"] == "—"
    at.session_state["sd_view"] = "Layer scores"  # the layer scores, in both metrics
    for metric in ("pct", "S"):
        at.session_state["sd_metric"] = metric
        at.run()
        assert not at.exception and not at.error
        scores = charts(at)[0][0]
        assert not traces(scores, "joint") and len(values(traces(scores, "static")[0]["y"])) == 4  # layer scores
    fig = vsd.layer_scores(rows, ["r3d-motion"], metric="S")
    assert np.isnan(fig.data[0].y[3]) and fig.data[0].hovertext[3].startswith("S_static — · S_dynamic —")
    assert vsd.fmt_score(None) == vsd.fmt_score(float("nan")) == "—" and vsd.fmt_score(0.25, ".1f") == "0.2"


def test_page_without_optional_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_static_dynamic_run(tmp_path, "sd-bare", optional=False)
    at = open_page(tmp_path, monkeypatch)
    assert not at.exception
    assert not at.error
    assert "`--removal`" in texts(at)
    assert [t.label for t in at.tabs][2:] == ["Unit removal", "Training dynamics"]  # no examples tab
    assert len(charts(at)) == 3
    at.session_state["sd_more"] = "Training dynamics"
    at.run()
    assert "`--checkpoints`" in texts(at)
    assert not at.get("video")


def test_page_follows_the_sidebar_pick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_static_dynamic_run(tmp_path, "sd-a", optional=False, seed=1)
    make_static_dynamic_run(tmp_path, "sd-b", optional=False, seed=2)
    with RunWriter(tmp_path, "predictions", model={"spec": "tiny"}, data={}, config={}, run_id="preds") as run:
        run.write_json("predictions.json", {"images": []})
        run.finish()
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert at.session_state["run_path"].endswith("preds")  # the newest run of any kind on Runs
    at.switch_page(PAGE).run()  # opens on a static-dynamic run, not on the sidebar's predictions run
    assert not at.exception
    shown = Path(at.session_state["run_path"]).name
    assert shown in ("sd-a", "sd-b") and f"`{shown}`" in texts(at)
    assert "Static / dynamic run" not in [s.label for s in at.selectbox]
    assert len(at.sidebar.selectbox[0].options) == 2  # only runs this page can show

    other = "sd-b" if shown == "sd-a" else "sd-a"
    at.sidebar.selectbox[0].set_value(str(tmp_path / KIND / other)).run()
    assert not at.exception
    assert f"`{other}`" in texts(at) and at.query_params["run"] == other
    at.switch_page("pages/home.py").run()
    at.switch_page(PAGE).run()  # the page's run is kept across pages
    assert f"`{other}`" in texts(at)


def test_page_shows_warnings_beside_their_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_static_dynamic_run(tmp_path, "sd-warned", optional=False, warnings=(
        {"code": "few_pairs", "message": "Only 40 pairs: scores are noisy.", "setting": "--pairs"},
        {"code": "dead_layer", "message": "layer1 of r3d-motion: 2 dead units", "setting": "--pairs",
         "layer": "layer1", "figure": "histogram"},
        {"code": "dead_layer", "message": "stem is all dead", "layer": "stem", "figure": "histogram"}))
    at = open_page(tmp_path, monkeypatch)
    assert not at.exception
    shown = [plain(w.value) for w in at.warning]
    assert shown == ["Only 40 pairs: scores are noisy. (setting: `--pairs`)"]  # run-level: at the top
    assert "2 warnings about layers `layer1`, `stem`" in texts(at)
    at.selectbox(key="sd_layer-r3d-motion").set_value("layer1").run()
    assert not at.exception
    assert [plain(w.value) for w in at.warning][1:] == ["layer1 of r3d-motion: 2 dead units (setting: `--pairs`)"]


def test_page_escapes_names_from_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img, remote = "<img src=x onerror=alert(1)>-motion", "![x](http://evil/x.png)"
    monkeypatch.setattr(sys.modules[__name__], "MODELS", {img: [(remote, 8, 0.7, 0.2, 0), ("deep", 8, 0.3, 0.6, 0)]})
    make_static_dynamic_run(tmp_path, "sd-hostile", optional=False,
                            warnings=({"code": "x", "message": remote, "layer": remote, "setting": img},))
    at = open_page(tmp_path, monkeypatch)
    assert not at.exception and not at.error
    at.selectbox(key=f"sd_layer-{img}").set_value(remote).run()
    assert not at.exception
    markdown = "\n".join([texts(at)] + [e.label for e in at.expander])
    outside_code = re.sub(r"(`+).*?\1", "", markdown)
    for active in (r"(?<!\\)<img", r"(?<!\\)!(?<!\\)\[", r"(?<!\\)\]\("):
        assert not re.search(active, outside_code), active
    assert img in plain(texts(at)) and remote in plain(texts(at))  # shown, as text


def test_page_reports_a_damaged_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_static_dynamic_run(tmp_path, "sd-damaged", optional=False)
    (run / store.UNITS).write_bytes(b"not a zip")
    at = open_page(tmp_path, monkeypatch)
    assert not at.exception
    assert store.UNITS in at.error[0].value and "sd-damaged" in at.error[0].value


@pytest.mark.parametrize(("summary", "lam", "shown"), [
    ({"lambda": 0.3}, None, 0.3),  # layer records without lambda: the summary's (this raised KeyError)
    ({"lambda": 0.3}, 0.2, 0.3),  # the summary's wins
    ({"lambda": "high"}, 0.2, 0.2),  # not a number: the layer records'
    ({}, None, 0.5),  # neither: the config default
], ids=["summary-only", "summary-first", "bad-summary", "default"])
def test_page_threshold_from_summary_or_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               summary: dict[str, Any], lam: float | None, shown: float) -> None:
    make_bare_run(tmp_path, "sd-lambda", summary, lam)
    at = open_page(tmp_path, monkeypatch)
    assert not at.exception and not at.error
    assert f"λ = {shown:g}" in texts(at)
    _, arrays = fake_layers()
    sel = at.selectbox(key="sd_unit-3").value  # r3d-motion · layer3, the default layer
    expected = vsd.classify_units(arrays["s_static_3"][sel:sel + 1], arrays["s_dynamic_3"][sel:sel + 1], shown)[0]
    assert {m.label: m.value for m in at.metric}["category"] == expected


def test_page_without_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(tmp_path, monkeypatch)
    assert not at.exception
    assert "No `static-dynamic` runs" in at.info[0].value


# -- builders -----------------------------------------------------------------------------------------------------


def test_classify_units() -> None:
    s_static = np.array([0.9, 0.1, 0.9, 0.1, np.nan, 0.5, 0.51])
    s_dynamic = np.array([0.1, 0.9, 0.9, 0.1, 0.3, 0.5, np.nan])
    assert list(vsd.classify_units(s_static, s_dynamic, 0.5)) == [
        "static", "dynamic", "joint", "residual", "dead", "residual", "dead"]
    assert list(vsd.classify_units(s_static, s_dynamic, 0.0)) == [
        "joint", "joint", "joint", "joint", "dead", "joint", "dead"]


def test_unit_histogram_counts_and_colours() -> None:
    records, _ = fake_layers()
    fig = vsd.unit_histogram(records, ["c2d-appearance", "r3d-motion"])
    assert fig.layout.barmode == "stack"
    assert [a.text for a in fig.layout.annotations] == ["c2d-appearance", "r3d-motion"]
    for cat in vsd.CATEGORIES:
        bars = [t for t in fig.data if t.name == cat]
        assert [t.marker.color for t in bars] == [vsd.COLORS[cat]] * 2
        assert [t.showlegend for t in bars] == [True, False]
        assert list(bars[0].y) == [r[f"n_{cat}"] for r in records if r["model"] == "c2d-appearance"]
        assert list(bars[1].y) == [r[f"n_{cat}"] for r in records if r["model"] == "r3d-motion"]
    totals = np.sum([t.y for t in fig.data if t.xaxis == "x2"], axis=0)
    assert list(totals) == [s[1] for s in MODELS["r3d-motion"]]

    share = vsd.unit_histogram(records, ["r3d-motion"], share=True)
    assert np.sum([t.y for t in share.data], axis=0) == pytest.approx([100.0] * 4)
    stem = records[0]
    assert share.data[0].y[0] == pytest.approx(100 * stem["n_static"] / stem["n_units"])


def test_layer_scores_values_and_hover() -> None:
    records, _ = fake_layers()
    fig = vsd.layer_scores(records, ["r3d-motion"], metric="pct")
    static, dynamic = fig.data
    assert (static.name, dynamic.name) == ("static", "dynamic")
    assert (static.marker.color, dynamic.marker.color) == (vsd.COLORS["static"], vsd.COLORS["dynamic"])
    assert list(static.y) == pytest.approx([r["pct_static"] for r in records[:4]])
    assert list(dynamic.y) == pytest.approx([r["pct_dynamic"] for r in records[:4]])
    assert static.customdata[2][4] == pytest.approx(records[2]["pct_identical"])
    assert static.customdata[2][0] == pytest.approx(records[2]["S_static"])
    assert "%{hovertext}" in static.hovertemplate
    assert static.hovertext[2] == (f"S_static {records[2]['S_static']:.3f} · S_dynamic {records[2]['S_dynamic']:.3f}"
                                   f"<br>static {records[2]['pct_static']:.1f}% · dynamic "
                                   f"{records[2]['pct_dynamic']:.1f}% · identical {records[2]['pct_identical']:.1f}%")
    raw = vsd.layer_scores(records, ["r3d-motion", "c2d-appearance"], metric="S")
    assert list(raw.data[1].y) == pytest.approx([r["S_dynamic"] for r in records[:4]])
    assert list(raw.data[2].y) == pytest.approx([r["S_static"] for r in records[4:]])


def test_unit_scatter_lambda_lines_and_categories() -> None:
    s_static = np.array([0.9, 0.1, 0.9, 0.1, np.nan, 0.7])
    s_dynamic = np.array([0.1, 0.9, 0.9, 0.1, np.nan, 0.2])
    fig = vsd.unit_scatter(s_static, s_dynamic, 0.4, selected=2)
    lines = [(s.x0, s.x1, s.y0, s.y1) for s in fig.layout.shapes]
    assert lines[0][:2] == (0.4, 0.4) and lines[1][2:] == (0.4, 0.4)
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"static (2)", "dynamic (1)", "joint (1)", "residual (1)", "unit 2"}
    assert [list(c) for c in by_name["static (2)"].customdata] == [[0], [5]]
    assert list(by_name["static (2)"].x) == [0.9, 0.7]
    assert by_name["joint (1)"].marker.color == vsd.COLORS["joint"]
    assert list(by_name["unit 2"].customdata[0]) == [2]
    assert sum(len(t.x) for t in fig.data if t.name != "unit 2") == 5  # the dead unit is not plotted

    rng = np.random.default_rng(0)
    many = vsd.unit_scatter(rng.uniform(-1, 1, 2500), rng.uniform(-1, 1, 2500), 0.5)
    assert [t.type for t in many.data] == ["histogram2d"]
    assert many.data[0].xbins.start < -1 and many.data[0].xbins.end > 1  # units at exactly ±1 are counted
    assert many.data[0].ybins.start < -1 and many.data[0].ybins.end > 1
    assert many.layout.shapes[0].x0 == 0.5


def test_point_unit() -> None:
    assert vsd.point_unit({"customdata": [7], "x": 0.1}) == 7
    assert vsd.point_unit({"customdata": {"0": 4}}) == 4
    assert vsd.point_unit({"customdata": 3.0}) == 3
    assert vsd.point_unit({"x": 0.2, "y": 0.3}) is None
    assert vsd.point_unit({"customdata": []}) is None


def test_score_histograms_drop_dead_units() -> None:
    fig = vsd.score_histograms(np.array([0.1, 0.6, np.nan]), np.array([0.2, np.nan, np.nan]), 0.3)
    assert [sum(t.y) for t in fig.data] == [2, 1]
    assert [t.marker.color for t in fig.data] == [vsd.COLORS["static"], vsd.COLORS["dynamic"]]
    assert [s.x0 for s in fig.layout.shapes] == [0.3, 0.3]


def test_export_config() -> None:
    cfg = vsd.export_config("run-x-units", "SVG")
    assert cfg["toImageButtonOptions"]["format"] == "svg"
    assert cfg["toImageButtonOptions"]["filename"] == "run-x-units"
    assert cfg["displaylogo"] is False
    assert vsd.export_config("a")["toImageButtonOptions"]["format"] == "png"
    with pytest.raises(ValueError, match="jpeg"):
        vsd.export_config("a", "jpeg")


def test_tables() -> None:
    records, arrays = fake_layers()
    layers = vsd.layers_table(records)
    assert list(layers.columns) == vsd.LAYER_COLUMNS
    assert len(layers) == 7
    assert (layers[[f"n_{c}" for c in vsd.CATEGORIES]].sum(axis=1) == layers["n_units"]).all()

    units = vsd.unit_table(arrays["s_static_1"], arrays["s_dynamic_1"], LAM)
    assert list(units.columns) == vsd.UNIT_COLUMNS
    counts = units["category"].value_counts()
    assert all(counts.get(c, 0) == records[1][f"n_{c}"] for c in vsd.CATEGORIES)

    removal = fake_removal()
    aucs = vsd.removal_table(removal)
    assert list(aucs.columns) == vsd.AUC_COLUMNS and len(aucs) == 4
    assert aucs["auc_static"][0] == pytest.approx(0.65)
    assert aucs["auc_random"][0] == pytest.approx(0.75)
    curves = vsd.removal_curves_table(removal)
    assert list(curves.columns) == vsd.CURVE_COLUMNS and len(curves) == 4 * len(FRACTIONS)
    assert curves["static"].iloc[10] == pytest.approx(0.4)

    dyn = vsd.dynamics_table(fake_dynamics())
    assert list(dyn.columns) == vsd.DYNAMICS_COLUMNS and len(dyn) == 5 * 4
    assert dyn.loc[dyn["epoch"] == 3, "val_accuracy"].unique().tolist() == pytest.approx([0.34])

    models = vsd.models_table([{"label": "r3d-motion", "spec": "r3d-motion", "input": "video"}], records)
    assert models.loc[0, "units"] == 80 and models.loc[0, "final layer"] == "layer3"
    assert models.loc[0, "final pct_dynamic"] == pytest.approx(records[3]["pct_dynamic"])
    assert isinstance(models, pd.DataFrame)


def test_removal_figure_band_and_auc() -> None:
    removal = fake_removal()
    curve = removal["curves"][0]
    fig = vsd.removal_figure(removal, curve)
    upper, lower, rnd, static, dynamic = fig.data
    assert list(upper.y) == pytest.approx(np.array(curve["random_mean"]) + 0.02)
    assert list(lower.y) == pytest.approx(np.array(curve["random_mean"]) - 0.02)
    assert lower.fill == "tonexty"
    assert static.name == f"top static units (AUC {curve['auc']['static']:.3f})"
    assert "3 seeds" in rnd.name and "AUC 0.750" in rnd.name
    assert dynamic.line.color == vsd.COLORS["dynamic"]
    assert fig.layout.yaxis.title.text == "top-1 accuracy"


def test_dynamics_figure() -> None:
    dynamics = fake_dynamics()
    fig = vsd.dynamics_figure(dynamics, metric="pct")
    lines = [t for t in fig.data if t.name == "layer2"]
    assert len(lines) == 2 and list(lines[0].x) == [1, 2, 3, 4, 5]
    layer2 = [r for r in dynamics["records"] if r["layer"] == "layer2"]
    assert list(lines[0].y) == pytest.approx([r["pct_static"] for r in layer2])
    assert list(lines[1].y) == pytest.approx([r["pct_dynamic"] for r in layer2])
    acc = [t for t in fig.data if t.name == "val accuracy"]
    assert len(acc) == 2 and list(acc[0].y) == pytest.approx([0.18, 0.26, 0.34, 0.42, 0.5])
    assert acc[0].yaxis != lines[0].yaxis

    some = vsd.dynamics_figure(dynamics, ["stem"], metric="units")
    assert {t.name for t in some.data} == {"stem", "val accuracy"}
    stem_dynamic = [t for t in some.data if t.name == "stem"][1]
    assert list(stem_dynamic.y) == pytest.approx([100 * e / 8 for e in range(1, 6)])
    no_acc = {**dynamics, "checkpoints": [{**c, "val_accuracy": None} for c in dynamics["checkpoints"]]}
    assert "val accuracy" not in {t.name for t in vsd.dynamics_figure(no_acc).data}


def test_example_views_order_and_titles() -> None:
    files = {k: f"examples/0-{k}.mp4" for k in reversed(EXAMPLE_KEYS)} | {"extra_view": "examples/x.mp4"}
    views = vsd.example_views(files)
    assert [v[0] for v in views] == [*EXAMPLE_KEYS, "extra_view"]
    assert views[2][1] == "static pair: frames shuffled"
    assert views[4] == ("style_b", "dynamic pair: style B", "examples/0-style_b.mp4")
    assert views[-1][1] == "extra view"
    styled = vsd.example_views({"style_a": "a.mp4", "original": "o.mp4"}, {"style_a": "pencil"})
    assert styled == [("original", "original", "o.mp4"), ("style_a", "dynamic pair: style A (pencil)", "a.mp4")]


def test_score_histograms_count_every_unit_on_the_edges_and_beyond() -> None:
    """Plotly's fixed bins from -1 to 1 dropped values at 1.0 and S > 1: every value is counted now."""
    s_static = np.array([1.0, 1.0, 0.9999999, -1.0, 1.37, 0.5])
    s_dynamic = np.array([1.0 + 1e-12, -1.2, 0.0, 0.05, np.nan, 1.0])
    fig = vsd.score_histograms(s_static, s_dynamic, 0.5)
    assert [int(sum(values(t.y))) for t in fig.data] == [6, 5]
    static = fig.data[0]
    top = max(range(len(static.y)), key=lambda i: static.x[i])
    assert static.y[top] == 1 and static.customdata[top][1] >= 1.37  # the S > 1 unit, in the last bin
    lo, hi = fig.layout.xaxis.range
    assert lo <= -1.2 and hi >= 1.37


DEMO_SD = sorted((REPO / "assets" / "demo" / KIND).glob("*/manifest.json"))


@pytest.mark.skipif(not DEMO_SD, reason="no static-dynamic demo runs")
@pytest.mark.parametrize("manifest", DEMO_SD, ids=lambda p: p.parent.name)
def test_demo_histograms_plot_every_scored_unit(manifest: Path) -> None:
    """For every layer of every demo run the plotted counts add up to the layer's scored units."""
    from core.artifacts import open_run

    run = open_run(manifest.parent)
    layers, units = run.load_json(store.LAYERS), run.load_npz(store.UNITS)
    assert layers
    for row, rec in enumerate(layers):
        s_static, s_dynamic = units[store.units_key("static", row)], units[store.units_key("dynamic", row)]
        fig = vsd.score_histograms(s_static, s_dynamic, float(rec["lambda"]))
        plotted = [int(sum(values(t["y"]))) for t in json.loads(fig.to_json())["data"]]  # as sent to the browser
        scored = int(rec["n_units"]) - int(rec["n_dead"])
        assert plotted == [scored, scored], f"{manifest.parent.name} {rec['model']} {rec['layer']}"
        assert len(s_static) == int(rec["n_units"])
