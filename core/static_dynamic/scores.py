"""Layer-wise and unit-wise static/dynamic scores (eq. 3.1-3.3) from GAP'd pair features.

Every function takes float arrays ``(N_pairs, N_units)``: ``za`` the first and ``zb`` the second
video of each pair. All arithmetic is float64, as in methods.md, so the reference data is
reproduced to 1e-9.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FACTORS = ("static", "dynamic")
CATEGORIES = ("static", "dynamic", "joint", "residual", "dead")


def _pair(za: np.ndarray, zb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    za, zb = np.asarray(za, dtype=np.float64), np.asarray(zb, dtype=np.float64)
    if za.ndim != 2 or za.shape != zb.shape:
        raise ValueError(f"pair features must be two (N, units) arrays of one shape, got {za.shape} and {zb.shape}")
    if za.shape[0] < 2:
        raise ValueError(f"need at least 2 pairs to estimate a covariance, got {za.shape[0]}")
    return za, zb


def pair_covariance(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """Per-unit covariance between the two videos over the pairs, both centred on their joint mean: ``(units,)``."""
    za, zb = _pair(za, zb)
    mean = 0.5 * (za.mean(axis=0) + zb.mean(axis=0))
    return ((za - mean) * (zb - mean)).mean(axis=0)


def pooled_variance(*features: np.ndarray) -> np.ndarray:
    """Per-unit variance over every row of every given ``(N, units)`` array together: ``(units,)``."""
    return np.concatenate([np.asarray(f, dtype=np.float64) for f in features], axis=0).var(axis=0)


def layer_score(za: np.ndarray, zb: np.ndarray, variance: np.ndarray) -> float:
    """``S_F = sum_i Cov_F(i) / sum_i Var(i)`` (eq. 3.1 as the released code computes it).

    ``variance`` is the pooled variance over both factors. The ratio is a variance-weighted mean
    correlation only when the factor's features vary as much as the pooled ones: it exceeds 1 when
    this factor's features vary more than all features together (seen on real models, e.g. 1.10).
    """
    total = float(np.sum(variance))
    return float(np.sum(pair_covariance(za, zb)) / total) if total > 0 else float("nan")


def unit_scores(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """Per-unit correlation ``s_F[i] = Cov_F(i) / Var_F(i)``, NaN where the unit does not vary (variance at
    most 1e-12 of the largest unit's, i.e. constant up to rounding): ``(units,)``."""
    za, zb = _pair(za, zb)
    var = pooled_variance(za, zb)
    live = var > 1e-12 * max(float(var.max(initial=0.0)), np.finfo(np.float64).tiny)
    return np.where(live, pair_covariance(za, zb) / np.where(live, var, 1.0), np.nan)


def softmax_percentages(s_dynamic: float, s_static: float) -> tuple[float, float, float]:
    """``100 * softmax([S_dynamic, S_static, 1])``: (dynamic, static, identical) percentages."""
    logits = np.array([s_dynamic, s_static, 1.0], dtype=np.float64)
    e = np.exp(logits - logits.max())
    pct = 100.0 * e / e.sum()
    return float(pct[0]), float(pct[1]), float(pct[2])


def classify_units(s_static: np.ndarray, s_dynamic: np.ndarray, lam: float = 0.5) -> np.ndarray:
    """Category index into :data:`CATEGORIES` per unit (eq. 3.3); a unit without a score is dead."""
    s_static, s_dynamic = np.asarray(s_static), np.asarray(s_dynamic)
    st, dy = s_static > lam, s_dynamic > lam
    cat = np.full(s_static.shape, CATEGORIES.index("residual"), dtype=np.int64)
    cat[st & ~dy] = CATEGORIES.index("static")
    cat[dy & ~st] = CATEGORIES.index("dynamic")
    cat[st & dy] = CATEGORIES.index("joint")
    cat[~np.isfinite(s_static) | ~np.isfinite(s_dynamic)] = CATEGORIES.index("dead")
    return cat


@dataclass
class LayerScores:
    """Everything the analysis reports for one layer."""

    n_units: int
    S_static: float
    S_dynamic: float
    pct_static: float
    pct_dynamic: float
    pct_identical: float
    n_static: int
    n_dynamic: int
    n_joint: int
    n_residual: int
    n_dead: int
    s_static: np.ndarray
    s_dynamic: np.ndarray

    def record(self) -> dict[str, float | int]:
        """The layer's row for ``layers.json`` (without the per-unit arrays)."""
        return {k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray)}


