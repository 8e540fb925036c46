"""One report section per run kind: the figures of the run's page (built by the same ``core.viz*`` builders),
its tables as CSV downloads, and its clips and pictures embedded, within the caps of a
:class:`~core.report.config.ReportConfig`. Runs are read through their stores only."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from core import viz
from core import viz_static_dynamic as vsd
from core import viz_vcc as vcc_viz
from core import viz_vtcd as vtcd_viz
from core.artifacts import Run
from core.errors import RunError
from core.report.config import ReportConfig
from core.report.document import Block, Document, Section, csv_link, frame_rows, h, picture, table, video

KIND_TITLES = {"static-dynamic": "Static / dynamic units", "vtcd": "VTCD concept tubelets",
               "rosetta": "Rosetta concepts", "vcc": "Visual concept connectomes", "vcc-debug": "Failure debugger",
               "predictions": "Predictions"}


def text_of(value: Any, limit: int = 300) -> str:
    """A manifest value (model, data) as one line of text (not yet escaped)."""
    if isinstance(value, Mapping):
        for key in ("description", "source", "spec", "label"):
            if isinstance(value.get(key), str) and value[key]:
                extra = value.get("spec") if key == "description" and isinstance(value.get("spec"), str) else None
                text = f"{extra} ({value[key]})" if extra else str(value[key])
                return text[:limit]
    if isinstance(value, list):
        return ", ".join(text_of(v, 80) for v in value)[:limit]
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return str(text)[:limit]


def facts(run: Run, extra: Sequence[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    m = run.manifest
    return [("run id", run.run_id), ("kind", run.kind), ("model", text_of(m.get("model"))),
            ("data", text_of(m.get("data"))), ("created", viz.short_time(str(m.get("created", "")))),
            *extra]


def settings_block(run: Run, slot: str = "settings") -> Block:
    """The run's settings (manifest ``config``) as a table, nested values as compact JSON."""
    config = run.manifest.get("config") if isinstance(run.manifest.get("config"), dict) else {}
    flat: list[dict[str, Any]] = []
    for k, v in config.items():
        if isinstance(v, dict) and all(not isinstance(x, (dict, list)) for x in v.values()):
            flat += [{"setting": f"{k}.{kk}", "value": vv} for kk, vv in v.items()]
        else:
            flat.append({"setting": k, "value": v if isinstance(v, (str, int, float, bool)) or v is None
                         else json.dumps(v, default=str)[:300]})
    return Block(slot, "Settings", "Every setting the run was made with (the manifest's config).",
                 html=f"<details><summary>{len(flat)} settings</summary>"
                      f"{table(flat, ['setting', 'value'], max_rows=200)}"
                      "</details>")


def _clip(run: Run, name: str | None, cfg: ReportConfig, lines: Sequence[str], skipped: list[str]) -> str | None:
    """A clip of the run as a ``<video>``, or None (missing, unreadable or over the size cap: noted in
    ``skipped``)."""
    if not name:
        return None
    try:
        data = run.read_bytes(name)
    except RunError as e:
        skipped.append(str(e))
        return None
    if len(data) > cfg.max_clip_kb * 1024:
        skipped.append(f"{name}: {len(data) // 1024} KiB, over the {cfg.max_clip_kb} KiB cap")
        return None
    return video(data, lines)


def _skipped_note(skipped: Sequence[str]) -> str:
    return "".join(f'<p class="hint">left out: {h(s)}</p>' for s in skipped[:5])


def _webp(image: np.ndarray, quality: int = 82) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="WEBP", quality=quality)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------------------
# static / dynamic


