"""Interlayer edges (eq. 5.6-5.7): CAVs against random sets, ITCAV sensitivities, significance.

CAVs are fitted on activations flattened at the layer's own resolution, which makes them long
(``D`` up to millions). The released code fits ``SGDClassifier(alpha=0.01)`` (hinge loss: a
linear SVM) one pair at a time. The default solver (``svm``) reaches the exact minimiser of that
same objective for every (concept, random set) pair at once, through the Gram matrix of the few
hundred samples involved (the weight lies in their span), so one ``X X^T`` product replaces
thousands of passes over ``D``-wide data; ``logistic`` does the same for the log loss, and
``sgd`` runs scikit-learn's ``SGDClassifier`` itself (which stops near, not at, the minimiser).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from core.batching import BatchSize
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
    in {0, 1}; ``b`` unpenalised: the objective of scikit-learn's ``SGDClassifier(loss="log_loss")``,
    whose SGD only approaches its minimiser) for ``R`` problems sharing labels, ``kernel``
    ``(R, n, n)``. The weight is ``w = X^T beta``; damped Newton in an orthonormal basis of the span
    of the samples, to a Newton decrement below 1e-14.
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


SVM_TOL = 1e-9
"""Stopping tolerance of :func:`svm_in_span`: the largest KKT violation ``m(a) - M(a)`` of the dual."""


def svm_in_span(kernel: torch.Tensor, y: torch.Tensor, alpha: float | torch.Tensor, mask: torch.Tensor | None = None,
                tol: float = SVM_TOL, max_iter: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact L2-regularised linear SVMs given their Gram matrices: ``(coefficients (R, n), bias (R,))``.

    Minimises ``mean_i max(0, 1 - s_i (w.x_i + b)) + alpha/2 ||w||^2`` over ``w`` and an unpenalised
    ``b`` (``s_i = +-1`` from ``y`` in {0, 1}; the mean over the problem's own samples): the objective
    of scikit-learn's ``SGDClassifier(alpha=alpha)`` (hinge loss) and, scaled by ``1/alpha``, of
    ``SVC(kernel="linear", C=1/(alpha n))``. ``kernel`` ``(R, n, n)``; ``y`` ``(n,)`` or ``(R, n)``;
    ``mask`` ``(R, n)`` marks each problem's samples (padding is left out: ``n`` counts the marked
    ones). ``w = X^T beta``.

    Solver: the dual ``max sum a - 1/2 a^T Q a``, ``0 <= a_i <= 1/(alpha n)``, ``sum s_i a_i = 0``
    (``Q_ij = s_i s_j K_ij``), by SMO with second-order working-set selection (LIBSVM's WSS 2),
    all ``R`` problems at once, until every problem's KKT violation is under ``tol``.
    Then ``beta_i = s_i a_i`` and ``b`` the middle of the KKT interval.
    """
    k = kernel.double()
    r, n, _ = k.shape
    dev = k.device
    mask = torch.ones(r, n, dtype=torch.bool, device=dev) if mask is None else mask.to(dev).bool()
    s = (2.0 * y.to(k) - 1.0).expand(r, n) * mask
    count = mask.sum(1).clamp_min(1).double()
    alpha_t = torch.as_tensor(alpha, dtype=torch.float64, device=dev).expand(r)
    cap = (1.0 / (alpha_t * count)).unsqueeze(1) * mask  # box [0, C_i]; padding has C = 0
    a = torch.zeros(r, n, dtype=torch.float64, device=dev)
    grad = -mask.double()  # G = Q a - 1 at a = 0 (0 on padding)
    diag = torch.diagonal(k, dim1=1, dim2=2)
    rows = torch.arange(r, device=dev)
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=dev)
    max_iter = max_iter or 200 * n + 1000
    gap = torch.full((r,), float("inf"), dtype=torch.float64, device=dev)
    for _ in range(max_iter):
        up = mask & (((s > 0) & (a < cap)) | ((s < 0) & (a > 0)))
        low = mask & (((s < 0) & (a < cap)) | ((s > 0) & (a > 0)))
        score = -s * grad
        up_score = torch.where(up, score, -inf)
        low_score = torch.where(low, score, inf)
        m, i = up_score.max(1)
        gap = m - low_score.min(1).values
        active = gap > tol
        if not bool(active.any()):
            break
        # j: among the violating partners of i, the largest second-order decrease b^2 / a
        b_it = m.unsqueeze(1) - score
        a_it = (diag[rows, i].unsqueeze(1) + diag - 2.0 * k[rows, i]).clamp_min(1e-12)
        gain = torch.where(low & (b_it > 0), b_it ** 2 / a_it, -inf)
        j = gain.argmax(1)
        step = b_it[rows, j] / a_it[rows, j]
        si, sj = s[rows, i], s[rows, j]
        ai, aj, ci, cj = a[rows, i], a[rows, j], cap[rows, i], cap[rows, j]
        room_i = torch.where(si > 0, ci - ai, ai)
        room_j = torch.where(sj > 0, aj, cj - aj)
        step = torch.minimum(step, torch.minimum(room_i, room_j)).clamp_min(0.0) * active
        a[rows, i] = (ai + si * step).clamp(torch.zeros_like(ci), ci)
        a[rows, j] = (aj - sj * step).clamp(torch.zeros_like(cj), cj)
        grad = grad + s * (k[rows, i] - k[rows, j]) * step.unsqueeze(1)
    else:
        warnings.warn(f"linear SVM: KKT violation {float(gap.max()):.2e} above {tol:.0e} after {max_iter} "
                      "iterations", RuntimeWarning, stacklevel=2)
    score = -s * grad
    up = mask & (((s > 0) & (a < cap)) | ((s < 0) & (a > 0)))
    low = mask & (((s < 0) & (a < cap)) | ((s > 0) & (a > 0)))
    hi = torch.where(up, score, -inf).max(1).values
    lo = torch.where(low, score, inf).min(1).values
    bias = torch.where(torch.isfinite(hi) & torch.isfinite(lo), (hi + lo) / 2,
                       torch.where(torch.isfinite(hi), hi, torch.where(torch.isfinite(lo), lo, 0.0)))
    return s * a, bias