def score_layer(za_static: np.ndarray, zb_static: np.ndarray, za_dynamic: np.ndarray, zb_dynamic: np.ndarray,
                lam: float = 0.5, dead_tol: float = 1e-12) -> LayerScores:
    """Layer and unit scores from the static and dynamic pairs' features, each ``(N, units)``.

    A unit is dead when its variance over all features of both factors is at most ``dead_tol``
    times the layer's largest unit variance (a constant output, e.g. a ReLU that never fires, up
    to float rounding); dead units get NaN scores in both factors. So does a unit constant within
    one factor's pairs only (it has no score there), and it is counted as dead too.
    """
    pooled = pooled_variance(za_static, zb_static, za_dynamic, zb_dynamic)
    s_static, s_dynamic = unit_scores(za_static, zb_static), unit_scores(za_dynamic, zb_dynamic)
    dead = pooled <= dead_tol * max(float(pooled.max(initial=0.0)), np.finfo(np.float64).tiny)
    s_static[dead] = np.nan
    s_dynamic[dead] = np.nan
    S_static = layer_score(za_static, zb_static, pooled)
    S_dynamic = layer_score(za_dynamic, zb_dynamic, pooled)
    pct_dynamic, pct_static, pct_identical = softmax_percentages(S_dynamic, S_static)
    counts = np.bincount(classify_units(s_static, s_dynamic, lam), minlength=len(CATEGORIES))
    return LayerScores(
        n_units=int(pooled.shape[0]), S_static=S_static, S_dynamic=S_dynamic, pct_static=pct_static,
        pct_dynamic=pct_dynamic, pct_identical=pct_identical,
        **{f"n_{c}": int(n) for c, n in zip(CATEGORIES, counts, strict=True)},
        s_static=s_static, s_dynamic=s_dynamic,
    )


MIN_PAIRS = 100
"""Fewer pairs per factor than this is warned about: a per-unit score is a correlation over the pairs,
whose standard error near the threshold ``lambda`` is about ``(1 - lambda^2) / sqrt(N - 1)`` (0.075
at ``lambda = 0.5`` and N = 100, 0.14 at N = 30), so units within that of ``lambda`` change category
from one draw of pairs to the next."""


def _warning(code: str, message: str, setting: str | None, layer: str | None, figure: str | None
             ) -> dict[str, str | None]:
    return {"code": code, "message": message, "setting": setting, "layer": layer, "figure": figure}


def few_pairs_warning(n_pairs: int, lam: float = 0.5, min_pairs: int = MIN_PAIRS) -> dict[str, str | None] | None:
    """A ``static_dynamic.few_pairs`` warning (``{code, message, setting, layer, figure}``) when ``n_pairs``
    pairs per factor are fewer than ``min_pairs``; else None."""
    if n_pairs >= min_pairs:
        return None
    se = (1.0 - lam ** 2) / np.sqrt(max(n_pairs - 1, 1))
    return _warning("static_dynamic.few_pairs",
                    f"{n_pairs} pairs per factor: each unit's score is a correlation over the pairs, with a standard "
                    f"error of about {se:.2f} near lambda = {lam:g}, so units near the threshold change category "
                    f"between draws; use at least {min_pairs} pairs (--pairs, and more clips with --videos)",
                    "--pairs", None, "units")


def layer_warnings(layer: str, scores: LayerScores) -> list[dict[str, str | None]]:
    """Degenerate results of one layer: every unit dead (constant over all the pairs, so the layer and
    unit scores are NaN), as ``{code, message, setting, layer, figure}`` dicts."""
    if scores.n_units and scores.n_dead == scores.n_units:
        return [_warning("static_dynamic.dead_layer",
                         f"every one of the {scores.n_units} units of {layer} is constant over the pairs, so the "
                         "layer has no static/dynamic score (NaN); pick another layer (--layers), check that the "
                         "model's weights are loaded, or use more varied clips (--videos)", "--layers", layer,
                         "layers")]
    return []