def static_dynamic(run: Run, cfg: ReportConfig, doc: Document) -> Section:
    from core.static_dynamic import store
    from core.static_dynamic.config import StaticDynamicConfig

    models, layers = run.load_json(store.MODELS), run.load_json(store.LAYERS)
    units = run.load_npz(store.UNITS)
    removal = run.load_json(store.REMOVAL) if run.has(store.REMOVAL) else None
    dynamics = run.load_json(store.DYNAMICS) if run.has(store.DYNAMICS) else None
    examples = run.load_json(store.EXAMPLES) if run.has(store.EXAMPLES) else []
    labels = [str(m["label"]) for m in models]
    lam = StaticDynamicConfig().lam
    for value in (run.summary.get("lambda"), *(r.get("lambda") for r in layers[:1])):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            lam = float(value)
            break
    sec = Section(run.kind, run.run_id, facts(run, [("models", ", ".join(labels)), ("lambda", f"{lam:g}"),
                                                    ("pairs per factor", run.summary.get("pairs", "—"))]),
                  warnings=run.warnings)
    b = sec.blocks
    b.append(settings_block(run))
    b.append(Block("models", "Models", "Each model scored on the same pairs: its task, validation accuracy, units, "
                   "and the deepest layer's percentages.", html=table(frame_rows(vsd.models_table(models, layers)))))
    b.append(Block("unit-histogram", "Unit categories per layer",
                   f"Units of each layer (shallow to deep) that are static, dynamic, joint (both scores above λ = "
                   f"{lam:g}), residual (neither) or dead (never vary), one panel per model.",
                   figure=vsd.unit_histogram(layers, labels), share="y"))
    b.append(Block("layer-scores", "Static and dynamic percentages per layer",
                   "Each layer's share of the softmax 100 · softmax([S_dynamic, S_static, 1]) for the static and the "
                   "dynamic factor, one panel per model (the constant term keeps a share under 47%).",
                   figure=vsd.layer_scores(layers, labels, "pct"), share="y"))
    rows = []
    for i, rec in enumerate(layers):
        ks, kd = store.units_key("static", i), store.units_key("dynamic", i)
        if ks in units and kd in units:
            t = vsd.unit_table(units[ks], units[kd], lam)
            t.insert(0, "layer", rec.get("layer"))
            t.insert(0, "model", rec.get("model"))
            rows.append(t)
    unit_df = (pd.concat(rows, ignore_index=True) if rows
               else pd.DataFrame(columns=["model", "layer", *vsd.UNIT_COLUMNS]))
    layer_df = vsd.layers_table(layers)
    b.append(Block("tables", "Per-unit and per-layer tables",
                   f"{len(unit_df)} units of {len(layer_df)} layers: both scores and the category of every unit "
                   "(CSV), and each layer's counts and scores.",
                   html=csv_link(unit_df, f"{run.run_id}-units", "Download the per-unit table (CSV)") + " · "
                   + csv_link(layer_df, f"{run.run_id}-layers", "Download the per-layer table (CSV)")
                   + table(frame_rows(layer_df), max_rows=cfg.max_rows)))
    if removal and removal.get("curves"):
        for c in removal["curves"][:12]:
            b.append(Block(f"removal:{c['model']}:{c['layer']}", f"Unit removal: {c['model']} · {c['layer']}",
                           f"{removal.get('metric', 'metric')} on {removal.get('n_videos', '?')} videos as the top "
                           "static, top dynamic or random units of the layer are zeroed (lower area = more "
                           "important units).", figure=vsd.removal_figure(removal, c), share="y"))
        if len(removal["curves"]) > 12:
            b.append(Block("removal-more", "More removal curves", f"{len(removal['curves']) - 12} more curves are "
                           "in the CSV.", html=csv_link(vsd.removal_curves_table(removal), f"{run.run_id}-removal",
                                                        "Download every removal curve (CSV)")))
    if dynamics and dynamics.get("records"):
        b.append(Block("dynamics", "Training dynamics",
                       "Static (left) and dynamic (right) percentage of each layer against the training epoch "
                       "(shallow light, deep dark); dotted: validation accuracy.",
                       figure=vsd.dynamics_figure(dynamics), share="y"))
    if examples and cfg.max_examples:
        parts, skipped = [], []
        for ex in examples[:cfg.max_examples]:
            clips = [_clip(run, file, cfg, [title], skipped)
                     for _, title, file in vsd.example_views(ex.get("files") or {}, ex.get("styles"))]
            parts.append(f"<h4>{h(ex.get('caption') or ex.get('video') or 'example')}</h4>"
                         f"<div class='clips'>{''.join(c for c in clips if c)}</div>")
        b.append(Block("examples", "Example pairs",
                       "What the model is shown: a static pair keeps the appearance and breaks the dynamics (frames "
                       "shuffled); a dynamic pair keeps the motion in two styles."
                       + (f" {len(examples) - cfg.max_examples} more examples are in the run." if len(examples)
                          > cfg.max_examples else ""), html="".join(parts) + _skipped_note(skipped)))
    return sec


