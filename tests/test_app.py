"""Page smoke tests: the dashboard opens on temporary artifact roots and shows what is there."""

from __future__ import annotations

import json
import re
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

@pytest.fixture(autouse=True)
def interactive_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read the pages' plotly figures: the interactive chart mode (the default light mode's SVG
    figures are tested in tests/test_light_charts.py)."""
    monkeypatch.setenv("CONCEPT_LENS_CHARTS", "interactive")



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


def markdown_of(at: AppTest) -> str:
    """The raw markdown of the page's titles, text, captions, alerts and subheaders, as one string."""
    return "\n".join(str(e.value) for kind in ("title", "markdown", "caption", "info", "warning", "error",
                                               "subheader") for e in getattr(at, kind))


def page_text(at: AppTest) -> str:
    """Markdown (backslash escapes removed: the text a reader sees), and table cells of the page."""
    parts = [re.sub(r"\\(.)", r"\1", markdown_of(at))] + [df.value.to_csv() for df in at.dataframe]
    return "\n".join(parts)


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
    assert at.session_state["root_input"] == str(tmp_path.resolve())
    assert len(at.get("image")) >= 3
    captions = page_text(at)
    assert "top-1 accuracy 2/3" in captions
    assert "✗ cat" in captions and "(true: dog)" in captions
    assert not at.get("plotly_chart")  # the feature-norm chart waits in its (lazy) tab
    top5 = at.dataframe[0].value
    assert list(top5.columns) == ["class", "probability", ""] and len(top5) == 5
    assert top5["probability"].is_monotonic_decreasing and top5[""][0] == "✓ true class"
    assert list(at.dataframe[1].value["layer"]) == ["layer1", "layer2"]
    assert at.dataframe[1].value["output shape"][0] == "4 × 4 × 4"
    at.session_state["pred_detail"] = "Feature norm per layer"
    at.run()
    assert not at.exception and len(at.get("plotly_chart")) == 1

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
    from core.viz import md_text

    label = next(p.proto.popover.label for p in at.sidebar.get("popover"))  # the root's text box is in it
    assert label == "Artifact root: " + md_text("/".join(tmp_path.resolve().parts[-2:]))
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
    assert at.query_params["run"] == "run-vtcd"
    at.switch_page("pages/predictions.py").run()
    assert not at.exception
    # The page opens on the newest run of its own kind; the sidebar lists only those.
    assert at.session_state["run_path"] == str(tmp_path / "predictions" / "run-ok")
    assert at.sidebar.selectbox[0].options == ["predictions · tiny:test-net · run-ok"]
    assert not [s for s in at.selectbox if s.label == "Predictions run"]
    assert at.query_params["run"] == "run-ok"
    assert len(at.get("image")) >= 3
    at.switch_page("pages/home.py").run()  # the Runs page lists every kind and keeps the pick
    assert at.session_state["run_path"] == str(tmp_path / "predictions" / "run-ok")
    assert len(at.sidebar.selectbox[0].options) == 2


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
    assert not at.sidebar.text_input  # the root's text box waits in its popover
    at.session_state["root_pop"] = True
    at.run()
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


def _url_state_app() -> None:
    import streamlit as st

    from core import ui_cache

    options = ["a", "b", "c"]
    value = ui_cache.url_state("pick", options, "b", key="pick_key")
    st.selectbox("Pick", options, key="pick_key")
    st.caption(f"value {value}")


def test_url_state_reads_and_writes_the_url() -> None:
    at = AppTest.from_function(_url_state_app, default_timeout=TIMEOUT)
    at.run()
    assert at.selectbox(key="pick_key").value == "b"  # the default
    assert at.query_params["pick"] == "b"
    at.selectbox(key="pick_key").set_value("c").run()
    assert at.query_params["pick"] == "c" and at.caption[0].value == "value c"

    linked = AppTest.from_function(_url_state_app, default_timeout=TIMEOUT)
    linked.query_params["pick"] = "a"
    linked.run()
    assert linked.selectbox(key="pick_key").value == "a"
    assert linked.caption[0].value == "value a"

    bad = AppTest.from_function(_url_state_app, default_timeout=TIMEOUT)
    bad.query_params["pick"] = "not-an-option"
    bad.run()
    assert bad.selectbox(key="pick_key").value == "b" and bad.query_params["pick"] == "b"


IMG = "<img src=x onerror=alert(1)>"
REMOTE = "![x](http://evil/x.png)"


