"""Page smoke tests: the dashboard opens on temporary artifact roots and shows what is there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from core.artifacts import RunWriter  # noqa: E402

APP = str(REPO / "app.py")
TIMEOUT = 30
CLASSES = ["cat", "dog", "fox", "owl", "eel", "yak"]
LAYERS = {"layer1": 4, "layer2": 8}


def make_predictions_run(root: Path, run_id: str, n: int = 3) -> Path:
    """A tiny complete ``predictions`` run: n images, 2 layers, 6 classes; the last image is wrong."""
    rng = np.random.default_rng(0)
    with RunWriter(root, "predictions", model={"spec": "tiny:test-net"}, data={"description": "unit images"},
                   config={"top_k": 5}, run_id=run_id) as run:
        images = []
        for i in range(n):
            pixels = rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8)
            run.write_image(f"images/img{i}.webp", pixels)
            probs = np.sort(rng.dirichlet(np.ones(len(CLASSES))))[::-1]
            top = [{"index": k, "name": CLASSES[k], "prob": float(p)} for k, p in enumerate(probs[:5])]
            label = 1 if i == n - 1 else 0
            images.append({"id": f"img{i}", "file": f"images/img{i}.webp", "source": f"unit/img{i}.png",
                           "label": label, "label_name": CLASSES[label], "top": top, "predicted": 0,
                           "predicted_name": CLASSES[0], "correct": label == 0})
        run.write_json("predictions.json", {"model": {"spec": "tiny:test-net"}, "images": images})
        run.write_npz("features.npz", logits=rng.normal(size=(n, len(CLASSES))).astype(np.float32),
                      **{k: rng.normal(size=(n, c)).astype(np.float32) for k, c in LAYERS.items()})
        run.write_json("layers.json", [{"layer": k, "shape": [c, 4, 4]} for k, c in LAYERS.items()])
        return run.finish(summary={"n_images": n, "top1": (n - 1) / n})


def open_app(root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    return at.run()


def page_text(at: AppTest) -> str:
    """Markdown, captions, alerts and table cells of the rendered page, as one string."""
    parts = [e.value for kind in ("title", "markdown", "caption", "info", "warning", "error", "subheader")
             for e in getattr(at, kind)]
    parts += [df.value.to_csv() for df in at.dataframe]
    return "\n".join(str(p) for p in parts)


def test_home_lists_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_predictions_run(tmp_path, "run-ok")
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception
    assert not at.error
    table = at.dataframe[0].value
    assert list(table["run id"]) == ["run-ok"]
    assert table["model"][0] == "tiny:test-net"
    assert "n_images: 3" in table["summary"][0]
    assert at.session_state["run_path"] == str(tmp_path / "predictions" / "run-ok")
    assert "predictions · tiny:test-net · run-ok" in at.sidebar.selectbox[0].format_func(
        at.sidebar.selectbox[0].value)


def test_home_survives_a_corrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_predictions_run(tmp_path, "run-ok")
    bad = make_predictions_run(tmp_path, "run-newer-schema")
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (bad / "manifest.json").write_text(json.dumps(manifest))
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception
    assert list(at.dataframe[0].value["run id"]) == ["run-ok"]
    assert len(at.error) == 1
    assert "run-newer-schema" in at.error[0].value and "schema 99" in at.error[0].value


def test_home_lists_partial_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError), RunWriter(tmp_path, "predictions", model={"spec": "tiny:killed"},
                                                data={}, config={}) as run:
        run.write_json("predictions.json", {"images": []})
        raise RuntimeError("out of memory")
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception
    assert "rerun the same command to resume" in at.warning[0].value
    table = at.dataframe[0].value
    assert table["status"][0] == "failed" and "out of memory" in table["error"][0]
    assert table["model"][0] == "tiny:killed"


def test_predictions_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_predictions_run(tmp_path, "run-ok")
    at = open_app(tmp_path, monkeypatch)
    at.switch_page("pages/predictions.py").run()
    assert not at.exception
    assert at.title[0].value == "Predictions"
    assert at.sidebar.text_input[0].value == str(tmp_path.resolve())
    assert len(at.get("image")) >= 3
    captions = page_text(at)
    assert "top-1 accuracy 2/3" in captions
    assert "✗ cat" in captions and "(true: dog)" in captions
    assert len(at.get("plotly_chart")) == 2
    assert list(at.dataframe[0].value["layer"]) == ["layer1", "layer2"]
    assert at.dataframe[0].value["output shape"][0] == "4 × 4 × 4"

    at.toggle[0].set_value(True).run()
    assert not at.exception
    assert at.selectbox(key="pred_image").options == ["img2 · ✗ cat · " + at.selectbox(key="pred_image")
                                                      .options[0].split(" · ", 2)[2]]
    at.button(key="inspect-img2").click().run()
    assert at.session_state["pred_image"] == "img2"


def test_page_url_on_a_fresh_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first request for a page URL makes Streamlit run that file alone (pages/ folder mode);
    the page must still get app.py's frame: root, run picker and navigation."""
    make_predictions_run(tmp_path, "run-ok")
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/predictions.py").run()
    assert not at.exception
    assert at.title[0].value == "Predictions"
    assert [w.label for w in at.sidebar.text_input] == ["Artifact root"]
    assert at.session_state["run_path"] == str(tmp_path.resolve() / "predictions" / "run-ok")
    assert len(at.get("image")) >= 3