# ------------------------------------------------------------------------------------------------------------
# VTCD and Rosetta


def vtcd(run: Run, cfg: ReportConfig, doc: Document) -> Section:
    from core.vtcd import store as vs

    cdoc = run.load_json(vs.CONCEPTS)
    attr = run.load_json(vs.ATTRIBUTION) if run.has(vs.ATTRIBUTION) else None
    diag = run.load_json(vs.DIAGNOSTICS) if run.has(vs.DIAGNOSTICS) else None
    gt = run.load_json(vs.GROUND_TRUTH) if run.has(vs.GROUND_TRUTH) else None
    concepts, videos, units = cdoc["concepts"], cdoc["videos"], cdoc["units"]
    model = str((cdoc.get("model") or {}).get("label", text_of(run.manifest.get("model"))))
    level = cdoc.get("ci_level")
    sec = Section(run.kind, run.run_id, facts(run, [
        ("clips", len(videos)), ("concepts", f"{len(concepts)} in {len(units)} heads of {len(cdoc['layers'])} layers"),
        ("features", cdoc.get("feature", "?")), ("CRIS metric", cdoc.get("metric", "?")),
        ("target", (cdoc.get("target") or {}).get("mode", "?"))]), warnings=run.warnings)
    b = sec.blocks
    b.append(settings_block(run))
    b.append(Block("grid", "Layers × heads", "Each analysed head as a square (layers top to bottom), coloured by its "
                   "CRIS importance (whole head masked), labelled with its number of concepts.",
                   figure=vtcd_viz.importance_grid(cdoc, "head")))
    b.append(Block("top-concepts", "Top concepts with their intervals",
                   "The 20 most important concepts by CRIS importance"
                   + (f", with {level:.0%} bootstrap intervals over each clip's masks." if level else
                      " (this run has no bootstrap intervals)."),
                   figure=vtcd_viz.top_concepts_figure(concepts, 20, level), share="x"))
    b.append(Block("layers", "Importance by layer", "Every concept's importance per layer (the best with its "
                   "interval)" + ("; right: attention entropy and the change in P(target) when each block's "
                                  "attention is removed." if diag else "."),
                   figure=vtcd_viz.layer_figure(cdoc, diag), share="x"))
    if any(vtcd_viz.finite(u.get("importance")) is not None for u in units):
        b.append(Block("heads", "Head importance", "CRIS importance of whole heads as a layers × heads heatmap.",
                       figure=vtcd_viz.head_heatmap(cdoc)))
    if cfg.max_clips:
        ranked = [c for c in vtcd_viz.filter_concepts(concepts, sort="importance") if c.get("media")]
        clips, skipped = [], []
        for c in ranked:
            if len(clips) >= cfg.max_clips:
                break
            rec = next((r for r in c.get("videos", []) if r.get("file")), None)
            if rec is None:
                continue
            vid = videos[rec["video"]] if 0 <= rec.get("video", -1) < len(videos) else {}
            clip = _clip(run, rec["file"], cfg, vtcd_viz.concept_lines(model, c, vid.get("id"),
                                                                        f"covers {rec.get('coverage', 0):.0%}"),
                         skipped)
            if clip:
                clips.append(clip)
        b.append(Block("clips", "Top concepts, playing",
                       f"The {len(clips)} most important concepts that have rendered clips, each in the video where it "
                       "weighs most: its tubelets bright with an amber border, the rest of the clip dimmed.",
                       html=f"<div class='clips'>{''.join(clips)}</div>" + _skipped_note(skipped), wide=True))
    if attr is not None:
        b.append(Block("attribution", "Attribution curves",
                       f"{attr.get('metric', 'metric')} of the target class as concepts are removed most important "
                       "first (should fall fast), least important first (should hold) and in random order; AUCs in "
                       "the legend.", figure=vtcd_viz.attribution_figure(attr, "all"), share="y"))
        if attr.get("head_pruning"):
            b.append(Block("pruning", "Head pruning", "Accuracy as heads are pruned least important first (and most "
                           "first, random); GFLOPs of the pruned model on the right.",
                           figure=vtcd_viz.pruning_figure(attr["head_pruning"]), share="y"))
    if gt:
        b.append(Block("ground-truth", "Ground truth", f"IoU of the best concept of each layer with the synthetic "
                       f"clips' object ({gt.get('object', '')}), against a random-crop baseline.",
                       html=table(frame_rows(vtcd_viz.ground_truth_table(gt)))))
    table_df = vtcd_viz.concepts_table(vtcd_viz.filter_concepts(concepts, sort="importance"))
    b.append(Block("concepts", "Concepts", f"All {len(concepts)} concepts by importance (the first "
                   f"{min(cfg.max_rows, len(concepts))} here; every one in the CSV).",
                   html=csv_link(table_df, f"{run.run_id}-concepts", "Download the concepts (CSV)")
                   + table(frame_rows(table_df), max_rows=cfg.max_rows)))
    return sec


