"""Every knob of the VCC (methods.md section 3), with the defaults methods.md gives."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from core.errors import ConfigError
from core.precision import PRECISIONS, Precision
from core.settings import from_known_fields

CavMethod = Literal["svm", "logistic", "sgd"]
CAV_METHODS = ("svm", "logistic", "sgd")
MatchedKind = Literal["segments", "nonnegative", "off"]
MATCHED_KINDS = ("segments", "nonnegative", "off")
KMeansBackend = Literal["sklearn", "torch", "auto"]
KMEANS_BACKENDS = ("sklearn", "torch", "auto")

# Whole-number settings: (lowest, highest). The upper bounds keep an absurd value from filling memory
# or running for days before it fails.
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "n_images": (1, 100_000), "grid": (1, 1024), "fill_value": (0, 255), "n_concepts": (1, 10_000),
    "min_clusters": (1, 10_000), "kmeans_n_init": (1, 1000), "max_members": (1, 100_000), "n_exemplars": (0, 1000),
    "n_random_sets": (1, 10_000), "random_set_size": (1, 100_000), "n_random_directions": (1, 10_000),
    "suppression_concepts": (0, 100_000), "batch_size": (1, 4096), "seed": (0, 2**32 - 1),
    "min_segment_size": (0, 1024 * 1024), "kmeans_auto_segments": (1, 100_000_000),
}

DEBUG_INT_BOUNDS: dict[str, tuple[int, int]] = {"n_paths": (1, 10_000), "batch_size": (1, 4096)}


class VCCSettingError(ConfigError, ValueError):
    """A VCC setting out of range: a :class:`ConfigError` (the CLI names the flag), and a ``ValueError``
    as before the config had its own error type."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


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

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise VCCSettingError(f"prune {k}", f"must be a finite number, not {v!r}")
        if self.nu == 0:
            raise VCCSettingError("prune nu", "must not be 0")

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
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= float(v) <= 1.0:
                raise VCCSettingError(f"commonality {k}", f"must be in [0, 1], not {v}")

    def keeps(self, n_images_in: int, size: int, n_images: int) -> bool:
        """Whether a cluster of ``size`` members from ``n_images_in`` distinct images (of ``n_images``) passes."""
        u, s, n = float(n_images_in), float(size), float(n_images)
        return bool(u > self.high_share * s or (u > self.mild_share * s and u > self.mild_images * n)
                    or (u > self.low_share * s and u > self.many_images * n))


