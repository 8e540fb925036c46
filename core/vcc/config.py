"""Every knob of the VCC (methods.md section 3), with the defaults methods.md gives."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.settings import from_known_fields

CavMethod = Literal["svm", "logistic", "sgd"]
CAV_METHODS = ("svm", "logistic", "sgd")
MatchedKind = Literal["segments", "nonnegative", "off"]
MATCHED_KINDS = ("segments", "nonnegative", "off")


@dataclass(frozen=True)
class PruneSigmoid:
    """The generalised logistic ``Y(t) = A + (K - A) / (C + Q exp(-B t))^(1/nu)`` (eq. 5.5).

    A concept cluster with fewer than ``Y(t)`` members is dropped, ``t`` being the number of
    segments at its layer: ``Y(100) ~ 8.7``, ``Y(1000) ~ 28``, ``Y(5000) ~ 89``.
    """

    A: float = -102.0
    K: float = 115.0
    C: float = 1.0
    Q: float = 1.0
    B: float = 0.0004
    nu: float = 1.0

    def __call__(self, t: float) -> float:
        return self.A + (self.K - self.A) / (self.C + self.Q * math.exp(-self.B * t)) ** (1.0 / self.nu)


@dataclass(frozen=True)
class Commonality:
    """ACE's commonality filter (Ghorbani et al. 2019, ``ConceptDiscovery.discover_concepts`` of the
    ACE code), applied beside the size pruning :class:`PruneSigmoid`.

    With ``u`` the number of distinct discovery images among a cluster's members, ``s`` its size and
    ``N`` the number of discovery images, a cluster is kept when any of

    - ``u > high_share * s`` (highly common: its segments come from many different images),
    - ``u > mild_share * s`` and ``u > mild_images * N`` (mildly common and mildly populated),
    - ``u > low_share * s`` and ``u > many_images * N`` (not rare, and present in most images)

    holds (ACE: 0.5; 0.25 and 0.25; 0.1 and 0.5).
    """

    high_share: float = 0.5
    mild_share: float = 0.25
    mild_images: float = 0.25
    low_share: float = 0.1
    many_images: float = 0.5

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"commonality {k} must be in [0, 1], got {v}")

    def keeps(self, n_images_in: int, size: int, n_images: int) -> bool:
        """Whether a cluster of ``size`` members from ``n_images_in`` distinct images (of ``n_images``) passes."""
        u, s, n = float(n_images_in), float(size), float(n_images)
        return bool(u > self.high_share * s or (u > self.mild_share * s and u > self.mild_images * n)
                    or (u > self.low_share * s and u > self.many_images * n))


@dataclass
class VCCConfig:
    """Settings of one VCC build; ``to_dict`` is what a run's manifest records.

    Segments (eq. 5.1-5.3): every selected layer's map is resized to ``grid`` x ``grid``; the
    deepest layer is split per image with k-means, each segment of layer n+1 is split at layer n
    with maskSLIC (``slic_compactness``). The number of pieces is the candidate in ``split_range``
    (inclusive) with the best silhouette score on the masked features; a region stays whole when
    no candidate scores above ``silhouette_threshold`` (methods.md gives no value; 0 means "no split
    separates the features better than chance": maskSLIC splits of shallow layers score about 0-0.1
    on EfficientNet-Lite0, k-means splits of deep layers 0.25-0.55). Pieces under ``min_segment_fraction`` of
    the image are merged into their nearest sibling (so the pieces still partition the parent).
    Segment images: bounding-box crop, ``fill_value`` outside the segment, resized to the input.

    Concepts (eq. 5.4-5.5): k-means with ``n_concepts`` clusters (``kmeans_n_init`` restarts) over
    the GAP'd segment features of a layer, clusters under ``prune(t)`` members dropped, and with
    ``commonality`` (:class:`Commonality`, ``None``: off) also clusters whose members come from too few
    distinct images (ACE's rule, as the released code applies it); each concept keeps ``max_members``
    members nearest its centroid, the first ``n_exemplars`` shown. Extension (off by default, not in
    methods.md): with ``clusters_per_segments`` set, a layer with ``t`` segments gets
    ``k = clamp(round(t * clusters_per_segments), min_clusters, n_concepts)`` clusters instead of
    ``n_concepts``, so that a small class is not split into clusters too small to survive ``prune``.

    Edges (eq. 5.6-5.7): CAVs from ``cav_method`` with penalty ``cav_alpha``: ``svm`` the exact
    minimiser of the objective of the released code's ``SGDClassifier(alpha)`` (hinge loss, a linear
    SVM), batched in torch; ``logistic`` the exact L2-regularised logistic regression, batched in
    torch; ``sgd`` scikit-learn's ``SGDClassifier`` itself, one fit at a time. Each CAV is fitted,
    as the released code does, on the classes balanced by truncation (``cav_balance``: the larger
    cut to the size of the smaller, keeping the first rows) and on a seeded stratified
    ``cav_train_fraction`` of them (the released code: 67%; 1 uses all). One CAV per random set
    (``n_random_sets`` sets of ``random_set_size`` random images). ``drop_prefix_tokens``: the
    prefix (CLS, register) tokens of a token model are left out of the flattened activations and
    gradients, as the released code does. ``adjacent_only`` links each layer to the next selected one only; edges with a
    paired two-sided t-test ``p >= p_threshold`` against a random pseudo-concept are dropped when
    ``significance`` is on. Graph metrics (5.4.3) group edge-weight mean and variance by the edges'
    ``metrics_group_by`` layer: ``source`` (as the released analysis) or ``target``.

    Validation (5.4.2, 5.4.3): with ``fidelity`` on, concept suppression at each layer for
    ``suppression_scales`` (multiples of the mean GAP norm of the class images at that layer),
    against ``n_random_directions`` random directions, for at most ``suppression_concepts``
    concepts per layer (``None``: all); and APS against LS over concepts. Beside the isotropic random
    directions, ``matched_random`` adds ``n_random_directions`` random directions matched to the
    centroids, which are means of non-negative GAP features (:func:`core.vcc.fidelity.matched_directions`):
    ``segments`` centroids of random sets of the layer's segments of the concepts' sizes,
    ``nonnegative`` random directions of the positive orthant, ``off`` none.

    ``n_images`` is how many class images a job should pass in: :func:`build_vcc` uses every
    image it is given.
    """

    n_images: int = 50
    grid: int = 28
    slic_compactness: float = 0.8
    split_range: tuple[int, int] = (2, 4)
    silhouette_threshold: float = 0.0
    min_segment_fraction: float = 0.001
    fill_value: int = 117
    n_concepts: int = 25
    clusters_per_segments: float | None = None
    min_clusters: int = 2
    kmeans_n_init: int = 10
    prune: PruneSigmoid = field(default_factory=PruneSigmoid)
    commonality: Commonality | None = field(default_factory=Commonality)
    max_members: int = 50
    n_exemplars: int = 4
    cav_method: CavMethod = "svm"
    cav_alpha: float = 0.01
    cav_balance: bool = True
    cav_train_fraction: float = 0.67
    drop_prefix_tokens: bool = True
    n_random_sets: int = 20
    random_set_size: int = 50
    adjacent_only: bool = True
    significance: bool = True
    p_threshold: float = 0.05
    metrics_group_by: Literal["source", "target"] = "source"
    fidelity: bool = True
    suppression_scales: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
    n_random_directions: int = 10
    matched_random: MatchedKind = "segments"
    suppression_concepts: int | None = None
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.prune, dict):
            self.prune = PruneSigmoid(**self.prune)
        if isinstance(self.commonality, dict):
            self.commonality = Commonality(**self.commonality)
        self.split_range = (int(self.split_range[0]), int(self.split_range[1]))
        self.suppression_scales = tuple(float(s) for s in self.suppression_scales)
        lo, hi = self.split_range
        if not 2 <= lo <= hi:
            raise ValueError(f"split_range must be (lo, hi) with 2 <= lo <= hi, got {self.split_range}")
        if self.cav_method not in CAV_METHODS:
            raise ValueError(f"cav_method must be one of {', '.join(CAV_METHODS)}, not {self.cav_method!r}")
        if self.matched_random not in MATCHED_KINDS:
            raise ValueError(f"matched_random must be one of {', '.join(MATCHED_KINDS)}, not {self.matched_random!r}")
        if self.metrics_group_by not in ("source", "target"):
            raise ValueError(f"metrics_group_by must be 'source' or 'target', not {self.metrics_group_by!r}")
        if not self.cav_alpha > 0:
            raise ValueError(f"cav_alpha must be positive, got {self.cav_alpha}")
        if not 0.0 < self.cav_train_fraction <= 1.0:
            raise ValueError(f"cav_train_fraction must be in (0, 1], got {self.cav_train_fraction}")
        if self.significance and self.n_random_sets < 2:
            raise ValueError("the t-test needs at least 2 random sets (n_random_sets); or turn significance off")
        if self.clusters_per_segments is not None and not 0.0 < float(self.clusters_per_segments) <= 1.0:
            raise ValueError(f"clusters_per_segments must be in (0, 1], got {self.clusters_per_segments}")
        for name in ("grid", "n_concepts", "min_clusters", "max_members", "n_random_sets", "random_set_size",
                     "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def clusters_for(self, n_segments: int) -> int:
        """k-means clusters for a layer of ``n_segments`` segments: ``n_concepts``, or with
        ``clusters_per_segments`` ``clamp(round(n_segments * ratio), min_clusters, n_concepts)``."""
        if self.clusters_per_segments is None:
            return self.n_concepts
        return max(min(self.min_clusters, self.n_concepts),
                   min(round(n_segments * self.clusters_per_segments), self.n_concepts))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["split_range"] = list(self.split_range)
        d["commonality"] = None if self.commonality is None else asdict(self.commonality)
        d["suppression_scales"] = list(self.suppression_scales)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VCCConfig:
        """Build from a (manifest) dict; unknown keys are an error naming them."""
        return from_known_fields(cls, d, "VCC")
