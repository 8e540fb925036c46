"""The self-contained HTML document of a report: one file, plotly.js inlined once, every picture, clip and
table embedded, no request to any host.

Figures travel as plotly JSON in ``<script type="application/json">`` elements (``<``, ``>`` and ``&``
written as JSON escapes, so no text of a run can end the element) and one small loader draws them.
Everything else is HTML built here, and every string that comes from a run goes through :func:`h`.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

MIME = {".mp4": "video/mp4", ".webp": "image/webp", ".png": "image/png", ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg", ".csv": "text/csv"}


def h(text: Any) -> str:
    """``text`` (anything from a run) as HTML text or an attribute value: every special character escaped."""
    return html.escape(str(text), quote=True)


def script_json(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u`` escapes (valid JSON)."""
    text = obj if isinstance(obj, str) else json.dumps(obj, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@dataclass
class Block:
    """One item of a run's section: a figure or ready HTML, with its title and caption (plain text: escaped
    when written). ``slot`` matches the same item across runs laid side by side; ``share`` names the axes
    (``"x"``, ``"y"``, ``"xy"``) that runs laid side by side share."""

    slot: str
    title: str
    caption: str
    figure: go.Figure | None = None
    html: str = ""
    share: str = ""
    graph: Mapping[str, str] | None = None  # node id -> element id of its exemplar panel (a concept graph)
    wide: bool = False


@dataclass
class Section:
    """The part of a report about one run: its header facts, warnings and blocks."""

    kind: str
    run_id: str
    facts: list[tuple[str, Any]]
    blocks: list[Block] = field(default_factory=list)
    warnings: list[Mapping[str, Any]] = field(default_factory=list)
    note: str = ""


_CSS = """
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI","DejaVu Sans",Arial,sans-serif;color:#1f2328;
background:#fff;line-height:1.45}
main{max-width:1500px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:21px;margin:34px 0 8px;border-bottom:2px solid #d0d7de;
padding-bottom:4px}h3{font-size:17px;margin:22px 0 6px}
.meta{color:#59636e;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
.tw{overflow-x:auto;max-width:100%}
details>summary{cursor:pointer;color:#0969da;font-size:13.5px}
.facts td:first-child{font-weight:600;background:#f6f8fa;white-space:nowrap}
.cap{color:#3d444d;font-size:13.5px;margin:4px 0 8px;max-width:1100px}
.row{display:grid;gap:14px;grid-template-columns:repeat(var(--n),minmax(0,1fr))}
.cell{min-width:0}
.cell>.run{font-size:12.5px;color:#59636e;font-weight:600;margin-bottom:2px}
.plot{width:100%;min-height:120px}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 10px;margin:6px 0;font-size:13.5px}
.clips{display:flex;flex-wrap:wrap;gap:10px}
.clip{width:180px;font-size:12px;word-break:break-word}
.clip video,.clip img{width:180px;border-radius:4px;background:#111;display:block}
.pics{display:flex;flex-wrap:wrap;gap:8px}
.pics figure{margin:0;width:150px;font-size:12px;word-break:break-word}
.pics img{width:150px;border-radius:4px;display:block}
.panel{display:none;border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;margin:6px 0}
.panel.on{display:block}
.hint{color:#59636e;font-size:12.5px}
a.dl{display:inline-block;margin:4px 0;font-size:13.5px}
.toc a{margin-right:14px}
"""

_LOADER = """
(function(){
function opts(name){return {displaylogo:false,responsive:true,
  toImageButtonOptions:{format:'svg',filename:name}};}
function graph(el){
  const map=JSON.parse(document.getElementById(el.id+'-nodes').textContent);
  el.on('plotly_click',function(ev){
    const p=(ev.points||[]).find(q=>typeof q.customdata==='string'&&map[q.customdata]);
    if(!p) return;
    document.querySelectorAll('.panel[data-graph="'+el.id+'"]').forEach(x=>x.classList.remove('on'));
    const panel=document.getElementById(map[p.customdata]);
    if(panel){panel.classList.add('on');}
    const hint=document.getElementById(el.id+'-hint'); if(hint){hint.style.display='none';}
  });
}
async function draw(){
  const figs=[...document.querySelectorAll('script.cl-fig')];
  for(const s of figs){
    const el=document.getElementById(s.dataset.target);
    const fig=JSON.parse(s.textContent);
    await Plotly.newPlot(el,fig.data,fig.layout||{},opts(s.dataset.name||'figure'));
    if(document.getElementById(el.id+'-nodes')) graph(el);
  }
  document.body.dataset.drawn=String(figs.length);
}
window.clDraw=draw;
})();
"""

_BOOT_PLAIN = "clDraw().catch(e=>{console.error(e);});"

_BOOT_GZIP = """
(async function(){
  const note=document.getElementById('cl-nojs');
  try{
    if(typeof DecompressionStream==='undefined') throw new Error('this browser cannot unpack the figures');
    const bin=Uint8Array.from(atob(document.getElementById('cl-plotly').textContent.trim()),c=>c.charCodeAt(0));
    const code=await new Response(new Blob([bin]).stream().pipeThrough(new DecompressionStream('gzip'))).text();
    const s=document.createElement('script'); s.textContent=code; document.head.appendChild(s);
    note.remove();
    await clDraw();
  }catch(e){note.textContent='The interactive figures need a current browser (Chrome 80+, Firefox 113+, '+
    'Safari 16.4+): '+e.message; console.warn(e);}
})();
"""


class Document:
    """Collects the figures of a report and writes the file; element ids are unique within it."""

    def __init__(self) -> None:
        self._n = 0
        self._scripts: list[str] = []

    def new_id(self, prefix: str = "e") -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def figure(self, fig: go.Figure, name: str, *, graph: Mapping[str, str] | None = None,
               slot: str = "", fid: str | None = None) -> str:
        """A placeholder for ``fig`` (drawn on load); ``graph``: node id -> exemplar panel id, for a clickable
        concept graph. ``name``: the file name its camera button saves (plain text); ``fid``: its element id
        (from :meth:`new_id`; default a new one)."""
        fid = fid or self.new_id("f")
        height = fig.layout.height or 450
        self._scripts.append(f'<script type="application/json" class="cl-fig" data-target="{fid}" '
                             f'data-name="{h(name)}">{script_json(pio.to_json(fig, validate=False))}</script>')
        if graph is not None:
            self._scripts.append(f'<script type="application/json" id="{fid}-nodes">{script_json(dict(graph))}'
                                 "</script>")
        return (f'<div class="plot" id="{fid}" data-figure="{h(slot)}" style="height:{int(height)}px"></div>')

    def write(self, title: str, body: str, *, compress: bool = True) -> str:
        """The whole HTML file around ``body`` (ready HTML), with plotly.js inlined once."""
        if compress:
            packed = _packed_plotly()
            plotly = (f'<script type="application/octet-stream" id="cl-plotly">{packed}</script>'
                      f"<script>{_LOADER}</script><script>{_BOOT_GZIP}</script>")
            note = '<p id="cl-nojs" class="hint">Drawing the figures…</p>'
        else:
            from plotly.offline import get_plotlyjs

            plotly = f"<script>{get_plotlyjs()}</script><script>{_LOADER}</script><script>{_BOOT_PLAIN}</script>"
            note = ""
        return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width,initial-scale=1'>"
                # No request may leave the file: everything is inline or a data: URI.
                "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
                "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; "
                "media-src data: blob:; font-src data:\">"
                f"<title>{h(title)}</title><style>{_CSS}</style></head><body><main>{note}{body}</main>"
                + "".join(self._scripts) + plotly + "</body></html>")


