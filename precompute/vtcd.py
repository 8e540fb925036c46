"""`precompute vtcd` and `precompute rosetta`: VTCD concepts of video transformers (dissertation chapter 4,
methods.md section 2) and the Rosetta concepts shared by several models.

``vtcd``: per video, layer and head, SLIC tubelets of the head's keys (or queries, values, block output);
per head, concepts by convex NMF (:func:`core.vtcd.discover`); CRIS importance of every concept of all
layers and heads at once and of every head, from batched randomly masked forward passes, keeping the
whole mask-by-metric record; attribution curves (most-to-least, least-to-most, random order and
single-concept occlusion) and head pruning; H.264 clips of each concept in its top videos; with
``--ground-truth`` on synthetic videos, the best concept's IoU with the target object against
random-crop tubelets clustered the same way.

Run layout (kind ``vtcd``)::

    concepts.json     {model, feature, layers, heads, target, metric, video_shape, seg_grid, fps,
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
    diagnostics.json  (transformers) {metric, rho, n_draws, n_videos, baseline, blocks: [{layer, attention_module,
                       entropy, entropy_heads, branch_delta, branch_abs, keys_zero_delta, keys_zero_abs,
                       keys_removed_delta, keys_removed_abs}]}: core.vtcd.diagnostics
    attribution.json  {metric, ranking_metric, fractions, baseline, n_random_orders,
                       positive, negative, random (the CRIS order over all concepts: the metric at each
                       fraction removed), occlusion: {positive, negative}, auc: {...},
                       scopes: [{scope, n_concepts, curves: {positive, negative, random, occlusion_positive,
                                 occlusion_negative}, auc, per_video}],
                       head_pruning: {metric, fractions, n_heads, order, pruned, most_first, random, auc,
                                      gflops, gflops_full} | null}
    cris.npz          concept_removed_bits (V, K, ceil(U/8)) uint8: np.packbits of the bool (V, K, U)
                      removal masks (unpack with np.unpackbits(a, axis=-1, count=U).astype(bool)),
                      concept_values (V, K), concept_baseline (V,), concept_targets (V,),
                      concept_importance_per_video (V, U), concept_importance (U,), concept_importance_released
                      (U,), concept_ci_low / concept_ci_high (U,) (with a bootstrap); head_* the same for
                      whole heads (when head masks were drawn); occlusion_per_video (V, U)
    supports.npz      cmap_<u>: int16 (V, Ts, Hs, Ws) the concept of every voxel of unit u's segmentation
                      grid (-1: none), u indexing concepts.json's units
    tubelets.npz      u<u>_labels (V, Ts, Hs, Ws) tubelet ids, u<u>_tubelet_video, u<u>_tubelet_id,
                      u<u>_assignment, u<u>_features, u<u>_G, u<u>_H, u<u>_centroids, u<u>_inertias
    ground_truth.json (--ground-truth) {object, n_videos, best, baseline, layers, concepts}
    ground_truth.npz  (--ground-truth) masks bool (V, T, H, W): the target object in each clip at the
                      model's input size (the players can outline it)
    videos/NNN.mp4    the analysed clips as the model sees them (its frame count and size)
    media/<concept>/NNN.mp4  the concept in video NNN, its support highlighted, the rest dimmed

``rosetta`` (kind ``rosetta``) reads several ``vtcd`` runs made on the same videos::

    rosetta.json      {runs: [{label, run_id, path, model, n_concepts, candidates}], grid, epsilon, delta, average,
                       mean_r, survivors, tuples: [{index, d, runs, models, concepts, layers, heads,
                       importances, r, videos: [{video, id, r}], media: [[file per run] per video]}]}
    media/tNNNN/<j>-vNNN.mp4  member j of tuple NNNN in a video

Every stage saves its work under ``parts/`` (discovery per layer, CRIS per video, attribution per
scope, media per file): a killed run resumes where it stopped.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from core.artifacts import Run, RunWriter, open_run, slug
from core.data.labels import label_index
from core.data.videos import fit_clip, read_video, write_video
from core.errors import DataError, LayerError, RunError, UserError
from core.models import ModelBundle
from core.vtcd import (
    AttributionCurves,
    CRISResult,
    HeadConcepts,
    UnitSet,
    VTCDConfig,
    VTCDResult,
    attribution_curves,
    discover,
    draw_masks,
    extract_features,
    feature_sites,
    masked_metrics,
    occlusion_importance,
    prepare_videos,
    rosetta,
    to_common_grid,
)
from core.vtcd import media as vm
from core.vtcd.diagnostics import attention_diagnostics
from core.vtcd.features import execution_order, take
from core.vtcd.importance import unmasked_metrics
from core.vtcd.masking import prefix_module, run_masks
from core.vtcd.pipeline import cluster_head, degenerate_warnings
from core.vtcd.tubelets import segmentation_grid, upsample_features
from precompute.common import load_model, progress, resolve_device, seed_everything
from precompute.predict import load_videos
from precompute.static_dynamic import model_label

KIND = "vtcd"
ROSETTA_KIND = "rosetta"
FEATURES = {"keys": "key", "queries": "query", "values": "value", "output": "block"}
MEDIA_FPS = 8.0
MEDIA_SIDE = 128
MEDIA_CRF = 23
TARGET_ID = 1  # instance id of the target object in the synthetic benchmark's masks

# CLI flag (argparse dest) -> VTCDConfig field; unset flags keep the config's defaults (methods.md).
KNOBS = {
    "segments": "n_segments",
    "compactness": "compactness",
    "upsample": "upsample",
    "spatial_scale": "spatial_scale",
    "min_tubelet": "min_tubelet_fraction",
    "max_concepts": "max_concepts",
    "elbow_threshold": "elbow_threshold",
    "elbow_rule": "elbow_rule",
    "kmeans_init": "kmeans_n_init",
    "cnmf_iters": "cnmf_max_iter",
    "cnmf_tol": "cnmf_tol",
    "assignment": "assignment",
    "bootstrap": "bootstrap",
    "ci_level": "ci_level",
    "diagnostics": "diagnostics",
    "diagnostic_draws": "diagnostic_draws",
    "masks": "n_masks",
    "head_masks": "head_masks",
    "rho": "rho",
    "token_coverage": "token_coverage",
    "metric": "metric",
    "batch_size": "batch_size",
    "attribution_steps": "attribution_steps",
    "attribution_metric": "attribution_metric",
    "random_orders": "n_random_orders",
}


# ----------------------------------------------------------------------------------------------
# Options


def build_config(args: Any) -> VTCDConfig:
    """The :class:`VTCDConfig` of the flags (unset ones keep methods.md's defaults)."""
    values: dict[str, Any] = {"feature": FEATURES[getattr(args, "features", None) or "keys"],
                              "seed": int(getattr(args, "seed", 0) or 0)}
    for flag, name in KNOBS.items():
        v = getattr(args, flag, None)
        if v is not None:
            values[name] = v
    try:
        cfg = VTCDConfig(**values)
    except ValueError as e:
        raise UserError(f"vtcd: {e}") from None
    if cfg.n_masks < 2:
        raise UserError("--masks must be at least 2 (importance compares masks that keep and remove a concept)")
    if cfg.head_masks is not None and cfg.head_masks < 0:
        raise UserError("--head-masks must be at least 0 (0: no head importance and no head pruning)")
    if cfg.attribution_steps < 2:
        raise UserError("--attribution-steps must be at least 2")
    return cfg


def parse_heads(values: Sequence[str] | None) -> list[int] | None:
    """``--heads 0 1`` or ``--heads 0,1``: head indices (None: all heads)."""
    if not values:
        return None
    out = []
    for item in values:
        for part in str(item).split(","):
            if not part:
                continue
            if not part.strip().isdigit():
                raise UserError(f"--heads {part!r}: give head indices (0, 1, ...)")
            out.append(int(part))
    return sorted(set(out))


def resolve_target_mode(args: Any, bundle: ModelBundle, labels: list[int | None]) -> dict[str, Any]:
    """How the metric's class is chosen: ``class`` (``--target-class``), ``label`` or ``prediction``."""
    names = bundle.class_names or []
    if getattr(args, "target_class", None) not in (None, ""):
        value = str(args.target_class)
        idx = label_index(value, names)
        n = len(names) if names else None
        if idx is None or (n is not None and not 0 <= idx < n):
            shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
            raise UserError(f"--target-class {value!r} is not a class of {bundle.spec}"
                            + (f" (its classes: {shown}; or an index below {n})" if names else ""))
        return {"mode": "class", "class": idx, "class_name": bundle.class_name(idx)}
    mode = getattr(args, "target", None) or "auto"
    labelled = all(lab is not None for lab in labels)
    if mode == "label" and not labelled:
        raise DataError(f"--target label: {sum(lab is None for lab in labels)} of {len(labels)} clips have no "
                        f"label among the classes of {bundle.spec}; use --target prediction (label-free) or "
                        "--target-class")
    if mode == "auto":
        mode = "label" if labelled else "prediction"
        if not labelled and any(lab is not None for lab in labels):
            warnings.warn("some clips have no label among the model's classes: the metric is taken on each "
                          "clip's unmasked prediction (label-free)", stacklevel=2)
    return {"mode": mode}


def target_classes(target: dict[str, Any], labels: list[int | None], predictions: np.ndarray) -> np.ndarray:
    if target["mode"] == "class":
        return np.full(len(predictions), int(target["class"]), dtype=np.int64)
    if target["mode"] == "label":
        return np.asarray(labels, dtype=np.int64)
    return np.asarray(predictions, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Discovery (per layer, resumable)


def pack_units(units: Sequence[HeadConcepts], offset: int = 0) -> dict[str, np.ndarray]:
    """The arrays of ``units`` under keys ``u<offset + j>_*`` (npz-ready, no pickles)."""
    out: dict[str, np.ndarray] = {}
    for j, u in enumerate(units):
        p = f"u{offset + j}_"
        out.update({p + "labels": u.labels, p + "tubelet_video": u.tubelet_video, p + "tubelet_id": u.tubelet_id,
                    p + "features": u.tubelet_features, p + "assignment": u.assignment, p + "G": u.G, p + "H": u.H,
                    p + "centroids": u.centroids, p + "inertias": np.asarray(u.inertias, dtype=np.float64),
                    p + "scalars": np.array([u.head, u.q_elbow, u.silhouette, u.cnmf_error], dtype=np.float64)})
    return out


def unpack_units(arrays: dict[str, np.ndarray], layer: str, site: int) -> list[HeadConcepts]:
    units = []
    j = 0
    while f"u{j}_labels" in arrays:
        a = {k[len(f"u{j}_"):]: v for k, v in arrays.items() if k.startswith(f"u{j}_")}
        head, q, sil, err = a["scalars"].tolist()
        units.append(HeadConcepts(layer=layer, head=int(head), site=site, labels=a["labels"],
                                  tubelet_video=a["tubelet_video"], tubelet_id=a["tubelet_id"],
                                  tubelet_features=a["features"], assignment=a["assignment"], G=a["G"], H=a["H"],
                                  centroids=a["centroids"], q_elbow=int(q), inertias=a["inertias"].tolist(),
                                  silhouette=float(sil), cnmf_error=float(err)))
        j += 1
    return units


def discover_layers(writer: RunWriter, bundle: ModelBundle, x: Any, layers: list[str], heads: list[int] | None,
                    cfg: VTCDConfig) -> VTCDResult:
    """:func:`core.vtcd.discover` one layer at a time (``parts/discover-NN.npz``), merged into one result."""
    parts = []
    for i, layer in enumerate(progress(layers, "concepts (layers)", len(layers))):
        name = f"parts/discover-{i:02d}.npz"
        if not writer.has(name):
            res = discover(bundle, x, [layer], heads, cfg)
            writer.write_npz(name, logits=res.logits, **pack_units(res.units))
        parts.append(writer.load_npz(name))
    sites = feature_sites(bundle, layers, cfg.feature, cfg.channel_blocks)
    units = [u for i, (layer, p) in enumerate(zip(layers, parts, strict=True)) for u in unpack_units(p, layer, i)]
    prep = bundle.preprocessing
    video_shape = (int(prep.frames or 1), int(prep.size[0]), int(prep.size[1]))
    seg_grid = segmentation_grid(video_shape, sites[0].grid, cfg.upsample, cfg.upsample_frames, cfg.spatial_scale)
    return VTCDResult(spec=bundle.spec, config=cfg, sites=sites, video_shape=video_shape, seg_grid=seg_grid,
                      units=units, logits=parts[0]["logits"], targets=None,
                      layer_order=execution_order(bundle, x, layers))


def diagnostics_resumable(writer: RunWriter, bundle: ModelBundle, x: Any, result: VTCDResult, targets: np.ndarray,
                          cfg: VTCDConfig) -> dict[str, Any] | None:
    """Attention diagnostics per block (``parts/diagnostics.json``) of a transformer's analysed layers;
    None for a model without token layers (a CNN)."""
    name = "parts/diagnostics.json"
    if writer.has(name):
        return writer.read_json(name)["diagnostics"]
    layers = list(dict.fromkeys(s.layer for s in result.sites))
    body = None
    try:
        keys = feature_sites(bundle, layers, "key")
    except LayerError:
        keys = []
    if keys and all(s.layout == "tokens" and s.kind == "key" for s in keys):
        try:
            queries = feature_sites(bundle, layers, "query")
        except LayerError:
            queries = None
        with tqdm(total=len(keys), desc="attention diagnostics (blocks)", file=sys.stderr, leave=False) as bar:
            diag = attention_diagnostics(bundle, x, keys, queries, targets, cfg.rho, cfg.diagnostic_draws,
                                         cfg.seed, cfg.feature_batch_size, lambda done, total: bar.update(1))
        body = diag.to_dict()
    writer.write_json(name, {"diagnostics": body})
    return body


# ----------------------------------------------------------------------------------------------
# CRIS (per video, resumable)


def cris_resumable(writer: RunWriter, tag: str, bundle: ModelBundle, x: Any, units: UnitSet, targets: np.ndarray,
                   n_masks: int, cfg: VTCDConfig, expand_at: str | None, salt: int) -> CRISResult:
    """:func:`core.vtcd.cris_units` with each video's masked metrics saved as ``parts/<tag>/video-NNNN.npz``
    (same masks: ``default_rng([seed, salt, v])``)."""
    n_videos = len(targets)
    baseline, _ = unmasked_metrics(bundle, x, targets, cfg.metric)
    removed = np.zeros((n_videos, n_masks, units.n_units), dtype=bool)
    values = np.zeros((n_videos, n_masks))
    state = f"parts/{tag}/expand.json"
    if writer.has(state):
        expand_at = writer.read_json(state)["expand_at"]
    for v in progress(range(n_videos), f"CRIS {tag} ({n_masks} masks x {units.n_units} units)", n_videos):
        removed[v] = draw_masks(n_masks, units.n_units, cfg.rho, np.random.default_rng([cfg.seed, salt, v]))
        name = f"parts/{tag}/video-{v:04d}.npz"
        if not writer.has(name):
            xv, tv = take(x, v), int(targets[v])
            if not writer.has(state):  # the first video settles whether the prefix can be shared
                vals, expand_at = run_masks(bundle, xv, units, v, removed[v], tv, cfg.metric, cfg.batch_size,
                                            expand_at)
                writer.write_json(state, {"expand_at": expand_at})
            else:
                vals = masked_metrics(bundle, xv, units, v, removed[v], tv, cfg.metric, cfg.batch_size, expand_at)
            writer.write_npz(name, values=vals)
        values[v] = writer.load_npz(name)["values"]
    return CRISResult.from_record(units.names, cfg.metric, cfg.rho, targets, baseline, removed, values, expand_at,
                                  cfg.bootstrap, cfg.ci_level, cfg.seed + salt)


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


def interval_records(res: CRISResult | None) -> list[list[float | None]] | None:
    """``[low, high]`` per unit (null where undefined), or None without a bootstrap."""
    if res is None or res.ci_low is None or res.ci_high is None:
        return None
    return [[_num(lo), _num(hi)] for lo, hi in zip(res.ci_low, res.ci_high, strict=True)]


def rank_agreement(res: CRISResult) -> float | None:
    """Spearman correlation of our importance with the released code's estimator over the units."""
    from scipy.stats import spearmanr

    if res.released is None:
        return None
    ok = np.isfinite(res.importance) & np.isfinite(res.released)
    if ok.sum() < 3:
        return None
    return _num(spearmanr(res.importance[ok], res.released[ok]).statistic)


def ranks(importance: np.ndarray) -> np.ndarray:
    """1 = most important (NaN last)."""
    key = np.where(np.isnan(importance), np.inf, -np.asarray(importance, dtype=np.float64))
    out = np.empty(len(key), dtype=int)
    out[np.argsort(key, kind="stable")] = np.arange(1, len(key) + 1)
    return out


def _num(v: Any) -> float | None:
    v = float(v)
    return None if not math.isfinite(v) else v


# ----------------------------------------------------------------------------------------------
# Attribution and head pruning


def curves_record(c: AttributionCurves) -> dict[str, Any]:
    return {"fractions": c.fractions.tolist(), "metric": c.metric, "units": c.units.tolist(),
            "curves": {k: v.tolist() for k, v in c.curves.items()},
            "per_video": {k: v.tolist() for k, v in c.per_video.items()}, "auc": dict(c.auc)}


def _renamed(rec: dict[str, Any]) -> dict[str, Any]:
    """``cris/positive`` -> ``positive``, ``occlusion/negative`` -> ``occlusion_negative``."""
    def name(k: str) -> str:
        return k.removeprefix("cris/").replace("/", "_")

    return {"curves": {name(k): v for k, v in rec["curves"].items()},
            "auc": {name(k): v for k, v in rec["auc"].items()},
            "per_video": {name(k): v for k, v in rec["per_video"].items()}}


def attribution_resumable(writer: RunWriter, bundle: ModelBundle, x: Any, result: VTCDResult, units: UnitSet,
                          importance: CRISResult, targets: np.ndarray, cfg: VTCDConfig
                          ) -> tuple[dict[str, Any], np.ndarray]:
    """Attribution curves over all concepts and per layer (``parts/attribution-NN.json``); returns the
    ``attribution.json`` body (without head pruning) and the occlusion importance per video."""
    expand = importance.expand_at if cfg.share_prefix else None
    occ_name = "parts/occlusion.npz"
    if not writer.has(occ_name):
        per_video, _ = occlusion_importance(bundle, x, units, targets, cfg.metric, cfg.batch_size, expand)
        writer.write_npz(occ_name, per_video=per_video)
    occ_per_video = writer.load_npz(occ_name)["per_video"]
    occ = occ_per_video.mean(0) if len(occ_per_video) else np.zeros(units.n_units)
    orders = {"cris": importance.importance, "occlusion": occ}
    scopes: list[tuple[str, np.ndarray | None]] = [("all", None)]
    layers = list(dict.fromkeys(s.layer for s in result.sites))
    if len(layers) > 1:
        scopes += [(layer, result.concepts_of_layer(layer)) for layer in layers
                   if len(result.concepts_of_layer(layer))]
    records = []
    for i, (scope, members) in enumerate(progress(scopes, "attribution curves", len(scopes))):
        name = f"parts/attribution-{i:02d}.json"
        if not writer.has(name):
            c = attribution_curves(bundle, x, units, orders, targets, cfg.attribution_metric, cfg.attribution_steps,
                                   cfg.n_random_orders, members, cfg.seed, cfg.batch_size, expand)
            writer.write_json(name, curves_record(c))
        rec = writer.read_json(name)
        fractions = rec["fractions"]
        records.append({"scope": scope, "n_concepts": len(rec["units"]), **_renamed(rec)})
    base, _ = unmasked_metrics(bundle, x, targets, cfg.attribution_metric)
    top = records[0]
    body = {"metric": cfg.attribution_metric, "ranking_metric": cfg.metric, "fractions": fractions,
            "baseline": float(np.mean(base)),
            "n_random_orders": cfg.n_random_orders, "n_videos": len(targets),
            "positive": top["curves"].get("positive"), "negative": top["curves"].get("negative"),
            "random": top["curves"].get("random"),
            "occlusion": {"positive": top["curves"].get("occlusion_positive"),
                          "negative": top["curves"].get("occlusion_negative")},
            "auc": top["auc"], "scopes": records}
    return body, occ_per_video


def head_flops(bundle: ModelBundle, result: VTCDResult) -> tuple[float | None, dict[int, float]]:
    """GFLOPs of one forward pass (batch 1, ``torch.utils.flop_counter``) and the GFLOPs of each analysed unit's
    share of its attention block (q, k, v and output projections and the two attention matmuls, / heads);
    ``(None, {})`` when the model has no attention blocks to read."""
    from torch.utils.flop_counter import FlopCounterMode

    model = bundle.model
    modules = dict(model.named_modules())
    root = type(model).__name__
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            counter = FlopCounterMode(model, display=False)
            with counter:
                bundle(bundle.dummy_input(1))
    except Exception:
        return None, {}
    counts = counter.get_flop_counts()
    total = float(counter.get_total_flops())
    shares: dict[int, float] = {}
    extra = 0.0
    seen: set[str] = set()
    for i, u in enumerate(result.units):
        site = result.sites[u.site]
        if site.layout != "tokens":
            continue
        attn = site.module.rpartition(".")[0] if site.kind != "block" else next(
            (f"{site.layer}.{a}" for a in ("attn", "attention", "self_attn") if f"{site.layer}.{a}" in modules), "")
        ops = counts.get(f"{root}.{attn}") if attn else None
        if not ops:
            continue
        flops = float(sum(ops.values()))
        if not any("bmm" in str(op) or "scaled_dot_product" in str(op) for op in ops):
            n, d = site.n_tokens, site.channels  # attention matmuls the counter did not see (fused kernels)
            flops += 4.0 * n * n * d
            if attn not in seen:
                extra += 4.0 * n * n * d
        seen.add(attn)
        shares[i] = flops / site.heads / 1e9
    return (total + extra) / 1e9, shares


def head_pruning_record(writer: RunWriter, bundle: ModelBundle, x: Any, result: VTCDResult, heads: CRISResult,
                        targets: np.ndarray, cfg: VTCDConfig, flops: tuple[float | None, dict[int, float]],
                        target_mode: str) -> dict[str, Any]:
    """Accuracy (top-1 on the targets) as heads are zeroed least important first, most important first and in
    random orders; GFLOPs of the model with the pruned heads removed."""
    name = "parts/head-pruning.json"
    units = result.head_units()
    if not writer.has(name):
        expand = heads.expand_at if cfg.share_prefix else None
        c = attribution_curves(bundle, x, units, {"cris": heads.importance}, targets, "correct",
                               cfg.attribution_steps, cfg.n_random_orders, None, cfg.seed, cfg.batch_size, expand)
        writer.write_json(name, curves_record(c))
    raw = writer.read_json(name)
    rec, fractions = _renamed(raw), raw["fractions"]
    order = [int(i) for i in np.argsort(np.where(np.isnan(heads.importance), np.inf, heads.importance),
                                        kind="stable")]  # least important first: the pruning order
    total, shares = flops
    gflops = None
    if total is not None and shares:
        gflops = [total - sum(shares.get(i, 0.0) for i in order[:round(f * len(order))]) for f in fractions]
    metric = {"prediction": "agreement with the unmasked prediction",
              "class": "share of clips predicted as the target class"}.get(target_mode, "top-1 accuracy")
    return {"metric": metric, "fractions": fractions, "n_heads": len(order),
            "order": [units.names[i] for i in order], "pruned": rec["curves"].get("negative"),
            "most_first": rec["curves"].get("positive"), "random": rec["curves"].get("random"),
            "auc": {"pruned": rec["auc"].get("negative"), "most_first": rec["auc"].get("positive"),
                    "random": rec["auc"].get("random")},
            "gflops": gflops, "gflops_full": total,
            "gflops_note": "zeroing a head's keys in the curves; GFLOPs as if the pruned heads were removed "
                           "(their share of q, k, v, output projection and attention matmuls)"}


# ----------------------------------------------------------------------------------------------
# Media


def top_videos(unit: HeadConcepts, cmap: np.ndarray, q: int) -> list[dict[str, Any]]:
    """The videos a concept appears in, most representative first: the weight of its tubelets in the
    concept's convex-NMF centroid (``G``), and the fraction of the volume it covers."""
    members = unit.members(q)
    weight = np.bincount(unit.tubelet_video[members], weights=unit.G[members, q], minlength=cmap.shape[0])
    coverage = (cmap == q).reshape(cmap.shape[0], -1).mean(1)
    order = np.lexsort((-coverage, -weight))
    return [{"video": int(v), "weight": float(weight[v]), "coverage": float(coverage[v])}
            for v in order if coverage[v] > 0]


def write_clip(writer: RunWriter, name: str, frames: np.ndarray, crf: int = MEDIA_CRF) -> str:
    if not writer.has(name):
        with writer.writing(name) as tmp:  # a full disk or a kill leaves no half-written clip
            write_video(tmp, np.ascontiguousarray(frames), fps=MEDIA_FPS, crf=crf)
    return name


def concept_media(writer: RunWriter, clips: list[np.ndarray], unit: HeadConcepts, cmap: np.ndarray, q: int,
                  name: str, videos: list[dict[str, Any]], n: int) -> list[str]:
    """H.264 clips of concept ``q`` in its first ``n`` ``videos`` (support highlighted, the rest dimmed)."""
    factor = vm.display_factor(*clips[0].shape[1:3], MEDIA_SIDE)
    files = []
    for rec in videos[:n]:
        v = rec["video"]
        file = write_clip(writer, f"media/{slug(name.replace('/', '-'), 80)}/{v:03d}.mp4",
                          vm.highlight(clips[v], cmap[v] == q, factor))
        rec["file"] = file
        files.append(file)
    return files


# ----------------------------------------------------------------------------------------------
# Ground truth (synthetic videos)


def synthetic_masks(source: str, bundle: ModelBundle, n: int) -> np.ndarray:
    """Target-object masks ``(V, T, H, W)`` bool of the clips of ``synthetic:<task>[:<n>]``, as
    :func:`precompute.predict.load_videos` renders them."""
    from core.data import synthetic

    task = source.split(":")[1]
    prep = bundle.preprocessing
    data = synthetic.make_split(synthetic.SyntheticConfig(task=task, frames=prep.frames, size=prep.size[0]), n,
                                "test")
    return data["masks"] == TARGET_ID


def _iou_per_video(support: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``support`` and ``target`` bool ``(V, ...)`` -> IoU per video ``(V,)`` (0 where both are empty)."""
    s, t = support.reshape(len(support), -1), target.reshape(len(target), -1)
    inter, union = (s & t).sum(1), (s | t).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def random_crop_concepts(features: torch.Tensor, unit: HeadConcepts, grid: Sequence[int], cfg: VTCDConfig,
                         rng: np.random.Generator, device: Any) -> np.ndarray:
    """The baseline: per video as many random space-time crops as the unit has SLIC tubelets there (each
    about a tubelet's volume), each crop's mean feature, clustered as VTCD clusters tubelets (elbow, convex
    NMF). Returns bool ``(Q, V, *grid)`` concept supports (the union of each concept's crops)."""
    n_videos = unit.labels.shape[0]
    boxes, feats, video = [], [], []
    dims = np.asarray(grid)
    for v in range(n_videos):
        up = upsample_features(features[v].float(), grid).numpy()
        n = max(1, int(unit.labels[v].max()) + 1)
        side = (1.0 / n) ** (1.0 / 3.0)
        for _ in range(n):
            size = np.clip(np.round(dims * side * np.exp(rng.uniform(-0.4, 0.4, 3))), 1, dims).astype(int)
            start = np.array([rng.integers(0, d - s + 1) for d, s in zip(dims, size, strict=True)])
            sl = tuple(slice(int(a), int(a + s)) for a, s in zip(start, size, strict=True))
            boxes.append(sl)
            feats.append(up[sl].reshape(-1, up.shape[-1]).mean(0))
            video.append(v)
    _, _, res, _ = cluster_head(np.asarray(feats, dtype=np.float64), cfg, device)
    q = int(res.assignment.max()) + 1
    out = np.zeros((q, n_videos, *grid), dtype=bool)
    for sl, v, a in zip(boxes, video, res.assignment, strict=True):
        out[(int(a), v, *sl)] = True
    return out


def ground_truth(writer: RunWriter, bundle: ModelBundle, x: Any, result: VTCDResult, cmaps: list[np.ndarray],
                 masks: np.ndarray, names: list[str], importance: np.ndarray, cfg: VTCDConfig) -> dict[str, Any]:
    """Best concept IoU with the target object's masks, per layer and overall, against random-crop tubelets."""
    name = "parts/ground-truth.json"
    if writer.has(name):
        return writer.read_json(name)
    per_concept, baseline_units = [], []
    feats, _ = extract_features(bundle, x, result.sites, cfg.feature_batch_size)
    k = 0
    for i, u in enumerate(progress(result.units, "ground truth", len(result.units))):
        grid = u.labels.shape[1:]
        target = np.stack([vm.resize_nearest(m, grid) for m in masks])
        for q in range(u.n_concepts):
            iou = _iou_per_video(cmaps[i] == q, target)
            present = (cmaps[i] == q).reshape(len(iou), -1).any(1)
            per_concept.append({"id": names[k], "layer": u.layer, "head": u.head, "iou": float(iou.mean()),
                                "iou_present": float(iou[present].mean()) if present.any() else 0.0,
                                "n_videos_present": int(present.sum()), "importance": _num(importance[k])})
            k += 1
        rng = np.random.default_rng([cfg.seed, 11, i])
        crops = random_crop_concepts(feats[u.site][:, u.head], u, grid, cfg, rng, bundle.device)
        ious = [float(_iou_per_video(c, target).mean()) for c in crops]
        baseline_units.append({"unit": f"{u.layer}/h{u.head}", "layer": u.layer, "head": u.head,
                               "best_iou": max(ious), "n_concepts": len(ious)})
    best = max(per_concept, key=lambda c: c["iou"])
    best_base = max(baseline_units, key=lambda c: c["best_iou"])
    layers = []
    for layer in dict.fromkeys(u.layer for u in result.units):
        mine = [c for c in per_concept if c["layer"] == layer]
        top = max(mine, key=lambda c: c["iou"])
        layers.append({"layer": layer, "best_concept": top["id"], "iou": top["iou"],
                       "baseline_iou": max(b["best_iou"] for b in baseline_units if b["layer"] == layer)})
    out = {"object": "the target object (instance id 1 of the synthetic masks), on each concept's segmentation grid",
           "iou": "per video |support & object| / |support | object|, averaged over all videos",
           "n_videos": len(masks), "best": best,
           "baseline": {"method": "random space-time crops (as many as the SLIC tubelets, about their volume), "
                                  "same features, elbow and convex NMF", "best_iou": best_base["best_iou"],
                        "best_unit": best_base["unit"], "units": baseline_units},
           "layers": layers, "concepts": per_concept}
    writer.write_json(name, out)
    return out


# ----------------------------------------------------------------------------------------------
# The vtcd job


def _model_record(bundle: ModelBundle, label: str) -> dict[str, Any]:
    info = bundle.extra or {}
    return {"label": label, "spec": bundle.spec, "description": bundle.description,
            "architecture": info.get("architecture"), "task": info.get("task"),
            "val_accuracy": (info.get("metrics") or {}).get("val_accuracy"),
            "classes": list(bundle.class_names or [])}


def run(args: Any) -> Path:
    seed_everything(int(getattr(args, "seed", 0) or 0))
    device = resolve_device(getattr(args, "device", "auto") or "auto")
    cfg = build_config(args)
    bundle, layers = load_model(args.model, device, args.layers)
    if bundle.preprocessing.input == "image":
        raise DataError(f"{bundle.spec} is an image model{bundle.input_hint()}; VTCD needs a video model "
                        "(a video transformer)")
    heads = parse_heads(getattr(args, "heads", None))
    sites = feature_sites(bundle, layers, cfg.feature, cfg.channel_blocks)
    if heads is not None:
        for s in sites:
            bad = [h for h in heads if h >= s.heads]
            if bad:
                raise UserError(f"--heads {bad[0]}: {s.layer} has {s.heads} heads (0..{s.heads - 1})")
    source = getattr(args, "videos", None) or "demo"
    gt = bool(getattr(args, "ground_truth", False))
    if gt and not source.startswith("synthetic:"):
        raise UserError("--ground-truth needs synthetic videos (--videos synthetic:<task>[:<n>]): only they have "
                        "object masks")
    items, data_spec = load_videos(source, bundle, getattr(args, "clips_per_video", None))
    if len(items) < 2:
        raise DataError(f"--videos {source}: VTCD needs at least 2 clips, got {len(items)}")
    labels = [label_index(it.label, bundle.class_names) for it in items]
    target = resolve_target_mode(args, bundle, labels)
    media_videos = int(getattr(args, "media_videos", 3) if getattr(args, "media_videos", None) is not None else 3)
    media_concepts = int(getattr(args, "media_concepts", 0) or 0)
    attribution_on = getattr(args, "attribution", True) is not False
    config = {"vtcd": cfg.to_dict(), "layers": layers, "heads": heads, "target": target,
              "media_videos": media_videos, "media_concepts": media_concepts, "ground_truth": gt,
              "attribution": attribution_on, "clips_per_video": getattr(args, "clips_per_video", None)}
    label = model_label(bundle, set())
    clips = [fit_clip(it.image, bundle.preprocessing) for it in items]
    with RunWriter(args.out, KIND, model=bundle.describe(), data=data_spec, config=config,
                   run_id=getattr(args, "run_id", None), overwrite=bool(getattr(args, "overwrite", False))) as writer:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        x = prepare_videos(bundle, clips)
        result = discover_layers(writer, bundle, x, layers, heads, cfg)
        timings["discover"] = time.perf_counter() - t0
        if not result.units:
            raise DataError(f"no concept in any layer: every tubelet is under --min-tubelet "
                            f"{cfg.min_tubelet_fraction:g} of the volume; lower it or use fewer --segments")
        predictions = result.predictions
        targets = target_classes(target, labels, predictions)
        result.targets = targets
        names = result.concept_names
        units = result.concept_units()
        expand = prefix_module(result.sites, result.layer_order) if cfg.share_prefix else None

        diagnostics = None
        if cfg.diagnostics:
            t0 = time.perf_counter()
            diagnostics = diagnostics_resumable(writer, bundle, x, result, targets, cfg)
            timings["diagnostics"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        concept_cris = cris_resumable(writer, "cris-concepts", bundle, x, units, targets, cfg.n_masks, cfg, expand, 0)
        head_cris = None
        if cfg.n_head_masks > 0:
            head_cris = cris_resumable(writer, "cris-heads", bundle, x, result.head_units(), targets, cfg.n_head_masks,
                                       cfg, concept_cris.expand_at if cfg.share_prefix else None, 1)
        timings["cris"] = time.perf_counter() - t0
        for w in degenerate_warnings(result, concept_cris, head_cris):
            writer.warn(w["code"], w["message"], setting=w["setting"], layer=w["layer"], figure=w["figure"])

        t0 = time.perf_counter()
        attribution, occ_per_video = None, None
        flops = head_flops(bundle, result)
        if attribution_on:
            attribution, occ_per_video = attribution_resumable(writer, bundle, x, result, units, concept_cris,
                                                               targets, cfg)
            attribution["head_pruning"] = None if head_cris is None else head_pruning_record(
                writer, bundle, x, result, head_cris, targets, cfg, flops, target["mode"])
        timings["attribution"] = time.perf_counter() - t0

        # concept maps, records and media
        t0 = time.perf_counter()
        cmaps = [u.concept_map() for u in result.units]
        imp = concept_cris.importance
        imp_std = np.nanstd(concept_cris.importance_per_video, axis=0) if len(targets) > 1 else np.zeros(len(imp))
        concept_ci, head_ci = interval_records(concept_cris), interval_records(head_cris)
        rank = ranks(imp)
        occ = occ_per_video.mean(0) if occ_per_video is not None else None
        shares = flops[1]
        unit_records = []
        head_rank = ranks(head_cris.importance) if head_cris is not None else None
        for i, u in enumerate(result.units):
            unit_records.append({
                "index": i, "name": f"{u.layer}/h{u.head}", "layer": u.layer, "head": u.head,
                "n_concepts": u.n_concepts, "n_tubelets": len(u.assignment), "q_elbow": u.q_elbow,
                "silhouette": _num(u.silhouette), "cnmf_error": _num(u.cnmf_error),
                "importance": _num(head_cris.importance[i]) if head_cris is not None else None,
                "importance_ci": head_ci[i] if head_ci else None,
                "importance_released": _num(head_cris.released[i]) if head_cris is not None else None,
                "rank": int(head_rank[i]) if head_rank is not None else None,
                "gflops_share": shares.get(i)})
        concept_records = []
        unit_of = result.concept_unit
        local = result.concept_local
        chosen = set(range(len(names)))
        if media_concepts:
            chosen = {int(k) for k in np.argsort(rank)[:media_concepts]}
        pending = []
        for k, name in enumerate(names):
            i, q = int(unit_of[k]), int(local[k])
            u = result.units[i]
            vids = top_videos(u, cmaps[i], q)
            for rec in vids:
                rec["id"] = items[rec["video"]].id
                rec["file"] = None
            concept_records.append({
                "index": k, "id": name, "layer": u.layer, "head": u.head, "unit": i, "concept": q,
                "importance": _num(imp[k]), "importance_std": _num(imp_std[k]),
                "importance_ci": concept_ci[k] if concept_ci else None,
                "importance_released": _num(concept_cris.released[k]), "rank": int(rank[k]),
                "occlusion": _num(occ[k]) if occ is not None else None,
                "n_tubelets": len(u.members(q)), "n_videos": len(vids),
                "coverage": float((cmaps[i] == q).mean()), "media": [], "videos": vids})
            if k in chosen:
                pending.append(k)
        for k in progress(pending, "media", len(pending)):
            c = concept_records[k]
            c["media"] = concept_media(writer, clips, result.units[c["unit"]], cmaps[c["unit"]], c["concept"],
                                       c["id"], c["videos"], media_videos)
        video_records = []
        for v, it in enumerate(items):
            file = write_clip(writer, f"videos/{v:03d}.mp4", clips[v], crf=18)
            video_records.append({
                "index": v, "id": it.id, "source": it.source, "label": labels[v], "label_name": it.label,
                "target": int(targets[v]), "target_name": bundle.class_name(int(targets[v])),
                "predicted": int(predictions[v]), "predicted_name": bundle.class_name(int(predictions[v])),
                "file": file})
        timings["media"] = time.perf_counter() - t0

        gt_record = None
        if gt:
            t0 = time.perf_counter()
            masks = synthetic_masks(source, bundle, len(items))
            gt_record = ground_truth(writer, bundle, x, result, cmaps, masks, names, imp, cfg)
            timings["ground_truth"] = time.perf_counter() - t0

        writer.write_json("concepts.json", {
            "model": _model_record(bundle, label), "feature": cfg.feature, "layers": layers,
            "heads": {s.layer: heads if heads is not None else list(range(s.heads)) for s in result.sites},
            "n_heads": {s.layer: s.heads for s in result.sites}, "target": target, "metric": cfg.metric,
            "video_shape": list(result.video_shape), "seg_grid": list(result.seg_grid), "fps": MEDIA_FPS,
            "ci_level": cfg.ci_level if cfg.bootstrap > 0 else None, "bootstrap": cfg.bootstrap,
            "rank_agreement": rank_agreement(concept_cris),
            "videos": video_records, "units": unit_records, "concepts": concept_records,
            "timings": {k: round(v, 2) for k, v in timings.items()}})
        if attribution is not None:
            writer.write_json("attribution.json", attribution)
        if diagnostics is not None:
            writer.write_json("diagnostics.json", diagnostics)
        arrays = cris_arrays("concept", concept_cris)
        if head_cris is not None:
            arrays.update(cris_arrays("head", head_cris))
        if occ_per_video is not None:
            arrays["occlusion_per_video"] = occ_per_video
        writer.write_npz("cris.npz", **arrays)
        writer.write_npz("supports.npz", **{f"cmap_{i}": c for i, c in enumerate(cmaps)})
        writer.write_npz("tubelets.npz", **pack_units(result.units))
        if gt_record is not None:
            writer.write_json("ground_truth.json", gt_record)
            writer.write_npz("ground_truth.npz", masks=masks)
        writer.remove("parts")
        summary: dict[str, Any] = {"model": label, "n_videos": len(items), "layers": len(layers),
                                   "heads": len(result.units), "n_concepts": len(names), "masks": cfg.n_masks,
                                   "target": target["mode"]}
        if attribution is not None:
            summary.update(auc_positive=round(attribution["auc"]["positive"], 4),
                           auc_negative=round(attribution["auc"]["negative"], 4),
                           auc_random=round(attribution["auc"]["random"], 4))
        if gt_record is not None:
            summary.update(gt_best_iou=round(gt_record["best"]["iou"], 4),
                           gt_baseline_iou=round(gt_record["baseline"]["best_iou"], 4))
        return writer.finish(summary)


# ----------------------------------------------------------------------------------------------
# Rosetta concepts across runs


def find_run(ref: str, root: str) -> Run:
    """A ``vtcd`` run by folder or by run id under ``<root>/vtcd/``."""
    p = Path(ref)
    if not p.is_dir():
        p = Path(root) / KIND / ref
    if not p.is_dir():
        raise RunError(f"--runs {ref}: no such run folder (nor a run id under {Path(root) / KIND})")
    run = open_run(p)
    if run.kind != KIND:
        raise RunError(f"--runs {ref}: a {run.kind!r} run, not a vtcd run")
    return run


def load_supports(run: Run, concepts: dict[str, Any], grid: Sequence[int]) -> np.ndarray:
    """Every concept's support on ``grid``: bool ``(Q, V, prod(grid))`` in concepts.json's order."""
    cm = run.load_npz("supports.npz")
    parts = []
    for u in concepts["units"]:
        cmap = cm[f"cmap_{u['index']}"]
        s = cmap[None] == np.arange(u["n_concepts"]).reshape(-1, 1, 1, 1, 1)
        parts.append(to_common_grid(s, grid))
    return np.concatenate(parts) if parts else np.zeros((0, 0, int(np.prod(grid))), bool)


def run_rosetta(args: Any) -> Path:
    refs = list(args.runs or [])
    if len(refs) < 2:
        raise UserError("--runs: Rosetta concepts need at least two vtcd runs made on the same videos")
    runs = [find_run(r, args.out) for r in refs]
    folders = [r.path.resolve() for r in runs]
    if len(set(folders)) < len(folders):
        raise UserError("--runs lists the same run twice; give runs of different models (or seeds) on the same "
                        "videos")
    docs = [r.load_json("concepts.json") for r in runs]
    ids = [[v["id"] for v in d["videos"]] for d in docs]
    for r, vid in zip(runs[1:], ids[1:], strict=True):
        if vid != ids[0]:
            raise DataError(f"run {r.path} was not made on the same videos as {runs[0].path} "
                            f"({len(vid)} vs {len(ids[0])} clips, or other clip ids); Rosetta concepts compare "
                            "supports video by video")
    frames = [int(d["video_shape"][0]) for d in docs]
    if len(set(frames)) > 1:
        raise DataError(f"--runs: the models take clips of {' and '.join(map(str, sorted(set(frames))))} frames, so "
                        "the same clip ids hold other footage; Rosetta concepts need models with one frame count")
    epsilon = 0.15 if args.epsilon is None else float(args.epsilon)
    delta = 0.15 if args.delta is None else float(args.delta)
    if not 0.0 < epsilon <= 1.0:
        raise UserError(f"--epsilon must be in (0, 1], got {epsilon}")
    if not 0.0 <= delta < 1.0:
        raise UserError(f"--delta must be in [0, 1), got {delta}")
    average = getattr(args, "average", None) or "all"
    if average not in ("all", "present"):
        raise UserError(f"--average must be 'all' or 'present', not {average!r}")
    grid = [int(g) for g in args.grid] if getattr(args, "grid", None) else \
        [max(int(d["seg_grid"][a]) for d in docs) for a in range(3)]
    media_tuples = int(getattr(args, "media_tuples", 24) if getattr(args, "media_tuples", None) is not None else 24)
    media_videos = int(getattr(args, "media_videos", 2) if getattr(args, "media_videos", None) is not None else 2)
    taken: set[str] = set()
    labels = []
    for r, d in zip(runs, docs, strict=True):
        base = d["model"]["label"]
        lab = base if base not in taken else f"{base} ({r.run_id})"
        taken.add(lab)
        labels.append(lab)
    config = {"runs": [{"run_id": r.run_id, "config_hash": r.manifest.get("config_hash")} for r in runs],
              "epsilon": epsilon, "delta": delta, "average": average, "grid": grid,
              "max_d": getattr(args, "max_d", None),
              "media_tuples": media_tuples, "media_videos": media_videos}
    model = [{"spec": d["model"]["spec"], "label": lab, "run": r.run_id} for r, d, lab in zip(runs, docs, labels,
                                                                                                strict=True)]
    with RunWriter(args.out, ROSETTA_KIND, model=model, data=runs[0].manifest["data"], config=config,
                   run_id=getattr(args, "run_id", None), overwrite=bool(getattr(args, "overwrite", False))) as writer:
        supports = [load_supports(r, d, grid) for r, d in zip(runs, docs, strict=True)]
        importances = [np.array([np.nan if c["importance"] is None else c["importance"] for c in d["concepts"]])
                       for d in docs]
        res = rosetta(supports, importances, epsilon, delta, getattr(args, "max_d", None), average)
        clips: dict[tuple[int, int], np.ndarray] = {}

        def clip(j: int, v: int) -> np.ndarray:
            if (j, v) not in clips:
                clips[(j, v)] = read_video(runs[j].file(docs[j]["videos"][v]["file"]))[0]
            return clips[(j, v)]

        cmaps = [r.load_npz("supports.npz") for r in runs]

        def support(j: int, c: int, v: int) -> np.ndarray:
            rec = docs[j]["concepts"][c]
            return cmaps[j][f"cmap_{rec['unit']}"][v] == rec["concept"]

        tuples = []
        for n, t in enumerate(res.tuples):
            members = [supports[m][c] for m, c in zip(t.models, t.concepts, strict=True)]  # each (V, P)
            inter = np.logical_and.reduce(members).sum(-1)
            union = np.logical_or.reduce(members).sum(-1)
            per_video = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
            best = [int(v) for v in np.argsort(-per_video, kind="stable") if union[v] > 0][:max(media_videos, 1)]
            recs = [docs[m]["concepts"][c] for m, c in zip(t.models, t.concepts, strict=True)]
            tuples.append({"index": n, "d": t.d, "runs": list(t.models), "models": [labels[m] for m in t.models],
                           "concepts": [r["id"] for r in recs], "concept_index": list(t.concepts),
                           "layers": [r["layer"] for r in recs], "heads": [r["head"] for r in recs],
                           "importances": [r["importance"] for r in recs], "r": t.r,
                           "videos": [{"video": v, "id": ids[0][v], "r": float(per_video[v])} for v in best],
                           "media": []})
        with_media = sorted(range(len(tuples)), key=lambda k: -tuples[k]["r"])[:media_tuples]
        for k in progress(with_media, "rosetta media", len(with_media)):
            t = tuples[k]
            for vrec in t["videos"][:media_videos]:
                v = vrec["video"]
                row = []
                for pos, (m, c) in enumerate(zip(t["runs"], t["concept_index"], strict=True)):
                    frames = clip(m, v)
                    factor = vm.display_factor(*frames.shape[1:3], MEDIA_SIDE)
                    row.append(write_clip(writer, f"media/t{k:04d}/{pos}-v{v:03d}.mp4",
                                          vm.highlight(frames, support(m, c, v), factor)))
                t["media"].append(row)
        writer.write_json("rosetta.json", {
            "runs": [{"label": lab, "run_id": r.run_id, "path": str(r.path), "model": d["model"],
                      "n_concepts": len(d["concepts"]), "candidates": [d["concepts"][int(i)]["id"] for i in cand]}
                     for r, d, lab, cand in zip(runs, docs, labels, res.candidates, strict=True)],
            "videos": docs[0]["videos"], "grid": grid, "epsilon": epsilon, "delta": delta, "average": average,
            "mean_r": {str(k): _num(v) for k, v in res.mean_r.items()},
            "survivors": {str(d): [[docs[j]["concepts"][int(i)]["id"] for i in s] for j, s in enumerate(surv)]
                          for d, surv in res.survivors.items()},
            "tuples": tuples})
        writer.remove("parts")
        return writer.finish({"models": labels, "n_tuples": len(tuples), "epsilon": epsilon, "delta": delta,
                              "best_r": round(max((t["r"] for t in tuples), default=0.0), 4)})

