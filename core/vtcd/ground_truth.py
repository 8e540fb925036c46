"""Ground truth on synthetic videos: the best concept's IoU with the target object, against a baseline of
random space-time crops clustered as VTCD clusters tubelets (methods.md section 2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from core.jsonsafe import num
from core.models import ModelBundle
from core.vtcd import media as vm
from core.vtcd.config import VTCDConfig
from core.vtcd.features import Inputs, extract_features
from core.vtcd.pipeline import HeadConcepts, VTCDResult, cluster_head
from core.vtcd.tubelets import upsample_features

TARGET_ID = 1  # instance id of the target object in the synthetic benchmark's masks
PART = "parts/ground-truth.json"


def synthetic_masks(task: str, bundle: ModelBundle, n: int) -> np.ndarray:
    """Target-object masks ``(V, T, H, W)`` bool of the first ``n`` test clips of the synthetic ``task`` at the
    model's input size (the clips a ``synthetic:<task>:<n>`` source gives)."""
    from core.data import synthetic

    prep = bundle.preprocessing
    data = synthetic.make_split(synthetic.SyntheticConfig(task=task, frames=prep.frames, size=prep.size[0]), n,
                                "test")
    return data["masks"] == TARGET_ID


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


def ground_truth(bundle: ModelBundle, x: Inputs, result: VTCDResult, masks: np.ndarray, importance: np.ndarray,
                 config: VTCDConfig | None = None, store: Any = None,
                 progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Best concept IoU with the target object's ``masks`` ``(V, T, H, W)``, per layer and overall, against
    random-crop tubelets (the ``ground_truth.json`` body). ``importance`` ``(n_concepts,)`` is recorded per
    concept. With a ``store`` the body is saved as one part and not recomputed."""
    cfg = config or result.config
    if store is not None and store.has(PART):
        return store.load_json(PART)
    names = result.concept_names
    per_concept, baseline_units = [], []
    feats, _ = extract_features(bundle, x, result.sites, cfg.feature_batch_size)
    k = 0
    for i, u in enumerate(result.units):
        grid = u.labels.shape[1:]
        cmap = u.concept_map()
        target = np.stack([vm.resize_nearest(m, grid) for m in masks])
        for q in range(u.n_concepts):
            iou = iou_per_video(cmap == q, target)
            present = (cmap == q).reshape(len(iou), -1).any(1)
            per_concept.append({"id": names[k], "layer": u.layer, "head": u.head, "iou": float(iou.mean()),
                                "iou_present": float(iou[present].mean()) if present.any() else 0.0,
                                "n_videos_present": int(present.sum()), "importance": num(importance[k])})
            k += 1
        rng = np.random.default_rng([cfg.seed, 11, i])
        crops = random_crop_concepts(feats[u.site][:, u.head], u, grid, cfg, rng, bundle.device)
        ious = [float(iou_per_video(c, target).mean()) for c in crops]
        baseline_units.append({"unit": f"{u.layer}/h{u.head}", "layer": u.layer, "head": u.head,
                               "best_iou": max(ious), "n_concepts": len(ious)})
        if progress is not None:
            progress("ground truth", i + 1, len(result.units))
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
    if store is not None:
        store.save_json(PART, out)
    return out