@functools.lru_cache(maxsize=1)
def _packed_plotly() -> str:
    """The installed plotly.js, gzip-compressed and base64-encoded (about 2 MB; made once per process)."""
    from plotly.offline import get_plotlyjs

    return base64.b64encode(gzip.compress(get_plotlyjs().encode(), 9, mtime=0)).decode()


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, max_rows: int = 40,
          fmt: Mapping[str, str] | None = None) -> str:
    """Rows as an HTML table (every cell escaped); at most ``max_rows``, with a line saying how many more."""
    if not rows:
        return '<p class="hint">(none)</p>'
    cols = list(columns or rows[0].keys())
    fmt = fmt or {}
    out = ["<div class='tw'><table><tr>" + "".join(f"<th>{h(c)}</th>" for c in cols) + "</tr>"]
    for r in rows[:max_rows]:
        out.append("<tr>" + "".join(f"<td>{h(cell(r.get(c), fmt.get(c)))}</td>" for c in cols) + "</tr>")
    out.append("</table></div>")
    if len(rows) > max_rows:
        out.append(f'<p class="hint">… and {len(rows) - max_rows} more rows (in the CSV download).</p>')
    return "".join(out)


def cell(value: Any, spec: str | None = None) -> str:
    """A table cell's text: floats rounded (``spec`` or 4 significant digits), None and NaN as a dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != value:
            return "—"
        return format(value, spec or ".4g")
    return str(value)


def frame_rows(df: Any) -> list[dict[str, Any]]:
    """A pandas DataFrame's rows as plain dicts (numpy scalars as Python ones)."""
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in df.to_dict("records")]


def csv_link(df: Any, filename: str, label: str) -> str:
    """A download link holding ``df`` as CSV (a data: URI; the file name is made safe)."""
    from core.artifacts import slug

    name = slug(filename, 100) + ".csv"
    return (f'<a class="dl" download="{h(name)}" href="{data_uri(df.to_csv(index=False).encode(), "text/csv")}">'
            f"{h(label)}</a>")


def video(data: bytes, caption_lines: Sequence[str]) -> str:
    """An H.264 clip that plays in a loop, with its caption (first line bold)."""
    cap = "".join(f"<div>{'<b>' + h(x) + '</b>' if i == 0 else h(x)}</div>" for i, x in enumerate(caption_lines))
    return (f'<div class="clip"><video src="{data_uri(data, "video/mp4")}" autoplay loop muted playsinline '
            f'controls></video>{cap}</div>')


def picture(data: bytes, mime: str, caption: str = "", width: int | None = None) -> str:
    style = f' style="width:{int(width)}px"' if width else ""
    return (f'<figure><img src="{data_uri(data, mime)}" alt="{h(caption)}"{style}>'
            f"<figcaption>{h(caption)}</figcaption></figure>")
