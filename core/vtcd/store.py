"""The on-disk layout of ``vtcd`` and ``rosetta`` runs: the one module that knows their file names.

:func:`save` writes a :class:`core.vtcd.analysis.VTCDAnalysis` as a run, :func:`load` reads a run back as
a :class:`VTCDRun`. Layout of a ``vtcd`` run::

    concepts.json     {model, feature, layers, heads, n_heads, target, metric, video_shape, seg_grid, fps,
                       videos: [{index, id, source, label, label_name, target, target_name, predicted,
                                 predicted_name, file}],
                       ci_level, bootstrap, rank_agreement (Spearman of ours against the released estimator),
                       units: [{index, name, layer, head, n_concepts, n_tubelets, q_elbow, silhouette,
                                cnmf_error, importance, importance_ci: [low, high], importance_released, rank,
                                gflops_share}],
                       concepts: [{index, id, layer, head, unit, concept, importance, importance_std,
                                   importance_ci: [low, high], importance_released, rank, occlusion, n_tubelets,
                                   n_videos, coverage, media: [files], videos: [{video, id, weight, coverage, file}]}],
                       timings}
    diagnostics.json  (transformers) :meth:`core.vtcd.diagnostics.AttentionDiagnostics.to_dict`
    attribution.json  {metric, ranking_metric, fractions, baseline, n_random_orders, positive, negative, random,
                       occlusion: {positive, negative}, auc, scopes: [...], head_pruning: {...} | null}
    cris.npz          concept_removed_bits (V, K, ceil(U/8)) uint8: np.packbits of the bool (V, K, U) removal
                      masks, concept_n_units, concept_values (V, K), concept_baseline (V,), concept_targets (V,),
                      concept_importance_per_video (V, U), concept_importance (U,), concept_importance_released
                      (U,), concept_ci_low / concept_ci_high (U,) (with a bootstrap); head_* the same for whole
                      heads (when head masks were drawn); occlusion_per_video (V, U)
    supports.npz      cmap_<u>: int16 (V, Ts, Hs, Ws) the concept of every voxel of unit u's grid (-1: none)
    tubelets.npz      u<u>_*: :func:`core.vtcd.pipeline.pack_units`
    ground_truth.json / ground_truth.npz (masks bool (V, T, H, W): the target; and one array per other object
        scored, e.g. occluder): the synthetic-video check
    videos/NNN.mp4    the analysed clips as the model sees them
    media/<concept>/NNN.mp4  the concept in video NNN, its support highlighted, the rest dimmed

A ``rosetta`` run holds ``rosetta.json`` and ``media/tNNNN/<j>-vNNN.mp4`` (member j of tuple NNNN in a video).
Pages should read runs through :func:`load` and these names rather than spell file names themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.jsonsafe import num
from core.vtcd import media as vm
from core.vtcd.config import VTCDConfig
from core.vtcd.importance import CRISResult, released_importance
from core.vtcd.masking import HIGHER_IS_BETTER
from core.vtcd.pipeline import HeadConcepts, pack_units, unpack_units

if TYPE_CHECKING:
    from core.artifacts import Run, RunWriter
    from core.vtcd.analysis import VTCDAnalysis

KIND = "vtcd"
ROSETTA_KIND = "rosetta"
CONCEPTS = "concepts.json"
DIAGNOSTICS = "diagnostics.json"
ATTRIBUTION = "attribution.json"
CRIS = "cris.npz"
SUPPORTS = "supports.npz"
TUBELETS = "tubelets.npz"
GROUND_TRUTH = "ground_truth.json"
GROUND_TRUTH_MASKS = "ground_truth.npz"
GROUND_TRUTH_KEY = "masks"  # its array
ROSETTA = "rosetta.json"
PARTS = "parts"
MEDIA_FPS = 8.0
MEDIA_SIDE = 128
MEDIA_CRF = 23
VIDEO_CRF = 18


def video_file(v: int) -> str:
    """The analysed clip ``v`` as the model sees it."""
    return f"videos/{v:03d}.mp4"


def concept_media_file(concept: str, v: int) -> str:
    """Concept ``concept`` (its id, ``blocks.1/h0/c2``) highlighted in video ``v``."""
    from core.artifacts import slug

    return f"media/{slug(concept.replace('/', '-'), 80)}/{v:03d}.mp4"


def tuple_media_file(k: int, member: int, v: int) -> str:
    """Member ``member`` of Rosetta tuple ``k`` highlighted in video ``v``."""
    return f"media/t{k:04d}/{member}-v{v:03d}.mp4"


def cmap_key(unit: int) -> str:
    return f"cmap_{unit}"


# ----------------------------------------------------------------------------------------------
# Records


def ranks(importance: np.ndarray) -> np.ndarray:
    """1 = most important (NaN last)."""
    key = np.where(np.isnan(importance), np.inf, -np.asarray(importance, dtype=np.float64))
    out = np.empty(len(key), dtype=int)
    out[np.argsort(key, kind="stable")] = np.arange(1, len(key) + 1)
    return out


def interval_records(res: CRISResult | None) -> list[list[float | None]] | None:
    """``[low, high]`` per unit (null where undefined), or None without a bootstrap."""
    if res is None or res.ci_low is None or res.ci_high is None:
        return None
    return [[num(lo), num(hi)] for lo, hi in zip(res.ci_low, res.ci_high, strict=True)]


def rank_agreement(res: CRISResult) -> float | None:
    """Spearman correlation of our importance with the released code's estimator over the units."""
    from scipy.stats import spearmanr

    if res.released is None:
        return None
    ok = np.isfinite(res.importance) & np.isfinite(res.released)
    if ok.sum() < 3:
        return None
    return num(spearmanr(res.importance[ok], res.released[ok]).statistic)


