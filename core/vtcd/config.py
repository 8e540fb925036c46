"""Every knob of VTCD (methods.md section 2), with the defaults methods.md gives."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.errors import ConfigError
from core.precision import PRECISIONS, Precision
from core.settings import from_known_fields
from core.vtcd.cnmf import ASSIGNMENTS, ELBOW_RULES, Assignment, ElbowRule

FeatureKind = Literal["key", "query", "value", "block"]
Metric = Literal["loss", "probability", "correct", "logit"]
FEATURE_KINDS: tuple[str, ...] = ("key", "query", "value", "block")
METRICS: tuple[str, ...] = ("loss", "probability", "correct", "logit")
SlicBackend = Literal["skimage", "torch"]
SLIC_BACKENDS: tuple[str, ...] = ("skimage", "torch")

# Whole-number settings: (lowest, highest). The upper bounds keep an absurd value from filling memory or
# running for days before it fails.
INT_RANGES: dict[str, tuple[int, int]] = {
    "channel_blocks": (1, 4096), "n_segments": (1, 10_000), "slic_max_num_iter": (1, 10_000),
    "max_concepts": (1, 1000), "kmeans_n_init": (1, 10_000), "cnmf_max_iter": (1, 10_000_000),
    "n_masks": (2, 1_000_000), "head_masks": (0, 1_000_000), "batch_size": (1, 4096),
    "feature_batch_size": (1, 4096), "bootstrap": (0, 100_000), "convergence_top_k": (1, 10_000),
    "min_clips": (0, 1_000_000), "diagnostic_draws": (1, 10_000), "attribution_steps": (2, 10_000),
    "n_random_orders": (0, 10_000), "seed": (0, 2**32 - 1),
}
FLOAT_FIELDS = ("spatial_scale", "compactness", "min_tubelet_fraction", "elbow_threshold", "cnmf_tol", "rho",
                "token_coverage", "ci_level", "rosetta_epsilon", "rosetta_delta")


class VTCDConfigError(ConfigError, ValueError):
    """A VTCD setting out of its range (a ``ValueError`` too, as before)."""


def _f(default: Any, help: str, flag: str | None = None) -> Any:
    """A setting with its default and help; ``flag``: the command line's shorter name, kept for old scripts."""
    meta: dict[str, Any] = {"help": help}
    if flag:
        meta["flag"] = flag
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class VTCDConfig:
    """Settings of one VTCD run; ``to_dict`` is what a run's manifest records.

    Features: ``feature`` of every head (``key`` default; ``query``, ``value``, or the ``block``
    output split into head-sized chunks). CNN video models have no heads: a layer's output is split
    into ``channel_blocks`` equal channel blocks (``None``: the model's head count for transformers,
    1 block, the whole layer, for CNNs).

    Tubelets (eq. 4.1): the token grid is upsampled trilinearly to ``upsample_frames`` (True: the
    input's frame count; False: the token grid's) x ``spatial_scale`` x the input's height and width
    (``upsample=False`` keeps the token grid), min-max scaled per video and head (one scalar min and
    max), and cut by SLIC into ``n_segments`` with ``compactness`` (``slic_max_num_iter``,
    connectivity enforced: scikit-image defaults). Tubelets under ``min_tubelet_fraction`` of the
    volume are dropped. ``slic_backend``: ``skimage`` (scikit-image's SLIC, one volume at a time, as
    the released code) or ``torch`` (:mod:`core.vtcd.slic_torch`: every video and head of a layer at
    once on the model's device; close to, not identical with, scikit-image's, see faithfulness.md).

    Precision: forward passes run in ``precision`` (``fp32``; ``bf16`` / ``fp16`` autocast), every
    statistic (features, SLIC, k-means, NMF, CRIS metrics) in float32 or float64 (:mod:`core.precision`).
    ``batch_size`` and ``feature_batch_size`` are where batches start; they halve on out-of-memory
    (:mod:`core.batching`). ``stream_features``: discovery keeps the features in memory-mapped files of a
    temporary folder, not in RAM.

    Concepts (eq. 4.2-4.3): k-means for k = 1 .. ``max_concepts`` (``kmeans_n_init`` restarts)
    stops at the first k with inertia above ``elbow_threshold`` x the previous one; ``elbow_rule``
    ``stop`` takes Q = that k (the released code), ``before`` Q = k - 1 (the last k that still lowered
    the inertia by more than 5%). Convex NMF with Q, at most ``cnmf_max_iter`` multiplicative updates
    (the released code's 10,000), stopping early when the relative error changes less than
    ``cnmf_tol`` over 10 updates (0: never). A tubelet belongs to ``argmax_q G[m, q]``
    (``assignment="g"``, the released code) or ``argmax_q H[q, m]`` (``"h"``).

    CRIS (eq. 4.5-4.6): ``n_masks`` masks per video, each removing ``round(rho * units)`` units
    drawn uniformly; ``head_masks`` masks per video for head importance (None: ``n_masks``; 0:
    skip). A concept masks a token when its support covers at least ``token_coverage`` of that
    token's cell. ``metric``: ``loss`` (cross-entropy of the target class, as the dissertation's
    experiments), ``probability`` (softmax of the target), ``correct`` (top-1), ``logit``.
    ``batch_size`` masked forward passes per model call; ``share_prefix`` runs the layers before
    the first masked one once per video and repeats their output along the batch (falls back to
    repeating the input when the model's data flow does not allow it).

    Uncertainty: ``bootstrap`` resamplings of each video's masks (with replacement) give a
    ``ci_level`` percentile interval of every concept's and head's importance (0: none). A ranking
    has converged when at least half of its ``convergence_top_k`` most important units have an
    interval whose lower end is above the importance of the next unit (:func:`core.vtcd.importance.
    ranking_convergence`); otherwise a job warns. Fewer than ``min_clips`` clips is warned about too
    (importance is a mean over the clips, and the interval covers the masks, not the choice of clips).

    Diagnostics (transformers): per block, attention entropy, the effect of removing the attention
    branch, and of removing ``rho`` of the keys by zeroing them (as CRIS does) against removing them
    from the softmax (-inf logits), each over ``diagnostic_draws`` random key sets (``diagnostics``
    off: none).

    Validation (4.5.5): attribution curves at ``attribution_steps`` evenly spaced removal fractions
    from 0 to 1, ``n_random_orders`` random orders, ``attribution_metric`` on the y axis (the target
    probability: higher is better, so positive perturbation should fall fast).

    Rosetta (eq. 4.7-4.8): top ``rosetta_epsilon`` of each model's concepts by importance, tuples
    kept when R > ``rosetta_delta``.
    """

    feature: FeatureKind = _f(  # noqa: RUF009 (a Literal-typed field)
        "key", "what a head's tubelets are cut from: key, query, value, or block (the block output split into "
        "head-sized chunks)")
    channel_blocks: int | None = _f(None, "channel blocks a layer is split into (None: the model's head count for "
                                    "transformers, 1 for CNNs)")
    upsample: bool = _f(True, "upsample the token grid before SLIC")
    upsample_frames: bool = _f(True, "upsample time to the input's frame count (False: keep the token grid's)")
    spatial_scale: float = _f(0.5, "upsampled side as a fraction of the input's")
    n_segments: int = _f(12, "SLIC segments per video and head", "segments")
    compactness: float = _f(0.1, "SLIC compactness")
    slic_max_num_iter: int = _f(10, "SLIC iterations at most")
    slic_backend: SlicBackend = _f(  # noqa: RUF009 (a Literal-typed field)
        "skimage", "SLIC implementation: skimage (scikit-image, one volume at a time, as the released code) or "
        "torch (all videos and heads of a layer at once on the model's device; close to skimage's, not identical)")
    min_tubelet_fraction: float = _f(0.001, "drop tubelets under this fraction of the volume", "min_tubelet")
    max_concepts: int = _f(14, "elbow cap: concepts per head at most")
    elbow_threshold: float = _f(0.95, "stop at the first k whose k-means inertia is above this times the "
                                "previous one")
    elbow_rule: ElbowRule = _f(  # noqa: RUF009 (a Literal-typed field)
        "stop", "Q = the k at which the elbow loop stops (stop, as the released code) or "
        "the k before it (before)")
    kmeans_n_init: int = _f(10, "k-means restarts of the elbow", "kmeans_init")
    cnmf_max_iter: int = _f(10000, "convex NMF iterations at most (the released code's 10000)", "cnmf_iters")
    cnmf_tol: float = _f(1e-7, "stop convex NMF early when the relative error changes less than this over 10 "
                         "updates (0: run every iteration)")
    assignment: Assignment = _f(  # noqa: RUF009 (a Literal-typed field)
        "g", "a tubelet's concept: argmax over its row of the convex weights G (g, as the "
        "released code) or over its column of H (h)")
    n_masks: int = _f(4000, "CRIS masks per video", "masks")
    head_masks: int | None = _f(None, "CRIS masks per video for head importance (None: n_masks; 0: none, no head "
                                "pruning)")
    rho: float = _f(0.5, "masking ratio: fraction of the units each mask removes")
    token_coverage: float = _f(0.5, "a concept masks a token it covers at least this much of")
    metric: Metric = _f(  # noqa: RUF009 (a Literal-typed field)
        "loss", "CRIS metric on the target class: loss, probability, correct or logit")
    batch_size: int = _f(64, "masked forward passes per model call (halved while it runs out of memory)")
    feature_batch_size: int = _f(16, "clips per forward pass when extracting features (halved while it runs out "
                                 "of memory)")
    stream_features: bool = _f(False, "write each layer's features to memory-mapped .npy files in a temporary "
                               "folder (under TMPDIR) instead of holding them in RAM, so memory stays bounded with "
                               "many clips (the same results)")
    precision: Precision = _f(  # noqa: RUF009 (a Literal-typed field)
        "fp32", "numeric precision of the forward passes: fp32, or bf16 / fp16 autocast (statistics stay fp32)")
    share_prefix: bool = _f(True, "run the layers before the first masked one once per batch (falls back to "
                            "repeating the input when the model does not allow it)")
    bootstrap: int = _f(200, "bootstrap resamplings of the masks for the importance intervals (0: none)")
    ci_level: float = _f(0.95, "level of the importance intervals")
    convergence_top_k: int = _f(5, "a ranking has converged when half of its top k are separated from the next "
                                "unit")
    min_clips: int = _f(10, "warn when fewer clips are analysed")
    diagnostics: bool = _f(True, "attention diagnostics per block of a transformer: entropy, removing the "
                           "attention branch, zeroed vs removed keys")
    diagnostic_draws: int = _f(8, "random key sets per block for the diagnostics")
    attribution_steps: int = _f(11, "removal fractions from 0 to 1 of the attribution curves")
    attribution_metric: Metric = _f(  # noqa: RUF009 (a Literal-typed field)
        "probability", "metric of the attribution curves")
    n_random_orders: int = _f(5, "random removal orders averaged", "random_orders")
    rosetta_epsilon: float = _f(0.15, "Rosetta: keep each model's top fraction of concepts by importance "
                                "(the released code 0.075)")
    rosetta_delta: float = _f(0.15, "Rosetta: keep tuples with R above this (the released code 0.2)")
    seed: int = _f(0, "seed of SLIC, k-means, convex NMF, masks and bootstrap")

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise VTCDConfigError(name, f"must be {what}, not {getattr(self, name)!r}")

        need(self.feature in FEATURE_KINDS, "feature", f"one of {', '.join(FEATURE_KINDS)}")
        for name in ("metric", "attribution_metric"):
            need(getattr(self, name) in METRICS, name, f"one of {', '.join(METRICS)}")
        need(self.assignment in ASSIGNMENTS, "assignment", f"one of {', '.join(ASSIGNMENTS)}")
        need(self.elbow_rule in ELBOW_RULES, "elbow_rule", f"one of {', '.join(ELBOW_RULES)}")
        need(self.slic_backend in SLIC_BACKENDS, "slic_backend", f"one of {', '.join(SLIC_BACKENDS)}")
        need(self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}")
        for name, (lo, hi) in INT_RANGES.items():
            v = getattr(self, name)
            if v is None and name in ("channel_blocks", "head_masks"):
                continue
            need(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi, name,
                 f"a whole number from {lo} to {hi}")
        for name in ("upsample", "upsample_frames", "share_prefix", "diagnostics", "stream_features"):
            need(isinstance(getattr(self, name), bool), name, "true or false")
        for name in FLOAT_FIELDS:
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), name,
                 "a finite number")
        need(0.0 < self.rho < 1.0, "rho", "between 0 and 1 (exclusive)")
        need(0.0 < self.rosetta_epsilon <= 1.0, "rosetta_epsilon", "in (0, 1]")
        need(0.0 <= self.rosetta_delta < 1.0, "rosetta_delta", "in [0, 1)")
        need(0.0 < self.ci_level < 1.0, "ci_level", "between 0 and 1 (exclusive)")
        need(0.0 < self.token_coverage <= 1.0, "token_coverage", "in (0, 1]")
        need(self.spatial_scale > 0, "spatial_scale", "above 0")
        need(self.compactness > 0, "compactness", "above 0")
        need(self.min_tubelet_fraction >= 0, "min_tubelet_fraction", "at least 0")
        need(self.elbow_threshold > 0, "elbow_threshold", "above 0")
        need(self.cnmf_tol >= 0, "cnmf_tol", "at least 0")

    @property
    def n_head_masks(self) -> int:
        return self.n_masks if self.head_masks is None else self.head_masks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VTCDConfig:
        """Build from a dict (unknown keys are an error naming them)."""
        return from_known_fields(cls, data, "VTCD")

    def replace(self, **changes: Any) -> VTCDConfig:
        """A copy with ``changes`` (validated)."""
        return type(self)(**{**self.to_dict(), **changes})