def test_hostile_strings_are_shown_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Names and errors from a run reach the page's markdown escaped: no HTML, no remote image."""
    rng = np.random.default_rng(0)
    with RunWriter(tmp_path, "predictions", model={"spec": f"py:{IMG}"}, data={"description": REMOTE},
                   config={}, run_id="run-hostile") as run:
        run.write_image("images/a.webp", rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8))
        top = [{"index": 0, "name": IMG, "prob": 0.6}, {"index": 1, "name": REMOTE, "prob": 0.4}]
        run.write_json("predictions.json", {"images": [
            {"id": "a", "file": "images/a.webp", "source": REMOTE, "label": 1, "label_name": REMOTE, "top": top,
             "predicted": 0, "predicted_name": IMG, "correct": False}]})
        run.write_npz("features.npz", layer1=rng.normal(size=(1, 4)).astype(np.float32))
        run.write_json("layers.json", [{"layer": "layer1", "shape": [4]}])
        run.warn("few_images", REMOTE, setting=IMG)
        run.finish(summary={"note": REMOTE})
    broken = tmp_path / "predictions" / "run-broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps({"schema_version": 1, "kind": "predictions",
                                                      "run_id": IMG, "status": REMOTE}))
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception
    home = markdown_of(at)
    assert at.error, "the broken run is reported"
    at.switch_page("pages/predictions.py").run()
    assert not at.exception
    shown = home + markdown_of(at)
    outside_code = re.sub(r"(`+).*?\1", "", shown)  # code spans show their text verbatim
    for active in (r"(?<!\\)<img", r"(?<!\\)!(?<!\\)\[", r"(?<!\\)\]\("):  # unescaped HTML / image / link
        assert not re.search(active, outside_code), active
    assert "\\!\\[x\\]\\(http\\://evil/x.png\\)" in shown  # the description, as text
    assert "`py:<img src=x onerror=alert(1)>`" in shown  # the model spec in a code span: verbatim
    assert at.session_state["run_path"].endswith("run-hostile")
    table = open_app(tmp_path, monkeypatch).dataframe[0].value
    assert table["warnings"][0] == 1


def test_markdown_escapes() -> None:
    from core.viz import md_code, md_text

    assert md_text(REMOTE) == "\\!\\[x\\]\\(http\\://evil/x.png\\)"
    assert md_text(IMG) == "\\<img src=x onerror=alert\\(1\\)\\>"
    assert md_text("a\nb $x$ **y**") == "a b \\$x\\$ \\*\\*y\\*\\*"
    assert md_code("a`b") == "`` a`b ``" and md_code("plain") == "`plain`"


def test_topk_bar_escapes_class_names_once() -> None:
    """A class name from a run is HTML-escaped exactly once in the bar's labels, and cannot read a hover
    template field (``%{x}`` would show the bar's value)."""
    from core.viz import topk_bar

    hostile = f"{IMG} & %{{x}} <a href='http://evil'>l</a>"
    fig = topk_bar([{"index": 3, "name": hostile, "prob": 0.7}, {"index": 1, "name": "dog", "prob": 0.2}], 1)
    names = list(fig.data[0].y)
    assert names[0] == ("&lt;img src=x onerror=alert(1)&gt; &amp; %&#123;x} "
                        "&lt;a href=&#x27;http://evil&#x27;&gt;l&lt;/a&gt;")
    assert names[1] == "dog"
    assert "&amp;lt;" not in names[0] and "<" not in names[0] and "%{" not in names[0]


def test_streamlit_config_keeps_everything_local() -> None:
    """No telemetry, no external-IP lookup at start (an explicit browser.serverAddress), no file watcher."""
    import tomllib

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["browser"]["gatherUsageStats"] is False
    assert config["browser"]["serverAddress"] == "localhost"
    assert config["server"]["fileWatcherType"] == "none"
    app = (REPO / "app.py").read_text()
    assert 'page_icon="' in app  # else the tab's favicon is the page's :material: icon, fetched from a font host


def test_root_and_run_from_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pasted link opens its root and run; a root other than the default is written back into the URL."""
    make_predictions_run(tmp_path / "default", "run-default")
    other = tmp_path / "other"
    make_predictions_run(other, "run-x")
    make_predictions_run(other, "run-y")
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(tmp_path / "default"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"root": str(other), "run": "run-x"})
    at.switch_page("pages/predictions.py").run()
    assert not at.exception
    assert at.session_state["root_input"] == str(other)
    assert at.session_state["run_path"] == str(other.resolve() / "predictions" / "run-x")
    assert at.query_params["root"] == str(other.resolve()) and at.query_params["run"] == "run-x"

    plain_link = AppTest.from_file(APP, default_timeout=TIMEOUT)
    plain_link.run()
    assert "root" not in plain_link.query_params  # the default root stays out of the URL
    assert plain_link.query_params["run"] == "run-default"
