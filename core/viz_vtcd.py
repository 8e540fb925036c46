"""Figures, tables and the synced video player of the concept tubelets page (VTCD, dissertation ch. 4).

Pure functions, no Streamlit. Inputs are the documents of a ``vtcd`` run (its concepts, attribution, ground
truth and diagnostics: :class:`core.vtcd.store.VTCDRun`) or of a ``rosetta`` run, as :mod:`core.vtcd.store`
lays them out and the JSON reader returns them. An importance may be null (or NaN in a hand-made run):
:func:`finite` reads it.

:func:`player_html` builds one self-contained HTML document (no external URL, no CDN: it works offline)
that plays several clips in lockstep: each clip is a sprite sheet of its frames (a data: URI), and one
JavaScript clock drives every tile (play/pause, frame slider, step, loop, speed).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core import viz
from core.viz_vcc import esc
from core.vtcd.media import frame_strip

POSITIVE = "#c62828"  # most important first: should fall fast
NEGATIVE = "#1565c0"  # least important first: should hold
RANDOM = "#7f7f7f"
OCCLUSION = "#ef6c00"
GFLOPS = "#2e7d32"
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0)
TILE_WIDTHS = (96, 128, 160, 176, 208, 240, 288, 320)
"""Tile widths (px) the player offers; its per-row and width choices apply at once, in the browser."""
COLOR_BY = {
    "head": ("head importance (CRIS over heads)", "importance"),
    "top": ("importance of the head's best concept", "top_importance"),
    "concepts": ("number of concepts", "n_concepts"),
}
CONCEPT_COLUMNS = ["rank", "concept", "layer", "head", "importance", "CI low", "CI high", "released", "± std",
                   "occlusion", "tubelets", "videos", "coverage"]
DIAGNOSTICS = (  # (key in the diagnostics document's blocks, label, colour)
    ("entropy", "attention entropy (1 = uniform)", "#6a1b9a"),
    ("branch_abs", "|ΔP| attention branch removed", "#c62828"),
    ("keys_zero_abs", "|ΔP| half the keys zeroed (as CRIS)", "#ef6c00"),
    ("keys_removed_abs", "|ΔP| same keys removed (-inf logits)", "#1565c0"),
)


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None (null, NaN, infinite or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return float(value) if np.isfinite(value) else None


# ------------------------------------------------------------------------------------------------
# The synced player


@dataclass
class Tile:
    """One clip of the player: ``strip`` a data: URI of its frames side by side (``frames`` of ``width`` x
    ``height`` pixels each), ``lines`` the caption (first line bold)."""

    strip: str
    frames: int
    width: int
    height: int
    lines: list[str] = field(default_factory=list)


def image_uri(image: np.ndarray, fmt: str = "webp", quality: int = 85) -> str:
    """A uint8 ``(H, W, 3)`` image as a ``data:`` URI (webp, jpeg or png)."""
    from PIL import Image

    fmt = fmt.lower()
    pil_fmt = {"webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}[fmt]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(
        buf, format=pil_fmt, **({} if pil_fmt == "PNG" else {"quality": quality}))
    mime = "jpeg" if pil_fmt == "JPEG" else fmt
    return f"data:image/{mime};base64,{base64.b64encode(buf.getvalue()).decode()}"


def make_tile(frames: np.ndarray, lines: Sequence[str], fmt: str = "webp", quality: int = 85) -> Tile:
    """A :class:`Tile` of uint8 frames ``(T, H, W, 3)`` (WebP and JPEG sheets are limited to 16383 pixels wide:
    longer clips are subsampled to fit)."""
    frames = np.asarray(frames)
    t, h, w = frames.shape[:3]
    limit = 16383 // max(w, 1) if fmt.lower() in ("webp", "jpeg", "jpg") else t
    if t > limit:
        frames = frames[np.linspace(0, t - 1, limit).round().astype(int)]
    return Tile(image_uri(frame_strip(frames), fmt, quality), int(frames.shape[0]), int(w), int(h),
                [str(x) for x in lines])


_CSS = """
*{box-sizing:border-box}
body{margin:0;font-family:"Source Sans Pro",system-ui,-apple-system,"Segoe UI",sans-serif;color:#262730;
background:transparent}
.bar{display:flex;flex-wrap:wrap;align-items:center;gap:6px;padding:4px 2px 8px 2px}
.bar button{font:inherit;font-size:14px;min-width:34px;height:30px;border:1px solid #c9cbd1;border-radius:6px;
background:#fff;cursor:pointer;padding:0 8px}
.bar button:hover{border-color:#ff4b4b;color:#ff4b4b}
.bar input[type=range]{flex:1 1 180px;min-width:120px;accent-color:#ff4b4b}
.bar .pos{font-variant-numeric:tabular-nums;font-size:13px;min-width:92px;text-align:right}
.bar label{font-size:13px;display:flex;align-items:center;gap:3px}
.bar select{font:inherit;font-size:13px;height:28px;border-radius:6px;border:1px solid #c9cbd1}
.grid{display:grid;gap:10px 12px;grid-template-columns:repeat(var(--cols),max-content)}
.tile{width:var(--w)}
.frame{width:var(--w);height:var(--h);background-repeat:no-repeat;image-rendering:pixelated;border-radius:4px;
background-color:#111}
.cap{font-size:12px;line-height:1.3;margin-top:3px;word-break:break-word}
.cap b{font-size:13px}
.cap .m{color:#6b6f76}
"""

def _svg(path: str) -> str:
    return (f'<svg width="14" height="14" viewBox="0 0 16 16" aria-hidden="true">'
            f'<path d="{path}" fill="currentColor"/></svg>')


_ICONS = {
    "play": _svg("M4 2.5v11l9.5-5.5z"),
    "pause": _svg("M3.5 2.5h3v11h-3zM9.5 2.5h3v11h-3z"),
    "first": _svg("M2.5 2.5h2v11h-2zM14 2.5v11L5.5 8z"),
    "back": _svg("M11.5 2.5h2v11h-2zM10.5 2.5v11L2 8z"),
    "fwd": _svg("M2.5 2.5h2v11h-2zM5.5 2.5v11L14 8z"),
}

_JS = """
(function(){
const cfg=JSON.parse(document.getElementById('cfg').textContent);
const tiles=[...document.querySelectorAll('.frame')];
const n=Math.max(...cfg.frames);
const slider=document.getElementById('slider'), pos=document.getElementById('pos');
const play=document.getElementById('play'), loop=document.getElementById('loop');
const speed=document.getElementById('speed');
const grid=document.querySelector('.grid');
const colsSel=document.getElementById('cols'), widthSel=document.getElementById('width');
slider.max=n-1;
let t=0, playing=cfg.autoplay, last=null, saved=0, W=cfg.w;
// Tiles per row and tile width: applied in the page (no rerun), kept for every player of the tab.
const lkey='concept-lens-player-layout';
function layout(){
  const c=Math.max(1,Math.min(parseInt(colsSel.value,10)||1,tiles.length));
  W=parseInt(widthSel.value,10)||cfg.w;
  const h=Math.max(1,Math.round(W*cfg.ratio));
  grid.style.setProperty('--cols',c); grid.style.setProperty('--w',W+'px'); grid.style.setProperty('--h',h+'px');
  tiles.forEach((el,i)=>{el.style.backgroundSize=(W*cfg.frames[i])+'px '+h+'px';});
}
function saveLayout(){
  try{window.sessionStorage.setItem(lkey,JSON.stringify({cols:colsSel.value,w:widthSel.value}));}catch(e){}
}
function restoreLayout(){
  let s=null;
  try{s=JSON.parse(window.sessionStorage.getItem(lkey)||'null');}catch(e){s=null;}
  if(!s||typeof s!=='object') return;
  if([...colsSel.options].some(o=>o.value===String(s.cols))) colsSel.value=String(s.cols);
  if([...widthSel.options].some(o=>o.value===String(s.w))) widthSel.value=String(s.w);
}
// Frame, play state, speed and loop live in the tab's sessionStorage under cfg.state, so a Streamlit
// rerun that rebuilds this frame carries on where it was (a playing clip advanced by the time it was away).
const store=(()=>{try{return cfg.state?window.sessionStorage:null;}catch(e){return null;}})();
const skey='concept-lens-player:'+cfg.state;
function save(){
  if(!store) return;
  try{store.setItem(skey,JSON.stringify({t:t,playing:playing,speed:speed.value,loop:loop.checked,at:Date.now()}));}
  catch(e){}
  saved=performance.now();
}
function restore(){
  if(!store) return;
  let s=null;
  try{s=JSON.parse(store.getItem(skey)||'null');}catch(e){s=null;}
  if(!s||typeof s!=='object') return;
  if([...speed.options].some(o=>o.value===String(s.speed))) speed.value=String(s.speed);
  loop.checked=!!s.loop; playing=!!s.playing;
  t=Number.isFinite(+s.t)?Math.min(Math.max(+s.t,0),n-1e-6):0;
  if(playing&&Number.isFinite(+s.at)){
    t+=Math.max(0,Date.now()-s.at)/1000*cfg.fps*parseFloat(speed.value);
    if(t>=n){ if(loop.checked){t=t%n;} else {t=n-1; playing=false;} }
  }
}
function draw(){
  const f=Math.min(n-1,Math.floor(t));
  tiles.forEach((el,i)=>{
    const k=Math.min(cfg.frames[i]-1,Math.floor(f*cfg.frames[i]/n));
    el.style.backgroundPosition=(-k*W)+'px 0px';
    el.dataset.frame=k;
  });
  slider.value=f; pos.textContent='frame '+(f+1)+' / '+n;
  play.innerHTML=playing?cfg.icons.pause:cfg.icons.play; play.title=playing?'pause (space)':'play (space)';
  document.body.dataset.frame=f; document.body.dataset.playing=playing?'1':'0';
}
function tick(now){
  if(playing){
    if(last!==null){
      t+=(now-last)/1000*cfg.fps*parseFloat(speed.value);
      if(t>=n){ if(loop.checked){t=t%n;} else {t=n-1;playing=false;save();} }
    }
    last=now; draw();
    if(now-saved>250) save();
  } else { last=null; }
  requestAnimationFrame(tick);
}
function step(d){playing=false; t=((Math.floor(t)+d)%n+n)%n; draw(); save();}
play.onclick=()=>{ if(!playing && Math.floor(t)>=n-1 && !loop.checked){t=0;} playing=!playing; draw(); save(); };
document.getElementById('back').onclick=()=>step(-1);
document.getElementById('fwd').onclick=()=>step(1);
document.getElementById('first').onclick=()=>{playing=false;t=0;draw();save();};
slider.oninput=()=>{t=parseInt(slider.value,10); draw(); save();};
speed.onchange=save; loop.onchange=save;
colsSel.onchange=widthSel.onchange=()=>{layout(); draw(); saveLayout();};
window.addEventListener('pagehide',save);
document.addEventListener('keydown',e=>{
  if(e.target.tagName==='SELECT') return;
  if(e.key===' '){e.preventDefault(); play.click();}
  else if(e.key==='ArrowLeft'){e.preventDefault(); step(-1);}
  else if(e.key==='ArrowRight'){e.preventDefault(); step(1);}
});
restoreLayout(); layout(); restore(); draw(); requestAnimationFrame(tick);
})();
"""


def player_html(tiles: Sequence[Tile], fps: float = 8.0, columns: int = 4, display_width: int = 176,
                loop: bool = True, speed: float = 1.0, autoplay: bool = True, state: str = "") -> str:
    """One HTML document playing ``tiles`` in sync: a shared clock in frames of the longest clip (a tile with
    fewer frames shows the frame at the same fraction of its length), play/pause (space), a frame slider,
    step back/forward (arrow keys), back to the first frame, loop and speed. No external resources.
    ``state``: a key (e.g. run and concept) under which the frame, play state, speed and loop are kept in the
    browser tab's sessionStorage, so a page rerun that rebuilds the player resumes where it was ("": not kept).
    ``columns`` and ``display_width`` are the first tiles per row and tile width; the bar changes both in the
    browser (kept in the tab for every player).
    Each tile's ``.frame`` element carries the frame it shows in ``data-frame``."""
    if not tiles:
        return "<div></div>"
    w = int(display_width)
    ratio = tiles[0].height / max(tiles[0].width, 1)
    h = max(1, round(w * ratio))
    cells = []
    for t in tiles:
        size = f"{w * t.frames}px {h}px"
        caption = "".join(
            f"<div>{'<b>' if i == 0 else '<span class=m>' if i > 1 else ''}{html.escape(line)}"
            f"{'</b>' if i == 0 else '</span>' if i > 1 else ''}</div>" for i, line in enumerate(t.lines))
        cells.append(f'<div class="tile"><div class="frame" style="background-image:url({t.strip});'
                     f'background-size:{size}"></div><div class="cap">{caption}</div></div>')
    options = "".join(f'<option value="{s:g}"{" selected" if abs(s - speed) < 1e-9 else ""}>{s:g}x</option>'
                      for s in SPEEDS)
    cols = max(1, min(int(columns), len(tiles)))
    per_row = "".join(f'<option value="{c}"{" selected" if c == cols else ""}>{c}</option>' for c in range(1, 9))
    widths = "".join(f'<option value="{x}"{" selected" if x == w else ""}>{x} px</option>'
                     for x in sorted({*TILE_WIDTHS, w}))
    cfg = json.dumps({"frames": [t.frames for t in tiles], "fps": float(fps), "w": w, "ratio": ratio,
                      "autoplay": bool(autoplay),
                      "state": str(state), "icons": {"play": _ICONS["play"], "pause": _ICONS["pause"]}}
                     ).replace("<", "\\u003c")  # nothing in it can end the script element
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><style>" + _CSS + "</style></head><body>"
        f"<div class='bar'><button id='first' title='first frame'>{_ICONS['first']}</button>"
        f"<button id='back' title='previous frame (left arrow)'>{_ICONS['back']}</button>"
        f"<button id='play'>{_ICONS['play']}</button>"
        f"<button id='fwd' title='next frame (right arrow)'>{_ICONS['fwd']}</button>"
        f"<input id='slider' type='range' min='0' value='0' step='1' aria-label='frame'>"
        f"<span id='pos' class='pos'></span>"
        f"<label><input id='loop' type='checkbox'{' checked' if loop else ''}>loop</label>"
        f"<label>speed <select id='speed'>{options}</select></label>"
        f"<label>per row <select id='cols'>{per_row}</select></label>"
        f"<label>width <select id='width'>{widths}</select></label></div>"
        f"<div class='grid' style='--cols:{cols};--w:{w}px;--h:{h}px'>{''.join(cells)}</div>"
        f"<script id='cfg' type='application/json'>{cfg}</script>"
        "<script>" + _JS + "</script></body></html>"
    )


def player_height(tiles: Sequence[Tile], columns: int = 4, display_width: int = 176) -> int:
    """Pixel height of :func:`player_html`'s document (for the component's frame)."""
    if not tiles:
        return 10
    cols = max(1, min(int(columns), len(tiles)))
    rows = -(-len(tiles) // cols)
    h = round(display_width * tiles[0].height / max(tiles[0].width, 1))
    per_line = max(8, int(display_width / 6.4))  # characters of 12 px text per caption line
    lines = max(sum(-(-max(len(x), 1) // per_line) for x in t.lines) for t in tiles)
    return 52 + rows * (h + 10 + 16 * lines) + (rows - 1) * 10 + 12


def concept_lines(model: str, concept: Mapping[str, Any], video: str | None, extra: str | None = None) -> list[str]:
    """A tile caption: the concept (model, layer, head), the video and its importance."""
    imp = finite(concept.get("importance"))
    lines = [f"{concept['layer']} · head {concept['head']} · concept {concept.get('concept', '')}",
             f"{model} · {video}" if video else model,
             ("importance —" if imp is None else f"importance {imp:+.4f}") + f" · rank {concept.get('rank', '?')}"]
    if extra:
        lines.append(extra)
    return lines


# ------------------------------------------------------------------------------------------------
# Concept browser


def head_table(doc: Mapping[str, Any]) -> pd.DataFrame:
    """One row per analysed (layer, head): importance, its rank, concepts, the best concept's importance."""
    best: dict[int, float] = {}
    for c in doc["concepts"]:
        imp = finite(c.get("importance"))
        if imp is not None:
            best[c["unit"]] = max(best.get(c["unit"], -np.inf), imp)
    rows = [{"layer": u["layer"], "head": u["head"], "unit": u["index"], "importance": finite(u.get("importance")),
             "rank": u.get("rank"), "n_concepts": u["n_concepts"], "top_importance": best.get(u["index"]),
             "silhouette": u.get("silhouette"), "n_tubelets": u.get("n_tubelets")} for u in doc["units"]]
    return pd.DataFrame(rows, columns=["layer", "head", "unit", "importance", "rank", "n_concepts", "top_importance",
                                       "silhouette", "n_tubelets"])


def grid_colouring(table: pd.DataFrame, color_by: str) -> tuple[str, str]:
    """(title, column of :func:`head_table`'s ``table``) the layers x heads grid is coloured by for ``color_by``
    (:data:`COLOR_BY`); head importance falls back to the best concept's when no head has one."""
    title, column = COLOR_BY[color_by if color_by in COLOR_BY else "head"]
    if color_by == "head" and table["importance"].isna().all():
        title, column = COLOR_BY["top"]
    return title, column


def importance_grid(doc: Mapping[str, Any], color_by: str = "head", selected: tuple[str, int] | None = None
                    ) -> go.Figure:
    """Layers (rows, shallow at the top) x heads (columns) as clickable squares coloured by ``color_by``
    (:data:`COLOR_BY`: ``head``, ``top`` or ``concepts``), labelled with the number of concepts."""
    table = head_table(doc)
    title, column = grid_colouring(table, color_by)
    layers = list(dict.fromkeys(doc["layers"]))
    values = pd.to_numeric(table[column], errors="coerce")
    diverging = column != "n_concepts"
    lim = float(np.nanmax(np.abs(values))) if values.notna().any() else 1.0
    text = [f"{n}" for n in table["n_concepts"]]
    strong = (values.abs() > 0.55 * lim) if diverging else (values > 0.6 * (values.max() or 1))
    text_colors = ["#ffffff" if s else "#262730" for s in strong.fillna(False)]
    hover = [f"{esc(r.layer)} · head {esc(r.head)}<br>{r.n_concepts} concepts"
             + ("" if pd.isna(r.importance) else f"<br>head importance {r.importance:+.4f}"
                + ("" if pd.isna(r["rank"]) else f" (rank {int(r['rank'])})"))
             + ("" if pd.isna(r.top_importance) else f"<br>best concept {r.top_importance:+.4f}")
             for _, r in table.iterrows()]
    n_heads = int(table["head"].max()) + 1 if len(table) else 1
    size = max(18, min(46, 320 // max(n_heads, len(layers), 1)))
    fig = go.Figure(go.Scatter(
        x=table["head"], y=table["layer"].map(esc), mode="markers+text", text=text,
        textfont={"size": 11, "color": text_colors},
        customdata=np.stack([table["layer"], table["head"]], axis=1) if len(table) else None,
        hovertext=hover, hoverinfo="text", name="heads",
        marker={"symbol": "square", "size": size, "color": values.fillna(0.0),
                "colorscale": "RdBu_r" if diverging else "Blues", "cmid": 0.0 if diverging else None,
                "cmin": -lim if diverging else None, "cmax": lim if diverging else None,
                "line": {"width": 1, "color": "#ffffff"}, "colorbar": {"title": {"text": "", "side": "right"},
                                                                        "thickness": 12}}))
    if selected is not None:
        fig.add_trace(go.Scatter(x=[selected[1]], y=[esc(selected[0])], mode="markers", hoverinfo="skip",
                                 marker={"symbol": "square-open", "size": size + 6, "color": "#111",
                                         "line": {"width": 3}}, name="selected", showlegend=False))
    fig.update_xaxes(title="head", tickmode="array", tickvals=list(range(n_heads)), range=[-0.6, n_heads - 0.4],
                     showgrid=False, zeroline=False)
    fig.update_yaxes(title="layer", categoryorder="array", categoryarray=[esc(x) for x in layers[::-1]],
                     showgrid=False)
    fig.update_layout(title={"text": title, "font": {"size": 14}}, showlegend=False, clickmode="event+select",
                      height=max(220, 70 + len(layers) * (size + 14)), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      dragmode=False)
    return fig


def head_heatmap(doc: Mapping[str, Any]) -> go.Figure:
    """Head importance (CRIS over whole heads) as a layers x heads heatmap."""
    table = head_table(doc)
    layers = list(dict.fromkeys(doc["layers"]))
    n_heads = int(table["head"].max()) + 1 if len(table) else 1
    z = np.full((len(layers), n_heads), np.nan)
    for _, r in table.iterrows():
        if r["importance"] is not None and not pd.isna(r["importance"]):
            z[layers.index(r["layer"]), int(r["head"])] = r["importance"]
    lim = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    text = [["" if np.isnan(v) else f"{v:+.3f}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=list(range(n_heads)), y=[esc(x) for x in layers], colorscale="RdBu_r",
                               zmid=0.0, zmin=-lim, zmax=lim, text=text, texttemplate="%{text}",
                               hovertemplate="%{y} · head %{x}<br>importance %{z:+.4f}<extra></extra>",
                               colorbar={"thickness": 12}))
    fig.update_yaxes(autorange="reversed", title="layer")
    fig.update_xaxes(title="head", dtick=1)
    fig.update_layout(height=max(240, 100 + 40 * len(layers)), margin={"l": 10, "r": 10, "t": 60, "b": 10},
                      title={"text": "Head importance", "font": {"size": 14}})
    return fig


def grid_point(point: Mapping[str, Any]) -> tuple[str, int] | None:
    """The (layer, head) of a clicked point of :func:`importance_grid`."""
    data = point.get("customdata")
    if isinstance(data, (list, tuple)) and len(data) >= 2:
        return str(data[0]), int(data[1])
    if "x" in point and "y" in point:
        try:
            return str(point["y"]), int(point["x"])
        except (TypeError, ValueError):
            return None
    return None


def concepts_table(concepts: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Concepts as rows (:data:`CONCEPT_COLUMNS`), in the given order."""
    rows = [{"rank": c.get("rank"), "concept": c["id"], "layer": c["layer"], "head": c["head"],
             "importance": c.get("importance"), "CI low": _interval(c)[0], "CI high": _interval(c)[1],
             "released": c.get("importance_released"), "± std": c.get("importance_std"),
             "occlusion": c.get("occlusion"),
             "tubelets": c.get("n_tubelets"), "videos": c.get("n_videos"), "coverage": c.get("coverage")}
            for c in concepts]
    return pd.DataFrame(rows, columns=CONCEPT_COLUMNS)


def _interval(rec: Mapping[str, Any]) -> tuple[float | None, float | None]:
    ci = rec.get("importance_ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return ci[0], ci[1]
    return None, None


def filter_concepts(concepts: Sequence[Mapping[str, Any]], layers: Sequence[str] | None = None,
                    heads: Sequence[int] | None = None, min_importance: float | None = None, text: str = "",
                    sort: str = "importance") -> list[Mapping[str, Any]]:
    """Concepts of ``layers`` and ``heads`` (None: all) with importance at least ``min_importance`` whose id
    contains ``text``, sorted by ``sort`` (``importance`` (descending), ``coverage``, ``videos``, ``id``)."""
    def strong(c: Mapping[str, Any]) -> bool:
        imp = finite(c.get("importance"))
        return min_importance is None or (imp is not None and imp >= min_importance)

    out = [c for c in concepts
           if (layers is None or c["layer"] in layers) and (heads is None or c["head"] in heads) and strong(c)
           and text.strip().lower() in c["id"].lower()]

    def key(c: Mapping[str, Any]) -> Any:
        if sort == "id":
            return c["id"]
        if sort == "coverage":
            return -(c.get("coverage") or 0.0)
        if sort == "videos":
            return -(c.get("n_videos") or 0)
        imp = finite(c.get("importance"))
        return np.inf if imp is None else -imp

    return sorted(out, key=key)


# ------------------------------------------------------------------------------------------------
# Validation


def attribution_scopes(attr: Mapping[str, Any]) -> list[str]:
    return [s["scope"] for s in attr.get("scopes", [])]


def attribution_figure(attr: Mapping[str, Any], scope: str = "all", occlusion: bool = True) -> go.Figure:
    """Metric vs fraction of concepts removed: CRIS most-to-least (positive), least-to-most (negative), random
    orders, and single-concept occlusion's orders; AUCs in the legend."""
    rec = next((s for s in attr.get("scopes", []) if s["scope"] == scope), None)
    curves = rec["curves"] if rec else {k: attr.get(k) for k in ("positive", "negative", "random")}
    auc = rec["auc"] if rec else attr.get("auc", {})
    x = attr["fractions"]
    fig = go.Figure()
    styles = [("positive", "CRIS, most important first", POSITIVE, "solid"),
              ("negative", "CRIS, least important first", NEGATIVE, "solid"),
              ("random", "random order", RANDOM, "dash")]
    if occlusion:
        styles += [("occlusion_positive", "occlusion, most first", OCCLUSION, "dot"),
                   ("occlusion_negative", "occlusion, least first", "#5c6bc0", "dot")]
    for key, label, color, dash in styles:
        y = curves.get(key)
        if y is None:
            continue
        a = auc.get(key)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=label + ("" if a is None else f" (AUC {a:.3f})"),
                                 line={"color": color, "dash": dash, "width": 2.5 if dash == "solid" else 1.8},
                                 marker={"size": 5}, hovertemplate="%{x:.0%} removed: %{y:.4f}<extra>" + label
                                 + "</extra>"))
    n = rec.get("n_concepts") if rec else None
    fig.update_xaxes(title=f"fraction of concepts removed{f' (of {n})' if n else ''}", tickformat=".0%")
    fig.update_yaxes(title=f"{attr.get('metric', 'metric')} of the target class")
    fig.update_layout(height=430, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title={"text": f"Attribution curves · {esc(scope) if scope != 'all' else 'all layers'}",
                             "font": {"size": 14}},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.24, "x": 0})
    return fig


def auc_table(attr: Mapping[str, Any]) -> pd.DataFrame:
    """Area under each attribution curve, per scope (lower for positive = a better ranking)."""
    rows = []
    for s in attr.get("scopes", []):
        a = s.get("auc", {})
        rows.append({"scope": s["scope"], "concepts": s.get("n_concepts"), "positive": a.get("positive"),
                     "negative": a.get("negative"), "random": a.get("random"),
                     "occlusion positive": a.get("occlusion_positive"),
                     "occlusion negative": a.get("occlusion_negative")})
    return pd.DataFrame(rows, columns=["scope", "concepts", "positive", "negative", "random", "occlusion positive",
                                       "occlusion negative"])


def pruning_figure(pruning: Mapping[str, Any]) -> go.Figure:
    """Accuracy as heads are pruned least important first (and most first, random), GFLOPs on the right."""
    x = pruning["fractions"]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    auc = pruning.get("auc", {})
    for key, label, color, dash in (("pruned", "least important first (pruning)", NEGATIVE, "solid"),
                                    ("most_first", "most important first", POSITIVE, "solid"),
                                    ("random", "random order", RANDOM, "dash")):
        y = pruning.get(key)
        if y is None:
            continue
        a = auc.get(key)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=label + ("" if a is None else f" (AUC {a:.3f})"),
                                 line={"color": color, "dash": dash}, marker={"size": 5}), secondary_y=False)
    if pruning.get("gflops"):
        fig.add_trace(go.Scatter(x=x, y=pruning["gflops"], mode="lines", name="GFLOPs (pruned heads removed)",
                                 line={"color": GFLOPS, "dash": "dot"}, hovertemplate="%{y:.3f} GFLOPs<extra></extra>"),
                      secondary_y=True)
        top = max(pruning["gflops"]) * 1.05
        fig.update_yaxes(title="GFLOPs", secondary_y=True, range=[0, top], showgrid=False, tickformat=".3~g",
                         tickmode="auto", nticks=5)
    fig.update_xaxes(title=f"fraction of the {pruning.get('n_heads', '')} heads pruned", tickformat=".0%")
    fig.update_yaxes(title=pruning.get("metric", "accuracy"), secondary_y=False, range=[-0.02, 1.02])
    fig.update_layout(height=430, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title={"text": "Head pruning", "font": {"size": 14}},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.24, "x": 0})
    return fig


def top_concepts_figure(concepts: Sequence[Mapping[str, Any]], n: int = 20, level: float | None = None
                        ) -> go.Figure:
    """The ``n`` most important concepts with their bootstrap intervals (horizontal error bars)."""
    ranked = [c for c in filter_concepts(concepts, sort="importance") if finite(c.get("importance")) is not None][:n]
    names = [esc(c["id"]) for c in ranked]
    imp = np.array([c["importance"] for c in ranked], dtype=float)
    lo = np.array([np.nan if _interval(c)[0] is None else _interval(c)[0] for c in ranked], dtype=float)
    hi = np.array([np.nan if _interval(c)[1] is None else _interval(c)[1] for c in ranked], dtype=float)
    has_ci = bool(np.isfinite(lo).any())
    fig = go.Figure(go.Scatter(
        x=imp, y=names, mode="markers", marker={"color": POSITIVE, "size": 8},
        error_x={"type": "data", "symmetric": False, "array": np.nan_to_num(hi - imp),
                 "arrayminus": np.nan_to_num(imp - lo), "color": "#555", "thickness": 1.5} if has_ci else None,
        customdata=np.stack([lo, hi], axis=1) if len(ranked) else None,
        hovertemplate="%{y}<br>importance %{x:+.4f}" + ("<br>interval [%{customdata[0]:+.4f}, "
                                                        "%{customdata[1]:+.4f}]" if has_ci else "")
        + "<extra></extra>"))
    fig.add_vline(x=0.0, line={"color": "#999", "width": 1})
    # short enough for the page's 400 px column (the light SVG does not wrap); the caption below says which bootstrap
    level_text = f"{level:.0%} interval" if has_ci and level else "no interval"
    fig.update_yaxes(autorange="reversed", title=None, tickfont={"size": 11})
    fig.update_xaxes(title=f"CRIS importance ({level_text})")
    fig.update_layout(height=max(260, 80 + 22 * len(ranked)), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title={"text": f"Top {len(ranked)} concepts", "font": {"size": 14}}, showlegend=False)
    return fig


def layer_figure(doc: Mapping[str, Any], diagnostics: Mapping[str, Any] | None) -> go.Figure:
    """Left: every concept's importance per layer (the best with its interval); right (a transformer's
    diagnostics): attention entropy and the change in P(target) under three removals, per block."""
    layers = list(dict.fromkeys(doc["layers"]))
    blocks = {b["layer"]: b for b in (diagnostics or {}).get("blocks", [])}
    cols = 2 if blocks else 1
    fig = make_subplots(rows=1, cols=cols, shared_yaxes=True, horizontal_spacing=0.04,
                        column_widths=[0.5, 0.5] if cols == 2 else None)
    concepts = [c for c in doc["concepts"] if finite(c.get("importance")) is not None]
    fig.add_trace(go.Scatter(x=[c["importance"] for c in concepts], y=[esc(c["layer"]) for c in concepts],
                             mode="markers", name="concepts", marker={"color": "rgba(110,110,110,0.45)", "size": 6},
                             text=[esc(c["id"]) for c in concepts],
                             hovertemplate="%{text}: %{x:+.4f}<extra></extra>"),
                  row=1, col=1)
    best = []
    for layer in layers:
        mine = [c for c in concepts if c["layer"] == layer]
        if mine:
            best.append(max(mine, key=lambda c: c["importance"]))
    lo = np.array([np.nan if _interval(c)[0] is None else _interval(c)[0] for c in best], dtype=float)
    hi = np.array([np.nan if _interval(c)[1] is None else _interval(c)[1] for c in best], dtype=float)
    imp = np.array([c["importance"] for c in best], dtype=float)
    fig.add_trace(go.Scatter(
        x=imp, y=[esc(c["layer"]) for c in best], mode="markers", name="best concept of the layer",
        marker={"color": POSITIVE, "size": 10, "symbol": "diamond"}, text=[esc(c["id"]) for c in best],
        error_x={"type": "data", "symmetric": False, "array": np.nan_to_num(hi - imp),
                 "arrayminus": np.nan_to_num(imp - lo), "color": POSITIVE} if np.isfinite(lo).any() else None,
        hovertemplate="best: %{text}: %{x:+.4f}<extra></extra>"), row=1, col=1)
    fig.add_vline(x=0.0, line={"color": "#999", "width": 1}, row=1, col=1)
    fig.update_xaxes(title="CRIS importance", row=1, col=1)
    if blocks:
        for key, label, color in DIAGNOSTICS:
            ys = [lay for lay in layers if lay in blocks and blocks[lay].get(key) is not None]
            if not ys:
                continue
            fig.add_trace(go.Bar(x=[blocks[lay][key] for lay in ys], y=[esc(x) for x in ys], orientation="h",
                                 name=label,
                                 marker={"color": color}, hovertemplate="%{y}: %{x:.3f}<extra>" + label
                                 + "</extra>"), row=1, col=2)
        fig.update_xaxes(title="entropy / |ΔP(target)|", range=[0, 1.05], row=1, col=2)
        fig.update_layout(barmode="group")
    fig.update_yaxes(categoryorder="array", categoryarray=[esc(x) for x in layers[::-1]], row=1, col=1)
    fig.update_layout(height=max(300, 140 + 70 * len(layers)), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title={"text": "Importance by layer" + (", and what each block's attention does" if blocks
                                                              else ""), "font": {"size": 14}},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0})
    return fig


def diagnostics_table(diagnostics: Mapping[str, Any]) -> pd.DataFrame:
    """One row per block: entropy and the mean signed and absolute changes in P(target)."""
    rows = [{"block": b["layer"], "entropy": b.get("entropy"), "branch removed ΔP": b.get("branch_delta"),
             "|ΔP| branch": b.get("branch_abs"), "keys zeroed ΔP": b.get("keys_zero_delta"),
             "keys removed (-inf) ΔP": b.get("keys_removed_delta")} for b in diagnostics.get("blocks", [])]
    return pd.DataFrame(rows, columns=["block", "entropy", "branch removed ΔP", "|ΔP| branch", "keys zeroed ΔP",
                                       "keys removed (-inf) ΔP"])


def _md_text(text: str) -> str:
    """``text`` from a run, with markdown's special characters escaped (the sentence is shown as markdown)."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()<>#+!|~" else ch for ch in text)


def diagnostics_summary(diagnostics: Mapping[str, Any], threshold: float = 0.05) -> str | None:
    """A sentence naming the blocks whose whole attention branch moves P(target) by less than
    ``threshold``: their flat CRIS rankings are a property of the model, not of the masking."""
    blocks = diagnostics.get("blocks", [])
    idle = [b for b in blocks if b.get("branch_abs") is not None and b["branch_abs"] < threshold]
    if not idle:
        return None
    names = ", ".join(_md_text(str(b["layer"])) for b in idle)
    ents = [b["entropy"] for b in idle if b.get("entropy") is not None]
    ent = f" (attention entropy {min(ents):.2f}-{max(ents):.2f} of the maximum)" if ents else ""
    return (f"Removing the whole attention branch of {names}{ent} moves P(target) by at most "
            f"{max(b['branch_abs'] for b in idle):.3f} on average: concepts there cannot matter much, whatever "
            "the masking. Flat importances in these blocks are a property of the model, not of CRIS.")


def ground_truth_table(gt: Mapping[str, Any]) -> pd.DataFrame:
    """Per layer: the best concept's IoU with the target and the random-crop baseline's; then the same for each
    other object scored (e.g. the occluder), as columns named after it."""
    columns = ["layer", "best concept", "IoU", "random-crop baseline IoU"]
    rows = [{"layer": r["layer"], "best concept": r["best_concept"], "IoU": r["iou"],
             "random-crop baseline IoU": r["baseline_iou"]} for r in gt.get("layers", [])]
    others = gt.get("others") if isinstance(gt.get("others"), Mapping) else {}
    for name, other in others.items():
        by_layer = {r.get("layer"): r for r in (other.get("layers") or []) if isinstance(r, Mapping)}
        cols = [f"best concept ({name})", f"IoU ({name})", f"baseline IoU ({name})"]
        columns += cols
        for row in rows:
            r = by_layer.get(row["layer"], {})
            row.update(zip(cols, (r.get("best_concept", ""), r.get("iou"), r.get("baseline_iou")), strict=True))
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------------------------------
# Rosetta


def rosetta_table(doc: Mapping[str, Any]) -> pd.DataFrame:
    """One row per Rosetta tuple: its size d, R-score and each model's concept."""
    labels = [r["label"] for r in doc.get("runs", [])]
    rows = []
    for t in doc.get("tuples", []):
        row: dict[str, Any] = {"tuple": t["index"], "d": t["d"], "R": t["r"]}
        for lab in labels:
            row[lab] = ""
        for m, cid in zip(t["models"], t["concepts"], strict=True):
            row[m] = cid
        row["clips"] = bool(t.get("media"))
        rows.append(row)
    return pd.DataFrame(rows, columns=["tuple", "d", "R", *labels, "clips"])


def rosetta_lines(t: Mapping[str, Any], pos: int, video: str, r_video: float | None) -> list[str]:
    imp = finite(t["importances"][pos])
    return [f"{t['layers'][pos]} · head {t['heads'][pos]} · {t['concepts'][pos].rsplit('/', 1)[-1]}",
            f"{t['models'][pos]} · {video}",
            ("importance —" if imp is None else f"importance {imp:+.4f}")
            + (f" · R here {r_video:.2f}" if r_video is not None else "")]


def export_config(filename: str) -> dict[str, Any]:
    return viz.plotly_config(filename)
