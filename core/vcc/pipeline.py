"""The whole VCC for one class: segments, concepts, CAVs, ITCAV edges, graph and validation."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.batching import BatchSize
from core.data.images import preprocess_images
from core.errors import DataError
from core.jsonsafe import nan_to_null
from core.models import ModelBundle
from core.precision import check_precision
from core.vcc.concepts import LayerConcepts, discover_concepts
from core.vcc.config import VCCConfig
from core.vcc.fidelity import (
    SuppressionCurves,
    aps_ls_correlation,
    average_path_strength,
    logit_sums,
    matched_directions,
    suppression_curves,
)
from core.vcc.forward import (
    batches,
    execution_order,
    feature_grids,
    flat_activations,
    forward_precision,
    gap_and_logits,
)
from core.vcc.graph import CLASS_LAYER, Edge, Node, VCCGraph, class_node_id, concept_id
from core.vcc.itcav import LayerCAVs, edge_pvalues, edge_values, edge_values_grouped, fit_cavs, random_sets
from core.vcc.segments import Segments, segment_inputs, top_down_segments

Progress = Callable[[str, int, int], None]


@dataclass
class Fidelity:
    """Validation results: suppression curves per layer; APS and LS per concept id and their correlation.

    ``aps`` follows the significant edges (the VCC as drawn); ``aps_all_edges`` every edge, so that
    the check still says something when the t-test leaves a concept without a path to the class.
    """

    suppression: dict[str, SuppressionCurves]
    aps: dict[str, float]
    ls: dict[str, float]
    correlation: dict[str, float]
    aps_all_edges: dict[str, float]
    correlation_all_edges: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as null)."""
        clean = nan_to_null
        return {"suppression": {k: v.to_dict() for k, v in self.suppression.items()}, "aps": clean(self.aps),
                "ls": clean(self.ls), "correlation": clean(self.correlation),
                "aps_all_edges": clean(self.aps_all_edges), "correlation_all_edges": clean(self.correlation_all_edges)}


