"""Concept tubelets: VTCD concepts of video transformers and Rosetta concepts across models (dissertation ch. 4)."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import streamlit as st

from core import svg_figures, ui_cache
from core import viz_vtcd as vv
from core.artifacts import Run
from core.errors import RunError, UserError
from core.viz import md_text as md
from core.viz_vcc import md_code as code
from core.vtcd import media as vm
from core.vtcd import store as vs
from pages.components import run_warnings, tables
from pages.components.choice import choice
from pages.components.figure_export import export_buttons
from pages.components.lazy_tabs import lazy_tabs
from pages.components.metrics import Metric, metric_row
from pages.components.svg_chart import chart, light, svg_chart

KINDS = (vs.KIND, vs.ROSETTA_KIND)
COLOR_LABELS = {"head": "head importance", "top": "best concept", "concepts": "concepts"}
"""Short names of the grid's colourings (:data:`core.viz_vtcd.COLOR_BY`), for its control."""
MAX_TILES = 12
# Where a run's warnings are shown: page part -> the ``figure`` ids that go there (a layer's warning
# without a figure goes beside the concept browser; any other at the top).
WARNING_PLACES = {"browser": ("concepts", "browser", "grid", "heads", "layer"), "players": ("players", "media"),
                  "importance": ("importance", "layers", "diagnostics", "intervals"),
                  "validation": ("attribution", "pruning", "validation"), "ground_truth": ("ground_truth",),
                  "rosetta": ("rosetta", "tuples")}

ui_cache.require_frame()
st.title("Concept tubelets")

run = ui_cache.choose_run(KINDS, "concept run", "Make one with `python -m precompute vtcd --model vit-motion "
                          "--videos demo` (and `python -m precompute rosetta --runs A B` across models), or point "
                          "the artifact root in the sidebar at a folder that has them.")


# ------------------------------------------------------------------------------------------------
# Frames, cached per run file


@st.cache_data(max_entries=64, show_spinner=False)
def grid_svg(path: str, key: str, color_by: str, layer: str | None, head: int | None, limit: float | None = None,
             title: str | None = None) -> str:
    """The layers x heads grid of a run as SVG, ``(layer, head)`` framed (None: none), on colour range
    ``limit`` (None: its own)."""
    return svg_figures.importance_grid(ui_cache.load_run_json(path, vs.CONCEPTS, key), color_by,
                                       (layer, head) if layer is not None else None, limit, title)


@st.cache_data(max_entries=256, show_spinner=False)
def clip_frames(path: str, name: str, key: str) -> np.ndarray:
    """Decoded frames of an H.264 clip of the run."""
    from core.data.videos import read_video

    return read_video(ui_cache.run_file(path, name, key))[0]


def with_ground_truth(frames: np.ndarray, path: str, key: str, video: int | None) -> np.ndarray:
    """``frames`` with the run's ground-truth object of clip ``video`` outlined (None: unchanged)."""
    if video is None:
        return frames
    masks = ui_cache.load_run_npz(path, vs.GROUND_TRUTH_MASKS, key)[vs.GROUND_TRUTH_KEY]
    return vm.draw_outline(frames, masks[video])


@st.cache_data(max_entries=512, show_spinner=False)
def clip_tile(path: str, name: str, key: str, lines: tuple[str, ...], gt_video: int | None = None) -> vv.Tile:
    """A clip the job rendered; ``gt_video``: outline that clip's ground-truth object."""
    return vv.make_tile(with_ground_truth(clip_frames(path, name, key), path, key, gt_video), lines)


@st.cache_data(max_entries=512, show_spinner=False)
def composed_tile(path: str, key: str, video_file: str, unit: int, concept: int | None, video: int,
                  lines: tuple[str, ...], ground_truth: bool = False) -> vv.Tile:
    """A concept highlighted in a video the job rendered no clip for (``concept`` None: the plain clip)."""
    frames = clip_frames(path, video_file, key)
    factor = vm.display_factor(*frames.shape[1:3], vs.MEDIA_SIDE)
    if concept is None:
        shown = vm.upscale(frames, factor)
    else:
        cmap = ui_cache.load_run_npz(path, vs.SUPPORTS, key)[vs.cmap_key(unit)]
        shown = vm.highlight(frames, cmap[video] == concept, factor)
    return vv.make_tile(with_ground_truth(shown, path, key, video if ground_truth else None), lines)


