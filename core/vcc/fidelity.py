"""Validation of a VCC (5.4.2): concept suppression against random directions, and the average
path strength (APS, eq. 5.8) against the logit sum (LS, eq. 5.9) over concepts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from core.models import ModelBundle
from core.vcc.config import MATCHED_KINDS
from core.vcc.forward import gap_and_logits, shifted_correct
from core.vcc.graph import CLASS_LAYER, Edge, Node, VCCGraph

# ----------------------------------------------------------------------------------------------
# Concept suppression


@dataclass
class SuppressionCurves:
    """Target-class accuracy while ``z <- z - eps * d / ||d||`` at one layer, for each eps.

    ``eps`` ``(S,)`` absolute (``scales`` times ``reference_norm``, the mean L2 norm of the class
    images' GAP features at the layer); ``concept_accuracy`` ``(m, S)`` with ``d`` each concept's
    centroid; ``random_accuracy`` ``(n_random, S)`` with isotropic random directions;
    ``matched_accuracy`` ``(n_matched, S)`` with the matched random directions
    (:func:`matched_directions`; ``None`` when not computed), of kind ``matched_kind``.
    """

    layer: str
    scales: np.ndarray
    eps: np.ndarray
    reference_norm: float
    concept_ids: list[str]
    concept_accuracy: np.ndarray
    random_accuracy: np.ndarray
    matched_accuracy: np.ndarray | None = None
    matched_kind: str | None = None

    def _area(self, curves: np.ndarray | None) -> float:
        span = float(self.scales[-1] - self.scales[0]) if len(self.scales) > 1 else 0.0
        if curves is None or not len(curves) or span <= 0:
            return float("nan")
        return float(np.trapezoid(np.asarray(curves, np.float64).mean(0), self.scales) / span)

    def auc(self) -> tuple[float, float]:
        """Areas under the mean accuracy curves of the concepts and of the isotropic random directions,
        over the scales (trapezoids, divided by the scale range: the mean accuracy over the range); NaN
        when a side has no curve or there is a single scale."""
        return self._area(self.concept_accuracy), self._area(self.random_accuracy)

    def auc_matched(self) -> float:
        """:meth:`auc` of the matched random directions (NaN when there are none)."""
        return self._area(self.matched_accuracy)

    def falls_faster(self) -> bool:
        """Whether suppressing the concepts lowers the accuracy faster than isotropic random directions:
        the area under the concepts' mean curve is below the random directions' (:meth:`auc`)."""
        concept, random = self.auc()
        return bool(concept < random)

    def falls_faster_matched(self) -> bool | None:
        """:meth:`falls_faster` against the matched random directions; ``None`` without them."""
        matched = self.auc_matched()
        return None if not np.isfinite(matched) else bool(self.auc()[0] < matched)

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "scales": self.scales.tolist(), "eps": self.eps.tolist(),
                "reference_norm": self.reference_norm, "concept_ids": list(self.concept_ids),
                "concept_accuracy": self.concept_accuracy.tolist(), "random_accuracy": self.random_accuracy.tolist(),
                "matched_accuracy": None if self.matched_accuracy is None else self.matched_accuracy.tolist(),
                "matched_kind": self.matched_kind}


def matched_directions(features: np.ndarray, sizes: Sequence[int], n: int, kind: str = "segments",
                       seed: int = 0) -> np.ndarray:
    """``n`` random directions ``(n, C)`` matched to concept centroids, which are means of non-negative
    (post-ReLU GAP) segment features and so lie in the positive orthant, unlike isotropic ones.

    ``segments``: the centroid of a random set of the layer's segment features ``features`` ``(t, C)``,
    of size ``sizes[i % len(sizes)]`` (the concepts' cluster sizes in turn): a concept without the
    clustering. ``nonnegative``: ``|z|`` with ``z ~ N(0, I)``, uniform over the directions of the
    positive orthant. (Only the direction matters: suppression normalises it.) ``(0, C)`` for
    ``off``, ``n = 0``, or ``segments`` without features or sizes.
    """
    if kind not in MATCHED_KINDS:
        raise ValueError(f"matched random directions must be one of {', '.join(MATCHED_KINDS)}, not {kind!r}")
    x = np.asarray(features, dtype=np.float64)
    channels = x.shape[1] if x.ndim == 2 else 0
    rng = np.random.default_rng([seed, 0x3A7C])
    if kind == "off" or n <= 0:
        return np.zeros((0, channels))
    if kind == "nonnegative":
        return np.abs(rng.normal(size=(n, channels)))
    sizes = [int(s) for s in sizes if int(s) > 0]
    if not len(x) or not sizes:
        return np.zeros((0, channels))
    return np.stack([x[rng.choice(len(x), size=min(sizes[i % len(sizes)], len(x)), replace=False)].mean(0)
                     for i in range(n)])


def suppression_curves(bundle: ModelBundle, layer: str, x: torch.Tensor, class_index: int,
                       directions: np.ndarray, concept_ids: Sequence[str], scales: Sequence[float],
                       n_random: int = 5, seed: int = 0, batch_size: int = 32, matched: np.ndarray | None = None,
                       matched_kind: str | None = None) -> SuppressionCurves:
    """Suppress each concept direction (``directions`` ``(m, C)``, e.g. centroids), ``n_random``
    isotropic random unit directions and each row of ``matched`` (:func:`matched_directions`; ``None``:
    no matched baseline) at ``layer`` for the class images ``x`` ``(B, 3, H, W)``."""
    feats, logits = gap_and_logits(bundle, x, [layer], batch_size)
    ref = float(feats[layer].norm(dim=1).mean())
    scales = np.asarray(scales, dtype=np.float64)
    eps = scales * ref
    base = float((logits.argmax(1) == class_index).float().mean())
    rng = np.random.default_rng(seed)
    channels = feats[layer].shape[1]
    rand = rng.normal(size=(n_random, channels))

    # Every (direction, eps != 0) pair is one shift; all of them run in a few batched passes.
    groups = [np.asarray(directions).reshape(-1, channels), rand,
              np.zeros((0, channels)) if matched is None else np.asarray(matched).reshape(-1, channels)]
    units = []
    for d in (d for g in groups for d in g):
        norm = np.linalg.norm(d)
        units.append(torch.as_tensor(d / norm if norm > 0 else d, dtype=torch.float32))
    todo = [(k, s) for k in range(len(units)) for s, e in enumerate(eps) if e != 0]
    acc = np.full((len(units), len(eps)), base)
    if todo:
        shifts = torch.stack([-float(eps[s]) * units[k] for k, s in todo])
        correct = shifted_correct(bundle, x, layer, shifts, class_index, batch_size)
        for (k, s), c in zip(todo, correct.tolist(), strict=True):
            acc[k, s] = float(np.float32(c) / np.float32(len(x)))  # as a float32 mean over the images
    sizes = np.cumsum([0, *(len(g) for g in groups)])
    concept_acc, random_acc, matched_acc = (acc[sizes[i]:sizes[i + 1]] for i in range(3))
    return SuppressionCurves(layer, scales, eps, ref, list(concept_ids), concept_acc, random_acc,
                             None if matched is None else matched_acc, matched_kind if matched is not None else None)


# ----------------------------------------------------------------------------------------------
# APS vs LS


def upward_edges(graph: VCCGraph, significant_only: bool = True) -> tuple[list[Node], dict[str, list[Edge]]]:
    """The concept nodes deepest first and each node's edges to a deeper layer (or the class node): the
    order in which path statistics to the class node are built, one layer at a time (APS here, the
    failure debugger's strongest paths in :mod:`core.vcc.debug`)."""
    depth = {layer: i for i, layer in enumerate(graph.layers)}
    depth[CLASS_LAYER] = len(graph.layers)
    layer_of = {n.id: n.layer for n in graph.nodes}
    out_edges: dict[str, list[Edge]] = defaultdict(list)
    for e in graph.edges:
        if (e.significant or not significant_only) and depth[layer_of[e.target]] > depth[layer_of[e.source]]:
            out_edges[e.source].append(e)
    nodes = [n for n in sorted(graph.nodes, key=lambda n: -depth[n.layer]) if n.kind != "class"]
    return nodes, out_edges


def average_path_strength(graph: VCCGraph, significant_only: bool = True) -> dict[str, float]:
    """APS (eq. 5.8) of every concept: over all paths to the class node, the mean of each path's mean
    edge weight. NaN for a concept with no path (its edges were dropped by the t-test)."""
    nodes, out_edges = upward_edges(graph, significant_only)
    # paths[node][length] = (number of paths, sum over those paths of their summed weights)
    paths: dict[str, dict[int, tuple[float, float]]] = {graph.class_id: {0: (1.0, 0.0)}}
    aps = {}
    for node in nodes:
        acc: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for e in out_edges.get(node.id, []):
            for length, (count, total) in paths.get(e.target, {}).items():
                acc[length + 1][0] += count
                acc[length + 1][1] += total + count * e.weight
        paths[node.id] = {k: (v[0], v[1]) for k, v in acc.items()}
        n_paths = sum(v[0] for v in acc.values())
        aps[node.id] = sum(v[1] / k for k, v in acc.items()) / n_paths if n_paths else float("nan")
    return aps


def logit_sums(graph: VCCGraph, segment_logits: np.ndarray) -> dict[str, float]:
    """LS (eq. 5.9) of every concept: the target-class logit summed over its member segments.

    ``segment_logits`` ``(N,)`` is the class logit of every segment image, indexed by segment id.
    """
    logits = np.asarray(segment_logits, dtype=np.float64)
    return {n.id: float(logits[n.members].sum()) for n in graph.nodes if n.kind == "concept"}


def aps_ls_correlation(aps: dict[str, float], ls: dict[str, float]) -> dict[str, float]:
    """Pearson and Spearman correlation of APS and LS over the concepts where both are finite."""
    ids = [k for k in aps if k in ls and np.isfinite(aps[k]) and np.isfinite(ls[k])]
    a = np.array([aps[k] for k in ids])
    b = np.array([ls[k] for k in ids])
    out = {"n": float(len(ids)), "pearson": float("nan"), "pearson_p": float("nan"), "spearman": float("nan"),
           "spearman_p": float("nan")}
    if len(ids) >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0:
        r = stats.pearsonr(a, b)
        s = stats.spearmanr(a, b)
        out.update(pearson=float(r.statistic), pearson_p=float(r.pvalue), spearman=float(s.statistic),
                   spearman_p=float(s.pvalue))
    return out