@dataclass
class VCCResult:
    """Everything a job needs to write a VCC run and draw its thumbnails.

    - ``graph``: nodes (concept ids ``"<layer>:<rank>"``, class node ``"class:<index>"``) and edges.
    - ``segments``: every segment (masks on the ``grid``, image index, layer, parent); node
      ``members``/``exemplars`` are ids into it. :meth:`concept_segments` lists a concept's.
    - ``centroids``: ``{layer: (m, C)}``, row ``c`` is concept ``"<layer>:<c>"`` (what the failure
      debugger assigns new segments to).
    - ``segment_features``: ``{layer: (t, C)}`` GAP features of that layer's segments, in
      ``segments.ids(layer)`` order; ``segment_concept`` ``(N,)`` each segment's concept rank in its
      layer (-1: its cluster was pruned); ``segment_logits`` ``(N,)`` the class logit of each segment image.
    - ``concepts``: per layer the raw clustering (sizes of pruned clusters, ``Y(t)``).
    - ``timings``: seconds per stage.
    - ``warnings``: degenerate results, each ``{code, message, setting, layer, figure}`` (what a job
      passes to :meth:`core.artifacts.RunWriter.warn`; the codes are listed in the README).
    - ``kept_images``: indices (into the images given) of the images used; images whose logits or
      activations are not finite are left out (with a ``vcc.nonfinite`` warning).
    - ``images`` (``(H, W, 3)`` uint8, the images given: ``segments.image`` indexes them) and
      ``probs`` ``(N, K)`` the model's class probabilities of them: set by :func:`core.vcc.analyse`
      (empty for :func:`build_vcc`'s own result and for a loaded one).
    - ``records``: JSON records :mod:`core.vcc.store` wrote or read (``class``, ``images``, ``graph``,
      ``fidelity``; ``top``: each image's top classes); a loaded result has no ``fidelity`` object,
      only its record.

    ``result.save(root)`` writes a ``vcc`` run; ``VCCResult.load(run_dir, cls)`` reads a class back.
    """

    graph: VCCGraph
    segments: Segments
    centroids: dict[str, np.ndarray]
    segment_features: dict[str, np.ndarray]
    segment_concept: np.ndarray
    segment_logits: np.ndarray
    concepts: dict[str, LayerConcepts]
    fidelity: Fidelity | None
    config: VCCConfig
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    kept_images: list[int] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    probs: np.ndarray | None = None
    records: dict[str, Any] = field(default_factory=dict)

    def save(self, target: Any, *, model: Any = None, run_id: str | None = None, overwrite: bool = False) -> Any:
        """Write this class as a ``vcc`` run under the artifact root ``target`` (or into an open
        :class:`core.artifacts.RunWriter`); returns the run folder (:func:`core.vcc.store.save`)."""
        from core.vcc import store

        return store.save(self, target, model=model, run_id=run_id, overwrite=overwrite)

    @classmethod
    def load(cls, run_dir: Any, class_: int | str) -> VCCResult:
        """Class ``class_`` (index, name or slug) of a finished ``vcc`` run (:func:`core.vcc.store.load`)."""
        from core.vcc import store

        return store.load(run_dir, class_)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the result, flat, for one ``.npz``; per-layer arrays are keyed by the layer's
        index in ``graph.layers`` (``centroids.0``, ``features.0``, ...)."""
        out = {f"segment_{k}": v for k, v in self.segments.to_arrays().items()}
        out["segment_concept"] = self.segment_concept
        out["segment_logits"] = self.segment_logits
        for i, name in enumerate(self.graph.layers):
            out[f"centroids.{i}"] = self.centroids[name]
            out[f"features.{i}"] = self.segment_features[name]
        return out

    def concept_segments(self, node_id: str) -> list[tuple[int, str, np.ndarray]]:
        """The member segments of a concept, nearest its centroid first: ``(image index, layer, (G, G) mask)``."""
        node = self.graph.node(node_id)
        return [(int(self.segments.image[s]), node.layer, self.segments.masks[s]) for s in node.members]


class _Clock:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + now - self._t
        self._t = now


def _segment_gap(bundle: ModelBundle, images: Sequence[np.ndarray], segs: Segments, class_index: int,
                 cfg: VCCConfig, progress: Progress | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """GAP features of every segment image at its own layer ``{layer: (t, C)}`` (in ``segs.ids(layer)``
    order), and its class logit ``(N,)``.

    A region kept whole is the same segment (image and mask) again at each shallower layer, and one
    pass gives its GAP at every layer: each distinct segment image runs once.
    """
    order = np.argsort(segs.layer, kind="stable")  # layer by layer, ids ascending within a layer
    first: list[int] = []  # one segment id per distinct (image, mask), in that order
    users: list[list[int]] = []
    seen: dict[tuple[int, bytes], int] = {}
    for sid in order.tolist():
        key = (int(segs.image[sid]), np.packbits(segs.masks[sid]).tobytes())
        r = seen.setdefault(key, len(first))
        if r == len(first):
            first.append(sid)
            users.append([])
        users[r].append(sid)
    position = np.zeros(len(segs), dtype=np.int64)  # each segment's row in its layer's features
    for li in range(len(segs.layers)):
        ids = segs.ids(li)
        position[ids] = np.arange(len(ids))
    counts = np.bincount(segs.layer, minlength=len(segs.layers))
    feats: dict[str, np.ndarray] = {}
    logits = np.zeros(len(segs), dtype=np.float32)

    def run(start: int, stop: int) -> None:  # writes only once the batch's pass succeeded (retried on OOM)
        x = segment_inputs(images, segs, first[start:stop], bundle.preprocessing, cfg.fill_value)
        g, lg = gap_and_logits(bundle, x, segs.layers, stop - start)
        for row, r in enumerate(range(start, stop)):
            for sid in users[r]:
                li = int(segs.layer[sid])
                name = segs.layers[li]
                if name not in feats:
                    feats[name] = np.zeros((counts[li], g[name].shape[1]), dtype=np.float32)
                feats[name][position[sid]] = g[name][row].numpy()
                logits[sid] = lg[row, class_index]
        if progress:
            progress("segment features", stop, len(first))

    BatchSize(cfg.batch_size, "VCC segment images", bundle.device).run(len(first), run)
    return {n: feats[n] for n in segs.layers}, logits


def _layer_cavs(bundle: ModelBundle, layer: str, images: Sequence[np.ndarray], segs: Segments, nodes: list[Node],
                x_random: torch.Tensor, pseudo: np.ndarray, sets: np.ndarray, cfg: VCCConfig) -> LayerCAVs:
    """CAVs of every concept of ``layer`` and of the pseudo-concept, against every random set."""
    member_ids = np.concatenate([n.members for n in nodes])
    acts = [flat_activations(bundle, segment_inputs(images, segs, member_ids[sl], bundle.preprocessing,
                                                    cfg.fill_value), layer, cfg.batch_size, cfg.drop_prefix_tokens)
            for sl in batches(len(member_ids), cfg.batch_size)]
    pool = np.unique(np.concatenate([pseudo, sets.ravel()]))
    acts.append(flat_activations(bundle, x_random[pool], layer, cfg.batch_size, cfg.drop_prefix_tokens))
    x = torch.cat(acts)
    row_of_pool = {int(p): len(member_ids) + i for i, p in enumerate(pool)}
    groups, start = [], 0
    for n in nodes:
        groups.append(np.arange(start, start + len(n.members)))
        start += len(n.members)
    groups.append(np.array([row_of_pool[int(p)] for p in pseudo]))
    negatives = np.vectorize(lambda p: row_of_pool[int(p)])(sets)
    cavs = fit_cavs(x, groups, negatives, cfg.cav_alpha, cfg.cav_method, cfg.seed, cfg.cav_balance,
                    cfg.cav_train_fraction)
    return LayerCAVs(layer, cavs[:-1], cavs[-1])


def _warning(code: str, message: str, setting: str | None, layer: str | None = None,
             figure: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "setting": setting, "layer": layer, "figure": figure}


def _finite_rows(bundle: ModelBundle, x: torch.Tensor, layers: Sequence[str], batch_size: int) -> np.ndarray:
    """``(B,)`` bool: the inputs whose logits and GAP activations at ``layers`` are all finite."""
    feats, logits = gap_and_logits(bundle, x, layers, batch_size)
    ok = torch.isfinite(logits).all(1)
    for f in feats.values():
        ok &= torch.isfinite(f).all(1)
    return ok.numpy()


def _image_key(image: np.ndarray) -> bytes:
    a = np.ascontiguousarray(image)
    return hashlib.sha256(repr((a.shape, str(a.dtype))).encode() + a.tobytes()).digest()


def _empty_concepts(channels: int) -> LayerConcepts:
    """The concepts of a layer without any usable segment."""
    none = np.zeros(0, dtype=np.int64)
    return LayerConcepts(np.zeros((0, channels), np.float32), [], none, none, np.zeros(0), 0.0, none, none)


def build_vcc(bundle: ModelBundle, layers: Sequence[str], images: Sequence[np.ndarray],
              random_images: Sequence[np.ndarray], class_index: int, config: VCCConfig | None = None,
              progress: Progress | None = None, n_jobs: int = 1) -> VCCResult:
    """Build the VCC of class ``class_index`` from its ``images`` (``(H, W, 3)`` uint8, any size).

    ``layers`` are dotted module names (sorted shallow to deep by execution); ``random_images``
    (other classes) form the pseudo-concept and the random sets of CAVs and t-tests. ``progress``
    is called as ``progress(stage, done, total)``. The model runs in eval mode on its own device;
    ``n_jobs`` processes segment the images (CPU work; the result does not depend on it).
    """
    cfg = config or VCCConfig()
    if not images:
        raise DataError("the VCC needs at least one image of the class")
    n_classes = len(bundle.class_names) if bundle.class_names else None
    if n_classes is not None and not 0 <= class_index < n_classes:
        raise DataError(f"class index {class_index} is out of range for {bundle.spec} ({n_classes} classes)")
    check_precision(cfg.precision, bundle.device)
    with forward_precision(cfg.precision):
        return _build(bundle, layers, images, random_images, class_index, cfg, progress, n_jobs)


def _build(bundle: ModelBundle, layers: Sequence[str], images: Sequence[np.ndarray],
           random_images: Sequence[np.ndarray], class_index: int, cfg: VCCConfig,
           progress: Progress | None, n_jobs: int) -> VCCResult:
    """:func:`build_vcc` once the arguments are checked, inside the config's forward precision."""
    clock = _Clock()
    was_training = bundle.model.training
    bundle.model.eval()
    try:
        layers = execution_order(bundle, layers)
        prep = bundle.preprocessing
        x = preprocess_images(images, prep)
        warns: list[dict[str, Any]] = []
        n_given = len(images)
        ok = _finite_rows(bundle, x, layers, cfg.batch_size)
        kept = np.flatnonzero(ok)
        if not len(kept):
            raise DataError(f"every image of the class gives NaN or infinite logits or activations on {bundle.spec} "
                            "(at the output or at a selected layer); check the model's weights and the images")
        if len(kept) < n_given:
            bad = np.flatnonzero(~ok)
            warns.append(_warning(
                "vcc.nonfinite", f"{len(bad)} of the {n_given} class images (index {', '.join(map(str, bad[:10]))}) "
                "give NaN or infinite logits or activations and were left out; check the model's weights, or "
                "remove those images from --images", "--images", figure="graph"))
            images = [images[i] for i in kept]
            x = x[torch.as_tensor(kept)]
        if len(images) < cfg.n_images:
            warns.append(_warning(
                "vcc.few_images", f"{len(images)} images of the class, fewer than the {cfg.n_images} asked for: "
                "concepts are clusters of segments across images, and with few images most clusters fall under "
                "the pruning size and layers may end empty; use more images (--n-images, or --augment to add "
                "crops and flips)", "--n-images", figure="graph"))

        # Top-down segments (eq. 5.1-5.3)
        grids = feature_grids(bundle, x, layers, cfg.grid, cfg.batch_size)
        clock.lap("feature grids")
        segs = top_down_segments(grids, layers, cfg.split_range, cfg.silhouette_threshold, cfg.slic_compactness,
                                 cfg.min_segment_fraction, cfg.seed, cfg.kmeans_n_init, n_jobs, cfg.min_segment_size)
        del grids
        clock.lap("segmentation")

        # Concepts per layer (eq. 5.4-5.5)
        seg_feats, seg_logits = _segment_gap(bundle, images, segs, class_index, cfg, progress)
        clock.lap("segment features")
        concepts: dict[str, LayerConcepts] = {}
        seg_concept = np.full(len(segs), -1, dtype=np.int64)
        nodes: dict[str, list[Node]] = {}
        n_clusters: dict[str, int] = {}
        usable: dict[str, np.ndarray] = {}
        for name in layers:
            ids = segs.ids(name)
            finite = np.isfinite(seg_feats[name]).all(1) & np.isfinite(seg_logits[ids])
            use = ids[finite]
            usable[name] = seg_feats[name][finite]
            if len(use) < len(ids):
                warns.append(_warning(
                    "vcc.nonfinite_segments", f"{len(ids) - len(use)} of the {len(ids)} segment images at {name} give "
                    "NaN or infinite features or logits and were left out of the concepts; check the model's "
                    "weights (a different --fill-value changes the segment images)", "--fill-value", name, "graph"))
            n_clusters[name] = cfg.clusters_for(len(use))
            if len(use):
                lc = discover_concepts(usable[name], n_clusters[name], cfg.prune, cfg.max_members,
                                       cfg.kmeans_n_init, cfg.seed, segs.image[use], len(images), cfg.commonality,
                                       cfg.kmeans_backend(len(use)), bundle.device)
            else:
                lc = _empty_concepts(seg_feats[name].shape[1])
            concepts[name] = lc
            seg_concept[use] = lc.labels
            nodes[name] = [Node(concept_id(name, c), name, c, int(lc.sizes[c]), use[m].tolist(),
                                use[m[: cfg.n_exemplars]].tolist()) for c, m in enumerate(lc.members)]
            if not lc.centroids.shape[0]:
                k = int(np.sum(lc.cluster_sizes > 0))
                ratio = "" if cfg.clusters_per_segments is not None else ", or --clusters-per-segments 0.1"
                warns.append(_warning(
                    "vcc.empty_layer", f"{name} has no concept: all {k} clusters of its {len(use)} segments were "
                    f"pruned ({lc.n_pruned_size} under the minimum size Y({len(use)}) = {lc.min_size:.1f} members, "
                    f"{lc.n_pruned_commonality} by the commonality filter), so it has no nodes or edges; use more "
                    f"images (--n-images, --augment), fewer clusters (--n-concepts{ratio}) or a lower pruning "
                    "curve (--prune)", "--n-images", name, "graph"))
        class_node = Node(class_node_id(class_index), CLASS_LAYER, class_index, len(images), kind="class",
                          label=bundle.class_name(class_index))
        clock.lap("concepts")

        # Edges (eq. 5.6-5.7)
        x_random = preprocess_images(random_images, prep)
        rok = _finite_rows(bundle, x_random, layers, cfg.batch_size)
        if not rok.all():
            warns.append(_warning(
                "vcc.nonfinite_random", f"{int((~rok).sum())} of the {len(rok)} random images give NaN or infinite "
                "logits or activations and were left out of the random sets; check them (--random)", "--random",
                figure="graph"))
            x_random = x_random[torch.as_tensor(np.flatnonzero(rok))]
        pseudo, sets = random_sets(len(x_random), cfg.n_random_sets, cfg.random_set_size, cfg.seed)
        if len(pseudo) < cfg.random_set_size or len(np.unique(sets)) < sets.size:
            warns.append(_warning(
                "vcc.random_overlap", f"{len(x_random)} random images for a pseudo-concept and {cfg.n_random_sets} "
                f"random sets of {cfg.random_set_size}: the sets get {len(pseudo)} images each and share images "
                f"(disjoint sets need {(cfg.n_random_sets + 1) * cfg.random_set_size}), so the t-test's samples are "
                "not independent; pass more random images (--random, --random-augment) or fewer or smaller sets "
                "(--n-random-sets, --random-set-size)", "--random", figure="graph"))
        class_keys = {_image_key(im) for im in images}
        shared = [i for i, im in enumerate(random_images) if rok[i] and _image_key(im) in class_keys]
        if shared:
            warns.append(_warning(
                "vcc.random_has_class_images", f"{len(shared)} of the random images are also images of the class: "
                "the random sets overlap the concept sets, which pulls the CAVs and edge weights toward chance; "
                "pass random images of other classes (--random)", "--random", figure="graph"))
        n = len(layers)
        targets = list(range(1, n + 1))  # layer indices; n is the class node
        lower_of = {t: ([t - 1] if cfg.adjacent_only else list(range(t))) for t in targets}
        lower_of = {t: [j for j in js if nodes[layers[j]]] for t, js in lower_of.items()}
        cav_cache: dict[int, LayerCAVs] = {}
        edges: list[Edge] = []
        total = sum(len(nodes[layers[t]]) if t < n else 1 for t in targets if lower_of[t])
        done = 0
        for t in targets:
            if not lower_of[t]:
                continue
            for j in lower_of[t]:
                if j not in cav_cache:
                    cav_cache[j] = _layer_cavs(bundle, layers[j], images, segs, nodes[layers[j]], x_random, pseudo,
                                               sets, cfg)
                    clock.lap("CAVs")
            lower = [cav_cache[j] for j in lower_of[t]]
            uppers = nodes[layers[t]] if t < n else [class_node]
            if t == n:
                per_upper = [edge_values(bundle, x, lower, class_index=class_index, batch_size=cfg.batch_size,
                                         drop_prefix_tokens=cfg.drop_prefix_tokens)]
            elif not uppers:  # a layer without concepts: no edges into it
                per_upper = []
            else:  # the members of every upper concept in full batches, each with its own centroid
                rows = np.concatenate([up.members for up in uppers])
                owner = np.repeat(np.arange(len(uppers)), [len(up.members) for up in uppers])
                q = torch.as_tensor(concepts[layers[t]].centroids[[up.index for up in uppers]])
                per_upper = edge_values_grouped(
                    bundle, lambda sl, rows=rows: segment_inputs(images, segs, rows[sl], prep, cfg.fill_value),
                    owner, lower, layers[t], q, cfg.batch_size, cfg.drop_prefix_tokens)
            for up, vals in zip(uppers, per_upper, strict=True):
                for j in lower_of[t]:
                    values, rand = vals[layers[j]]
                    p = edge_pvalues(values, rand) if cfg.significance else np.full(len(values), np.nan)
                    for c, low in enumerate(nodes[layers[j]]):
                        keep = bool(p[c] < cfg.p_threshold) if cfg.significance else True
                        edges.append(Edge(low.id, up.id, float(values[c].mean()), float(p[c]), keep,
                                          values[c].tolist(), rand.tolist()))
                done += 1
                if progress:
                    progress("edges", done, total)
                clock.lap("ITCAV")
            for j in [j for j in cav_cache if all(j not in lower_of[u] for u in targets if u > t)]:
                del cav_cache[j]

        graph = VCCGraph(list(layers), class_index, bundle.class_name(class_index),
                         [*[nd for name in layers for nd in nodes[name]], class_node], edges,
                         meta={"n_images": len(images), "n_random_images": len(random_images),
                               "random_set_size": len(pseudo),
                               "segments_per_layer": {name: len(segs.ids(name)) for name in layers},
                               "min_cluster_size": {name: concepts[name].min_size for name in layers},
                               "n_clusters": n_clusters,
                               "pruned_by_size": {name: concepts[name].n_pruned_size for name in layers},
                               "pruned_by_commonality": {name: concepts[name].n_pruned_commonality
                                                         for name in layers},
                               "config": cfg.to_dict()})

        fidelity = None
        if cfg.fidelity:
            suppression = {}
            for name in layers:
                m = len(nodes[name]) if cfg.suppression_concepts is None else min(cfg.suppression_concepts,
                                                                                   len(nodes[name]))
                matched = None
                if cfg.matched_random != "off":
                    matched = matched_directions(usable[name], concepts[name].sizes[:m], cfg.n_random_directions,
                                                 cfg.matched_random, cfg.seed)
                suppression[name] = suppression_curves(bundle, name, x, class_index, concepts[name].centroids[:m],
                                                       [nd.id for nd in nodes[name][:m]], cfg.suppression_scales,
                                                       cfg.n_random_directions, cfg.seed, cfg.batch_size, matched,
                                                       cfg.matched_random)
                if progress:
                    progress("suppression", layers.index(name) + 1, n)
            aps = average_path_strength(graph)
            aps_all = average_path_strength(graph, significant_only=False)
            ls = logit_sums(graph, seg_logits)
            fidelity = Fidelity(suppression, aps, ls, aps_ls_correlation(aps, ls), aps_all,
                                aps_ls_correlation(aps_all, ls))
            clock.lap("fidelity")
    finally:
        bundle.model.train(was_training)
    segs.image = kept[segs.image]  # indices into the images given
    graph.meta["kept_images"] = kept.tolist()
    return VCCResult(graph, segs, {name: concepts[name].centroids for name in layers}, seg_feats, seg_concept,
                     seg_logits, concepts, fidelity, cfg, clock.times, warns, kept.tolist())
