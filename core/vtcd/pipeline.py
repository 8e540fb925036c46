"""VTCD end to end: :func:`discover` (features -> tubelets -> concepts) and :func:`cris` (importance of
concepts and heads), plus :func:`attribution` and :func:`head_pruning` for the validation of 4.5.5.

Functions of a model and videos; with a checkpoint store (:mod:`core.checkpoint`) :func:`discover` and
:func:`cris` save each finished part and skip the parts saved before. :func:`core.vtcd.analyse` runs
them all; :mod:`core.vtcd.store` writes what they return as a run.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.batching import BatchSize
from core.checkpoint import CheckpointStore
from core.models import ModelBundle
from core.precision import check_precision
from core.vtcd.attribution import AttributionCurves, attribution_curves, occlusion_importance
from core.vtcd.cnmf import CNMFResult, convex_nmf, convex_nmf_batched, elbow_kmeans, silhouette
from core.vtcd.config import VTCDConfig
from core.vtcd.features import (
    FeatureSite,
    Inputs,
    extract_features,
    feature_sites,
    layers_in_run_order,
    prepare_videos,
)
from core.vtcd.importance import CRISResult, cris_units, ranking_convergence
from core.vtcd.masking import UnitSet, coverage_to_tokens, prefix_module
from core.vtcd.tubelets import Tubelets, batch_tubelets, segmentation_grid, video_tubelets

Progress = Callable[[str, int, int], None]
# volumes per torch SLIC call to start with (halved while it runs out of memory); fewer on the host, where
# running out of memory may kill the process instead of raising
SLIC_CHUNK, SLIC_CHUNK_CPU = 16, 4
Videos = Sequence[np.ndarray] | Inputs


@dataclass
class HeadConcepts:
    """The tubelets and concepts of one (layer, head) over ``V`` videos.

    ``labels`` int16 ``(V, Ts, Hs, Ws)``: each video's tubelet ids on the segmentation grid (-1: a
    dropped tubelet). The ``M`` tubelets of all videos are rows of ``tubelet_features`` ``(M, d)``,
    with their video ``tubelet_video`` and id ``tubelet_id`` (``(M,)``). Convex NMF: ``G`` ``(M, Q)``
    (columns sum to 1), ``H`` ``(Q, M)``, ``centroids`` ``(Q, d)``, ``assignment`` ``(M,)`` the concept of
    each tubelet. ``q_elbow`` the elbow's Q (concepts with no tubelet are dropped, so ``n_concepts`` may
    be smaller), ``inertias`` the k-means inertias for k = 1, 2, ..., ``silhouette`` of the assignment,
    ``cnmf_error`` the relative reconstruction error.
    """

    layer: str
    head: int
    site: int
    labels: np.ndarray
    tubelet_video: np.ndarray
    tubelet_id: np.ndarray
    tubelet_features: np.ndarray
    assignment: np.ndarray
    G: np.ndarray
    H: np.ndarray
    centroids: np.ndarray
    q_elbow: int
    inertias: list[float]
    silhouette: float
    cnmf_error: float

    @property
    def n_concepts(self) -> int:
        return int(self.centroids.shape[0])

    def members(self, concept: int) -> np.ndarray:
        """Rows (into the tubelet arrays) of the tubelets assigned to ``concept``."""
        return np.flatnonzero(self.assignment == concept)

    def concept_map(self) -> np.ndarray:
        """int16 ``(V, Ts, Hs, Ws)``: the concept of every voxel (-1: none)."""
        v = self.labels.shape[0]
        lut = np.full((v, int(self.labels.max()) + 2), -1, dtype=np.int16)  # last column: label -1
        lut[self.tubelet_video, self.tubelet_id] = self.assignment
        return np.take_along_axis(lut, np.where(self.labels < 0, lut.shape[1] - 1, self.labels).reshape(v, -1),
                                  axis=1).reshape(self.labels.shape)

    def supports(self, concepts: Sequence[int] | None = None) -> np.ndarray:
        """Concept supports on the segmentation grid: bool ``(Q, V, Ts, Hs, Ws)`` (the union of each
        concept's tubelet masks, per video)."""
        cmap = self.concept_map()
        qs = np.arange(self.n_concepts) if concepts is None else np.asarray(concepts, dtype=int)
        return cmap[None] == qs.reshape(-1, 1, 1, 1, 1)


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


def unpack_units(arrays: Mapping[str, np.ndarray], layer: str | Sequence[str], site: int | Sequence[int]
                 ) -> list[HeadConcepts]:
    """The units :func:`pack_units` packed; ``layer``/``site``: one for all, or one per unit."""
    units = []
    j = 0
    while f"u{j}_labels" in arrays:
        a = {k[len(f"u{j}_"):]: v for k, v in arrays.items() if k.startswith(f"u{j}_")}
        head, q, sil, err = a["scalars"].tolist()
        units.append(HeadConcepts(layer=layer if isinstance(layer, str) else layer[j],
                                  head=int(head), site=site if isinstance(site, int) else int(site[j]),
                                  labels=a["labels"], tubelet_video=a["tubelet_video"], tubelet_id=a["tubelet_id"],
                                  tubelet_features=a["features"], assignment=a["assignment"], G=a["G"], H=a["H"],
                                  centroids=a["centroids"], q_elbow=int(q), inertias=a["inertias"].tolist(),
                                  silhouette=float(sil), cnmf_error=float(err)))
        j += 1
    return units


@dataclass
class VTCDResult:
    """Everything :func:`discover` found for ``V`` videos.

    ``units``: one :class:`HeadConcepts` per (layer, head), layers in the order given. Concepts are also
    numbered globally (``concept_unit[i]``, ``concept_local[i]``, ``concept_names[i]`` like
    ``"blocks.1/h2/c0"``), the order of CRIS's units. ``video_shape`` ``(T, H, W)`` the model input,
    ``seg_grid`` the SLIC grid, ``logits`` ``(V, K)`` of the unmasked videos, ``targets`` ``(V,)`` the
    labels given (None: the predictions are used), ``layer_order`` the layers in execution order,
    ``timings`` seconds per stage.
    """

    spec: str
    config: VTCDConfig
    sites: list[FeatureSite]
    video_shape: tuple[int, int, int]
    seg_grid: tuple[int, int, int]
    units: list[HeadConcepts]
    logits: np.ndarray
    targets: np.ndarray | None
    layer_order: list[str]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_videos(self) -> int:
        return int(self.logits.shape[0])

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(1)

    @property
    def concept_unit(self) -> np.ndarray:
        return np.concatenate([np.full(u.n_concepts, i) for i, u in enumerate(self.units)]).astype(int)

    @property
    def concept_local(self) -> np.ndarray:
        return np.concatenate([np.arange(u.n_concepts) for u in self.units]).astype(int)

    @property
    def concept_names(self) -> list[str]:
        return [f"{u.layer}/h{u.head}/c{q}" for u in self.units for q in range(u.n_concepts)]

    @property
    def n_concepts(self) -> int:
        return sum(u.n_concepts for u in self.units)

    def unit_index(self, layer: str, head: int) -> int:
        for i, u in enumerate(self.units):
            if u.layer == layer and u.head == head:
                return i
        raise KeyError(f"no unit {layer}/h{head}")

    def concepts_of_layer(self, layer: str) -> np.ndarray:
        """Global indices of the concepts of every head of ``layer``."""
        cu = self.concept_unit
        return np.flatnonzero(np.isin(cu, [i for i, u in enumerate(self.units) if u.layer == layer]))

    def supports(self, resolution: str = "segmentation", units: Sequence[int] | None = None) -> np.ndarray:
        """Supports of every concept (of ``units``, default all, in global order): bool
        ``(n, V, *grid)`` with grid the segmentation grid, the ``tokens`` grid of each concept's site
        (all sites must share it), or the ``video`` ``(T, H, W)`` (nearest upsampling)."""
        chosen = range(len(self.units)) if units is None else units
        parts = [self.unit_supports(i, resolution) for i in chosen]
        return np.concatenate(parts) if parts else np.zeros((0, self.n_videos, *self.seg_grid), bool)

    def unit_supports(self, unit: int, resolution: str = "segmentation") -> np.ndarray:
        """Supports of one unit's concepts, ``(Q, V, *grid)`` at ``resolution`` (see :meth:`supports`)."""
        u = self.units[unit]
        s = u.supports()
        if resolution == "segmentation":
            return s
        if resolution == "tokens":
            return coverage_to_tokens(s, self.sites[u.site].grid, self.config.token_coverage).numpy()
        if resolution == "video":
            if tuple(s.shape[2:]) == tuple(self.video_shape):
                return s
            q, v = s.shape[:2]
            up = F.interpolate(torch.from_numpy(s).reshape(q * v, 1, *s.shape[2:]).to(torch.uint8),
                               size=self.video_shape, mode="nearest")
            return up.reshape(q, v, *self.video_shape).bool().numpy()
        raise ValueError(f"resolution must be segmentation, tokens or video, not {resolution!r}")

    def concept_units(self) -> UnitSet:
        """Every concept as a maskable unit: its site, head and token supports ``(V, N)``."""
        sites, heads, tokens = [], [], []
        for i, u in enumerate(self.units):
            tok = self.unit_supports(i, "tokens").reshape(u.n_concepts, self.n_videos, -1)
            for q in range(u.n_concepts):
                sites.append(u.site)
                heads.append(u.head)
                tokens.append(tok[q])
        return UnitSet.from_units(self.sites, sites, heads, tokens, self.concept_names)

    def head_units(self) -> UnitSet:
        """Every analysed (layer, head) as a unit covering all tokens."""
        return UnitSet.heads(self.sites, self.n_videos, [(u.site, u.head) for u in self.units])


def _select_heads(heads: Sequence[int] | Mapping[str, Sequence[int]] | None, site: FeatureSite) -> list[int]:
    chosen = heads.get(site.layer) if isinstance(heads, Mapping) else heads
    if chosen is None:
        return list(range(site.heads))
    bad = [h for h in chosen if not 0 <= int(h) < site.heads]
    if bad:
        raise ValueError(f"{site.layer} has {site.heads} heads; no head {bad}")
    return [int(h) for h in chosen]


def cluster_head(features: np.ndarray, config: VTCDConfig,
                 device: torch.device | str = "cpu") -> tuple[int, list[float], object, float]:
    """Elbow Q, inertias, the convex NMF (concepts without tubelets dropped) and its silhouette."""
    if len(features) == 0:
        raise ValueError("no tubelets to cluster: every tubelet was under min_tubelet_fraction")
    q, inertias, km_labels = elbow_kmeans(features, config.max_concepts, config.elbow_threshold,
                                          config.kmeans_n_init, config.seed, config.elbow_rule)
    res = convex_nmf(features, q, km_labels, config.cnmf_max_iter, config.cnmf_tol, device, _nmf_dtype(device),
                     config.seed, config.assignment)
    return q, inertias, _drop_unused(res, q), silhouette(features, res.assignment)


def _batch_heads(device: torch.device | str) -> bool:
    """Whether the heads' convex NMFs run as one batch: off the CPU."""
    return torch.device(device).type != "cpu"


def _nmf_dtype(device: torch.device | str) -> torch.dtype:
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def _drop_unused(res: CNMFResult, q: int) -> CNMFResult:
    """``res`` without the concepts no tubelet was assigned to."""
    used = np.unique(res.assignment)
    if len(used) < q:
        remap = np.full(q, -1, dtype=np.int32)
        remap[used] = np.arange(len(used), dtype=np.int32)
        res.assignment, res.G, res.H, res.centroids = remap[res.assignment], res.G[:, used], res.H[used], \
            res.centroids[used]
    return res


def cluster_heads(features: Sequence[np.ndarray], config: VTCDConfig,
                  device: torch.device | str = "cpu") -> list[tuple[int, list[float], CNMFResult, float]]:
    """:func:`cluster_head` of many heads. Off the CPU their convex NMFs run as one batch
    (:func:`core.vtcd.cnmf.convex_nmf_batched`: the same answers up to summation order); on the CPU one
    by one, where small matmuls are cheap and the batch would only pad."""
    if not _batch_heads(device) or len(features) < 2:
        return [cluster_head(f, config, device) for f in features]
    if any(len(f) == 0 for f in features):
        raise ValueError("no tubelets to cluster: every tubelet was under min_tubelet_fraction")
    elbows = [elbow_kmeans(f, config.max_concepts, config.elbow_threshold, config.kmeans_n_init, config.seed,
                           config.elbow_rule) for f in features]
    results = convex_nmf_batched(features, [e[0] for e in elbows], [e[2] for e in elbows], config.cnmf_max_iter,
                                 config.cnmf_tol, device, _nmf_dtype(device), config.seed, config.assignment)
    return [(q, inertias, _drop_unused(res, q), silhouette(f, res.assignment))
            for f, (q, inertias, _), res in zip(features, elbows, results, strict=True)]


def discover(bundle: ModelBundle, videos: Videos, layers: Sequence[str] | None = None,
             heads: Sequence[int] | Mapping[str, Sequence[int]] | None = None, config: VTCDConfig | None = None,
             targets: Sequence[int] | None = None, progress: Progress | None = None,
             store: CheckpointStore | None = None) -> VTCDResult:
    """Concept discovery: tubelets per video, layer and head (SLIC), concepts per head (convex NMF).

    ``videos``: uint8 clips ``(T, H, W, 3)`` (fitted to the model's input) or a preprocessed batch.
    ``layers``: default the model's stages; ``heads``: all (None), a list for every layer, or a dict
    per layer. ``targets``: class labels of the videos, recorded for :func:`cris`. ``progress(stage,
    done, total)`` is called as units finish. A head whose tubelets are all under
    ``min_tubelet_fraction`` gets no unit (:func:`degenerate_warnings` reports a layer left without any).
    ``store``: one layer at a time, each saved as ``parts/discover-NN.npz``; layers saved before are not
    recomputed (the same numbers: every head is clustered with ``config.seed``).
    """
    cfg = config or VTCDConfig()
    layers = list(layers or bundle.stages)
    if store is not None:
        return _discover_by_layer(bundle, videos, layers, heads, cfg, targets, progress, store)
    if cfg.stream_features:
        with tempfile.TemporaryDirectory(prefix="vtcd-features-") as folder:
            return _discover(bundle, videos, layers, heads, cfg, targets, progress, Path(folder))
    return _discover(bundle, videos, layers, heads, cfg, targets, progress, None)


def _discover(bundle: ModelBundle, videos: Videos, layers: list[str],
              heads: Sequence[int] | Mapping[str, Sequence[int]] | None, cfg: VTCDConfig,
              targets: Sequence[int] | None, progress: Progress | None, feature_dir: Path | None) -> VTCDResult:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    check_precision(cfg.precision, bundle.device)
    x = prepare_videos(bundle, videos)
    sites = feature_sites(bundle, layers, cfg.feature, cfg.channel_blocks)
    feats, logits = extract_features(bundle, x, sites, cfg.feature_batch_size, cfg.precision, feature_dir)
    order = layers_in_run_order(bundle, x, layers)
    timings["features"] = time.perf_counter() - t0
    prep = bundle.preprocessing
    video_shape = (int(prep.frames or 1), int(prep.size[0]), int(prep.size[1]))
    plan = [(s, h) for s, site in enumerate(sites) for h in _select_heads(heads, site)]
    n_videos = int(logits.shape[0])
    units: list[HeadConcepts] = []
    timings["tubelets"] = timings["cnmf"] = 0.0
    seg_grid = segmentation_grid(video_shape, sites[0].grid, cfg.upsample, cfg.upsample_frames, cfg.spatial_scale)

    def tubelets_of(s: int, h: int) -> list[Tubelets]:
        grid = segmentation_grid(video_shape, sites[s].grid, cfg.upsample, cfg.upsample_frames, cfg.spatial_scale)
        return [video_tubelets(feats[s][v, h], grid, cfg.n_segments, cfg.compactness, cfg.min_tubelet_fraction,
                               cfg.slic_max_num_iter) for v in range(n_videos)]

    t1 = time.perf_counter()
    tubes_of = _torch_tubelets(feats, sites, plan, video_shape, cfg, bundle.device) if cfg.slic_backend == "torch" \
        else {}
    clusters: dict[tuple[int, int], tuple[int, list[float], CNMFResult, float]] = {}
    if _batch_heads(bundle.device):  # every head's tubelets first, then one batched convex NMF
        tubes_of = {key: tubes_of.get(key) or tubelets_of(*key) for key in plan}
        timings["tubelets"] += time.perf_counter() - t1
        t1 = time.perf_counter()
        keys = [key for key in plan if sum(t.count for t in tubes_of[key])]
        clusters = dict(zip(keys, cluster_heads([np.concatenate([t.features for t in tubes_of[k]]) for k in keys],
                                                cfg, bundle.device), strict=True))
        timings["cnmf"] += time.perf_counter() - t1
    else:
        timings["tubelets"] += time.perf_counter() - t1
    for done, (s, h) in enumerate(plan):
        site = sites[s]
        t1 = time.perf_counter()
        tubes = tubes_of.get((s, h)) or tubelets_of(s, h)
        t2 = time.perf_counter()
        features = np.concatenate([t.features for t in tubes])
        if not len(features):  # every tubelet under min_tubelet_fraction: the head has no concept
            timings["tubelets"] += t2 - t1
            if progress is not None:
                progress("concepts", done + 1, len(plan))
            continue
        q, inertias, res, sil = clusters.get((s, h)) or cluster_head(features, cfg, bundle.device)
        timings["tubelets"] += t2 - t1
        timings["cnmf"] += time.perf_counter() - t2
        units.append(HeadConcepts(
            layer=site.layer, head=h, site=s, labels=np.stack([t.labels for t in tubes]).astype(np.int16),
            tubelet_video=np.concatenate([np.full(t.count, v, np.int32) for v, t in enumerate(tubes)]),
            tubelet_id=np.concatenate([np.arange(t.count, dtype=np.int32) for t in tubes]),
            tubelet_features=features.astype(np.float32), assignment=res.assignment, G=res.G.astype(np.float32),
            H=res.H.astype(np.float32), centroids=res.centroids.astype(np.float32), q_elbow=q, inertias=inertias,
            silhouette=sil, cnmf_error=res.error))
        if progress is not None:
            progress("concepts", done + 1, len(plan))
    return VTCDResult(spec=bundle.spec, config=cfg, sites=sites, video_shape=video_shape, seg_grid=seg_grid,
                      units=units, logits=logits.numpy(), layer_order=order, timings=timings,
                      targets=None if targets is None else np.asarray(targets, dtype=np.int64))


def _torch_tubelets(feats: Sequence[torch.Tensor], sites: Sequence[FeatureSite], plan: Sequence[tuple[int, int]],
                    video_shape: tuple[int, int, int], cfg: VTCDConfig, device: torch.device
                    ) -> dict[tuple[int, int], list[Tubelets]]:
    """Tubelets of every planned (site, head), each site's videos and heads in batches through the torch
    SLIC on ``device``: ``{(site, head): [Tubelets of video 0, 1, ...]}``."""
    out: dict[tuple[int, int], list[Tubelets]] = {}
    chunk = BatchSize(SLIC_CHUNK_CPU if torch.device(device).type == "cpu" else SLIC_CHUNK, "SLIC volumes", device)
    for s, site in enumerate(sites):
        heads = [h for ss, h in plan if ss == s]
        if not heads:
            continue
        grid = segmentation_grid(video_shape, site.grid, cfg.upsample, cfg.upsample_frames, cfg.spatial_scale)
        v = feats[s].shape[0]
        volumes = [feats[s][i, h] for h in heads for i in range(v)]  # views: nothing copied until a chunk runs
        tubes = batch_tubelets(volumes, grid, cfg.n_segments, cfg.compactness, cfg.min_tubelet_fraction,
                               cfg.slic_max_num_iter, device, chunk)
        for j, h in enumerate(heads):
            out[(s, h)] = tubes[j * v:(j + 1) * v]
    return out


def _discover_by_layer(bundle: ModelBundle, videos: Videos, layers: list[str],
                       heads: Sequence[int] | Mapping[str, Sequence[int]] | None, cfg: VTCDConfig,
                       targets: Sequence[int] | None, progress: Progress | None,
                       store: CheckpointStore) -> VTCDResult:
    x = prepare_videos(bundle, videos)
    parts = []
    t0 = time.perf_counter()
    for i, layer in enumerate(layers):
        name = f"parts/discover-{i:02d}.npz"
        if store.has(name):
            parts.append(store.load_arrays(name))
        else:
            res = discover(bundle, x, [layer], heads, cfg)
            arrays = {"logits": res.logits, **pack_units(res.units)}
            store.save_arrays(name, **arrays)
            parts.append(arrays)
        if progress is not None:
            progress("concepts (layers)", i + 1, len(layers))
    sites = feature_sites(bundle, layers, cfg.feature, cfg.channel_blocks)
    units = [u for i, (layer, p) in enumerate(zip(layers, parts, strict=True)) for u in unpack_units(p, layer, i)]
    prep = bundle.preprocessing
    video_shape = (int(prep.frames or 1), int(prep.size[0]), int(prep.size[1]))
    seg_grid = segmentation_grid(video_shape, sites[0].grid, cfg.upsample, cfg.upsample_frames, cfg.spatial_scale)
    return VTCDResult(spec=bundle.spec, config=cfg, sites=sites, video_shape=video_shape, seg_grid=seg_grid,
                      units=units, logits=parts[0]["logits"], layer_order=layers_in_run_order(bundle, x, layers),
                      timings={"discover": time.perf_counter() - t0},
                      targets=None if targets is None else np.asarray(targets, dtype=np.int64))


def _warning(code: str, message: str, setting: str | None, layer: str | None = None,
             figure: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "setting": setting, "layer": layer, "figure": figure}


def degenerate_warnings(result: VTCDResult, concepts: CRISResult | None = None,
                        heads: CRISResult | None = None) -> list[dict[str, Any]]:
    """Degenerate results of a VTCD run, each ``{code, message, setting, layer, figure}`` (what a job
    passes to :meth:`core.artifacts.RunWriter.warn`): fewer than ``min_clips`` clips, a layer without
    any concept, and a CRIS ranking (of ``concepts`` or ``heads``) that has not converged by
    :func:`core.vtcd.importance.ranking_convergence` (fewer than half of the top k separated)."""
    cfg = result.config
    out = []
    if result.n_videos < cfg.min_clips:
        out.append(_warning(
            "vtcd.few_clips", f"{result.n_videos} clips (fewer than {cfg.min_clips}): concepts are clusters of "
            "tubelets across the clips and importance is a mean over them, while the bootstrap interval covers "
            "only the masks; use more clips (videos)", "videos", figure="importance"))
    for layer in dict.fromkeys(s.layer for s in result.sites):
        if not any(u.layer == layer and u.n_concepts for u in result.units):
            out.append(_warning(
                "vtcd.empty_layer", f"{layer} has no concept: every tubelet of every head is under the minimum "
                f"size ({cfg.min_tubelet_fraction:g} of the volume); lower min_tubelet_fraction or use fewer SLIC "
                "segments (n_segments)", "min_tubelet_fraction", layer, "concepts"))
    for res, code, what, flags, figure in (
            (concepts, "vtcd.cris_unconverged", "concepts", "n_masks", "importance"),
            (heads, "vtcd.head_cris_unconverged", "heads", "head_masks", "heads")):
        conv = ranking_convergence(res, cfg.convergence_top_k)
        if conv is None or conv[0] >= (conv[1] + 1) // 2:
            continue
        level = res.ci_level or cfg.ci_level
        out.append(_warning(
            code, f"the CRIS ranking of the {what} has not converged: only {conv[0]} of the top {conv[1]} have a "
            f"{level:.0%} bootstrap interval whose lower end is above the importance of number {conv[1] + 1}; "
            f"use more masks ({flags}) or more clips (videos)", flags, figure=figure))
    return out


@dataclass
class VTCDImportance:
    """CRIS over concepts (units in :attr:`VTCDResult.concept_names` order) and over heads."""

    concepts: CRISResult
    heads: CRISResult | None
    timings: dict[str, float] = field(default_factory=dict)


def _targets(result: VTCDResult, targets: Sequence[int] | None) -> np.ndarray:
    if targets is not None:
        return np.asarray(targets, dtype=np.int64)
    return result.targets if result.targets is not None else result.predictions


def cris(bundle: ModelBundle, videos: Videos, result: VTCDResult, targets: Sequence[int] | None = None,
         config: VTCDConfig | None = None, store: CheckpointStore | None = None,
         progress: Progress | None = None) -> VTCDImportance:
    """CRIS importance of every concept of ``result`` (all layers and heads masked together) and of every
    head, on the same ``videos`` ``discover`` ran on. ``config`` defaults to the discovery's. ``store``:
    each video's masked metrics are saved (``parts/cris-concepts/``, ``parts/cris-heads/``) and videos
    saved before are not recomputed."""
    cfg = config or result.config
    x = prepare_videos(bundle, videos)
    tg = _targets(result, targets)
    expand = prefix_module(result.sites, result.layer_order) if cfg.share_prefix else None

    def tick(stage: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(stage, done, total))

    t0 = time.perf_counter()
    concepts = cris_units(bundle, x, result.concept_units(), tg, cfg.n_masks, cfg.rho, cfg.metric, cfg.batch_size,
                          cfg.seed, expand, salt=0, n_boot=cfg.bootstrap, ci_level=cfg.ci_level, store=store,
                          tag="cris-concepts", progress=tick("CRIS concepts (videos)"), precision=cfg.precision)
    t1 = time.perf_counter()
    heads = None
    if cfg.n_head_masks > 0:
        heads = cris_units(bundle, x, result.head_units(), tg, cfg.n_head_masks, cfg.rho, cfg.metric,
                           cfg.batch_size, cfg.seed, concepts.expand_at if cfg.share_prefix else None, salt=1,
                           n_boot=cfg.bootstrap, ci_level=cfg.ci_level, store=store, tag="cris-heads",
                           progress=tick("CRIS heads (videos)"), precision=cfg.precision)
    return VTCDImportance(concepts, heads, {"cris_concepts": t1 - t0, "cris_heads": time.perf_counter() - t1})


def attribution(bundle: ModelBundle, videos: Videos, result: VTCDResult, importance: CRISResult,
                config: VTCDConfig | None = None, targets: Sequence[int] | None = None, metric: str | None = None,
                per_layer: bool = True, occlusion: bool = True) -> dict[str, AttributionCurves]:
    """Attribution curves of the CRIS ranking (and of single-concept occlusion, ranked with the CRIS
    metric, and random orders): removing concepts of all layers (``"all"``) and, with ``per_layer``, of
    each layer alone; the y axis is ``metric`` (default ``config.attribution_metric``)."""
    cfg = config or result.config
    metric = metric or cfg.attribution_metric
    x = prepare_videos(bundle, videos)
    tg = _targets(result, targets)
    units = result.concept_units()
    expand = importance.expand_at if cfg.share_prefix else None
    ranks: dict[str, np.ndarray] = {"cris": importance.importance}
    if occlusion:
        ranks["occlusion"] = occlusion_importance(bundle, x, units, tg, cfg.metric, cfg.batch_size, expand)[1]
    scopes: dict[str, np.ndarray | None] = {"all": None}
    if per_layer:
        for layer in dict.fromkeys(s.layer for s in result.sites):
            if len(result.concepts_of_layer(layer)):
                scopes[layer] = result.concepts_of_layer(layer)
    return {name: attribution_curves(bundle, x, units, ranks, tg, metric, cfg.attribution_steps, cfg.n_random_orders,
                                     scope, cfg.seed, cfg.batch_size, expand)
            for name, scope in scopes.items()}


def head_pruning(bundle: ModelBundle, videos: Videos, result: VTCDResult, head_importance: CRISResult,
                 config: VTCDConfig | None = None, targets: Sequence[int] | None = None,
                 metric: str = "correct") -> AttributionCurves:
    """Remove heads least important first (``"cris/negative"``: pruning) or most important first, against
    random orders; the metric (default top-1 accuracy) at each fraction of heads removed."""
    cfg = config or result.config
    x = prepare_videos(bundle, videos)
    expand = head_importance.expand_at if cfg.share_prefix else None
    return attribution_curves(bundle, x, result.head_units(), {"cris": head_importance.importance},
                              _targets(result, targets), metric, cfg.attribution_steps, cfg.n_random_orders,
                              None, cfg.seed, cfg.batch_size, expand)