def test_predictions_page_without_predictions_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(tmp_path, monkeypatch)
    at.switch_page("pages/predictions.py").run()
    assert not at.exception
    assert "No `predictions` runs" in at.info[0].value


def test_predictions_page_with_another_kind_picked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_predictions_run(tmp_path, "run-ok")
    with RunWriter(tmp_path, "vtcd", model={"spec": "tiny:video"}, data={}, config={},
                   run_id="run-vtcd") as run:
        run.write_json("concepts.json", [])
        vtcd = run.finish()
    at = open_app(tmp_path, monkeypatch)
    at.sidebar.selectbox[0].set_value(str(vtcd)).run()
    at.switch_page("pages/predictions.py").run()
    assert not at.exception
    assert "is a `vtcd` run" in page_text(at)
    assert at.selectbox[0].label == "Predictions run"
    assert at.session_state["run_path"] == str(vtcd)
    assert len(at.get("image")) >= 3


def test_predictions_page_with_a_modified_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_predictions_run(tmp_path, "run-edited")
    with open(run / "images" / "img1.webp", "r+b") as f:
        f.seek(20)
        f.write(b"\x00\x01\x02")
    at = open_app(tmp_path, monkeypatch)
    at.switch_page("pages/predictions.py").run()
    assert not at.exception
    assert any("run-edited" in w.value and "img1.webp does not match its sha256" in w.value
               for w in at.warning)
    assert len(at.get("image")) >= 2

    other = make_predictions_run(tmp_path / "other", "run-edited-json")
    (other / "predictions.json").write_text("{}")
    at = open_app(tmp_path / "other", monkeypatch)
    at.switch_page("pages/predictions.py").run()
    assert not at.exception
    assert "predictions.json" in at.error[0].value and "run-edited-json" in at.error[0].value


def test_root_can_be_changed_in_the_sidebar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_predictions_run(tmp_path / "a", "run-a")
    make_predictions_run(tmp_path / "b", "run-b")
    at = open_app(tmp_path / "a", monkeypatch)
    assert list(at.dataframe[0].value["run id"]) == ["run-a"]
    at.sidebar.text_input[0].set_value(str(tmp_path / "b")).run()
    assert not at.exception
    assert list(at.dataframe[0].value["run id"]) == ["run-b"]
    assert at.session_state["run_path"] == str(tmp_path.resolve() / "b" / "predictions" / "run-b")


def test_empty_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception
    assert "python -m precompute demo" in at.info[0].value
    assert not at.dataframe


def test_cli_root_beats_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_predictions_run(tmp_path / "cli", "run-cli")
    monkeypatch.setattr(sys, "argv", ["app.py", "--root", str(tmp_path / "cli")])
    at = open_app(tmp_path / "env", monkeypatch)
    assert not at.exception
    assert list(at.dataframe[0].value["run id"]) == ["run-cli"]


DEMO = REPO / "assets" / "demo"


@pytest.mark.skipif(not any(DEMO.glob("*/*/manifest.json")), reason="no demo runs in assets/demo yet")
def test_demo_root_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONCEPT_LENS_ARTIFACTS", raising=False)
    monkeypatch.setattr(sys, "argv", ["app.py"])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert not at.error
    assert len(at.dataframe[0].value) >= 1
    at.switch_page("pages/predictions.py").run()
    assert not at.exception
    assert not at.error
    assert at.get("image")


@pytest.mark.skipif(not any(DEMO.glob("static-dynamic/*/manifest.json")), reason="no static-dynamic demo runs yet")
def test_demo_static_dynamic_runs_render(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONCEPT_LENS_ARTIFACTS", raising=False)
    monkeypatch.setattr(sys, "argv", ["app.py"])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/static_dynamic.py").run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) >= 3
    pickers = [s for s in at.selectbox if s.label == "Static / dynamic run"]
    for i in range(len(pickers[0].options) if pickers else 0):  # no picker when the sidebar picked one
        next(s for s in at.selectbox if s.label == "Static / dynamic run").select_index(i).run()
        assert not at.exception and not at.error
        assert len(at.get("plotly_chart")) >= 3