def cris_arrays(prefix: str, res: CRISResult) -> dict[str, np.ndarray]:
    out = {f"{prefix}_removed_bits": np.packbits(res.removed, axis=-1),
           f"{prefix}_n_units": np.array(res.removed.shape[2]), f"{prefix}_values": res.values,
           f"{prefix}_baseline": res.baseline, f"{prefix}_targets": res.targets,
           f"{prefix}_importance_per_video": res.importance_per_video, f"{prefix}_importance": res.importance}
    if res.released is not None:
        out[f"{prefix}_importance_released"] = res.released
    if res.ci_low is not None and res.ci_high is not None:
        out[f"{prefix}_ci_low"], out[f"{prefix}_ci_high"] = res.ci_low, res.ci_high
    return out


def cris_from_arrays(arrays: dict[str, np.ndarray], prefix: str, names: Sequence[str], metric: str, rho: float,
                     ci_level: float | None) -> CRISResult | None:
    """The :class:`CRISResult` :func:`cris_arrays` wrote (None when ``prefix`` is absent)."""
    if f"{prefix}_values" not in arrays:
        return None
    n = int(arrays[f"{prefix}_n_units"])
    removed = np.unpackbits(arrays[f"{prefix}_removed_bits"], axis=-1, count=n).astype(bool)
    values = arrays[f"{prefix}_values"]
    higher = HIGHER_IS_BETTER[metric]
    released = arrays.get(f"{prefix}_importance_released")
    return CRISResult(names=list(names), metric=metric, higher_is_better=higher, rho=rho,
                      targets=arrays[f"{prefix}_targets"], baseline=arrays[f"{prefix}_baseline"], removed=removed,
                      values=values, importance_per_video=arrays[f"{prefix}_importance_per_video"],
                      importance=arrays[f"{prefix}_importance"], ci_low=arrays.get(f"{prefix}_ci_low"),
                      ci_high=arrays.get(f"{prefix}_ci_high"),
                      ci_level=ci_level if f"{prefix}_ci_low" in arrays else None,
                      released=released if released is not None else released_importance(removed, values, higher))


