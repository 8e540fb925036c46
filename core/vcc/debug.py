"""The failure debugger's analysis (dissertation 5.5, methods.md section 3), shared by ``precompute vcc-debug``
and the dashboard's failure debugger page.

For an image of true class C that the model predicts as P: segment the image top-down exactly as the VCC job
segments its class images (the settings of C's run), assign every segment at every layer to its nearest concept
(L2 to the centroid) among the concepts of C's and P's VCCs at that layer, and record which segments side with
C and which with P, layer by layer, which concepts the image activates, and the strongest paths (mean edge
weight over significant edges) from those concepts to each class node.

VCCs are read from ``vcc`` runs (:class:`core.artifacts.Run` objects); images are arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.artifacts import Run, slug
from core.data.images import preprocess_images
from core.errors import DataError, UserError
from core.models import ModelBundle
from core.vcc.concepts import nearest_concepts
from core.vcc.config import VCCConfig, VCCDebugConfig
from core.vcc.fidelity import upward_edges
from core.vcc.forward import batches, feature_grids, gap_and_logits
from core.vcc.graph import VCCGraph, concept_id
from core.vcc.predict import predictions, top_record
from core.vcc.segments import segment_inputs, top_down_segments

SIDES = ("true", "predicted")


# ----------------------------------------------------------------------------------------------
# VCCs from runs


@dataclass
class ClassVCC:
    """One class's VCC as read from a ``vcc`` run."""

    run: Run
    slug: str
    class_index: int
    class_name: str
    graph: VCCGraph
    graph_json: dict[str, Any]
    centroids: dict[str, np.ndarray]
    config: VCCConfig
    selected_by: str = "label"
    """How the class's images were chosen: ``label`` or ``prediction`` (crops the model predicts as it)."""

    @property
    def key(self) -> str:
        return slug(f"{self.run.run_id}--{self.slug}", 100)

    @property
    def model_spec(self) -> str:
        model = self.run.manifest.get("model")
        return str(model.get("spec")) if isinstance(model, dict) else str(model)


def graph_from_json(d: dict[str, Any]) -> VCCGraph:
    """A :class:`VCCGraph` from a run's ``graph.json`` (whose nodes also carry ``exemplar_files``)."""
    return VCCGraph.from_dict(d)


def load_vcc(run: Run, entry: dict[str, Any]) -> ClassVCC:
    """The VCC of one ``classes.json`` entry of ``run`` (read through :mod:`core.vcc.store`)."""
    from core.vcc import store

    graph_json = run.load_json(store.class_file(entry, store.GRAPH))
    graph = graph_from_json(graph_json)
    arrays = run.load_npz(store.class_file(entry, store.SEGMENTS))
    centroids = {name: arrays[f"centroids.{i}"] for i, name in enumerate(graph.layers)}
    cfg = VCCConfig.from_dict(run.manifest["config"]["vcc"])
    return ClassVCC(run, entry["slug"], int(entry["class_index"]), str(entry["class_name"]), graph, graph_json,
                    centroids, cfg, str(entry.get("selected_by", "label")))


def load_vccs(runs: Sequence[Run]) -> dict[int, ClassVCC]:
    """Every class's VCC in ``runs``, by class index; the first run holding a class wins."""
    from core.vcc import store

    out: dict[int, ClassVCC] = {}
    for run in runs:
        for entry in store.classes(run):
            index = int(entry["class_index"])
            if index in out:
                warnings.warn(f"class {entry['class_name']} has a VCC in {out[index].run.run_id} and "
                              f"{run.run_id}; using the first", stacklevel=2)
                continue
            out[index] = load_vcc(run, entry)
    return out


# ----------------------------------------------------------------------------------------------
# Analysis of one image


@dataclass
class Analysis:
    """One image's debug record (JSON-ready) and its segment arrays."""

    record: dict[str, Any]
    arrays: dict[str, np.ndarray]


def strongest_paths(graph: VCCGraph, starts: dict[str, int], n: int) -> list[dict[str, Any]]:
    """The ``n`` strongest paths over significant edges from the nodes ``starts`` (id -> segment
    count) to the class node: per start node the path of highest mean edge weight, strongest first."""
    nodes_deep_first, out_edges = upward_edges(graph)
    # best[node][length] = (sum of weights, nodes, weights) of the heaviest path of that length to the class
    best: dict[str, dict[int, tuple[float, list[str], list[float]]]] = {graph.class_id: {0: (0.0, [graph.class_id],
                                                                                             [])}}
    for node in nodes_deep_first:
        acc: dict[int, tuple[float, list[str], list[float]]] = {}
        for e in out_edges.get(node.id, []):
            for length, (total, nodes, weights) in best.get(e.target, {}).items():
                cand = (total + e.weight, [node.id, *nodes], [e.weight, *weights])
                if length + 1 not in acc or cand[0] > acc[length + 1][0]:
                    acc[length + 1] = cand
        best[node.id] = acc
    paths = []
    for nid, count in starts.items():
        options = best.get(nid, {})
        if not options:
            continue
        length, (total, nodes, weights) = max(options.items(), key=lambda kv: kv[1][0] / kv[0])
        paths.append({"nodes": nodes, "weights": weights, "strength": total / length, "segments": int(count)})
    paths.sort(key=lambda p: (-p["strength"], -p["segments"]))
    return paths[:n]


