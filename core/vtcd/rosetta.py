"""Rosetta concepts (eq. 4.7-4.8): concepts of D models whose supports overlap on the same videos.

``R`` of a tuple of concepts (one per model) is |intersection| / |union| of their supports, averaged
over all the videos, a video where none of the tuple's concepts appears counting as 0, as the
released code does (``average="all"``); ``average="present"`` averages only over the videos where
the union is not empty (this project's earlier rule, which scores sparse concepts higher). Each
model keeps its top ``epsilon`` concepts by importance; tuples grow from d = 2 to D over the models,
and a concept whose every d-tuple has ``R <= delta`` is dropped before d + 1.

:func:`rosetta` takes VTCD analyses, saved runs or run folders (:func:`rosetta_of_runs`) or, as before,
support arrays and importances (:func:`rosetta_tuples`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from core.jsonsafe import num

if TYPE_CHECKING:
    from core.vtcd.analysis import VTCDAnalysis
    from core.vtcd.config import RosettaConfig, VTCDConfig
    from core.vtcd.store import VTCDRun

Average = Literal["all", "present"]
AVERAGES: tuple[str, ...] = ("all", "present")


@dataclass
class RosettaTuple:
    """One concept per model of ``models`` (``concepts[i]`` indexes model ``models[i]``'s concepts)."""

    models: tuple[int, ...]
    concepts: tuple[int, ...]
    r: float

    @property
    def d(self) -> int:
        return len(self.models)


@dataclass
class RosettaResult:
    """``candidates``: per model the concepts kept by the ``epsilon`` importance filter; ``survivors[d]``
    per model the concepts in at least one d-tuple with R > delta; ``tuples`` the union over d of those
    tuples (by d, then R descending); ``mean_r[d]`` the mean R over every d-tuple evaluated (the chance
    level the survivors are read against)."""

    epsilon: float
    delta: float
    candidates: list[np.ndarray]
    average: str = "all"
    survivors: dict[int, list[np.ndarray]] = field(default_factory=dict)
    tuples: list[RosettaTuple] = field(default_factory=list)
    mean_r: dict[int, float] = field(default_factory=dict)


def to_common_grid(supports: np.ndarray | torch.Tensor, grid: Sequence[int]) -> np.ndarray:
    """Supports ``(Q, V, T, H, W)`` resized (nearest) to ``(Q, V, *grid)`` and flattened to ``(Q, V, P)``."""
    s = torch.as_tensor(np.asarray(supports))
    q, v = s.shape[:2]
    if tuple(s.shape[2:]) != tuple(grid):
        s = F.interpolate(s.reshape(q * v, 1, *s.shape[2:]).float(), size=tuple(int(g) for g in grid),
                          mode="nearest").reshape(q, v, *grid) > 0.5
    return s.reshape(q, v, -1).numpy().astype(bool)


def top_fraction(importance: np.ndarray, epsilon: float) -> np.ndarray:
    """Indices of the ``ceil(epsilon * Q)`` most important concepts (NaN never kept before a number)."""
    imp = np.asarray(importance, dtype=np.float64)
    n = max(1, math.ceil(epsilon * len(imp) - 1e-9))
    key = np.where(np.isnan(imp), np.inf, -imp)
    return np.sort(np.argsort(key, kind="stable")[:n])


def mean_iou(inter: np.ndarray, union: np.ndarray, average: str = "all") -> np.ndarray:
    """Mean over the last axis (videos) of inter / union, a video with an empty union counting as 0
    (``average="all"``) or left out (``"present"``; 0 when the union is empty everywhere)."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, not {average!r}")
    valid = union > 0
    iou = np.where(valid, inter / np.maximum(union, 1), 0.0)
    n = valid.sum(-1) if average == "present" else np.full(iou.shape[:-1], iou.shape[-1])
    return np.where(n > 0, iou.sum(-1) / np.maximum(n, 1), 0.0)


def pairwise_r(a: np.ndarray, b: np.ndarray, average: str = "all") -> np.ndarray:
    """R of every pair: ``a`` ``(Qa, V, P)``, ``b`` ``(Qb, V, P)`` bool -> ``(Qa, Qb)``."""
    ta, tb = torch.from_numpy(a).double(), torch.from_numpy(b).double()
    inter = torch.einsum("avp,bvp->abv", ta, tb).numpy()
    union = ta.sum(-1).numpy()[:, None, :] + tb.sum(-1).numpy()[None, :, :] - inter
    return mean_iou(inter, union, average)


def tuple_r(supports: Sequence[np.ndarray], average: str = "all") -> float:
    """R of one tuple of supports, each ``(V, P)`` bool."""
    inter = np.logical_and.reduce(supports).sum(-1)
    union = np.logical_or.reduce(supports).sum(-1)
    return float(mean_iou(inter.astype(np.float64), union.astype(np.float64), average))


def rosetta_tuples(supports: Sequence[np.ndarray], importances: Sequence[np.ndarray], epsilon: float = 0.15,
                   delta: float = 0.15, max_d: int | None = None, average: str = "all") -> RosettaResult:
    """Mine Rosetta concepts across ``D = len(supports)`` models.

    ``supports[j]`` bool ``(Q_j, V, P)``: model ``j``'s concept supports on the same ``V`` videos and the
    same grid (:func:`to_common_grid`); ``importances[j]`` ``(Q_j,)``; ``average``: see :func:`mean_iou`.
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, not {average!r}")
    n_models = len(supports)
    if n_models < 2 or len(importances) != n_models:
        raise ValueError("Rosetta concepts need at least two models, each with supports and importances")
    shapes = {s.shape[1:] for s in supports}
    if len(shapes) != 1:
        raise ValueError(f"supports must share videos and grid, got {sorted(shapes)}")
    candidates = [top_fraction(imp, epsilon) for imp in importances]
    result = RosettaResult(epsilon=epsilon, delta=delta, candidates=candidates, average=average)
    pool = [c.copy() for c in candidates]
    for d in range(2, min(max_d or n_models, n_models) + 1):
        alive: list[set[int]] = [set() for _ in range(n_models)]
        scores: list[float] = []
        for models in itertools.combinations(range(n_models), d):
            if any(len(pool[m]) == 0 for m in models):
                continue
            if d == 2:
                i, j = models
                r = pairwise_r(supports[i][pool[i]], supports[j][pool[j]], average)
                scores.extend(r.ravel().tolist())
                for a, b in zip(*np.nonzero(r > delta), strict=True):
                    ci, cj = int(pool[i][a]), int(pool[j][b])
                    result.tuples.append(RosettaTuple(models, (ci, cj), float(r[a, b])))
                    alive[i].add(ci)
                    alive[j].add(cj)
                continue
            for combo in itertools.product(*(pool[m] for m in models)):
                r_val = tuple_r([supports[m][c] for m, c in zip(models, combo, strict=True)], average)
                scores.append(r_val)
                if r_val > delta:
                    result.tuples.append(RosettaTuple(models, tuple(int(c) for c in combo), r_val))
                    for m, c in zip(models, combo, strict=True):
                        alive[m].add(int(c))
        pool = [np.array(sorted(a), dtype=int) for a in alive]
        result.survivors[d] = pool
        result.mean_r[d] = float(np.mean(scores)) if scores else float("nan")
    result.tuples.sort(key=lambda t: (t.d, -t.r))
    return result


# ----------------------------------------------------------------------------------------------
# Across analyses or saved runs


@dataclass
class RosettaInput:
    """What Rosetta needs of one model's VTCD: its label, the clip ids, frame count, segmentation grid, and
    per concept (in CRIS order) its record ``{id, layer, head}``, importance and supports."""

    label: str
    video_ids: list[str]
    frames: int
    seg_grid: tuple[int, int, int]
    concepts: list[dict[str, Any]]
    importances: np.ndarray
    supports: Any  # grid -> bool (Q, V, P)
    source: Any = None


def rosetta_input(item: VTCDAnalysis | VTCDRun | str | Path) -> RosettaInput:
    """A :class:`RosettaInput` of an analysis, a loaded run, or a run folder."""
    from core.vtcd.analysis import VTCDAnalysis
    from core.vtcd.store import VTCDRun, load

    if isinstance(item, (str, Path)):
        item = load(item)
    if isinstance(item, VTCDRun):
        doc = item.concepts_doc
        return RosettaInput(doc["model"]["label"], [v["id"] for v in doc["videos"]], int(doc["video_shape"][0]),
                            tuple(int(g) for g in doc["seg_grid"]),
                            [{"id": c["id"], "layer": c["layer"], "head": c["head"]} for c in doc["concepts"]],
                            item.importances(), item.supports, item)
    if isinstance(item, VTCDAnalysis):
        res = item.discovery

        def supports(grid: Sequence[int]) -> np.ndarray:
            parts = [to_common_grid(res.unit_supports(i), grid) for i in range(len(res.units))]
            return np.concatenate(parts) if parts else np.zeros((0, res.n_videos, int(np.prod(grid))), bool)

        units = res.concept_unit
        return RosettaInput(item.model["label"], list(item.video_ids), int(res.video_shape[0]),
                            tuple(int(g) for g in res.seg_grid),
                            [{"id": n, "layer": res.units[int(u)].layer, "head": res.units[int(u)].head}
                             for n, u in zip(res.concept_names, units, strict=True)],
                            np.asarray(item.concepts.importance, dtype=np.float64), supports, item)
    raise TypeError(f"Rosetta takes VTCD analyses, loaded runs or run folders, not {type(item).__name__}")


@dataclass
class RosettaAnalysis:
    """Rosetta concepts across ``inputs``: ``result`` the tuples, ``labels`` one unique label per input,
    ``grid`` the common grid, ``tuples`` one record per tuple ``{index, d, runs, models, concepts,
    concept_index, layers, heads, importances, r, videos: [{video, id, r}] (best first), media: []}``."""

    config: RosettaConfig
    inputs: list[RosettaInput]
    labels: list[str]
    grid: list[int]
    result: RosettaResult
    supports: list[np.ndarray]
    tuples: list[dict[str, Any]]

    def save(self, out: Any, *, run_id: str | None = None, overwrite: bool = False, media_tuples: int = 24,
             media_videos: int = 2) -> Path:
        """Write a ``rosetta`` run (:func:`core.vtcd.store.save_rosetta`): into an open run writer, or as a new
        finished run under the artifact root ``out`` (returns the run folder)."""
        from core.vtcd.store import save_rosetta

        return save_rosetta(self, out, run_id=run_id, overwrite=overwrite, media_tuples=media_tuples,
                            media_videos=media_videos)


def rosetta_of_runs(items: Sequence[VTCDAnalysis | VTCDRun | str | Path],
                    config: RosettaConfig | VTCDConfig | None = None, videos_per_tuple: int = 2) -> RosettaAnalysis:
    """Rosetta concepts across several VTCD analyses or saved runs of other models on the same clips.
    ``config`` a :class:`RosettaConfig` (a :class:`VTCDConfig` gives its ``rosetta_epsilon`` and
    ``rosetta_delta``); ``videos_per_tuple`` best videos listed per tuple."""
    from core.errors import DataError, UserError
    from core.vtcd.config import RosettaConfig, VTCDConfig

    if isinstance(config, VTCDConfig):
        config = RosettaConfig(epsilon=config.rosetta_epsilon, delta=config.rosetta_delta)
    cfg = config or RosettaConfig()
    if len(items) < 2:
        raise UserError("Rosetta concepts need at least two VTCD results made on the same videos")
    inputs = [rosetta_input(it) for it in items]
    ids = inputs[0].video_ids
    for j, inp in enumerate(inputs[1:], start=1):
        if inp.video_ids != ids:
            raise DataError(f"result {j} ({inp.label}) was not made on the same videos as result 0 "
                            f"({len(inp.video_ids)} vs {len(ids)} clips, or other clip ids); Rosetta concepts "
                            "compare supports video by video")
    frames = sorted({inp.frames for inp in inputs})
    if len(frames) > 1:
        raise DataError(f"the models take clips of {' and '.join(map(str, frames))} frames, so the same clip ids "
                        "hold other footage; Rosetta concepts need models with one frame count")
    grid = [int(g) for g in cfg.grid] if cfg.grid is not None else \
        [max(inp.seg_grid[a] for inp in inputs) for a in range(3)]
    taken: set[str] = set()
    labels = []
    for j, inp in enumerate(inputs):
        run_id = getattr(getattr(inp.source, "run", None), "run_id", None)
        lab = inp.label if inp.label not in taken else f"{inp.label} ({run_id or j})"
        taken.add(lab)
        labels.append(lab)
    supports = [inp.supports(grid) for inp in inputs]
    res = rosetta_tuples(supports, [inp.importances for inp in inputs], cfg.epsilon, cfg.delta, cfg.max_d,
                         cfg.average)
    tuples = []
    for n, t in enumerate(res.tuples):
        members = [supports[m][c] for m, c in zip(t.models, t.concepts, strict=True)]  # each (V, P)
        inter = np.logical_and.reduce(members).sum(-1)
        union = np.logical_or.reduce(members).sum(-1)
        per_video = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        best = [int(v) for v in np.argsort(-per_video, kind="stable") if union[v] > 0][:max(videos_per_tuple, 1)]
        recs = [inputs[m].concepts[c] for m, c in zip(t.models, t.concepts, strict=True)]
        imps = [inputs[m].importances[c] for m, c in zip(t.models, t.concepts, strict=True)]
        tuples.append({"index": n, "d": t.d, "runs": list(t.models), "models": [labels[m] for m in t.models],
                       "concepts": [r["id"] for r in recs], "concept_index": list(t.concepts),
                       "layers": [r["layer"] for r in recs], "heads": [r["head"] for r in recs],
                       "importances": [num(i) for i in imps], "r": t.r,
                       "videos": [{"video": v, "id": ids[v], "r": float(per_video[v])} for v in best],
                       "media": []})
    return RosettaAnalysis(cfg, inputs, labels, grid, res, supports, tuples)


def rosetta(supports: Sequence[Any], importances: Any = None, epsilon: float = 0.15, delta: float = 0.15,
            max_d: int | None = None, average: str = "all") -> Any:
    """Rosetta concepts. ``rosetta(results, config=None)``: across VTCD analyses, loaded runs or run folders
    (:func:`rosetta_of_runs`, a :class:`RosettaAnalysis`); ``rosetta(supports, importances, epsilon, delta,
    max_d, average)``: on support arrays (:func:`rosetta_tuples`, a :class:`RosettaResult`)."""
    from core.vtcd.config import RosettaConfig, VTCDConfig

    if importances is None or isinstance(importances, (RosettaConfig, VTCDConfig)):
        return rosetta_of_runs(supports, importances)
    return rosetta_tuples(supports, importances, epsilon, delta, max_d, average)