def show_player(tiles: list[vv.Tile], fps: float, state: str) -> None:
    """The synced player of ``tiles``; ``state`` names what it shows (run, concept or video): its frame, play
    state and speed are kept in the browser under that name and survive reruns."""
    if not tiles:
        st.info("Nothing to play for this choice.")
        return
    # tiles per row and tile width are chosen in the player's bar (in the browser: no rerun)
    st.iframe(vv.player_html(tiles, fps=fps, columns=min(4, len(tiles)), state=state), height="content")


# ------------------------------------------------------------------------------------------------
# A vtcd run

SCOPES = ["this head", "all heads"]
SORTS = ["importance", "coverage", "videos", "id"]


def concept_filters(layers: list[str]) -> tuple[str, list[str], str, str]:
    """The concept list's scope, layers, sort and id filter, chosen in a popover whose widgets exist only while
    it is open (fewer elements for a new tab to draw); the choices are kept in the session while it is closed."""
    state = st.session_state
    for key, options, default in (("vt_scope", SCOPES, SCOPES[0]), ("vt_sort", SORTS, SORTS[0])):
        state[key] = state[key] if state.get(key) in options else default
    picked = state.get("vt_layers")
    state["vt_layers"] = [x for x in picked if x in layers] if isinstance(picked, list) else list(layers)
    state["vt_text"] = str(state.get("vt_text") or "")
    # a constant label: a popover's identity includes its label, and a changing one would close it on every change
    pop = st.popover("Filter and sort", key="vt_filters", on_change="rerun", icon=":material/filter_list:")
    if pop.open:
        with pop:
            st.radio("List", SCOPES, key="vt_scope", horizontal=True)
            st.multiselect("Layers", layers, key="vt_layers", disabled=state["vt_scope"] == "this head")
            st.selectbox("Sort by", SORTS, key="vt_sort")
            st.text_input("Concept id contains", key="vt_text")
    return state["vt_scope"], state["vt_layers"], state["vt_sort"], state["vt_text"]


def signed(value: Any) -> str:
    """An importance for a label: ``+0.0123``, or ``—`` where it is null or NaN."""
    imp = vv.finite(value)
    return "—" if imp is None else f"{imp:+.4f}"


def no_head_importance(opened: Run) -> str:
    """Why the run ``opened`` shows no head importance (every unit's importance is null or NaN)."""
    try:
        drawn = vs.saved_config(opened).n_head_masks
    except UserError:  # a manifest this version cannot read: say only what is missing
        drawn = None
    if drawn == 0:
        return "No head importance was computed for this run (it was made with `--head-masks 0`)."
    return "No head importance in this run: it is undefined (NaN) for every head."


