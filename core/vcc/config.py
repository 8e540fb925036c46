"""Every knob of the VCC (methods.md section 3), with the defaults methods.md gives."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.settings import from_known_fields

CavMethod = Literal["logistic", "sgd"]


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
    the GAP'd segment features of a layer, clusters under ``prune(t)`` members dropped; each
    concept keeps ``max_members`` members nearest its centroid, the first ``n_exemplars`` shown.

    Edges (eq. 5.6-5.7): CAVs from ``cav_method`` (``logistic``: exact L2-regularised logistic
    regression, batched in torch; ``sgd``: scikit-learn's ``SGDClassifier`` as the released code)
    with penalty ``cav_alpha``, one per random set (``n_random_sets`` sets of ``random_set_size``
    random images); ``adjacent_only`` links each layer to the next selected one only; edges with a
    paired two-sided t-test ``p >= p_threshold`` against a random pseudo-concept are dropped when
    ``significance`` is on.

    Validation (5.4.2, 5.4.3): with ``fidelity`` on, concept suppression at each layer for
    ``suppression_scales`` (multiples of the mean GAP norm of the class images at that layer),
    against ``n_random_directions`` random directions, for at most ``suppression_concepts``
    concepts per layer (``None``: all); and APS against LS over concepts.

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
    kmeans_n_init: int = 10
    prune: PruneSigmoid = field(default_factory=PruneSigmoid)
    max_members: int = 50
    n_exemplars: int = 4
    cav_method: CavMethod = "logistic"
    cav_alpha: float = 0.01
    n_random_sets: int = 20
    random_set_size: int = 50
    adjacent_only: bool = True
    significance: bool = True
    p_threshold: float = 0.05
    fidelity: bool = True
    suppression_scales: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
    n_random_directions: int = 10
    suppression_concepts: int | None = None
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.prune, dict):
            self.prune = PruneSigmoid(**self.prune)
        self.split_range = (int(self.split_range[0]), int(self.split_range[1]))
        self.suppression_scales = tuple(float(s) for s in self.suppression_scales)
        lo, hi = self.split_range
        if not 2 <= lo <= hi:
            raise ValueError(f"split_range must be (lo, hi) with 2 <= lo <= hi, got {self.split_range}")
        if self.cav_method not in ("logistic", "sgd"):
            raise ValueError(f"cav_method must be 'logistic' or 'sgd', not {self.cav_method!r}")
        if self.significance and self.n_random_sets < 2:
            raise ValueError("the t-test needs at least 2 random sets (n_random_sets); or turn significance off")
        for name in ("grid", "n_concepts", "max_members", "n_random_sets", "random_set_size", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["split_range"] = list(self.split_range)
        d["suppression_scales"] = list(self.suppression_scales)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VCCConfig:
        """Build from a (manifest) dict; unknown keys are an error naming them."""
        return from_known_fields(cls, d, "VCC")
