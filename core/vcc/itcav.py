"""Interlayer edges (eq. 5.6-5.7): CAVs against random sets, ITCAV sensitivities, significance.

CAVs are fitted on activations flattened at the layer's own resolution, which makes them long
(``D`` up to millions). The default solver fits the exact L2-regularised logistic regression of
every (concept, random set) pair through the Gram matrix of the few hundred samples involved
(the weight lies in their span), so one ``X X^T`` product replaces thousands of passes over
``D``-wide data; ``cav_method="sgd"`` fits scikit-learn's ``SGDClassifier`` one pair at a time,
as the released code does.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from core.errors import DataError
from core.models import ModelBundle
from core.vcc.forward import batches, objective_gradients


def random_sets(n_pool: int, n_sets: int, set_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw the pseudo-concept set ``(N,)`` and ``n_sets`` negative sets ``(n_sets, N)`` from a pool of random images.

    The pseudo-concept set never meets a negative set; the negative sets are disjoint when the
    pool is large enough, else each is drawn independently from the rest of the pool.
    ``N = min(set_size, n_pool // 2)``.
    """
    if n_pool < 2:
        raise DataError(f"the VCC needs at least 2 random images (for CAVs and significance tests), got {n_pool}")
    rng = np.random.default_rng(seed)
    size = min(set_size, n_pool // 2)
    perm = rng.permutation(n_pool)
    pseudo, rest = perm[:size], perm[size:]
    if len(rest) >= n_sets * size:
        sets = rest[: n_sets * size].reshape(n_sets, size)
    else:
        sets = np.stack([rng.choice(rest, size=size, replace=False) for _ in range(n_sets)])
    return pseudo, sets


# ----------------------------------------------------------------------------------------------
# CAVs


def gram(x: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """``x x^T`` in float64, ``(n, n)``, accumulated over column chunks of ``x`` ``(n, D)``."""
    out = torch.zeros(len(x), len(x), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[1], chunk):
        xc = x[:, start:start + chunk].double()
        out += xc @ xc.T
    return out


def logistic_in_span(kernel: torch.Tensor, y: torch.Tensor, alpha: float, max_iter: int = 100) -> torch.Tensor:
    """Exact L2-regularised logistic regressions given their Gram matrices: coefficients ``(R, n)``.

    Minimises ``mean_i log(1 + exp(-s_i (w.x_i + b))) + alpha/2 ||w||^2`` (``s_i = +-1`` from ``y``
    in {0, 1}; ``b`` unpenalised, the objective of scikit-learn's ``SGDClassifier(loss="log_loss")``)
    for ``R`` problems sharing labels, ``kernel`` ``(R, n, n)``. The weight is ``w = X^T beta``;
    damped Newton in an orthonormal basis of the span of the samples.
    """
    k = kernel.double()
    r, n, _ = k.shape
    y = y.to(k).view(1, n)
    lam, u = torch.linalg.eigh(k)
    lam = lam.clamp_min(0.0)
    keep = lam > lam[:, -1:].clamp_min(1e-300) * 1e-12
    root = torch.where(keep, lam.sqrt(), torch.zeros_like(lam))
    z = torch.cat([u * root.unsqueeze(1), torch.ones(r, n, 1, dtype=k.dtype, device=k.device)], dim=2)
    reg = torch.cat([torch.full((n,), alpha), torch.zeros(1)]).to(k)
    ridge = torch.cat([torch.zeros(n), torch.full((1,), 1e-9)]).to(k)

    def loss(theta: torch.Tensor) -> torch.Tensor:
        m = torch.einsum("rnk,rk->rn", z, theta)
        return (torch.nn.functional.softplus(m) - y * m).mean(1) + 0.5 * (reg * theta ** 2).sum(1)

    theta = torch.zeros(r, n + 1, dtype=k.dtype, device=k.device)
    f = loss(theta)
    for _ in range(max_iter):
        p = torch.sigmoid(torch.einsum("rnk,rk->rn", z, theta))
        g = torch.einsum("rnk,rn->rk", z, p - y) / n + reg * theta
        h = torch.einsum("rnk,rn,rnl->rkl", z, p * (1 - p) / n, z) + torch.diag_embed(reg + ridge)
        step = torch.linalg.solve(h, g)
        decrement = (g * step).sum(1)
        if float(decrement.max()) < 1e-14:
            break
        t = torch.ones(r, 1, dtype=k.dtype, device=k.device)
        for _ in range(40):  # backtracking, per problem
            new = theta - t * step
            fn = loss(new)
            bad = fn > f - 1e-4 * t.squeeze(1) * decrement
            if not bool(bad.any()):
                break
            t[bad] *= 0.5
        theta, f = new, fn
    w = theta[:, :n] * keep
    return torch.einsum("rnk,rk->rn", u, torch.where(keep, w / root.clamp_min(1e-300), torch.zeros_like(w)))


def fit_cavs(x: torch.Tensor, positives: Sequence[np.ndarray], negatives: np.ndarray, alpha: float = 0.01,
             method: str = "logistic", seed: int = 0) -> torch.Tensor:
    """Unit CAVs ``(len(positives), R, D)``: for each positive group and each negative set, the normal
    of a linear classifier separating them, pointing towards the positives.

    ``x`` ``(n, D)`` holds every sample; ``positives`` are index arrays into its rows, ``negatives``
    ``(R, N)`` likewise (a group and a set never share a row).
    """
    n_sets = len(negatives)
    rows = []
    if method == "logistic":
        k_all = gram(x)
        coef = torch.zeros(len(positives) * n_sets, len(x), dtype=torch.float64, device=x.device)
        for p, pos in enumerate(positives):
            idx = torch.as_tensor(np.stack([np.concatenate([pos, neg]) for neg in negatives]), device=x.device)
            kern = k_all[idx.unsqueeze(2), idx.unsqueeze(1)]  # (R, n, n)
            y = torch.cat([torch.ones(len(pos)), torch.zeros(negatives.shape[1])])
            beta = logistic_in_span(kern, y, alpha)
            coef[p * n_sets:(p + 1) * n_sets].scatter_add_(1, idx, beta)
        w = coef.to(x.dtype) @ x
    elif method == "sgd":
        from sklearn.linear_model import SGDClassifier

        xs = x.cpu().numpy()
        for pos in positives:
            for neg in negatives:
                data = np.concatenate([xs[pos], xs[neg]])
                y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
                rows.append(SGDClassifier(alpha=alpha, random_state=seed).fit(data, y).coef_[0])
        w = torch.as_tensor(np.stack(rows), dtype=x.dtype, device=x.device)
    else:
        raise ValueError(f"unknown CAV method {method!r}")
    norm = w.norm(dim=1, keepdim=True)
    w = torch.where(norm > 0, w / norm.clamp_min(1e-30), w)
    return w.view(len(positives), n_sets, -1)


@dataclass
class LayerCAVs:
    """The CAVs of a layer: ``cavs`` ``(m, R, D)`` per concept and random set; ``random_cavs`` ``(R, D)``
    of the random pseudo-concept against the same sets (the null the t-test compares with)."""

    layer: str
    cavs: torch.Tensor
    random_cavs: torch.Tensor

    def matrix(self) -> torch.Tensor:
        """All CAVs as rows ``(m * R + R, D)``: concept-major, the pseudo-concept's last."""
        return torch.cat([self.cavs.flatten(0, 1), self.random_cavs])


# ----------------------------------------------------------------------------------------------
# ITCAV


def sensitivities(grads: torch.Tensor, cavs: torch.Tensor) -> torch.Tensor:
    """``S = grad . V`` (eq. 5.6) for every input and CAV in one product: ``(n, D) x (K, D) -> (n, K)``."""
    return grads @ cavs.T


def edge_values(bundle: ModelBundle, x: torch.Tensor, lower: Sequence[LayerCAVs], upper: str | None = None,
                centroid: torch.Tensor | None = None, class_index: int | None = None,
                batch_size: int = 32) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ITCAV values (eq. 5.7) from every concept of each ``lower`` layer to one upper concept.

    ``x`` ``(n, 3, H, W)`` are the upper concept's segment images (or, with ``class_index``, the
    class images for plain TCAV). The gradient of the upper objective is computed once per input
    and applied to all lower CAVs. Returns ``{layer: (values (m, R), random_values (R,))}``: the
    fraction of inputs with ``S > 0`` per concept and random set, and for the pseudo-concept.
    """
    names = [c.layer for c in lower]
    mats = {c.layer: c.matrix() for c in lower}
    positive = {n: torch.zeros(len(m), dtype=torch.float64) for n, m in mats.items()}
    for sl in batches(len(x), batch_size):
        grads = objective_gradients(bundle, x[sl], names, upper, centroid, class_index)
        for n in names:
            s = sensitivities(grads[n], mats[n].to(grads[n].device))
            positive[n] += (s > 0).sum(0).double().cpu()
    out = {}
    for c in lower:
        frac = (positive[c.layer] / max(len(x), 1)).numpy()
        m, r = c.cavs.shape[:2]
        out[c.layer] = (frac[: m * r].reshape(m, r), frac[m * r:])
    return out


def edge_pvalues(values: np.ndarray, random_values: np.ndarray) -> np.ndarray:
    """Paired two-sided t-test of each row of ``values`` ``(m, R)`` against ``random_values`` ``(R,)``,
    paired by random set: ``(m,)`` p-values; 1.0 where the test is undefined (no variation at all)."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    rand = np.broadcast_to(np.asarray(random_values, dtype=np.float64), values.shape)
    diff = values - rand
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant differences: handled below
        p = stats.ttest_rel(values, rand, axis=1).pvalue
    p = np.where(np.isfinite(p), p, 1.0)
    # Identical non-zero differences in every set: the effect is certain, scipy gives NaN or inf.
    const = np.ptp(diff, axis=1) == 0
    return np.where(const & (np.abs(diff[:, 0]) > 0), 0.0, p)