ROSETTA_AVERAGES: tuple[str, ...] = ("all", "present")
GRID_MAX = 1024  # cells per axis of Rosetta's common grid


@dataclass(frozen=True)
class RosettaConfig:
    """Settings of Rosetta concepts across models (eq. 4.7-4.8): each model keeps its top ``epsilon`` of
    concepts by importance, tuples are kept when R > ``delta``; R averaged over ``all`` videos (a video where
    no member appears counts 0, as the released code) or only the ``present`` ones; tuples up to ``max_d``
    models (None: all); supports compared on ``grid`` (None: the finest of the runs' segmentation grids)."""

    epsilon: float = _f(0.15, "keep each model's top fraction of concepts by importance (the released code 0.075)")
    delta: float = _f(0.15, "keep tuples with R above this (the released code 0.2)")
    average: Literal["all", "present"] = _f(
        "all", "R averaged over all videos, one where no member appears counting 0 (all, as the released code), "
        "or only over the videos where one appears (present)")
    max_d: int | None = _f(None, "largest tuple size (None: the number of runs)")
    grid: tuple[int, int, int] | None = field(default=None, metadata={
        "help": "common grid of the supports (default: the finest of the runs' segmentation grids)",
        "metavar": ("T", "H", "W")})

    def __post_init__(self) -> None:
        for name in ("epsilon", "delta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise VTCDConfigError(name, f"must be a finite number, not {v!r}")
        if not 0.0 < self.epsilon <= 1.0:
            raise VTCDConfigError("epsilon", f"must be in (0, 1], not {self.epsilon}")
        if not 0.0 <= self.delta < 1.0:
            raise VTCDConfigError("delta", f"must be in [0, 1), not {self.delta}")
        if self.average not in ROSETTA_AVERAGES:
            raise VTCDConfigError("average", f"must be one of {', '.join(ROSETTA_AVERAGES)}, not {self.average!r}")
        if self.max_d is not None and (isinstance(self.max_d, bool) or not 1 <= self.max_d <= 64):
            raise VTCDConfigError("max_d", f"must be a whole number from 1 to 64, not {self.max_d!r}")
        if self.grid is not None and (len(self.grid) != 3 or not all(1 <= int(g) <= GRID_MAX for g in self.grid)):
            raise VTCDConfigError("grid", f"must be 3 whole numbers (T H W) from 1 to {GRID_MAX}, not "
                                          f"{' '.join(map(str, self.grid))}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["grid"] = list(self.grid) if self.grid is not None else None
        return out