def rosetta(run: Run, cfg: ReportConfig, doc: Document) -> Section:
    from core.vtcd import store as vs

    rdoc = run.load_json(vs.ROSETTA)
    labels = [str(r.get("label")) for r in rdoc.get("runs", [])]
    tuples = rdoc.get("tuples", [])
    sec = Section(run.kind, run.run_id, facts(run, [("models", ", ".join(labels)),
                                                    ("epsilon", rdoc.get("epsilon")), ("delta", rdoc.get("delta")),
                                                    ("tuples", len(tuples))]), warnings=run.warnings)
    b = sec.blocks
    b.append(settings_block(run))
    df = vtcd_viz.rosetta_table(rdoc)
    b.append(Block("tuples", "Rosetta tuples", "Each tuple: one concept per model whose supports overlap on the same "
                   "videos; R is their intersection over union averaged over the videos.",
                   html=csv_link(df, f"{run.run_id}-tuples", "Download the tuples (CSV)")
                   + table(frame_rows(df), max_rows=cfg.max_rows)))
    if cfg.max_clips:
        parts, skipped, n = [], [], 0
        for t in sorted((t for t in tuples if t.get("media")), key=lambda t: -float(t.get("r") or 0)):
            row = t["media"][0]
            if n + len(row) > cfg.max_clips:
                break
            vid = (t.get("videos") or [{}])[0]
            clips = [_clip(run, file, cfg, vtcd_viz.rosetta_lines(t, pos, vid.get("id", "?"), vid.get("r")), skipped)
                     for pos, file in enumerate(row)]
            n += len(row)
            parts.append(f"<h4>tuple {h(t.get('index'))} · R {float(t.get('r') or 0):.3f}</h4>"
                         f"<div class='clips'>{''.join(c for c in clips if c)}</div>")
        b.append(Block("clips", "Shared concepts, playing", "The tuples of highest R: each model's concept in the "
                       "same video.", html="".join(parts) + _skipped_note(skipped), wide=True))
    return sec


# ------------------------------------------------------------------------------------------------------------
# VCC and the failure debugger


def concept_graph(doc: Document, graph: Mapping[str, Any], read: Callable[[str], bytes], cfg: ReportConfig,
                  name: str, slot: str, **figure: Any) -> str:
    """The clickable concept graph (:func:`core.viz_vcc.graph_figure`, exemplar thumbnails inline) and one hidden
    panel per concept node, shown when the node is clicked: its exemplars and its significant edges."""
    thumbs = vcc_viz.thumbs_for(graph, read)
    fig = vcc_viz.graph_figure(graph, thumbs, **figure)
    kept = [e for e in graph["edges"] if e.get("significant")]
    fid = doc.new_id("f")
    panels, ids = [], {}
    for node in graph["nodes"]:
        pid = doc.new_id("p")
        ids[str(node["id"])] = pid
        pics = []
        for f in (node.get("exemplar_files") or [])[:cfg.max_exemplars]:
            try:
                pics.append(picture(read(f), "image/webp" if f.endswith(".webp") else "image/png"))
            except (RunError, OSError):
                continue
        inc = sorted((e for e in kept if e["target"] == node["id"]), key=lambda e: -e["weight"])
        out = sorted((e for e in kept if e["source"] == node["id"]), key=lambda e: -e["weight"])
        edges = "".join(f"<li>{h(e['source'])} → {h(e['target'])}: weight {float(e['weight']):.3f}</li>"
                        for e in (inc + out)[:12])
        panels.append(f'<div class="panel" id="{pid}" data-graph="{fid}"><b>{h(vcc_viz.node_text(node))}</b>'
                      f"<div class='pics'>{''.join(pics) or '<span class=hint>no exemplar pictures</span>'}</div>"
                      f"<ul>{edges or '<li>no significant edges</li>'}</ul></div>")
    placeholder = doc.figure(fig, name, graph=ids, slot=slot, fid=fid)
    hint = f'<p class="hint" id="{fid}-hint">Click a concept in the graph to see its exemplars and edges here.</p>'
    return placeholder + hint + "".join(panels)