def hinge_objective(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """``mean_i max(0, 1 - s_i (w.x_i + b)) + alpha/2 ||w||^2`` with ``s_i = 2 y_i - 1`` (float64)."""
    s = 2.0 * np.asarray(y, np.float64) - 1.0
    margin = s * (np.asarray(x, np.float64) @ np.asarray(w, np.float64) + b)
    return float(np.maximum(0.0, 1.0 - margin).mean() + 0.5 * alpha * np.dot(w, w))


def training_rows(pos: np.ndarray, neg: np.ndarray, balance: bool = True, train_fraction: float = 1.0,
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The rows one CAV is fitted on, as the released code (TCAV's ``CAV.train``) picks them.

    ``balance``: both classes cut to the size of the smaller, keeping their first rows. Then a
    stratified split keeps ``n_c - ceil((1 - train_fraction) n_c)`` rows of each class (at least one)
    at random (``train_test_split(test_size=0.33, stratify=labels)`` for ``train_fraction=0.67``);
    the held-out rows are not used.
    """
    pos, neg = np.asarray(pos), np.asarray(neg)
    if balance:
        m = min(len(pos), len(neg))
        pos, neg = pos[:m], neg[:m]
    if train_fraction < 1.0:
        rng = rng or np.random.default_rng(0)
        test = 1.0 - train_fraction

        def keep(rows: np.ndarray) -> np.ndarray:
            n_keep = max(1, len(rows) - math.ceil(round(test * len(rows), 9)))
            return np.sort(rng.choice(len(rows), size=n_keep, replace=False)) if len(rows) else rows[:0]

        pos, neg = pos[keep(pos)], neg[keep(neg)]
    return pos, neg


def fit_cavs(x: torch.Tensor, positives: Sequence[np.ndarray], negatives: np.ndarray, alpha: float = 0.01,
             method: str = "svm", seed: int = 0, balance: bool = False, train_fraction: float = 1.0) -> torch.Tensor:
    """Unit CAVs ``(len(positives), R, D)``: for each positive group and each negative set, the normal
    of a linear classifier separating them, pointing towards the positives.

    ``x`` ``(n, D)`` holds every sample; ``positives`` are index arrays into its rows, ``negatives``
    ``(R, N)`` likewise (a group and a set never share a row). ``balance`` and ``train_fraction``
    pick each pair's training rows (:func:`training_rows`, seeded per pair from ``seed``); the
    defaults use every row. ``method``: ``svm`` (:func:`svm_in_span`), ``logistic``
    (:func:`logistic_in_span`) or ``sgd`` (scikit-learn's ``SGDClassifier(alpha)``, hinge loss).
    """
    n_sets = len(negatives)
    if method not in ("svm", "logistic", "sgd"):
        raise ValueError(f"unknown CAV method {method!r}")
    pairs = [[training_rows(pos, neg, balance, train_fraction, np.random.default_rng([seed, p, r]))
              for r, neg in enumerate(negatives)] for p, pos in enumerate(positives)]
    if method in ("svm", "logistic"):
        k_all = gram(x)
        coef = torch.zeros(len(positives) * n_sets, len(x), dtype=torch.float64, device=x.device)
        if method == "svm":  # every pair in one batch, padded to the longest
            n_max = max(len(pp) + len(nn) for group in pairs for pp, nn in group)
            idx = torch.zeros(len(positives) * n_sets, n_max, dtype=torch.long)
            mask = torch.zeros_like(idx, dtype=torch.bool)
            y = torch.zeros_like(idx, dtype=torch.float64)
            for q, (pp, nn) in enumerate(rows for group in pairs for rows in group):
                idx[q, :len(pp) + len(nn)] = torch.as_tensor(np.concatenate([pp, nn]).astype(np.int64))
                mask[q, :len(pp) + len(nn)] = True
                y[q, :len(pp)] = 1.0
            idx, mask = idx.to(x.device), mask.to(x.device)
            kern = k_all[idx.unsqueeze(2), idx.unsqueeze(1)] * (mask.unsqueeze(2) & mask.unsqueeze(1))
            beta, _ = svm_in_span(kern, y.to(x.device), alpha, mask)
            coef.scatter_add_(1, idx, beta * mask)
        else:  # one batch per positive group (the pairs of a group have the same sizes)
            for p, group in enumerate(pairs):
                idx = torch.as_tensor(np.stack([np.concatenate([pp, nn]) for pp, nn in group]).astype(np.int64),
                                      device=x.device)
                kern = k_all[idx.unsqueeze(2), idx.unsqueeze(1)]  # (R, n, n)
                y1 = torch.cat([torch.ones(len(group[0][0])), torch.zeros(len(group[0][1]))])
                beta = logistic_in_span(kern, y1, alpha)
                coef[p * n_sets:(p + 1) * n_sets].scatter_add_(1, idx, beta)
        w = coef.to(x.dtype) @ x
    else:
        from sklearn.linear_model import SGDClassifier

        xs = x.cpu().numpy()
        rows = []
        for group in pairs:
            for pp, nn in group:
                data = np.concatenate([xs[pp], xs[nn]])
                y2 = np.r_[np.ones(len(pp)), np.zeros(len(nn))]
                rows.append(SGDClassifier(alpha=alpha, random_state=seed).fit(data, y2).coef_[0])
        w = torch.as_tensor(np.stack(rows), dtype=x.dtype, device=x.device)
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
                batch_size: int = 32, drop_prefix_tokens: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ITCAV values (eq. 5.7) from every concept of each ``lower`` layer to one upper concept.

    ``x`` ``(n, 3, H, W)`` are the upper concept's segment images (or, with ``class_index``, the
    class images for plain TCAV). The gradient of the upper objective is computed once per input
    and applied to all lower CAVs. Returns ``{layer: (values (m, R), random_values (R,))}``: the
    fraction of inputs with ``S > 0`` per concept and random set, and for the pseudo-concept.
    ``drop_prefix_tokens`` must be what the CAVs were fitted with.
    """
    names = [c.layer for c in lower]
    mats = {c.layer: c.matrix() for c in lower}
    positive = {n: torch.zeros(len(m), dtype=torch.float64) for n, m in mats.items()}
    for sl in batches(len(x), batch_size):
        grads = objective_gradients(bundle, x[sl], names, upper, centroid, class_index, drop_prefix_tokens)
        for n in names:
            s = sensitivities(grads[n], mats[n].to(grads[n].device))
            positive[n] += (s > 0).sum(0).double().cpu()
    out = {}
    for c in lower:
        frac = (positive[c.layer] / max(len(x), 1)).numpy()
        m, r = c.cavs.shape[:2]
        out[c.layer] = (frac[: m * r].reshape(m, r), frac[m * r:])
    return out


def edge_values_grouped(bundle: ModelBundle, inputs: Callable[[slice], torch.Tensor], owner: np.ndarray,
                        lower: Sequence[LayerCAVs], upper: str, centroids: torch.Tensor, batch_size: int = 32,
                        drop_prefix_tokens: bool = True) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """:func:`edge_values` for every concept of the ``upper`` layer at once, its members batched together.

    Row ``i`` of the ``len(owner)`` inputs (``inputs(rows)`` gives ``(len(rows), 3, H, W)``) is a member
    of upper concept ``owner[i]``, whose centroid is ``centroids[owner[i]]`` (``centroids`` ``(U, C)``).
    Each input's gradient is its own (eval mode), so the values equal those of one :func:`edge_values`
    call per concept, in full batches instead of one short batch per concept (``batch_size`` inputs,
    halved while a batch runs out of memory). Returns one dict per upper concept, as :func:`edge_values` does.
    """
    names = [c.layer for c in lower]
    mats = {c.layer: c.matrix() for c in lower}
    owner_t = torch.as_tensor(np.asarray(owner, dtype=np.int64))
    n_upper = len(centroids)
    positive = {n: torch.zeros(n_upper, len(m), dtype=torch.float64) for n, m in mats.items()}

    def run(start: int, stop: int) -> None:  # adds only once the batch succeeded (retried on out-of-memory)
        rows = owner_t[start:stop]
        grads = objective_gradients(bundle, inputs(slice(start, stop)), names, upper, centroids[rows], None,
                                    drop_prefix_tokens)
        hits = {n: (sensitivities(grads[n], mats[n].to(grads[n].device)) > 0).double().cpu() for n in names}
        for n in names:
            positive[n].index_add_(0, rows, hits[n])

    BatchSize(batch_size, "ITCAV inputs", bundle.device).run(len(owner_t), run)
    count = torch.bincount(owner_t, minlength=n_upper).clamp_min(1).double()
    out = []
    for u in range(n_upper):
        vals = {}
        for c in lower:
            frac = (positive[c.layer][u] / count[u]).numpy()
            m, r = c.cavs.shape[:2]
            vals[c.layer] = (frac[: m * r].reshape(m, r), frac[m * r:])
        out.append(vals)
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