def vtcd_view(run: dict[str, Any]) -> None:
    try:
        doc = ui_cache.load_run_json(run["path"], vs.CONCEPTS, run["key"])
        opened = ui_cache.get_run(run["path"], run["key"])
        attr = ui_cache.load_optional_json(run["path"], vs.ATTRIBUTION, run["key"])
        gt = ui_cache.load_optional_json(run["path"], vs.GROUND_TRUTH, run["key"])
        diag = ui_cache.load_optional_json(run["path"], vs.DIAGNOSTICS, run["key"])
    except RunError as e:
        st.error(md(e))
        st.stop()
    model = doc["model"]["label"]
    concepts, videos, units = doc["concepts"], doc["videos"], doc["units"]
    fps = float(doc.get("fps", vs.MEDIA_FPS))
    target = doc.get("target", {})
    target_text = {"label": "each clip's label", "prediction": "each clip's unmasked prediction (label-free)",
                   "class": f"class {target.get('class_name', target.get('class'))}"}.get(target.get("mode"), "?")
    st.caption(f"{code(run['run_id'])} · {md(model)} · {len(videos)} clips · {len(concepts)} concepts in "
               f"{len(units)} heads of {len(doc['layers'])} layers · {md(doc.get('feature', 'key'))} features · CRIS "
               f"metric {md(doc.get('metric', 'loss'))} of {md(target_text)}")
    run_warnings.show(warnings, "top", WARNING_PLACES, "browser")
    st.markdown(
        "VTCD cuts each video into **tubelets** (SLIC over a head's features in space and time), clusters the "
        "tubelets of all videos into **concepts** per head (convex NMF), and ranks every concept of every layer "
        "and head by **CRIS**: the task metric drops most when the important concepts are masked out together "
        "with random others. In the players, each concept's tubelets are bright with an amber border; the rest "
        "of the clip is dimmed.")
    by_id = {c["id"]: c for c in concepts}
    layers = list(dict.fromkeys(doc["layers"]))
    heads_of = {lay: sorted({u["head"] for u in units if u["layer"] == lay}) for lay in layers}
    top = min(units, key=lambda u: u["rank"] if u.get("rank") else 1e9)  # start on the most important head
    has_heads = any(vv.finite(u.get("importance")) is not None for u in units)
    heads_note = "" if has_heads else no_head_importance(opened)

    # -- browser ----------------------------------------------------------------------------------------------
    st.subheader("Concept browser")
    run_warnings.show(warnings, "browser", WARNING_PLACES, "browser")

    def set_cell(cell: tuple[str, int] | None) -> bool:
        if cell is not None and cell[0] in heads_of and cell[1] in heads_of[cell[0]]:
            st.session_state["vt_layer"], st.session_state["vt_head"] = cell
            return True
        return False

    def pick_cell(chart_key: str) -> None:
        for p in st.session_state[chart_key].selection.get("points", []):
            if set_cell(vv.grid_point(p)):
                return

    compared = []
    for other in ui_cache.compared_runs(vs.KIND):
        try:
            compared.append((other, ui_cache.load_run_json(other["path"], vs.CONCEPTS, other["key"])))
        except RunError as e:
            st.warning(md(e))
    left, right = st.columns([3, 2])
    with right:
        color_by = choice("Colour the grid by", list(vv.COLOR_BY), key="vt_color",
                          format_func=lambda k: COLOR_LABELS.get(k, vv.COLOR_BY[k][0]),
                          help="; ".join(f"{COLOR_LABELS.get(k, k)}: {v[0]}" for k, v in vv.COLOR_BY.items()))
        shared_limit = (max(svg_figures.grid_limit(d, color_by) for d in [doc, *(d for _, d in compared)])
                        if compared else None)
        ui_cache.url_state("layer", layers, top["layer"], key="vt_layer")
        layer = st.selectbox("Layer", layers, key="vt_layer")
        head_options = heads_of[layer]
        ui_cache.url_state("head", head_options, top["head"] if layer == top["layer"] else head_options[0],
                           key="vt_head")
        head = st.selectbox("Head", head_options, key="vt_head")
        unit = next(u for u in units if u["layer"] == layer and u["head"] == head)
        imp = vv.finite(unit.get("importance"))
        if imp is not None:
            head_text = f"; head importance {signed(imp)}, rank {md(unit.get('rank'))} of {len(units)}"
        else:
            head_text = "; head importance undefined for this head" if has_heads else ""
        st.caption(f"**{md(layer)} · head {md(head)}**: {md(unit['n_concepts'])} concepts from "
                   f"{md(unit.get('n_tubelets'))} tubelets (elbow Q = {md(unit.get('q_elbow'))}, silhouette "
                   f"{vv.finite(unit.get('silhouette')) or 0:.2f}){head_text}. Click a square to pick a head."
                   + (f" {heads_note}" if heads_note else ""))
    with left:
        chart_key = "vt_grid"
        if not LIGHT:
            st.plotly_chart(vv.importance_grid(doc, color_by, (layer, head)), key=chart_key,
                            on_select=partial(pick_cell, chart_key), selection_mode="points",
                            config=vv.export_config(f"{run['run_id']}-grid"))
        else:
            svg_chart(grid_svg(run["path"], run["key"], color_by, layer, head, shared_limit), key=f"{chart_key}-svg",
                      on_pick=lambda value: set_cell(svg_figures.grid_pick(value)))
        export_buttons(partial(vv.importance_grid, doc, color_by), f"{run['run_id']}-grid", key="vt_x_grid")

    if compared:
        st.caption(f"Compared runs (sidebar), on the same colour scale as {code(run['run_id'])}:")
        for col, (other, _) in zip(st.columns(max(len(compared), 2)), compared, strict=False):
            with col:
                svg_chart(grid_svg(other["path"], other["key"], color_by, None, None, shared_limit,
                                   f"{other['run_id']} · {vv.COLOR_BY.get(color_by, ('',))[0]}"),
                          key=f"vt_grid_cmp-{other['run_id']}")

    row = st.container(horizontal=True)
    with row:
        scope, chosen_layers, sort, text = concept_filters(layers)
        st.download_button("Download concepts (CSV)", vv.concepts_table(concepts).to_csv(index=False),
                           file_name=f"{run['run_id']}-concepts.csv", mime="text/csv", on_click="ignore")
    if scope == "this head":
        shown = vv.filter_concepts(concepts, [layer], [head], text=text, sort=sort)
        where = f"{layer} · head {head}"
    else:
        shown = vv.filter_concepts(concepts, chosen_layers, None, text=text, sort=sort)
        where = f"all heads of {len(chosen_layers)} of {len(layers)} layers"
    table = vv.concepts_table(shown)
    tables.table(table, caption=f"{len(shown)} concepts of {where}, by {sort}"
                 + (f", id containing “{text}”" if text else ""),
                 hide_index=True, width="stretch", height=min(400, 38 + 35 * max(len(table), 1)),
                 column_config={"importance": st.column_config.NumberColumn(format="%+.4f"),
                                "CI low": st.column_config.NumberColumn(format="%+.4f"),
                                "CI high": st.column_config.NumberColumn(format="%+.4f"),
                                "released": st.column_config.NumberColumn(
                                    format="%+.4f", help="the released code's estimator: mean metric over the "
                                    "masks that keep the concept (negated for a loss)"),
                                "± std": st.column_config.NumberColumn(format="%.4f"),
                                "occlusion": st.column_config.NumberColumn(format="%+.4f"),
                                "coverage": st.column_config.NumberColumn(format="percent")})

    # -- players (a fragment: their controls rerun only this part) ------------------------------------------
    @st.fragment
    def players_part() -> None:
        st.subheader("Players")
        run_warnings.show(warnings, "players", WARNING_PLACES)
        gt_on = False
        if opened.has(vs.GROUND_TRUTH_MASKS):
            gt_on = st.toggle("Outline the target object (ground truth, cyan)", value=True, key="vt_gt",
                              help="The synthetic clips' object masks: compare them with the concept's tubelets "
                              "(amber).")
        mode = choice("Show", ["concept", "video"], key="vt_mode",
                      format_func={"concept": "one concept in several videos",
                                   "video": "one video, several concepts"}.__getitem__)
        if mode == "concept":
            ids = [c["id"] for c in shown] or [c["id"] for c in concepts]
            ui_cache.url_state("concept", ids, ids[0], key="vt_concept")
            cid = st.selectbox("Concept", ids, key="vt_concept",
                               format_func=lambda i: f"{i} · importance {signed(by_id[i].get('importance'))}")
            c = by_id[cid]
            counts = range(1, min(MAX_TILES, len(c["videos"])) + 1)
            n = choice("Videos", counts, key=f"vt_nvid-{cid}", default=min(4, len(counts))) if len(counts) > 1 else 1
            tiles = []
            for rec in c["videos"][:n]:
                vid = videos[rec["video"]]
                lines = tuple(vv.concept_lines(model, c, vid["id"], f"covers {rec['coverage']:.0%} · target "
                                               f"{vid['target_name']}"))
                try:
                    if rec.get("file"):
                        tiles.append(clip_tile(run["path"], rec["file"], run["key"], lines,
                                               rec["video"] if gt_on else None))
                    else:
                        tiles.append(composed_tile(run["path"], run["key"], vid["file"], c["unit"], c["concept"],
                                                   rec["video"], lines, gt_on))
                except (RunError, UserError) as e:
                    st.warning(md(e))
            st.caption(f"{code(cid)} in the {len(tiles)} videos where its tubelets weigh most in the concept's "
                       f"centroid (it appears in {md(c['n_videos'])} of {len(videos)}).")
            show_player(tiles, fps, f"{run['path']}|{run['key']}|concept|{cid}")
        else:
            vnames = [v["id"] for v in videos]
            vi = st.selectbox("Video", range(len(videos)), key="vt_video", format_func=lambda i: (
                f"{vnames[i]} · target {videos[i]['target_name']} · predicted {videos[i]['predicted_name']}"))
            which = choice("Concepts", ["head", "top"], key="vt_vscope",
                           format_func={"head": f"of {md(layer)} · head {md(head)}",
                                        "top": "most important present in this video"}.__getitem__)
            present = [c for c in concepts if any(r["video"] == vi for r in c["videos"])]
            if which == "head":
                chosen = [c for c in present if c["layer"] == layer and c["head"] == head]
            else:
                chosen = vv.filter_concepts(present, sort="importance")[:MAX_TILES - 1]
            vid = videos[vi]
            tiles = [composed_tile(run["path"], run["key"], vid["file"], 0, None, vi,
                                   (f"{vid['id']} (the clip)", f"{model} · target {vid['target_name']}",
                                    f"predicted {vid['predicted_name']}"), gt_on)]
            for c in vv.filter_concepts(chosen, sort="importance")[:MAX_TILES - 1]:
                cov = next(r["coverage"] for r in c["videos"] if r["video"] == vi)
                tiles.append(composed_tile(run["path"], run["key"], vid["file"], c["unit"], c["concept"], vi,
                                           tuple(vv.concept_lines(model, c, vid["id"], f"covers {cov:.0%}")), gt_on))
            show_player(tiles, fps, f"{run['path']}|{run['key']}|video|{vi}")

    players_part()

    # -- importance with its error, by layer ------------------------------------------------------------------
    def importance_part() -> None:
        st.subheader("Importance, its uncertainty, and what each block does")
        run_warnings.show(warnings, "importance", WARNING_PLACES)
        level = doc.get("ci_level")
        i1, i2 = st.columns([2, 3])
        with i1:
            chart(partial(vv.top_concepts_figure, concepts, 20, level), key="vt_top", width=400,
                  spec=("vt_top", run["path"], run["key"], level),
                  config=vv.export_config(f"{run['run_id']}-top-concepts"))
        with i2:
            chart(partial(vv.layer_figure, doc, diag), key="vt_layers_fig", width=560,
                  spec=("vt_layers", run["path"], run["key"]), config=vv.export_config(f"{run['run_id']}-layers"))
        agreement = doc.get("rank_agreement")
        st.caption((f"Intervals: {level:.0%} percentile bootstrap over each clip's {doc.get('bootstrap')} mask "
                    "resamplings. " if level else "This run has no bootstrap intervals. ")
                   + ("" if agreement is None else f"Our estimator (mean metric over masks keeping a concept minus "
                      f"over masks removing it) and the released code's (over masks keeping it only) rank the "
                      f"concepts alike: Spearman {agreement:.3f}."))
        if diag:
            summary = vv.diagnostics_summary(diag)
            if summary:
                st.info(summary)
            tables.table(vv.diagnostics_table(diag), hide_index=True, width="stretch",
                         column_config={k: st.column_config.NumberColumn(format="%+.3f" if "Δ" in k else "%.3f")
                                        for k in ("entropy", "branch removed ΔP", "|ΔP| branch", "keys zeroed ΔP",
                                                  "keys removed (-inf) ΔP")})
            st.caption(f"Per block, on {md(diag.get('n_videos'))} clips: attention entropy (1 = every token attends "
                       "to all equally), and the change in P(target) when the block's attention branch output is "
                       "zeroed, "
                       f"when the keys of a random {diag.get('rho', 0.5):.0%} of the tokens are zeroed (as CRIS "
                       "removes a concept, and as the released code does), and when the same keys are removed from "
                       f"the softmax instead (-inf logits), over {md(diag.get('n_draws'))} random key sets.")

    # -- validation ---------------------------------------------------------------------------------------------
    def validation_part() -> None:
        st.subheader("Validation")
        run_warnings.show(warnings, "validation", WARNING_PLACES)
        if attr is None:
            st.caption("This run has no attribution curves and no head pruning (it was made with `--no-attribution`).")
            if has_heads:
                chart(vv.head_heatmap(doc), key="vt_heads_only",
                      config=vv.export_config(f"{run['run_id']}-head-importance"))
            else:
                st.caption(heads_note)
        else:
            scopes = vv.attribution_scopes(attr) or ["all"]
            a1, a2 = st.columns([3, 2])
            with a1:
                sc = st.selectbox("Concepts removed from", scopes, key="vt_scope_attr",
                                  format_func=lambda s: "all layers" if s == "all" else s)
                chart(vv.attribution_figure(attr, sc), key="vt_attr", width=560,
                      config=vv.export_config(f"{run['run_id']}-attribution-{sc}"))
            with a2:
                auc = attr.get("auc", {})
                st.markdown(f"Removing concepts **most important first** should make the "
                            f"{md(attr.get('metric', 'metric'))} fall fast (low area under the curve), **least "
                            "important first** should keep it (high area); random order lies between. "
                            f"All layers: AUC {auc.get('positive', float('nan')):.3f} (most first) vs "
                            f"{auc.get('negative', float('nan')):.3f} (least first) vs "
                            f"{auc.get('random', float('nan')):.3f} (random), on {md(attr.get('n_videos', '?'))} "
                            "clips; "
                            f"unmasked {attr.get('baseline', float('nan')):.3f}.")
                tables.table(vv.auc_table(attr), hide_index=True, width="stretch",
                             column_config={k: st.column_config.NumberColumn(format="%.3f")
                                            for k in ("positive", "negative", "random", "occlusion positive",
                                                      "occlusion negative")})
            pruning = attr.get("head_pruning")
            p1, p2 = st.columns([3, 2])
            with p2:
                if has_heads:
                    chart(vv.head_heatmap(doc), key="vt_heads", width=380,
                          config=vv.export_config(f"{run['run_id']}-head-importance"))
                else:
                    st.caption(heads_note)
            with p1:
                if pruning:
                    chart(vv.pruning_figure(pruning), key="vt_pruning", width=560,
                          config=vv.export_config(f"{run['run_id']}-head-pruning"))
                    note = pruning.get("gflops_note")
                    if note:
                        st.caption(f"Heads are pruned by zeroing their keys; {md(str(note).split('; ', 1)[-1])}.")
                else:
                    st.caption("No head pruning in this run (made with `--head-masks 0`).")

    # -- ground truth ---------------------------------------------------------------------------------------------
    def ground_truth_part() -> None:
        st.subheader("Ground truth")
        run_warnings.show(warnings, "ground_truth", WARNING_PLACES)
        best, base = gt["best"], gt["baseline"]
        metric_row([Metric("Best concept IoU with the object", f"{best['iou']:.3f}",
                           help=str(gt["iou"]) if gt.get("iou") else None),
                    Metric("Random-crop baseline", f"{base['best_iou']:.3f}",
                           delta=f"{best['iou'] - base['best_iou']:+.3f} VTCD vs baseline"),
                    Metric("Best concept", best["id"])])
        st.caption(f"On {md(gt.get('n_videos'))} synthetic clips with object masks: {md(gt.get('object'))}. "
                   f"Baseline: {md(base.get('method'))}.")
        others = gt.get("others") if isinstance(gt.get("others"), dict) else {}
        for name, other in others.items():  # e.g. the occlusion task's occluder, scored like the target
            o_best, o_base = other.get("best") or {}, other.get("baseline") or {}
            if isinstance(o_best.get("iou"), int | float) and isinstance(o_base.get("best_iou"), int | float):
                st.markdown(f"**{md(name)}**: best concept {code(o_best.get('id', ''))}, IoU "
                            f"{o_best['iou']:.3f} against {o_base['best_iou']:.3f} for the random-crop baseline.")

        def show_best() -> None:
            st.session_state.update(vt_scope="all heads", vt_layers=layers, vt_text="", vt_mode="concept",
                                    vt_concept=best["id"], vt_gt=True)

        if best["id"] in by_id:
            st.button(f"Play {md(best['id'])} with the object outlined", on_click=show_best, key="vt_show_best")
        table = vv.ground_truth_table(gt)
        iou_columns = [k for k in table.columns if "IoU" in k]  # the target's and each other object's
        tables.table(table, hide_index=True, width="stretch",
                     column_config={k: st.column_config.NumberColumn(format="%.3f") for k in iou_columns})

    @st.fragment
    def below() -> None:  # in tabs, only the open one drawn (a tab switch reruns only this part)
        parts = {"Importance and uncertainty": importance_part, "Validation": validation_part}
        if gt:
            parts["Ground truth"] = ground_truth_part
        lazy_tabs(parts, key="vt_section")

    below()