def vcc(run: Run, cfg: ReportConfig, doc: Document) -> Section:
    from core.vcc import store

    entries = store.classes(run)
    shown = entries[:cfg.max_classes]
    sec = Section(run.kind, run.run_id, facts(run, [
        ("classes", ", ".join(str(e.get("class_name")) for e in entries)),
        ("layers", ", ".join(map(str, run.summary.get("layers") or []))),
        ("concepts", run.summary.get("concepts", "—")),
        ("significant edges", run.summary.get("significant_edges", "—"))]),
        warnings=run.warnings)
    b = sec.blocks
    b.append(settings_block(run))
    series = {str(e.get("class_name")).split(",")[0]: run.load_json(store.class_file(e, store.METRICS)) for e in shown}
    if series:
        b.append(Block("metrics", "Graph metrics per layer", "Concepts, branching factor (mean significant incoming "
                       "edges per concept), mean edge weight and its variance per layer, a line per class.",
                       figure=vcc_viz.metrics_figure(series), share="y"))
    for e in shown:
        name = str(e.get("class_name"))
        graph = run.load_json(store.class_file(e, store.GRAPH))
        fidelity = run.load_json(store.class_file(e, store.FIDELITY))
        slug = str(e.get("slug"))
        b.append(Block(f"graph:{slug}", f"Connectome of {name}",
                       "Rows from the input side (bottom) to the class node (top); each concept shows its nearest "
                       "member, sized by its segments; edge width and opacity by ITCAV weight (significant edges "
                       "only). Click a concept to see its exemplars and edges below the graph.",
                       html=concept_graph(doc, graph, run.read_bytes, cfg, f"{run.run_id}-{slug}-connectome",
                                          f"graph:{slug}"), wide=True))
        if fidelity.get("enabled", True) and fidelity.get("layers"):
            b.append(Block(f"suppression:{slug}", f"Concept suppression: {name}",
                           "Target-class accuracy as each concept direction (thin; mean bold), an isotropic random "
                           "direction (grey) or a matched random direction (red, dotted) is subtracted at growing "
                           "strength eps; concepts should make it fall faster.",
                           figure=vcc_viz.suppression_figure(fidelity, graph["layers"]), share="y"))
            b.append(Block(f"aps:{slug}", f"APS vs LS: {name}", "Average path strength to the class node (eq. 5.8) "
                           "against the logit sum over members (eq. 5.9), a point per concept.",
                           figure=vcc_viz.aps_ls_figure(fidelity), share="xy"))
    if len(entries) > len(shown):
        b.append(Block("more-classes", "More classes", f"{len(entries) - len(shown)} more classes are in the run "
                       "(raise max_classes to include them).", html=""))
    return sec


