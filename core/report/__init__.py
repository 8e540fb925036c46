"""Reports: one self-contained HTML file of one or more runs, for a lab meeting, a paper's supplement or an
email to someone without Python. Pure (no Streamlit).

>>> from core.artifacts import open_run
>>> html = build_report([open_run("assets/demo/vtcd/vit-motion-synthetic")], ReportConfig(max_clips=4))

Runs of one kind are laid side by side, figure by figure, on shared axes; runs of several kinds get a
section per kind. Every figure is the one its dashboard page draws (the ``core.viz*`` builders).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from core import __version__
from core.artifacts import Run
from core.errors import UserError
from core.report.axes import share_axes
from core.report.config import ReportConfig
from core.report.document import Block, Document, Section, h
from core.report.sections import BUILDERS, KIND_TITLES

__all__ = ["KINDS", "ReportConfig", "build_report"]

KINDS = tuple(BUILDERS)
"""Run kinds a report can hold."""


class ReportError(UserError):
    """A run a report cannot be made of (an unknown kind)."""


def _facts(sec: Section) -> str:
    rows = "".join(f"<tr><td>{h(k)}</td><td>{h(v)}</td></tr>" for k, v in sec.facts)
    warn = "".join(f"<div class='warn'>⚠ {h(w.get('message'))}"
                   + (f" (layer {h(w['layer'])})" if w.get("layer") else "")
                   + (f" (setting {h(w['setting'])})" if w.get("setting") else "") + "</div>"
                   for w in sec.warnings)
    note = f"<p class='cap'>{h(sec.note)}</p>" if sec.note else ""
    return f"<table class='facts'>{rows}</table>{note}{warn}"


def _block_body(doc: Document, block: Block, run_id: str) -> str:
    if block.figure is not None:
        return doc.figure(block.figure, f"{run_id}-{block.slot}", slot=block.slot)
    return block.html


def _section_html(doc: Document, sections: list[Section]) -> str:
    """One run's blocks one below the other, or several runs' blocks side by side, slot by slot, the
    figures of a slot on shared axes."""
    n = len(sections)
    out = []
    if n == 1:
        sec = sections[0]
        out.append(f"<h3 id='run-{h(sec.run_id)}'>Run {h(sec.run_id)}</h3>{_facts(sec)}")
        for bl in sec.blocks:
            out.append(f"<h3>{h(bl.title)}</h3><p class='cap'>{h(bl.caption)}</p>{_block_body(doc, bl, sec.run_id)}")
        return "".join(out)
    out.append(f"<div class='row' style='--n:{n}'>" + "".join(
        f"<div class='cell'><h3>Run {h(s.run_id)}</h3>{_facts(s)}</div>" for s in sections) + "</div>")
    slots: list[str] = []
    for s in sections:
        slots += [bl.slot for bl in s.blocks if bl.slot not in slots]
    for slot in slots:
        found = [next((bl for bl in s.blocks if bl.slot == slot), None) for s in sections]
        first = next(bl for bl in found if bl is not None)
        figs = [bl.figure for bl in found if bl is not None and bl.figure is not None]
        if first.share and len(figs) > 1:
            share_axes(figs, first.share)
        shared = f" Axes shared across the runs ({', '.join(first.share)})." if first.share and len(figs) > 1 else ""
        cells = []
        for s, bl in zip(sections, found, strict=True):
            body = _block_body(doc, bl, s.run_id) if bl is not None else "<p class='hint'>not in this run</p>"
            cells.append(f"<div class='cell'><div class='run'>{h(s.run_id)}</div>{body}</div>")
        # Wide items (clip rows, graphs) stack; figures and tables sit next to each other.
        cols = 1 if first.wide else n
        out.append(f"<h3>{h(first.title)}</h3><p class='cap'>{h(first.caption + shared)}</p>"
                   f"<div class='row' style='--n:{cols}'>{''.join(cells)}</div>")
    return "".join(out)


def build_report(runs: Sequence[Run], config: ReportConfig | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> str:
    """The HTML text of the report of ``runs`` (opened with :func:`core.artifacts.open_run`).

    ``progress(done, total, run label)`` is called as each run's section is built. An unknown kind is a
    :class:`ReportError`; a damaged run file a :class:`core.errors.RunError` naming it."""
    config = config or ReportConfig()
    if not runs:
        raise ReportError("a report needs at least one run")
    for r in runs:
        if r.kind not in BUILDERS:
            raise ReportError(f"run {r.path}: a {r.kind[:40]!r} run; a report holds runs of the kinds "
                              f"{', '.join(KINDS)}")
    doc = Document()
    by_kind: dict[str, list[Section]] = {}
    made: list[Section] = []
    for i, r in enumerate(runs):
        made.append(BUILDERS[r.kind](r, config, doc))
        by_kind.setdefault(r.kind, []).append(made[-1])
        if progress is not None:
            progress(i + 1, len(runs), r.label)
    title = config.title or "Concept Lens report: " + ", ".join(r.run_id for r in runs)[:160]
    stamp = time.strftime("%Y-%m-%d %H:%M %Z")
    listing = "".join("<tr>" + "".join(f"<td>{h(v)}</td>" for _, v in s.facts[:5]) + "</tr>" for s in made)
    head = (f"<h1>{h(title)}</h1><p class='meta'>Made with Concept Lens {h(__version__)} on {h(stamp)} · "
            f"{len(runs)} run{'s' if len(runs) != 1 else ''} · every figure is interactive (hover, zoom; the camera "
            "button saves it as SVG)</p>"
            f"<table><tr><th>run id</th><th>kind</th><th>model</th><th>data</th><th>created</th></tr>{listing}</table>")
    body = [head]
    for kind, sections in by_kind.items():
        body.append(f"<h2>{h(KIND_TITLES.get(kind, kind))}</h2>")
        if len(sections) > 1:
            body.append(f"<p class='cap'>{len(sections)} runs side by side.</p>")
        body.append(_section_html(doc, sections))
    return doc.write(title, "".join(body), compress=config.compress_plotly)
