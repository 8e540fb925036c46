"""One call for a whole VTCD analysis (methods.md section 2): :func:`analyse` runs discovery, attention
diagnostics, CRIS importance of concepts and heads, attribution curves and head pruning, and (on synthetic
videos) the ground-truth check, and returns a :class:`VTCDAnalysis` that saves itself as a run.

Every stage skips the parts an optional checkpoint ``store`` (:mod:`core.checkpoint`) already holds and
saves each part it finishes: discovery per layer, CRIS per video, attribution per scope, occlusion, head
pruning, diagnostics and ground truth. The ``vtcd`` job passes its run writer, so a killed job resumes;
a notebook can pass a :class:`core.checkpoint.MemoryStore` or nothing.

Example (a notebook cell)::

    from core.vtcd import VTCDConfig, analyse
    res = analyse("vit-appearance", "synthetic:appearance:4",
                  VTCDConfig(n_masks=32, max_concepts=4, bootstrap=0), layers=["blocks.0"])
    res.top_concepts(5)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.checkpoint import CheckpointStore, NullStore, _plain
from core.data.labels import label_index
from core.data.videos import fit_clip
from core.errors import DataError, LayerError, UserError
from core.models import ModelBundle
from core.models.loading import load_model
from core.vtcd.attribution import AttributionCurves, attribution_curves, occlusion_importance
from core.vtcd.config import VTCDConfig
from core.vtcd.diagnostics import attention_diagnostics
from core.vtcd.features import feature_sites, prepare_videos
from core.vtcd.ground_truth import check_object_names, ground_truth, synthetic_masks
from core.vtcd.importance import CRISResult, unmasked_metrics
from core.vtcd.masking import UnitSet
from core.vtcd.pipeline import Progress, VTCDResult, cris, degenerate_warnings, discover

if TYPE_CHECKING:
    from core.artifacts import RunWriter

Target = str | int | None


@dataclass
class VTCDAnalysis:
    """Everything one VTCD analysis found for ``V`` clips.

    ``discovery``: tubelets and concepts per (layer, head) (:class:`VTCDResult`, its ``targets`` set);
    ``concepts`` / ``heads``: CRIS over every concept (``discovery.concept_names`` order) and every head
    (None with ``head_masks=0``); ``target``: how the metric's class was chosen (``{"mode": "label" |
    "prediction" | "class", ...}``); ``diagnostics``: attention diagnostics per block (None: off, or a CNN);
    ``attribution``: the attribution curves over all concepts and per layer, with ``head_pruning`` (None:
    off); ``occlusion_per_video`` ``(V, n_concepts)`` single-concept occlusion; ``gflops``: one forward
    pass (None: not counted) and ``gflops_shares`` per unit index; ``ground_truth``: the synthetic-video
    check (None: not run), ``ground_truth_masks`` ``(V, T, H, W)`` and ``ground_truth_others`` (name -> masks,
    e.g. the occluder); ``warnings``: degenerate results
    ``{code, message, setting, layer, figure}`` naming config fields. ``clips`` ``(T, H, W, 3)`` uint8 as
    the model sees them, with ``video_ids``, ``video_sources``, ``labels`` (class index or None) and
    ``label_names``; ``model`` the model's record (label, spec, description, classes); ``data`` the data
    spec; ``describe`` the model's manifest entry; ``layers``/``head_choice`` as asked.
    """

    config: VTCDConfig
    discovery: VTCDResult
    concepts: CRISResult
    heads: CRISResult | None
    target: dict[str, Any]
    model: dict[str, Any]
    layers: list[str]
    head_choice: list[int] | None
    clips: list[np.ndarray]
    video_ids: list[str]
    video_sources: list[str]
    labels: list[int | None]
    label_names: list[str | None]
    class_names: list[str]
    data: dict[str, Any] = field(default_factory=dict)
    describe: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] | None = None
    attribution: dict[str, Any] | None = None
    occlusion_per_video: np.ndarray | None = None
    gflops: float | None = None
    gflops_shares: dict[int, float] = field(default_factory=dict)
    ground_truth: dict[str, Any] | None = None
    ground_truth_masks: np.ndarray | None = None
    ground_truth_others: dict[str, np.ndarray] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def concept_names(self) -> list[str]:
        return self.discovery.concept_names

    @property
    def targets(self) -> np.ndarray:
        """``(V,)`` the class each clip's metric is taken on."""
        return self.concepts.targets

    def class_name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else f"class {index}"

    def top_concepts(self, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` most important concepts as ``(name, CRIS importance)``."""
        return [(self.concept_names[int(i)], float(self.concepts.importance[i]))
                for i in self.concepts.ranking()[:n]]

    def save(self, out: str | Path | RunWriter, *, run_id: str | None = None, overwrite: bool = False,
             media_videos: int = 3, media_concepts: int = 0) -> Path:
        """Write the run (kind ``vtcd``, layout of :mod:`core.vtcd.store`): into an open
        :class:`core.artifacts.RunWriter` (returns its folder, unfinished), or as a new finished run under
        the artifact root ``out`` (returns the run folder). ``media_videos`` clips per concept, for the
        ``media_concepts`` most important concepts (0: all)."""
        from core.vtcd import store

        return store.save(self, out, run_id=run_id, overwrite=overwrite, media_videos=media_videos,
                          media_concepts=media_concepts)

    @staticmethod
    def load(run_dir: str | Path) -> Any:
        """The saved run ``run_dir`` read back typed (:class:`core.vtcd.store.VTCDRun`: the documents, the
        concepts per unit and the CRIS records; a run holds no model, so no feature sites)."""
        from core.vtcd import store

        return store.load(run_dir)


# ----------------------------------------------------------------------------------------------
# Targets


def resolve_target(target: Target, labels: Sequence[int | None], bundle: ModelBundle) -> dict[str, Any]:
    """How the metric's class is chosen: ``target`` a class (index or name) for every clip, ``"label"``,
    ``"prediction"``, or ``None``/``"auto"`` (labels when every clip has one, else predictions)."""
    names = bundle.class_names or []
    if target not in (None, "", "auto", "label", "prediction"):
        value = str(target)
        idx = label_index(value, names)
        n = len(names) if names else None
        if idx is None or (n is not None and not 0 <= idx < n):
            shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
            raise UserError(f"target class {value!r} is not a class of {bundle.spec}"
                            + (f" (its classes: {shown}; or an index below {n})" if names else ""))
        return {"mode": "class", "class": idx, "class_name": bundle.class_name(idx)}
    mode = target or "auto"
    labelled = all(lab is not None for lab in labels)
    if mode == "label" and not labelled:
        raise DataError(f"target 'label': {sum(lab is None for lab in labels)} of {len(labels)} clips have no "
                        f"label among the classes of {bundle.spec}; use target 'prediction' (label-free) or "
                        "a class")
    if mode == "auto":
        mode = "label" if labelled else "prediction"
        if not labelled and any(lab is not None for lab in labels):
            warnings.warn("some clips have no label among the model's classes: the metric is taken on each "
                          "clip's unmasked prediction (label-free)", stacklevel=2)
    return {"mode": mode}


def target_classes(target: dict[str, Any], labels: Sequence[int | None], predictions: np.ndarray) -> np.ndarray:
    """``(V,)`` the class of each clip's metric under ``target`` (:func:`resolve_target`)."""
    if target["mode"] == "class":
        return np.full(len(predictions), int(target["class"]), dtype=np.int64)
    if target["mode"] == "label":
        return np.asarray(labels, dtype=np.int64)
    return np.asarray(predictions, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Stages with parts


def diagnostics_part(bundle: ModelBundle, x: Any, result: VTCDResult, targets: np.ndarray, cfg: VTCDConfig,
                     store: CheckpointStore, progress: Progress | None = None) -> dict[str, Any] | None:
    """Attention diagnostics per block (``parts/diagnostics.json``) of a transformer's analysed layers; None
    for a model without token layers (a CNN)."""
    name = "parts/diagnostics.json"
    if store.has(name):
        return store.load_json(name)["diagnostics"]
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
        tick = None if progress is None else (lambda done, total: progress("attention diagnostics (blocks)",
                                                                           done, total))
        diag = attention_diagnostics(bundle, x, keys, queries, targets, cfg.rho, cfg.diagnostic_draws, cfg.seed,
                                     cfg.feature_batch_size, tick)
        body = diag.to_dict()
    store.save_json(name, {"diagnostics": body})
    return body


def curves_record(c: AttributionCurves) -> dict[str, Any]:
    """The curves as plain JSON values (as a stored part reads back)."""
    return _plain({"fractions": c.fractions.tolist(), "metric": c.metric, "units": c.units.tolist(),
            "curves": {k: v.tolist() for k, v in c.curves.items()},
            "per_video": {k: v.tolist() for k, v in c.per_video.items()}, "auc": dict(c.auc)})


def _renamed(rec: dict[str, Any]) -> dict[str, Any]:
    """``cris/positive`` -> ``positive``, ``occlusion/negative`` -> ``occlusion_negative``."""
    def name(k: str) -> str:
        return k.removeprefix("cris/").replace("/", "_")

    return {"curves": {name(k): v for k, v in rec["curves"].items()},
            "auc": {name(k): v for k, v in rec["auc"].items()},
            "per_video": {name(k): v for k, v in rec["per_video"].items()}}


def attribution_part(bundle: ModelBundle, x: Any, result: VTCDResult, units: UnitSet, importance: CRISResult,
                     targets: np.ndarray, cfg: VTCDConfig, store: CheckpointStore,
                     progress: Progress | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Attribution curves over all concepts and per layer (``parts/attribution-NN.json``, occlusion in
    ``parts/occlusion.npz``); returns the ``attribution.json`` body (without head pruning) and the occlusion
    importance per video ``(V, n_concepts)``."""
    expand = importance.expand_at if cfg.share_prefix else None
    occ_name = "parts/occlusion.npz"
    if store.has(occ_name):
        occ_per_video = store.load_arrays(occ_name)["per_video"]
    else:
        occ_per_video, _ = occlusion_importance(bundle, x, units, targets, cfg.metric, cfg.batch_size, expand)
        store.save_arrays(occ_name, per_video=occ_per_video)
    occ = occ_per_video.mean(0) if len(occ_per_video) else np.zeros(units.n_units)
    orders = {"cris": importance.importance, "occlusion": occ}
    scopes: list[tuple[str, np.ndarray | None]] = [("all", None)]
    layers = list(dict.fromkeys(s.layer for s in result.sites))
    if len(layers) > 1:
        scopes += [(layer, result.concepts_of_layer(layer)) for layer in layers
                   if len(result.concepts_of_layer(layer))]
    records = []
    fractions: list[float] = []
    for i, (scope, members) in enumerate(scopes):
        name = f"parts/attribution-{i:02d}.json"
        if store.has(name):
            rec = store.load_json(name)
        else:
            c = attribution_curves(bundle, x, units, orders, targets, cfg.attribution_metric, cfg.attribution_steps,
                                   cfg.n_random_orders, members, cfg.seed, cfg.batch_size, expand)
            rec = curves_record(c)
            store.save_json(name, rec)
        fractions = rec["fractions"]
        records.append({"scope": scope, "n_concepts": len(rec["units"]), **_renamed(rec)})
        if progress is not None:
            progress("attribution curves", i + 1, len(scopes))
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


FLOP_COUNT_ERRORS = (RuntimeError, NotImplementedError, TypeError, ValueError)


def head_flops(bundle: ModelBundle, result: VTCDResult) -> tuple[float | None, dict[int, float], str | None]:
    """GFLOPs of one forward pass (batch 1, ``torch.utils.flop_counter``), the GFLOPs of each analysed unit's
    share of its attention block (q, k, v and output projections and the two attention matmuls, / heads),
    and why nothing was counted (None when it was). ``(None, {}, reason)`` when the counter fails on this
    model (an operator it cannot trace)."""
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
    except FLOP_COUNT_ERRORS as e:
        return None, {}, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
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
    return (total + extra) / 1e9, shares, None


def head_pruning_part(bundle: ModelBundle, x: Any, result: VTCDResult, heads: CRISResult, targets: np.ndarray,
                      cfg: VTCDConfig, gflops: float | None, shares: dict[int, float], target_mode: str,
                      store: CheckpointStore) -> dict[str, Any]:
    """Accuracy (top-1 on the targets) as heads are zeroed least important first, most important first and in
    random orders (``parts/head-pruning.json``); GFLOPs of the model with the pruned heads removed."""
    name = "parts/head-pruning.json"
    units = result.head_units()
    if store.has(name):
        raw = store.load_json(name)
    else:
        expand = heads.expand_at if cfg.share_prefix else None
        c = attribution_curves(bundle, x, units, {"cris": heads.importance}, targets, "correct",
                               cfg.attribution_steps, cfg.n_random_orders, None, cfg.seed, cfg.batch_size, expand)
        raw = curves_record(c)
        store.save_json(name, raw)
    rec, fractions = _renamed(raw), raw["fractions"]
    order = [int(i) for i in np.argsort(np.where(np.isnan(heads.importance), np.inf, heads.importance),
                                        kind="stable")]  # least important first: the pruning order
    pruned_gflops = None
    if gflops is not None and shares:
        pruned_gflops = [gflops - sum(shares.get(i, 0.0) for i in order[:round(f * len(order))]) for f in fractions]
    metric = {"prediction": "agreement with the unmasked prediction",
              "class": "share of clips predicted as the target class"}.get(target_mode, "top-1 accuracy")
    return {"metric": metric, "fractions": fractions, "n_heads": len(order),
            "order": [units.names[i] for i in order], "pruned": rec["curves"].get("negative"),
            "most_first": rec["curves"].get("positive"), "random": rec["curves"].get("random"),
            "auc": {"pruned": rec["auc"].get("negative"), "most_first": rec["auc"].get("positive"),
                    "random": rec["auc"].get("random")},
            "gflops": pruned_gflops, "gflops_full": gflops,
            "gflops_note": "zeroing a head's keys in the curves; GFLOPs as if the pruned heads were removed "
                           "(their share of q, k, v, output projection and attention matmuls)"}


# ----------------------------------------------------------------------------------------------
# The entry point


def model_label(bundle: ModelBundle) -> str:
    """A short label: the zoo name, a checkpoint folder's name, or the spec."""
    spec = bundle.spec.split("#")[0]
    label = Path(spec.split(":", 1)[1]).name if spec.startswith(("ckpt:", "torchscript:", "hf:")) else spec
    return label or spec


def model_record(bundle: ModelBundle, label: str | None = None) -> dict[str, Any]:
    info = bundle.extra or {}
    return {"label": label or model_label(bundle), "spec": bundle.spec, "description": bundle.description,
            "architecture": info.get("architecture"), "task": info.get("task"),
            "val_accuracy": (info.get("metrics") or {}).get("val_accuracy"),
            "classes": list(bundle.class_names or [])}


def _clips(videos: str | Sequence[Any], bundle: ModelBundle, clips_per_video: int | None,
           labels: Sequence[int | str | None] | None) -> tuple[list[np.ndarray], list[str], list[str],
                                                               list[str | None], dict[str, Any]]:
    """Clips fitted to the model, their ids, sources, label names and the data spec."""
    if isinstance(videos, str):
        from core.data.sources import load_videos

        items, spec = load_videos(videos, bundle, clips_per_video)
        return ([fit_clip(it.image, bundle.preprocessing) for it in items], [it.id for it in items],
                [it.source for it in items], [it.label for it in items], spec)
    if len(videos) and hasattr(videos[0], "image"):  # items of core.data.sources.load_videos
        items = list(videos)
        return ([fit_clip(it.image, bundle.preprocessing) for it in items], [it.id for it in items],
                [it.source for it in items], [it.label for it in items],
                {"source": "items", "n_clips": len(items)})
    clips = [np.asarray(c) for c in videos]
    if any(c.ndim != 4 or c.shape[-1] != 3 for c in clips):
        raise DataError("videos: give clips as (T, H, W, 3) uint8 arrays, or a source spec ('demo', a folder, "
                        "synthetic:<task>[:<n>])")
    names = [None if lab is None else str(lab) for lab in (labels or [None] * len(clips))]
    if len(names) != len(clips):
        raise DataError(f"labels: {len(names)} labels for {len(clips)} clips")
    return ([fit_clip(c, bundle.preprocessing) for c in clips], [f"clip-{j:03d}" for j in range(len(clips))],
            ["in memory"] * len(clips), names, {"source": "in memory", "n_clips": len(clips)})


def _parse_heads(heads: Sequence[int] | None, sites: Sequence[Any]) -> list[int] | None:
    if heads is None:
        return None
    out = sorted({int(h) for h in heads})
    for s in sites:
        bad = [h for h in out if not 0 <= h < s.heads]
        if bad:
            raise UserError(f"heads {bad[0]}: {s.layer} has {s.heads} heads (0..{s.heads - 1})")
    return out


def analyse(model: str | ModelBundle, videos: str | Sequence[Any], config: VTCDConfig | None = None,
            store: CheckpointStore | None = None, progress: Progress | None = None, *,
            layers: Sequence[str] | None = None, heads: Sequence[int] | None = None, target: Target = None,
            labels: Sequence[int | str | None] | None = None, attribution: bool = True,
            ground_truth_masks: bool | np.ndarray | Mapping[str, np.ndarray] = False,
            clips_per_video: int | None = None, device: str | torch.device = "auto") -> VTCDAnalysis:
    """A whole VTCD analysis of ``model`` (a spec or a loaded :class:`ModelBundle`) on ``videos`` (a source
    spec: ``demo``, a folder or file, ``synthetic:<task>[:<n>]``; or ``(T, H, W, 3)`` uint8 clips with
    optional ``labels``, class names or indices; or the items :func:`core.data.sources.load_videos` gives).

    ``layers`` (default: the model's stages), ``heads`` (default: all) of every layer; ``target``: the class
    the metric is taken on (see :func:`resolve_target`); ``attribution``: attribution curves and head
    pruning; ``ground_truth_masks``: the target object's masks ``(V, T, H, W)`` at the model's input size,
    or ``{"target": ..., <other object>: ...}`` (each scored, e.g. the occluder), or True on ``synthetic:``
    videos to render them (the occluder too, in the occlusion task). ``store`` skips and saves parts (see the module);
    ``progress(stage, done, total)`` is called as parts finish. Seeds come from ``config.seed`` only: the
    same call gives the same numbers.
    """
    cfg = config or VTCDConfig()
    store = store if store is not None else NullStore()
    bundle, layer_names = load_model(model, device, layers)
    if bundle.preprocessing.input == "image":
        raise DataError(f"{bundle.spec} is an image model{bundle.input_hint()}; VTCD needs a video model "
                        "(a video transformer)")
    head_choice = _parse_heads(heads, feature_sites(bundle, layer_names, cfg.feature, cfg.channel_blocks))
    masks, others = None, {}
    if ground_truth_masks is True:
        if not (isinstance(videos, str) and videos.startswith("synthetic:")):
            raise UserError("ground truth needs synthetic videos (synthetic:<task>[:<n>]): only they have object "
                            "masks")
    elif isinstance(ground_truth_masks, Mapping):
        objects = {str(k): np.asarray(v, dtype=bool) for k, v in ground_truth_masks.items()}
        if "target" not in objects:
            raise UserError(f"ground truth masks name {sorted(objects)}: a 'target' is needed")
        masks, others = objects.pop("target"), objects
        check_object_names(others)  # before the work, not after it
    elif ground_truth_masks is not False:
        masks = np.asarray(ground_truth_masks, dtype=bool)
    clips, ids, sources, label_names, data = _clips(videos, bundle, clips_per_video, labels)
    if len(clips) < 2:
        raise DataError(f"videos: VTCD needs at least 2 clips, got {len(clips)}")
    if ground_truth_masks is True:
        others = synthetic_masks(str(videos).split(":")[1], bundle, len(clips))
        masks = others.pop("target")
    for name, m in {"target": masks, **others}.items():
        if m is not None and m.shape[0] != len(clips):
            raise DataError(f"ground truth: {m.shape[0]} {name} masks for {len(clips)} clips")
    label_ids = [label_index(lab, bundle.class_names) for lab in label_names]
    target_mode = resolve_target(target, label_ids, bundle)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    x = prepare_videos(bundle, clips)
    result = discover(bundle, x, layer_names, head_choice, cfg, progress=progress, store=store)
    timings["discover"] = time.perf_counter() - t0
    if not result.units:
        raise DataError(f"no concept in any layer: every tubelet is under min_tubelet_fraction "
                        f"{cfg.min_tubelet_fraction:g} of the volume; lower it or use fewer n_segments")
    targets = target_classes(target_mode, label_ids, result.predictions)
    result.targets = targets

    diagnostics = None
    if cfg.diagnostics:
        t0 = time.perf_counter()
        diagnostics = diagnostics_part(bundle, x, result, targets, cfg, store, progress)
        timings["diagnostics"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    imp = cris(bundle, x, result, targets, cfg, store=store, progress=progress)
    timings["cris"] = time.perf_counter() - t0
    found = degenerate_warnings(result, imp.concepts, imp.heads)

    gflops, shares, why = head_flops(bundle, result)
    if why is not None:
        found.append({"code": "vtcd.flops_uncounted", "message": f"GFLOPs of {bundle.spec} could not be counted "
                      f"({why}); head pruning shows no GFLOPs", "setting": None, "layer": None, "figure": "heads"})
    attr, occ_per_video = None, None
    if attribution:
        t0 = time.perf_counter()
        attr, occ_per_video = attribution_part(bundle, x, result, result.concept_units(), imp.concepts, targets,
                                               cfg, store, progress)
        attr["head_pruning"] = None if imp.heads is None else head_pruning_part(
            bundle, x, result, imp.heads, targets, cfg, gflops, shares, target_mode["mode"], store)
        timings["attribution"] = time.perf_counter() - t0

    gt = None
    if masks is not None:
        t0 = time.perf_counter()
        gt = ground_truth(bundle, x, result, masks, imp.concepts.importance, cfg, store, progress, others=others)
        timings["ground_truth"] = time.perf_counter() - t0

    return VTCDAnalysis(
        config=cfg, discovery=result, concepts=imp.concepts, heads=imp.heads, target=target_mode,
        model=model_record(bundle), layers=layer_names, head_choice=head_choice, clips=clips, video_ids=ids,
        video_sources=sources, labels=label_ids, label_names=label_names, class_names=list(bundle.class_names or []),
        data=data, describe=bundle.describe(), diagnostics=diagnostics, attribution=attr,
        occlusion_per_video=occ_per_video, gflops=gflops,
        gflops_shares=shares, ground_truth=gt, ground_truth_masks=masks,
        ground_truth_others=others, warnings=found, timings=timings)


def warn_all(analysis: VTCDAnalysis, sink: Callable[..., Any]) -> None:
    """Pass each degenerate-result warning to ``sink(code, message, setting=..., layer=..., figure=...)``
    (:meth:`core.artifacts.RunWriter.warn`)."""
    for w in analysis.warnings:
        sink(w["code"], w["message"], setting=w["setting"], layer=w["layer"], figure=w["figure"])
