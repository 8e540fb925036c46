"""Ground truth on synthetic videos: the best concept's IoU with the target object (and with any other object
the clips hold, such as the occlusion task's occluder: TCOW's evaluation), against a baseline of random
space-time crops clustered as VTCD clusters tubelets (methods.md section 2)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from core.errors import UserError
from core.jsonsafe import num
from core.models import ModelBundle
from core.vtcd import media as vm
from core.vtcd.config import VTCDConfig
from core.vtcd.features import Inputs, extract_features
from core.vtcd.pipeline import HeadConcepts, VTCDResult, cluster_head
from core.vtcd.store import GROUND_TRUTH_KEY
from core.vtcd.tubelets import upsample_features

TARGET_ID = 1  # instance id of the target object in the synthetic benchmark's masks
PART = "parts/ground-truth.json"


def synthetic_masks(task: str, bundle: ModelBundle, n: int) -> dict[str, np.ndarray]:
    """Object masks ``(V, T, H, W)`` bool of the first ``n`` test clips of the synthetic ``task`` at the
    model's input size (the clips a ``synthetic:<task>:<n>`` source gives): ``"target"``, and ``"occluder"``
    in a task with the occluder strip (the occlusion task). Visible pixels only, as TCOW's masks."""
    from core.data import synthetic

    prep = bundle.preprocessing
    config = synthetic.SyntheticConfig(task=task, frames=prep.frames, size=prep.size[0])
    data = synthetic.make_split(config, n, "test")
    out = {"target": data["masks"] == TARGET_ID}
    if config.has_occluder:
        out["occluder"] = data["masks"] == config.n_objects  # the strip has the last instance id
    return out


def check_object_names(names: Any) -> None:
    """UserError for a name of another object that would overwrite a field of the target's (``iou_<name>`` in
    ``ground_truth.json``, its masks' array in ``ground_truth.npz``)."""
    for name in names:
        if name in ("target", "present", GROUND_TRUTH_KEY) or not name:
            raise UserError(f"ground truth: an object cannot be named {name!r} (its IoU would overwrite a field)")


def iou_per_video(support: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``support`` and ``target`` bool ``(V, ...)`` -> IoU per video ``(V,)`` (0 where both are empty)."""
    s, t = support.reshape(len(support), -1), target.reshape(len(target), -1)
    inter, union = (s & t).sum(1), (s | t).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def random_crop_concepts(features: torch.Tensor, unit: HeadConcepts, grid: Sequence[int], cfg: VTCDConfig,
                         rng: np.random.Generator, device: Any) -> np.ndarray:
    """The baseline: per video as many random space-time crops as the unit has SLIC tubelets there (each
    about a tubelet's volume), each crop's mean feature, clustered as VTCD clusters tubelets (elbow, convex
    NMF). ``features`` ``(V, d, *token grid)``. Returns bool ``(Q, V, *grid)`` concept supports."""
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


def _best_by(per_concept: list[dict[str, Any]], baseline_units: list[dict[str, Any]], field: str,
             base_field: str) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(best concept, best baseline unit, per-layer rows) by the concept IoU ``field`` and the baseline's
    ``base_field``."""
    best = max(per_concept, key=lambda c: c[field])
    best_base = max(baseline_units, key=lambda c: c[base_field])
    layers = []
    for layer in dict.fromkeys(c["layer"] for c in per_concept):
        top = max((c for c in per_concept if c["layer"] == layer), key=lambda c: c[field])
        layers.append({"layer": layer, "best_concept": top["id"], "iou": top[field],
                       "baseline_iou": max(b[base_field] for b in baseline_units if b["layer"] == layer)})
    return best, best_base, layers


def ground_truth(bundle: ModelBundle, x: Inputs, result: VTCDResult, masks: np.ndarray, importance: np.ndarray,
                 config: VTCDConfig | None = None, store: Any = None,
                 progress: Callable[[str, int, int], None] | None = None,
                 others: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Best concept IoU with the target object's ``masks`` ``(V, T, H, W)``, per layer and overall, against
    random-crop tubelets (the ``ground_truth.json`` body). ``importance`` ``(n_concepts,)`` is recorded per
    concept. ``others``: more objects' masks by name (e.g. ``{"occluder": (V, T, H, W)}``), each scored the
    same way against the same random crops (``iou_<name>`` per concept, ``others.<name>`` for the best).
    With a ``store`` the body is saved as one part and not recomputed."""
    cfg = config or result.config
    if store is not None and store.has(PART):
        return store.load_json(PART)
    others = dict(others or {})
    check_object_names(others)
    names = result.concept_names
    per_concept, baseline_units = [], []
    feats, _ = extract_features(bundle, x, result.sites, cfg.feature_batch_size)
    k = 0
    for i, u in enumerate(result.units):
        grid = u.labels.shape[1:]
        cmap = u.concept_map()
        objects = {name: np.stack([vm.resize_nearest(m, grid) for m in obj])
                   for name, obj in {"target": masks, **others}.items()}
        target = objects["target"]
        for q in range(u.n_concepts):
            support = cmap == q
            iou = iou_per_video(support, target)
            present = support.reshape(len(iou), -1).any(1)
            row = {"id": names[k], "layer": u.layer, "head": u.head, "iou": float(iou.mean()),
                   "iou_present": float(iou[present].mean()) if present.any() else 0.0,
                   "n_videos_present": int(present.sum()), "importance": num(importance[k])}
            for name in others:
                row[f"iou_{name}"] = float(iou_per_video(support, objects[name]).mean())
            per_concept.append(row)
            k += 1
        rng = np.random.default_rng([cfg.seed, 11, i])
        crops = random_crop_concepts(feats[u.site][:, u.head], u, grid, cfg, rng, bundle.device)
        ious = [float(iou_per_video(c, target).mean()) for c in crops]
        unit = {"unit": f"{u.layer}/h{u.head}", "layer": u.layer, "head": u.head, "best_iou": max(ious),
                "n_concepts": len(ious)}
        for name in others:
            unit[f"best_iou_{name}"] = max(float(iou_per_video(c, objects[name]).mean()) for c in crops)
        baseline_units.append(unit)
        if progress is not None:
            progress("ground truth", i + 1, len(result.units))
    best, best_base, layers = _best_by(per_concept, baseline_units, "iou", "best_iou")
    baseline_method = ("random space-time crops (as many as the SLIC tubelets, about their volume), same features, "
                       "elbow and convex NMF")
    out = {"object": "the target object (instance id 1 of the synthetic masks), on each concept's segmentation grid",
           "iou": "per video |support & object| / |support | object|, averaged over all videos",
           "n_videos": len(masks), "best": best,
           "baseline": {"method": baseline_method, "best_iou": best_base["best_iou"], "best_unit": best_base["unit"],
                        "units": baseline_units},
           "layers": layers, "concepts": per_concept}
    if others:
        out["others"] = {}
        for name in others:
            o_best, o_base, o_layers = _best_by(per_concept, baseline_units, f"iou_{name}", f"best_iou_{name}")
            out["others"][name] = {"best": {"id": o_best["id"], "layer": o_best["layer"], "head": o_best["head"],
                                            "iou": o_best[f"iou_{name}"], "importance": o_best["importance"]},
                                   "baseline": {"best_iou": o_base[f"best_iou_{name}"], "best_unit": o_base["unit"]},
                                   "layers": o_layers}
    if store is not None:
        store.save_json(PART, out)
    return out
