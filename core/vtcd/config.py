"""Every knob of VTCD (methods.md section 2), with the defaults methods.md gives."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from core.settings import from_known_fields
from core.vtcd.cnmf import ASSIGNMENTS, ELBOW_RULES, Assignment, ElbowRule

FeatureKind = Literal["key", "query", "value", "block"]
Metric = Literal["loss", "probability", "correct", "logit"]
FEATURE_KINDS: tuple[str, ...] = ("key", "query", "value", "block")
METRICS: tuple[str, ...] = ("loss", "probability", "correct", "logit")


@dataclass
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
    volume are dropped.

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

    feature: FeatureKind = "key"
    channel_blocks: int | None = None
    upsample: bool = True
    upsample_frames: bool = True
    spatial_scale: float = 0.5
    n_segments: int = 12
    compactness: float = 0.1
    slic_max_num_iter: int = 10
    min_tubelet_fraction: float = 0.001
    max_concepts: int = 14
    elbow_threshold: float = 0.95
    elbow_rule: ElbowRule = "stop"
    kmeans_n_init: int = 10
    cnmf_max_iter: int = 10000
    cnmf_tol: float = 1e-7
    assignment: Assignment = "g"
    n_masks: int = 4000
    head_masks: int | None = None
    rho: float = 0.5
    token_coverage: float = 0.5
    metric: Metric = "loss"
    batch_size: int = 64
    feature_batch_size: int = 16
    share_prefix: bool = True
    bootstrap: int = 200
    ci_level: float = 0.95
    convergence_top_k: int = 5
    min_clips: int = 10
    diagnostics: bool = True
    diagnostic_draws: int = 8
    attribution_steps: int = 11
    attribution_metric: Metric = "probability"
    n_random_orders: int = 5
    rosetta_epsilon: float = 0.15
    rosetta_delta: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.feature not in FEATURE_KINDS:
            raise ValueError(f"feature must be one of {FEATURE_KINDS}, not {self.feature!r}")
        for name in ("metric", "attribution_metric"):
            if getattr(self, name) not in METRICS:
                raise ValueError(f"{name} must be one of {METRICS}, not {getattr(self, name)!r}")
        if not 0.0 < self.rho < 1.0:
            raise ValueError(f"rho must be in (0, 1), got {self.rho}")
        if not 0.0 < self.rosetta_epsilon <= 1.0:
            raise ValueError(f"rosetta_epsilon must be in (0, 1], got {self.rosetta_epsilon}")
        if self.max_concepts < 1 or self.n_segments < 1 or self.batch_size < 1 or self.n_masks < 0:
            raise ValueError("max_concepts, n_segments and batch_size must be >= 1, n_masks >= 0")
        if self.assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment must be one of {ASSIGNMENTS}, not {self.assignment!r}")
        if self.elbow_rule not in ELBOW_RULES:
            raise ValueError(f"elbow_rule must be one of {ELBOW_RULES}, not {self.elbow_rule!r}")
        if self.cnmf_max_iter < 1 or self.cnmf_tol < 0:
            raise ValueError("cnmf_max_iter must be >= 1 and cnmf_tol >= 0")
        if self.bootstrap < 0 or not 0.0 < self.ci_level < 1.0:
            raise ValueError(f"bootstrap must be >= 0 and ci_level in (0, 1), got {self.bootstrap}, {self.ci_level}")
        if self.convergence_top_k < 1 or self.min_clips < 0:
            raise ValueError(f"convergence_top_k must be >= 1 and min_clips >= 0, got {self.convergence_top_k}, "
                             f"{self.min_clips}")
        if self.diagnostic_draws < 1:
            raise ValueError(f"diagnostic_draws must be >= 1, got {self.diagnostic_draws}")
        if not 0.0 < self.token_coverage <= 1.0:
            raise ValueError(f"token_coverage must be in (0, 1], got {self.token_coverage}")

    @property
    def n_head_masks(self) -> int:
        return self.n_masks if self.head_masks is None else self.head_masks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VTCDConfig:
        """Build from a dict (unknown keys are an error naming them)."""
        return from_known_fields(cls, data, "VTCD")