def top_videos(unit: HeadConcepts, cmap: np.ndarray, q: int) -> list[dict[str, Any]]:
    """The videos a concept appears in, most representative first: the weight of its tubelets in the
    concept's convex-NMF centroid (``G``), and the fraction of the volume it covers."""
    members = unit.members(q)
    weight = np.bincount(unit.tubelet_video[members], weights=unit.G[members, q], minlength=cmap.shape[0])
    coverage = (cmap == q).reshape(cmap.shape[0], -1).mean(1)
    order = np.lexsort((-coverage, -weight))
    return [{"video": int(v), "weight": float(weight[v]), "coverage": float(coverage[v])}
            for v in order if coverage[v] > 0]


def unit_records(a: VTCDAnalysis) -> list[dict[str, Any]]:
    heads = a.heads
    head_ci = interval_records(heads)
    head_rank = ranks(heads.importance) if heads is not None else None
    out = []
    for i, u in enumerate(a.discovery.units):
        out.append({
            "index": i, "name": f"{u.layer}/h{u.head}", "layer": u.layer, "head": u.head,
            "n_concepts": u.n_concepts, "n_tubelets": len(u.assignment), "q_elbow": u.q_elbow,
            "silhouette": num(u.silhouette), "cnmf_error": num(u.cnmf_error),
            "importance": num(heads.importance[i]) if heads is not None else None,
            "importance_ci": head_ci[i] if head_ci else None,
            "importance_released": num(heads.released[i]) if heads is not None and heads.released is not None
            else None,
            "rank": int(head_rank[i]) if head_rank is not None else None,
            "gflops_share": a.gflops_shares.get(i)})
    return out