@torch.no_grad()
def _segment_features(bundle: ModelBundle, image: np.ndarray, segs: Any, cfg: VCCConfig,
                      batch_size: int) -> list[np.ndarray]:
    """GAP feature of every segment's image at the segment's own layer."""
    feats: list[np.ndarray] = [np.empty(0)] * len(segs)
    ids = np.arange(len(segs))
    for sl in batches(len(ids), batch_size):
        x = segment_inputs([image], segs, ids[sl], bundle.preprocessing, cfg.fill_value)
        g, _ = gap_and_logits(bundle, x, segs.layers, batch_size)
        for row, sid in enumerate(ids[sl]):
            feats[sid] = g[segs.layers[segs.layer[sid]]][row].numpy()
    return feats


@torch.no_grad()
def analyse(bundle: ModelBundle, image: np.ndarray, true: ClassVCC, predicted: ClassVCC | None,
            config: VCCDebugConfig | None = None) -> Analysis:
    """Debug one image (H x W x 3 uint8) against the VCCs of its true class and (when it differs) its
    predicted class, with the debugger's ``config`` (``None``: :class:`VCCDebugConfig` defaults).

    ``predicted`` is ``None`` when the model is right, or when the predicted class has no VCC (the
    record then says so and every segment is assigned among the true class's concepts).
    """
    config = config if config is not None else VCCDebugConfig()
    batch_size, n_paths = config.batch_size, config.n_paths
    cfg = true.config
    layers = list(true.graph.layers)
    if predicted is not None and list(predicted.graph.layers) != layers:
        raise UserError(f"the VCCs of {true.class_name} and {predicted.class_name} use other layers "
                        f"({', '.join(layers)} vs {', '.join(predicted.graph.layers)}); build them with the same "
                        "layers")
    was_training = bundle.model.training
    bundle.model.eval()
    try:
        probs = predictions(bundle, [image], batch_size)[0]
        top = top_record(bundle, probs, true.class_index)
        x = preprocess_images([image], bundle.preprocessing)
        grids = feature_grids(bundle, x, layers, cfg.grid, batch_size)
        segs = top_down_segments(grids, layers, cfg.split_range, cfg.silhouette_threshold, cfg.slic_compactness,
                                 cfg.min_segment_fraction, cfg.seed, cfg.kmeans_n_init, min_size=cfg.min_segment_size)
        feats = _segment_features(bundle, image, segs, cfg, batch_size)
    finally:
        bundle.model.train(was_training)
    n = len(segs)
    side = np.full(n, -1, dtype=np.int64)
    concept = np.full(n, -1, dtype=np.int64)
    distance = np.full(n, np.nan)
    area = segs.area()
    activated: dict[str, dict[str, int]] = {"true": {}, "predicted": {}}
    rows = []
    for li, name in enumerate(layers):
        ids = segs.ids(li)
        cand_t = true.centroids.get(name, np.zeros((0, 1)))
        cand_p = predicted.centroids.get(name, np.zeros((0, 1))) if predicted is not None else np.zeros((0, 1))
        cands = [c for c in (cand_t, cand_p) if len(c)]
        if len(ids) and cands:
            idx, dist = nearest_concepts(np.stack([feats[i] for i in ids]), np.concatenate(cands))
            is_pred = (idx >= len(cand_t)).astype(np.int64)
            side[ids] = is_pred
            concept[ids] = np.where(is_pred == 1, idx - len(cand_t), idx)
            distance[ids] = dist
            for sid in ids:
                key = SIDES[side[sid]]
                nid = concept_id(name, int(concept[sid]))
                activated[key][nid] = activated[key].get(nid, 0) + 1
        n_t, n_p = int((side[ids] == 0).sum()), int((side[ids] == 1).sum())
        a_t, a_p = float(area[ids][side[ids] == 0].sum()), float(area[ids][side[ids] == 1].sum())
        rows.append({"layer": name, "n_segments": len(ids), "n_true": n_t, "n_predicted": n_p,
                     "share_true": n_t / (n_t + n_p) if n_t + n_p else None,  # None: no concept at the layer
                     "share_predicted": n_p / (n_t + n_p) if n_t + n_p else None,
                     "area_true": a_t, "area_predicted": a_p})
    n_t, n_p = int((side == 0).sum()), int((side == 1).sum())
    record = {
        "true_class": true.class_index, "true_name": true.class_name, **top,
        "vcc_true": true.key, "vcc_predicted": predicted.key if predicted is not None else None,
        "grid": int(segs.grid), "layers": rows, "n_segments": n,
        "share_true": n_t / max(n_t + n_p, 1), "share_predicted": n_p / max(n_t + n_p, 1),
        "activated": activated,
        "paths": {"true": strongest_paths(true.graph, activated["true"], n_paths),
                  "predicted": strongest_paths(predicted.graph, activated["predicted"], n_paths)
                  if predicted is not None else []},
    }
    arrays = {"masks": segs.masks, "layer": segs.layer, "parent": segs.parent, "side": side, "concept": concept,
              "distance": distance, "area": area}
    return Analysis(record, arrays)


def pick_vccs(vccs: dict[int, ClassVCC], true_index: int, predicted: int,
              warn: bool = True) -> tuple[ClassVCC, ClassVCC | None]:
    """The VCCs of the true and the predicted class (``None``: the model is right, or the predicted
    class has no VCC: a warning says so); raises :class:`DataError` when the true class has none."""
    if true_index not in vccs:
        raise DataError(f"no VCC of the true class {true_index} in the VCC runs given (they hold: "
                        f"{', '.join(v.class_name for v in vccs.values())})")
    if warn and predicted != true_index and predicted not in vccs:
        warnings.warn(f"no VCC of the predicted class {predicted} in the VCC runs given: matching the segments against "
                      f"the true class's concepts only; build a VCC of class {predicted} too",
                      stacklevel=2)
    return vccs[true_index], vccs.get(predicted) if predicted != true_index else None