@dataclass(frozen=True)
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
    Extension (off by default, not in methods.md): with ``min_segment_size`` > 0 a region of fewer grid
    cells is kept whole at every shallower layer instead of being split again; without it the
    shallow layers of a deep stack split down to single cells (ResNet-50, 16 blocks: about 5,000
    segments per image), which drives the cost of the segment features and of the concepts.
    Segment images: bounding-box crop, ``fill_value`` outside the segment, resized to the input.

    Concepts (eq. 5.4-5.5): k-means with ``n_concepts`` clusters (``kmeans_n_init`` restarts) over
    the GAP'd segment features of a layer, clusters under ``prune(t)`` members dropped, and with
    ``commonality`` (:class:`Commonality`, ``None``: off) also clusters whose members come from too few
    distinct images (ACE's rule, as the released code applies it); each concept keeps ``max_members``
    members nearest its centroid, the first ``n_exemplars`` shown. Extension (off by default, not in
    methods.md): with ``clusters_per_segments`` set, a layer with ``t`` segments gets
    ``k = clamp(round(t * clusters_per_segments), min_clusters, n_concepts)`` clusters instead of
    ``n_concepts``, so that a small class is not split into clusters too small to survive ``prune``.
    ``concept_kmeans``: scikit-learn's ``KMeans`` (``sklearn``, the default) or the same algorithm in
    torch on the model's device (``torch``: :func:`core.kmeans_torch.kmeans`, k-means++ and Lloyd; it
    finds clusterings of the same quality, not bit-identical labels), or ``auto``: torch at layers with
    at least ``kmeans_auto_segments`` segments.

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

    Precision: the model's forward and backward passes run in ``precision`` (``fp32``; ``bf16`` /
    ``fp16`` autocast, :mod:`core.precision`); what they give is cast to float32 before any statistic.

    ``n_images`` is how many class images a job should pass in: :func:`build_vcc` uses every
    image it is given.
    """

    n_images: int = field(default=50, metadata=_help("images per class"))
    grid: int = field(default=28, metadata=_help("side of the shared feature grid every layer is resized to"))
    slic_compactness: float = field(default=0.8, metadata=_help("maskSLIC compactness"))
    split_range: tuple[int, int] = field(default=(2, 4), metadata={"help": "pieces tried per region (lo hi)",
                                                                   "metavar": ("LO", "HI")})
    silhouette_threshold: float = field(default=0.0, metadata=_help(
        "keep a region whole unless a split scores above this silhouette"))
    min_segment_fraction: float = field(default=0.001, metadata=_help(
        "smallest piece, as a fraction of the image"))
    min_segment_size: int = field(default=0, metadata={
        "help": "extension: keep regions under this many grid cells whole instead of splitting them further "
                "(fewer, larger shallow segments; default 0: off, the methods' behaviour)", "metavar": "CELLS"})
    fill_value: int = field(default=117, metadata=_help("grey outside a segment in its image"))
    n_concepts: int = field(default=25, metadata=_help("k-means clusters per layer"))
    clusters_per_segments: float | None = field(default=None, metadata={
        "help": "extension: k = round(segments at the layer x RATIO), between min_clusters and n_concepts "
                "(default: off)", "metavar": "RATIO"})
    min_clusters: int = field(default=2, metadata=_help("fewest clusters with clusters_per_segments"))
    kmeans_n_init: int = field(default=10, metadata=_help("k-means restarts"))
    concept_kmeans: KMeansBackend = field(default="sklearn", metadata=_help(
        "k-means of the concepts: sklearn (scikit-learn, the reference), torch (core.kmeans_torch on the "
        "model's device) or auto (torch at layers with at least kmeans_auto_segments segments)"))
    kmeans_auto_segments: int = field(default=20_000, metadata=_help(
        "with concept_kmeans auto: segments at a layer from which its k-means runs in torch"))
    prune: PruneSigmoid = field(default_factory=PruneSigmoid, metadata=_help(
        "pruning sigmoid Y(t) parameters A, K, C, Q, B, nu (default A=-102 K=115 C=1 Q=1 B=0.0004 nu=1)"))
    commonality: Commonality | None = field(default_factory=Commonality, metadata=_help(
        "ACE's commonality filter thresholds high_share, mild_share, mild_images, low_share, many_images "
        "(default 0.5 0.25 0.25 0.1 0.5; None/'off' turns the filter off)"))
    max_members: int = field(default=50, metadata=_help("member segments kept per concept"))
    n_exemplars: int = field(default=4, metadata=_help("exemplars per concept"))
    cav_method: CavMethod = field(default="svm", metadata=_help(
        "CAV solver: svm (exact hinge-loss minimiser, the released code's objective), logistic (exact log loss) "
        "or sgd (scikit-learn SGDClassifier)"))
    cav_alpha: float = field(default=0.01, metadata=_help("CAV L2 penalty"))
    cav_balance: bool = field(default=True, metadata=_help("balance the two classes of a CAV by truncation"))
    cav_train_fraction: float = field(default=0.67, metadata=_help(
        "stratified share of the rows a CAV is fitted on (1: all)"))
    drop_prefix_tokens: bool = field(default=True, metadata=_help(
        "leave a token model's prefix (CLS) tokens out of CAVs and ITCAV gradients"))
    n_random_sets: int = field(default=20, metadata=_help("random sets: CAVs and t-test samples"))
    random_set_size: int = field(default=50, metadata=_help("images per random set"))
    adjacent_only: bool = field(default=True, metadata=_help("edges between adjacent selected layers only"))
    significance: bool = field(default=True, metadata=_help("drop edges failing the t-test"))
    p_threshold: float = field(default=0.05, metadata=_help("t-test threshold"))
    metrics_group_by: Literal["source", "target"] = field(default="source", metadata=_help(
        "layer at which edge-weight mean and variance are grouped"))
    fidelity: bool = field(default=True, metadata=_help("concept suppression and APS vs LS validation"))
    suppression_scales: tuple[float, ...] = field(
        default=(0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0),
        metadata=_help("suppression strengths, multiples of the mean feature norm"))
    n_random_directions: int = field(default=10, metadata=_help("random directions per layer"))
    matched_random: MatchedKind = field(default="segments", metadata=_help(
        "matched random baseline beside the isotropic one: centroids of random segment sets of the concepts' "
        "sizes, random non-negative directions, or none"))
    suppression_concepts: int | None = field(default=None, metadata=_help(
        "concepts suppressed per layer (default: all; 0 also means all)"))
    batch_size: int = field(default=32, metadata=_help(
        "forward batch size (segment features and ITCAV halve it while a batch runs out of memory)"))
    precision: Precision = field(default="fp32", metadata=_help(
        "numeric precision of the forward and backward passes: fp32, or bf16 / fp16 autocast (k-means, CAVs, "
        "sensitivities and statistics stay fp32/fp64)"))
    seed: int = field(default=0, metadata=_help("seed of k-means, random sets, CAV splits and directions"))

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if isinstance(self.prune, dict):
            try:
                put("prune", PruneSigmoid(**{k: float(v) for k, v in self.prune.items()}))
            except TypeError as e:
                raise VCCSettingError("prune", f"takes A, K, C, Q, B, nu: {e}") from None
        if isinstance(self.commonality, dict):
            put("commonality", Commonality(**{k: float(v) for k, v in self.commonality.items()}))
        for name, (lo, hi) in INT_BOUNDS.items():
            value = getattr(self, name)
            if name == "suppression_concepts" and value is None:
                continue
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise VCCSettingError(name, f"must be a whole number, not {value!r}")
            if not lo <= value <= hi:
                raise VCCSettingError(name, f"must be {lo} to {hi}, not {value}")
            put(name, int(value))
        if self.suppression_concepts == 0:
            put("suppression_concepts", None)
        for name in ("slic_compactness", "silhouette_threshold", "min_segment_fraction", "cav_alpha",
                     "cav_train_fraction", "p_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise VCCSettingError(name, f"must be a finite number, not {value!r}")
        try:
            put("split_range", (int(self.split_range[0]), int(self.split_range[1])))
        except (TypeError, ValueError, IndexError):
            raise VCCSettingError("split_range", f"must be two whole numbers, not {self.split_range!r}") from None
        try:
            put("suppression_scales", tuple(float(s) for s in self.suppression_scales))
        except (TypeError, ValueError):
            raise VCCSettingError("suppression_scales", f"must be numbers, not {self.suppression_scales!r}") from None
        lo, hi = self.split_range
        if not 2 <= lo <= hi:
            raise VCCSettingError("split_range", f"must be (lo, hi) with 2 <= lo <= hi, not {self.split_range}")
        if not self.suppression_scales or not all(math.isfinite(s) for s in self.suppression_scales):
            raise VCCSettingError("suppression_scales", f"must be finite numbers, not {self.suppression_scales}")
        if self.cav_method not in CAV_METHODS:
            raise VCCSettingError("cav_method", f"must be one of {', '.join(CAV_METHODS)}, not {self.cav_method!r}")
        if self.precision not in PRECISIONS:
            raise VCCSettingError("precision", f"must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.concept_kmeans not in KMEANS_BACKENDS:
            raise VCCSettingError("concept_kmeans", f"must be one of {', '.join(KMEANS_BACKENDS)}, "
                                  f"not {self.concept_kmeans!r}")
        if self.matched_random not in MATCHED_KINDS:
            raise VCCSettingError("matched_random", f"must be one of {', '.join(MATCHED_KINDS)}, "
                              f"not {self.matched_random!r}")
        if self.metrics_group_by not in ("source", "target"):
            raise VCCSettingError("metrics_group_by", f"must be 'source' or 'target', not {self.metrics_group_by!r}")
        if not self.cav_alpha > 0:
            raise VCCSettingError("cav_alpha", f"must be positive, not {self.cav_alpha}")
        if not 0.0 < self.cav_train_fraction <= 1.0:
            raise VCCSettingError("cav_train_fraction", f"must be in (0, 1], not {self.cav_train_fraction}")
        if self.significance and self.n_random_sets < 2:
            raise VCCSettingError("n_random_sets", "must be at least 2 for the t-test; or turn significance off")
        if self.clusters_per_segments is not None and not 0.0 < float(self.clusters_per_segments) <= 1.0:
            raise VCCSettingError("clusters_per_segments", f"must be in (0, 1], not {self.clusters_per_segments}")

    def kmeans_backend(self, n_segments: int) -> str:
        """``sklearn`` or ``torch``: the k-means that clusters a layer of ``n_segments`` segments."""
        if self.concept_kmeans == "auto":
            return "torch" if n_segments >= self.kmeans_auto_segments else "sklearn"
        return self.concept_kmeans

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


@dataclass(frozen=True)
class VCCDebugConfig:
    """Settings of the failure debugger (:func:`core.vcc.debug`): each image's segments are matched to
    the concepts of its true and predicted classes' VCCs, and from the concepts they activate the
    ``n_paths`` strongest paths (mean edge weight) of each VCC are kept; forward passes run
    ``batch_size`` inputs at a time (results do not depend on it). Segmentation settings and the
    seed come from the VCCs' own :class:`VCCConfig`."""

    n_paths: int = field(default=5, metadata={"help": "strongest paths kept per VCC and image", "metavar": "N"})
    batch_size: int = field(default=32, metadata=_help("forward batch size"))

    def __post_init__(self) -> None:
        for name, (lo, hi) in DEBUG_INT_BOUNDS.items():
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise VCCSettingError(name, f"must be a whole number, not {value!r}")
            if not lo <= value <= hi:
                raise VCCSettingError(name, f"must be {lo} to {hi}, not {value}")
            object.__setattr__(self, name, int(value))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