# ------------------------------------------------------------------------------------------------
# A rosetta run


def rosetta_view(run: dict[str, Any]) -> None:
    try:
        doc = ui_cache.load_run_json(run["path"], vs.ROSETTA, run["key"])
    except RunError as e:
        st.error(md(e))
        st.stop()
    labels = [r["label"] for r in doc["runs"]]
    tuples = doc.get("tuples", [])
    mean_r = ", ".join(f"d = {d}: {v:.3f}" for d, v in doc.get("mean_r", {}).items() if v is not None)
    run_warnings.show(warnings, "top", WARNING_PLACES, "rosetta")
    st.caption(f"{code(run['run_id'])} · Rosetta concepts of {md(', '.join(map(str, labels)))} · top ε = "
               f"{doc['epsilon']:g} of each "
               f"model's concepts · tuples with R > δ = {doc['delta']:g} · {len(tuples)} tuples"
               + (f" · mean R over all tuples tried: {md(mean_r)}" if mean_r else ""))
    st.markdown("A **Rosetta concept** is a tuple of concepts, one per model, whose supports overlap on the same "
                "videos: R is their intersection over union, averaged over the videos. The players show each "
                "model's concept in the same video, in sync.")
    if not tuples:
        st.info("No tuple passed δ: the models' top concepts do not overlap enough. Try a smaller `--delta` or a "
                "larger `--epsilon`.")
        return
    table = vv.rosetta_table(doc)
    tables.table(table, hide_index=True, width="stretch", height=min(360, 38 + 35 * len(table)),
                 column_config={"R": st.column_config.NumberColumn(format="%.3f")})
    with_media = [t["index"] for t in tuples if t.get("media")]
    if not with_media:
        st.caption("No tuple has rendered clips in this run (`--media-tuples 0`).")
        return
    k = st.selectbox("Tuple", with_media, key="ro_tuple", format_func=lambda i: (
        f"#{i} · R {tuples[i]['r']:.3f} · " + " | ".join(tuples[i]["concepts"])))
    t = tuples[k]
    vids = t["videos"][:len(t["media"])]
    vsel = st.selectbox("Video", range(len(vids)), key=f"ro_video_{k}",
                        format_func=lambda i: f"{vids[i]['id']} · R here {vids[i]['r']:.3f}")
    row = t["media"][vsel]
    tiles = []
    for pos, file in enumerate(row):
        lines = tuple(vv.rosetta_lines(t, pos, vids[vsel]["id"], vids[vsel]["r"]))
        try:
            tiles.append(clip_tile(run["path"], file, run["key"], lines))
        except (RunError, UserError) as e:
            st.warning(md(e))
    show_player(tiles, vs.MEDIA_FPS, f"{run['path']}|{run['key']}|tuple|{k}|{vsel}")


warnings = run.get("warnings") or []
LIGHT = light()
if run["kind"] == vs.ROSETTA_KIND:
    rosetta_view(run)
else:
    vtcd_view(run)
