"""Figure and table builders for the dashboard: pure functions, no Streamlit."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image, ImageOps

CORRECT = "#2e7d32"
WRONG = "#c62828"
NEUTRAL = "#4c78a8"
MUTED = "#9e9e9e"


# Markdown's active characters in Streamlit (links, images, HTML, code, emphasis, math, tables,
# entities, emoji/icon shortcodes and GFM autolinks); "-", "." and "=" only shape a line's start.
_MD_SPECIAL = set("\\`*_{}[]()<>#+!|~$&:@")


def md_text(text: Any) -> str:
    """``text`` from a run, safe inside markdown (``st.markdown``, ``st.caption``, ``st.error`` ...):
    markdown's active characters are backslash-escaped, so links, images, HTML, emphasis, math and
    autolinks show as typed, and line breaks become spaces (one line stays one line)."""
    out = []
    for ch in " ".join(str(text).splitlines()):
        out.append("\\" + ch if ch in _MD_SPECIAL else ch)
    return "".join(out)


def md_code(text: Any) -> str:
    """``text`` from a run as an inline code span: shown verbatim, whatever backticks it holds."""
    text = " ".join(str(text).splitlines())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def plotly_config(filename: str) -> dict[str, Any]:
    """Plotly toolbar config whose camera button saves a 2x PNG named ``filename``."""
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2},
    }


def summary_text(summary: Mapping[str, Any], max_len: int = 160) -> str:
    """A run summary as one short ``key: value`` line."""
    parts = []
    for k, v in summary.items():
        if isinstance(v, float):
            v = f"{v:.3g}"
        elif isinstance(v, list) and all(isinstance(x, (str, int, float)) for x in v):
            v = " ".join(map(str, v[:3])) + (f" +{len(v) - 3}" if len(v) > 3 else "") if v else "none"
        elif isinstance(v, (list, dict)):
            v = f"[{len(v)}]"
        parts.append(f"{k}: {v}")
    text = ", ".join(parts)
    return text if len(text) <= max_len else text[: max_len - 1] + "…"


def short_time(stamp: str) -> str:
    """``2026-11-26T11:00:27+0000`` as ``2026-11-26 11:00``."""
    return stamp[:16].replace("T", " ") if len(stamp) >= 16 and stamp[10] == "T" else stamp


RUN_COLUMNS = ["run id", "kind", "model", "created", "status", "warnings", "summary", "data"]


def runs_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Complete runs as a table: run id, kind, model, created, status, number of warnings, summary, data."""
    rows = [
        {
            "run id": r["run_id"],
            "kind": r["kind"],
            "model": r["model"],
            "created": short_time(r["created"]),
            "status": r["status"],
            "warnings": len(r.get("warnings") or []),
            "summary": summary_text(r["summary"]),
            "data": r["data"],
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def partial_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Incomplete (running, killed or failed) runs: folder, kind, model, data, status, error."""
    rows = [
        {
            "folder": f"{r['kind']}/{r['run_id']}",
            "model": r["model"],
            "data": r["data"],
            "started": short_time(r["created"]),
            "status": r["status"],
            "error": r["error"] or "",
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=["folder", "model", "data", "started", "status", "error"])


def layers_table(layers: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``layers.json`` entries as a table of layer names and output shapes."""
    rows = [
        {"layer": d["layer"], "output shape": " × ".join(str(s) for s in d.get("shape") or [])}
        for d in layers
    ]
    return pd.DataFrame(rows, columns=["layer", "output shape"])


def predictions_table(images: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per image: id, source, label, top-1 prediction and its probability, correctness."""
    rows = [
        {
            "id": im["id"],
            "source": im.get("source"),
            "label": im.get("label_name"),
            "predicted": im.get("predicted_name"),
            "prob": im["top"][0]["prob"] if im.get("top") else None,
            "correct": im.get("correct"),
        }
        for im in images
    ]
    return pd.DataFrame(rows, columns=["id", "source", "label", "predicted", "prob", "correct"])


def accuracy(images: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(correct, labelled): top-1 hits among images whose label is known."""
    known = [im for im in images if im.get("correct") is not None]
    return sum(bool(im["correct"]) for im in known), len(known)


def misclassified(images: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Images with a known label that the model got wrong."""
    return [im for im in images if im.get("correct") is False]


def tile_caption(im: Mapping[str, Any]) -> str:
    """Grid caption: mark, top-1 name and probability, and the true label when it differs."""
    top = im.get("top") or [{}]
    prob = top[0].get("prob")
    name = im.get("predicted_name", "?")
    text = f"{name} · {prob:.0%}" if prob is not None else str(name)
    if im.get("correct") is True:
        return f"✓ {text}"
    if im.get("correct") is False:
        return f"✗ {text} (true: {im.get('label_name')})"
    return text


PAD = (240, 242, 246)


def thumbnail(image: np.ndarray, size: int = 256, background: tuple[int, int, int] = PAD) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 image fitted into a ``(size, size, 3)`` square (padded, not cropped), so grid
    rows line up."""
    return np.asarray(ImageOps.pad(Image.fromarray(image), (size, size), color=background))


def topk_bar(top: Sequence[Mapping[str, Any]], label: int | None = None, title: str = "") -> go.Figure:
    """Horizontal bar of class probabilities, highest at the top; the true class (``label``) in green,
    a wrong top-1 in red. Class names come from a run: each is HTML-escaped here, once (plotly renders a
    subset of HTML in labels), with ``%{`` broken so a name cannot act as a hover template field."""
    names = [html.escape(str(t["name"])).replace("%{", "%&#123;") for t in top]
    probs = [float(t["prob"]) for t in top]
    colors = []
    for i, t in enumerate(top):
        if label is not None and t["index"] == label:
            colors.append(CORRECT)
        elif i == 0 and label is not None:
            colors.append(WRONG)
        else:
            colors.append(NEUTRAL)
    fig = go.Figure(
        go.Bar(
            x=probs,
            y=names,
            orientation="h",
            marker_color=colors,
            text=[f"{p:.1%}" for p in probs],
            textposition="auto",
            hovertemplate="%{y}: %{x:.2%}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title or None,
        xaxis={"title": "probability", "range": [0, 1.02], "tickformat": ".0%", "dtick": 0.25},
        yaxis={"autorange": "reversed", "automargin": True},
        height=60 + 40 * max(len(top), 1),
        margin={"l": 10, "r": 40, "t": 40 if title else 10, "b": 40},
        modebar={"orientation": "v"},
        showlegend=False,
    )
    return fig


def topk_table(top: Sequence[Mapping[str, Any]], label: int | None = None) -> pd.DataFrame:
    """Class probabilities, highest first, as a table: class, probability, and ✓ for the true class
    (✗ for a wrong top-1) when the label is known."""
    rows = []
    for i, t in enumerate(top):
        mark = ""
        if label is not None and t.get("index") == label:
            mark = "✓ true class"
        elif i == 0 and label is not None:
            mark = "✗ wrong"
        rows.append({"class": str(t.get("name")), "probability": float(t.get("prob", 0.0)), "": mark})
    return pd.DataFrame(rows, columns=["class", "probability", ""])


def layer_norms(features: Mapping[str, np.ndarray], layers: Sequence[str]) -> dict[str, np.ndarray]:
    """L2 norm of each image's pooled feature, per layer: ``{layer: (N,)}`` in ``layers`` order."""
    out = {}
    for layer in layers:
        if layer in features:
            a = np.asarray(features[layer], dtype=np.float64)
            out[layer] = np.linalg.norm(a.reshape(len(a), -1), axis=1)
    return out


def feature_norms_bar(norms: Mapping[str, np.ndarray], index: int, title: str = "") -> go.Figure:
    """Bars: image ``index``'s feature norm per layer (shallow to deep); markers: the run's mean ± std."""
    layers = list(norms)
    this = [float(norms[k][index]) for k in layers]
    mean = [float(np.mean(norms[k])) for k in layers]
    std = [float(np.std(norms[k])) for k in layers]
    fig = go.Figure()
    fig.add_bar(x=layers, y=this, name="this image", marker_color=NEUTRAL,
                hovertemplate="%{x}: %{y:.3g}<extra>this image</extra>")
    fig.add_scatter(x=layers, y=mean, mode="markers", name="mean over run ± std",
                    marker={"color": MUTED, "size": 9},
                    error_y={"type": "data", "array": std, "color": MUTED},
                    hovertemplate="%{x}: %{y:.3g}<extra>run mean</extra>")
    fig.update_layout(
        title={"text": title, "y": 0.98, "yanchor": "top"} if title else None,
        yaxis={"title": "L2 norm of pooled feature"},
        xaxis={"title": "layer", "automargin": True},
        height=380,
        margin={"l": 10, "r": 40, "t": 80 if title else 40, "b": 10},
        modebar={"orientation": "v"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    return fig