def vcc_debug(run: Run, cfg: ReportConfig, doc: Document) -> Section:
    from core.vcc import store

    debug = run.load_json(store.DEBUG)
    items = debug.get("images", [])
    wrong = [r for r in items if r.get("correct") is False]
    shown = (wrong or items)[:cfg.max_images]
    sec = Section(run.kind, run.run_id, facts(run, [("images", f"{len(items)}, {len(wrong)} misclassified")]),
                  warnings=run.warnings)
    b = sec.blocks
    b.append(settings_block(run))
    for rec in shown:
        n = rec.get("n")
        true_name = str(rec.get("true_name")).split(",")[0]
        pred_name = str(rec.get("predicted_name")).split(",")[0]
        has_pred = rec.get("vcc_predicted") is not None
        image = run.load_image(rec["file"])
        b.append(Block(f"image:{n}", f"{rec.get('id')}: true {true_name}, predicted {pred_name}",
                       "The image and the model's top-5 classes (the true class in green).",
                       html=f"<div class='pics'>{picture(_webp(image), 'image/webp', str(rec.get('id')), 220)}</div>"
                       + doc.figure(viz.topk_bar(rec["top"], rec.get("true_class"), title="Top-5 classes"),
                                    f"{run.run_id}-{n}-top5")))
        b.append(Block(f"shares:{n}", "Which class each layer sides with",
                       "Per layer, the share of the image's segments whose nearest concept is in the true class's VCC "
                       "(blue) or the predicted class's (orange).",
                       figure=vcc_viz.shares_figure(rec["layers"], true_name, pred_name if has_pred else None)))
        arrays = run.load_npz(rec["segments"])
        layer_names = [r["layer"] for r in rec["layers"]]
        pics = []
        for li in range(len(layer_names))[::-1]:
            ids = np.flatnonzero(arrays["layer"] == li)
            over = vcc_viz.side_overlay(image, arrays["masks"][ids], arrays["side"][ids])
            pics.append(picture(_webp(over), "image/webp", f"{layer_names[li]} · {len(ids)} segments", 200))
        b.append(Block(f"sides:{n}", "Top-down segments", f"Per layer (deepest first), the segments tinted by the VCC "
                       f"of their nearest concept: blue {true_name} (true), orange {pred_name} (predicted).",
                       html=f"<div class='pics'>{''.join(pics)}</div>", wide=True))
        for side, key, color in (("true", rec.get("vcc_true"), vcc_viz.TRUE_COLOR),
                                 ("predicted", rec.get("vcc_predicted"), vcc_viz.PRED_COLOR)):
            if key is None or key not in debug.get("vccs", {}):
                continue
            graph = run.load_json(debug["vccs"][key]["graph"])
            paths = (rec.get("paths") or {}).get(side) or []
            b.append(Block(f"graph:{n}:{side}", f"Connectome of the {side} class "
                           f"({true_name if side == 'true' else pred_name})",
                           "Concepts the image's segments are nearest to are ringed and labelled ×n; the strongest "
                           "paths from them to the class node are drawn in colour. Click a concept to see it below.",
                           html=concept_graph(doc, graph, run.read_bytes, cfg, f"{run.run_id}-{n}-{side}",
                                              f"graph:{n}:{side}", highlight=(rec.get("activated") or {}).get(side)
                                              or {}, path_edges=vcc_viz.path_edge_set(paths), accent=color),
                           wide=True))
    return sec


# ------------------------------------------------------------------------------------------------------------
# predictions


def predictions(run: Run, cfg: ReportConfig, doc: Document) -> Section:
    from core import predictions_store as ps

    preds = run.load_json(ps.PREDICTIONS)
    images = preds.get("images", [])
    hits, known = viz.accuracy(images)
    sec = Section(run.kind, run.run_id, facts(run, [("images", len(images)),
                                                    ("top-1 accuracy", f"{hits}/{known}" if known else "no labels")]),
                  warnings=run.warnings,
                  note="A predictions run is not an analysis: the report lists its predictions and a few images.")
    df = viz.predictions_table(images)
    pics = []
    for im in images[:cfg.max_images]:
        try:
            pics.append(picture(run.read_bytes(im["file"]), "image/webp", viz.tile_caption(im)))
        except (RunError, KeyError):
            continue
    sec.blocks.append(Block("predictions", "Predictions", "Top-1 class and probability per image (all of them in "
                            "the CSV).", html=f"<div class='pics'>{''.join(pics)}</div>"
                            + csv_link(df, f"{run.run_id}-predictions", "Download the predictions (CSV)")
                            + table(frame_rows(df), max_rows=cfg.max_rows)))
    return sec


BUILDERS: dict[str, Callable[[Run, ReportConfig, Document], Section]] = {
    "static-dynamic": static_dynamic, "vtcd": vtcd, "rosetta": rosetta, "vcc": vcc, "vcc-debug": vcc_debug,
    "predictions": predictions}