def concept_records(a: VTCDAnalysis, cmaps: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """One record per concept (``media`` empty, each video's ``file`` None: :func:`save` fills them)."""
    res, cris = a.discovery, a.concepts
    imp = cris.importance
    imp_std = np.nanstd(cris.importance_per_video, axis=0) if res.n_videos > 1 else np.zeros(len(imp))
    ci = interval_records(cris)
    rank = ranks(imp)
    occ = a.occlusion_per_video.mean(0) if a.occlusion_per_video is not None else None
    released = cris.released if cris.released is not None else np.full(len(imp), np.nan)
    out = []
    for k, name in enumerate(res.concept_names):
        i, q = int(res.concept_unit[k]), int(res.concept_local[k])
        u = res.units[i]
        vids = top_videos(u, cmaps[i], q)
        for rec in vids:
            rec["id"] = a.video_ids[rec["video"]]
            rec["file"] = None
        out.append({
            "index": k, "id": name, "layer": u.layer, "head": u.head, "unit": i, "concept": q,
            "importance": num(imp[k]), "importance_std": num(imp_std[k]),
            "importance_ci": ci[k] if ci else None, "importance_released": num(released[k]), "rank": int(rank[k]),
            "occlusion": num(occ[k]) if occ is not None else None,
            "n_tubelets": len(u.members(q)), "n_videos": len(vids),
            "coverage": float((cmaps[i] == q).mean()), "media": [], "videos": vids})
    return out


def run_config(a: VTCDAnalysis, media_videos: int = 3, media_concepts: int = 0,
               clips_per_video: int | None = None) -> dict[str, Any]:
    """The manifest's ``config`` of a vtcd run (what a rerun must match to resume)."""
    return {"vtcd": a.config.to_dict(), "layers": a.layers, "heads": a.head_choice, "target": a.target,
            "media_videos": media_videos, "media_concepts": media_concepts,
            "ground_truth": a.ground_truth_masks is not None, "attribution": a.attribution is not None,
            "clips_per_video": clips_per_video}


def summary(a: VTCDAnalysis) -> dict[str, Any]:
    """The manifest's ``summary`` of a vtcd run."""
    out: dict[str, Any] = {"model": a.model["label"], "n_videos": len(a.clips), "layers": len(a.layers),
                           "heads": len(a.discovery.units), "n_concepts": len(a.concept_names),
                           "masks": a.config.n_masks, "target": a.target["mode"]}
    if a.attribution is not None:
        out.update(auc_positive=round(a.attribution["auc"]["positive"], 4),
                   auc_negative=round(a.attribution["auc"]["negative"], 4),
                   auc_random=round(a.attribution["auc"]["random"], 4))
    if a.ground_truth is not None:
        out.update(gt_best_iou=round(a.ground_truth["best"]["iou"], 4),
                   gt_baseline_iou=round(a.ground_truth["baseline"]["best_iou"], 4))
    return out


# ----------------------------------------------------------------------------------------------
# Save


def write_clip(writer: RunWriter, name: str, frames: np.ndarray, crf: int = MEDIA_CRF) -> str:
    """An H.264 clip at ``name`` (kept when a resumed run already has it)."""
    from core.data.videos import write_video

    if not writer.has(name):
        with writer.writing(name) as tmp:  # a full disk or a kill leaves no half-written clip
            write_video(tmp, np.ascontiguousarray(frames), fps=MEDIA_FPS, crf=crf)
    return name


def save(a: VTCDAnalysis, out: str | Path | RunWriter, *, run_id: str | None = None, overwrite: bool = False,
         media_videos: int = 3, media_concepts: int = 0, clips_per_video: int | None = None,
         progress: Any = None) -> Path:
    """Write ``a`` into the open run writer ``out`` (returns its folder; the caller finishes it), or as a new
    finished run under the artifact root ``out`` (returns the run folder). Clips of each concept in its
    top ``media_videos`` videos, for the ``media_concepts`` most important concepts (0: all).
    ``progress(stage, done, total)`` is called as media files are written."""
    from core.artifacts import RunWriter

    if not isinstance(out, RunWriter):
        with RunWriter(out, KIND, model=a.describe or a.model, data=a.data,
                       config=run_config(a, media_videos, media_concepts, clips_per_video), run_id=run_id,
                       overwrite=overwrite) as writer:
            save(a, writer, media_videos=media_videos, media_concepts=media_concepts, progress=progress)
            for w in a.warnings:
                writer.warn(w["code"], w["message"], setting=w["setting"], layer=w["layer"], figure=w["figure"])
            writer.remove(PARTS)
            return writer.finish(summary(a))
    writer = out
    res = a.discovery
    cmaps = [u.concept_map() for u in res.units]
    concepts = concept_records(a, cmaps)
    chosen = range(len(concepts))
    if media_concepts:
        chosen = sorted(int(k) for k in np.argsort(ranks(a.concepts.importance))[:media_concepts])
    chosen = list(chosen)
    factor = vm.display_factor(*a.clips[0].shape[1:3], MEDIA_SIDE)
    for done, k in enumerate(chosen):
        c = concepts[k]
        for rec in c["videos"][:media_videos]:
            v = rec["video"]
            rec["file"] = write_clip(writer, concept_media_file(c["id"], v),
                                     vm.highlight(a.clips[v], cmaps[c["unit"]][v] == c["concept"], factor))
            c["media"].append(rec["file"])
        if progress is not None:
            progress("media", done + 1, len(chosen))
    targets, predictions = a.targets, res.predictions
    videos = []
    for v, clip in enumerate(a.clips):
        videos.append({
            "index": v, "id": a.video_ids[v], "source": a.video_sources[v], "label": a.labels[v],
            "label_name": a.label_names[v], "target": int(targets[v]), "target_name": a.class_name(int(targets[v])),
            "predicted": int(predictions[v]), "predicted_name": a.class_name(int(predictions[v])),
            "file": write_clip(writer, video_file(v), clip, crf=VIDEO_CRF)})
    cfg = a.config
    writer.write_json(CONCEPTS, {
        "model": a.model, "feature": cfg.feature, "layers": a.layers,
        "heads": {s.layer: a.head_choice if a.head_choice is not None else list(range(s.heads)) for s in res.sites},
        "n_heads": {s.layer: s.heads for s in res.sites}, "target": a.target, "metric": cfg.metric,
        "video_shape": list(res.video_shape), "seg_grid": list(res.seg_grid), "fps": MEDIA_FPS,
        "ci_level": cfg.ci_level if cfg.bootstrap > 0 else None, "bootstrap": cfg.bootstrap,
        "rank_agreement": rank_agreement(a.concepts), "videos": videos, "units": unit_records(a),
        "concepts": concepts, "timings": {k: round(v, 2) for k, v in a.timings.items()}})
    if a.attribution is not None:
        writer.write_json(ATTRIBUTION, a.attribution)
    if a.diagnostics is not None:
        writer.write_json(DIAGNOSTICS, a.diagnostics)
    arrays = cris_arrays("concept", a.concepts)
    if a.heads is not None:
        arrays.update(cris_arrays("head", a.heads))
    if a.occlusion_per_video is not None:
        arrays["occlusion_per_video"] = a.occlusion_per_video
    writer.write_npz(CRIS, **arrays)
    writer.write_npz(SUPPORTS, **{cmap_key(i): c for i, c in enumerate(cmaps)})
    writer.write_npz(TUBELETS, **pack_units(res.units))
    if a.ground_truth is not None and a.ground_truth_masks is not None:
        writer.write_json(GROUND_TRUTH, a.ground_truth)
        writer.write_npz(GROUND_TRUTH_MASKS, **{GROUND_TRUTH_KEY: a.ground_truth_masks, **a.ground_truth_others})
    return writer.dir


# ----------------------------------------------------------------------------------------------
# Load


@dataclass
class VTCDRun:
    """A finished ``vtcd`` run read back: ``concepts_doc`` (concepts.json), ``units`` (the concepts of each
    (layer, head), ``site`` the index of its layer in ``layers``), ``concepts``/``heads`` the CRIS records,
    ``occlusion_per_video``, and the optional documents. Media paths through :meth:`file`."""

    run: Run
    config: VTCDConfig
    concepts_doc: dict[str, Any]
    units: list[HeadConcepts]
    concepts: CRISResult
    heads: CRISResult | None
    occlusion_per_video: np.ndarray | None = None
    diagnostics: dict[str, Any] | None = None
    attribution: dict[str, Any] | None = None
    ground_truth: dict[str, Any] | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def concept_names(self) -> list[str]:
        return [c["id"] for c in self.concepts_doc["concepts"]]

    @property
    def layers(self) -> list[str]:
        return list(self.concepts_doc["layers"])

    def concept_map(self, unit: int) -> np.ndarray:
        """int16 ``(V, Ts, Hs, Ws)``: the concept of every voxel of unit ``unit`` (-1: none)."""
        return self.run.load_npz(SUPPORTS)[cmap_key(unit)]

    def supports(self, grid: Sequence[int]) -> np.ndarray:
        """Every concept's support on ``grid``: bool ``(n_concepts, V, prod(grid))`` in concepts.json's order."""
        from core.vtcd.rosetta import to_common_grid

        cm = self.run.load_npz(SUPPORTS)
        parts = []
        for u in self.concepts_doc["units"]:
            cmap = cm[cmap_key(u["index"])]
            parts.append(to_common_grid(cmap[None] == np.arange(u["n_concepts"]).reshape(-1, 1, 1, 1, 1), grid))
        return np.concatenate(parts) if parts else np.zeros((0, 0, int(np.prod(grid))), bool)

    def importances(self) -> np.ndarray:
        """``(n_concepts,)`` CRIS importance as recorded in concepts.json (NaN where undefined)."""
        return np.array([np.nan if c["importance"] is None else c["importance"]
                         for c in self.concepts_doc["concepts"]])

    def file(self, name: str) -> Path:
        """The path of run file ``name`` (checked to stay inside the run)."""
        return self.run.file(name)


def open_vtcd_run(run: str | Path | Run) -> Run:
    """The run at ``run``, checked to be a ``vtcd`` run."""
    from core.artifacts import Run, open_run
    from core.errors import RunError

    r = run if isinstance(run, Run) else open_run(run)
    if r.kind != KIND:
        raise RunError(f"run {r.path}: a {r.kind!r} run, not a vtcd run")
    return r


def saved_config(run: Run) -> VTCDConfig:
    """The :class:`VTCDConfig` the ``vtcd`` run ``run`` was made with (defaults for settings it predates)."""
    saved = (run.manifest.get("config") or {}).get("vtcd") or {}
    if not isinstance(saved, dict):
        from core.errors import RunError

        raise RunError(f"run {run.path}: the manifest's config.vtcd is not an object; remake the run")
    return VTCDConfig.from_dict({k: v for k, v in saved.items() if k in VTCDConfig.__dataclass_fields__})


def load(run_dir: str | Path | Run) -> VTCDRun:
    """Read the ``vtcd`` run ``run_dir`` back (:class:`VTCDRun`)."""
    run = open_vtcd_run(run_dir)
    doc = run.load_json(CONCEPTS)
    config = saved_config(run)
    arrays = run.load_npz(CRIS)
    layers = [u["layer"] for u in doc["units"]]
    site = [doc["layers"].index(name) if name in doc["layers"] else 0 for name in layers]
    units = unpack_units(run.load_npz(TUBELETS), layers, site) if run.has(TUBELETS) else []
    names = [c["id"] for c in doc["concepts"]]
    level = doc.get("ci_level")
    concepts = cris_from_arrays(arrays, "concept", names, doc["metric"], config.rho, level)
    if concepts is None:
        from core.errors import RunError

        raise RunError(f"run {run.path}: {CRIS} holds no concept record")
    heads = cris_from_arrays(arrays, "head", [u["name"] for u in doc["units"]], doc["metric"], config.rho, level)
    return VTCDRun(run=run, config=config, concepts_doc=doc, units=units, concepts=concepts, heads=heads,
                   occlusion_per_video=arrays.get("occlusion_per_video"),
                   diagnostics=run.load_json(DIAGNOSTICS) if run.has(DIAGNOSTICS) else None,
                   attribution=run.load_json(ATTRIBUTION) if run.has(ATTRIBUTION) else None,
                   ground_truth=run.load_json(GROUND_TRUTH) if run.has(GROUND_TRUTH) else None,
                   warnings=run.warnings)


# ----------------------------------------------------------------------------------------------
# Rosetta runs


def _member_view(inp: Any, concept: int, v: int, cache: dict[tuple[int, int], np.ndarray], j: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``v`` of input ``j`` (``(T, H, W, 3)``) and concept ``concept``'s support in it."""
    from core.data.videos import read_video

    src = inp.source
    if isinstance(src, VTCDRun):
        doc = src.concepts_doc
        rec = doc["concepts"][concept]
        if (j, v) not in cache:
            cache[(j, v)] = read_video(src.file(doc["videos"][v]["file"]))[0]
        return cache[(j, v)], src.concept_map(rec["unit"])[v] == rec["concept"]
    res = src.discovery
    unit, q = int(res.concept_unit[concept]), int(res.concept_local[concept])
    return src.clips[v], res.units[unit].concept_map()[v] == q


def _rosetta_runs_record(ra: Any) -> list[dict[str, Any]]:
    out = []
    for inp, lab, cand in zip(ra.inputs, ra.labels, ra.result.candidates, strict=True):
        src = inp.source
        run = src.run if isinstance(src, VTCDRun) else None
        model = src.concepts_doc["model"] if isinstance(src, VTCDRun) else src.model
        out.append({"label": lab, "run_id": run.run_id if run is not None else None,
                    "path": str(run.path) if run is not None else None, "model": model,
                    "n_concepts": len(inp.concepts), "candidates": [inp.concepts[int(i)]["id"] for i in cand]})
    return out


def save_rosetta(ra: Any, out: str | Path | RunWriter, *, run_id: str | None = None, overwrite: bool = False,
                 media_tuples: int = 24, media_videos: int = 2, progress: Any = None) -> Path:
    """Write a :class:`core.vtcd.rosetta.RosettaAnalysis` into the open run writer ``out`` (returns its folder),
    or as a new finished ``rosetta`` run under the artifact root ``out``: ``rosetta.json`` and clips of the
    ``media_tuples`` tuples of highest R in their best ``media_videos`` videos."""
    from core.artifacts import RunWriter

    if not isinstance(out, RunWriter):
        runs = _rosetta_runs_record(ra)
        config = {"runs": [{"run_id": r["run_id"]} for r in runs], **ra.config.to_dict(), "grid": ra.grid,
                  "media_tuples": media_tuples, "media_videos": media_videos}
        model = [{"spec": r["model"].get("spec"), "label": r["label"], "run": r["run_id"]} for r in runs]
        with RunWriter(out, ROSETTA_KIND, model=model, data={"clips": ra.inputs[0].video_ids}, config=config,
                       run_id=run_id, overwrite=overwrite) as writer:
            save_rosetta(ra, writer, media_tuples=media_tuples, media_videos=media_videos, progress=progress)
            writer.remove(PARTS)
            return writer.finish(rosetta_summary(ra))
    writer = out
    tuples = [{**t, "media": []} for t in ra.tuples]
    cache: dict[tuple[int, int], np.ndarray] = {}
    with_media = sorted(range(len(tuples)), key=lambda k: -tuples[k]["r"])[:media_tuples]
    for done, k in enumerate(with_media):
        t = tuples[k]
        for vrec in t["videos"][:media_videos]:
            v = vrec["video"]
            row = []
            for pos, (m, c) in enumerate(zip(t["runs"], t["concept_index"], strict=True)):
                frames, support = _member_view(ra.inputs[m], c, v, cache, m)
                factor = vm.display_factor(*frames.shape[1:3], MEDIA_SIDE)
                row.append(write_clip(writer, tuple_media_file(k, pos, v), vm.highlight(frames, support, factor)))
            t["media"].append(row)
        if progress is not None:
            progress("rosetta media", done + 1, len(with_media))
    first = ra.inputs[0].source
    videos = first.concepts_doc["videos"] if isinstance(first, VTCDRun) else \
        [{"index": v, "id": i} for v, i in enumerate(ra.inputs[0].video_ids)]
    res = ra.result
    cfg = ra.config
    writer.write_json(ROSETTA, {
        "runs": _rosetta_runs_record(ra), "videos": videos, "grid": ra.grid, "epsilon": cfg.epsilon,
        "delta": cfg.delta, "average": cfg.average, "mean_r": {str(k): num(v) for k, v in res.mean_r.items()},
        "survivors": {str(d): [[ra.inputs[j].concepts[int(i)]["id"] for i in s] for j, s in enumerate(surv)]
                      for d, surv in res.survivors.items()},
        "tuples": tuples})
    return writer.dir


def rosetta_summary(ra: Any) -> dict[str, Any]:
    """The manifest's ``summary`` of a rosetta run."""
    return {"models": ra.labels, "n_tuples": len(ra.tuples), "epsilon": ra.config.epsilon,
            "delta": ra.config.delta, "best_r": round(max((t["r"] for t in ra.tuples), default=0.0), 4)}
