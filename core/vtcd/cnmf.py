"""Convex NMF (Ding, Li & Jordan, 2010) in torch, and the choice of the number of concepts.

Notation of methods.md: the tubelet matrix ``T`` is ``M x C`` (rows are tubelets, entries of any sign);
``T^T ~ T^T G H`` with ``G`` ``M x Q`` and ``H`` ``Q x M`` both non-negative. Centroids are the rows of
``(T^T G)^T = G^T T``; tubelet ``m`` belongs to concept ``argmax_q G[m, q]``, the row of the convex weights
as the multiplicative updates leave them, as the authors' released code reads it (``assignment="g"``);
``assignment="h"`` takes ``argmax_q H[q, m]`` instead, this project's earlier rule. (Ding et al. write
``X ~ X W G^T`` with ``X = T^T``, ``W = G`` and their ``G = H^T``.)

The ``overcomplete`` package's ``ConvexNMF`` was not an option: it is not installed and there is no
network to install it. The updates below are a few lines and run on any torch device.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch


@dataclass
class CNMFResult:
    """``G`` ``(M, Q)`` with columns summing to 1 (each centroid a convex combination of tubelets),
    ``H`` ``(Q, M)``, ``centroids`` ``(Q, C)``, ``assignment`` ``(M,)``, the relative reconstruction
    error ``||T^T - T^T G H|| / ||T^T||`` and the number of updates run."""

    G: np.ndarray
    H: np.ndarray
    centroids: np.ndarray
    assignment: np.ndarray
    error: float
    iterations: int


Assignment = Literal["g", "h"]
ElbowRule = Literal["stop", "before"]
ASSIGNMENTS: tuple[str, ...] = ("g", "h")
ELBOW_RULES: tuple[str, ...] = ("stop", "before")


def assign(g: np.ndarray | torch.Tensor, h: np.ndarray | torch.Tensor, rule: str = "g") -> np.ndarray:
    """The concept of every tubelet, int32 ``(M,)``: ``argmax_q G[m, q]`` (``rule="g"``, the released code;
    ``G`` ``(M, Q)`` unnormalised, as the updates leave it) or ``argmax_q H[q, m]`` (``rule="h"``, ``H``
    ``(Q, M)``). Ties go to the lowest concept index."""
    if rule == "g":
        out = torch.as_tensor(g).argmax(1)
    elif rule == "h":
        out = torch.as_tensor(h).argmax(0)
    else:
        raise ValueError(f"assignment must be one of {ASSIGNMENTS}, not {rule!r}")
    return out.cpu().numpy().astype(np.int32)


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread for the small CPU matmuls of the updates: thread hand-offs cost far more than
    the work on a few hundred tubelets (measured: 0.14 ms an update on one thread, 16-45 ms on two on a
    loaded 2-core machine)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _split(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (y.abs() + y) / 2, (y.abs() - y) / 2


def convex_nmf(t: np.ndarray | torch.Tensor, q: int, init_labels: np.ndarray | None = None, max_iter: int = 10000,
               tol: float = 1e-7, device: str | torch.device | None = None, dtype: torch.dtype = torch.float64,
               seed: int = 0, assignment: str = "g") -> CNMFResult:
    """Factor the tubelet matrix ``t`` ``(M, C)`` as ``t^T ~ t^T G H`` with ``G, H >= 0``.

    Multiplicative updates of Ding et al. (eq. 20-21 of their paper) with ``Y = t t^T`` split into
    ``Y+ = (|Y| + Y) / 2`` and ``Y- = (|Y| - Y) / 2``. Initialised from ``init_labels`` (a k-means
    clustering, as Ding et al.: indicator + 0.2) or random labels. Stops when the relative error
    changes by less than ``tol`` (checked every 10 updates; ``tol=0``: never) or after ``max_iter`` updates
    (the released code runs 10,000). ``assignment``: see :func:`assign`; the returned ``G`` has its
    columns normalised to sum to 1 (``H`` absorbs the scale), but the ``"g"`` rule reads the rows of the
    unnormalised ``G`` the updates produce, as the released code does.
    """
    x = torch.as_tensor(t).to(device=device or "cpu", dtype=dtype)
    with _one_cpu_thread(x.device):
        return _convex_nmf(x, q, init_labels, max_iter, tol, dtype, seed, assignment)


def _convex_nmf(x: torch.Tensor, q: int, init_labels: np.ndarray | None, max_iter: int, tol: float,
                dtype: torch.dtype, seed: int, assignment: str) -> CNMFResult:
    m = x.shape[0]
    if not 1 <= q <= m:
        raise ValueError(f"need 1 <= q <= number of tubelets ({m}), got q={q}")
    if init_labels is None:
        init_labels = np.random.default_rng(seed).integers(0, q, size=m)
    labels = torch.as_tensor(np.asarray(init_labels), device=x.device, dtype=torch.long)
    ind = torch.zeros(m, q, device=x.device, dtype=dtype)
    ind[torch.arange(m, device=x.device), labels] = 1.0
    hd = ind + 0.2  # Ding's G (= H^T), M x Q
    w = hd / ind.sum(0).clamp_min(1.0)  # Ding's W (= G), M x Q
    y = x @ x.T
    yp, yn = _split(y)
    eps = torch.finfo(dtype).tiny ** 0.5
    norm = torch.linalg.norm(x).clamp_min(eps)

    def rel_error() -> float:
        return float(torch.linalg.norm(x.T - x.T @ w @ hd.T) / norm)

    err, it = rel_error(), 0
    for it in range(1, max_iter + 1):
        ypw, ynw = yp @ w, yn @ w
        wtyw_p, wtyw_n = w.T @ ypw, w.T @ ynw
        hd = hd * torch.sqrt((ypw + hd @ wtyw_n) / (ynw + hd @ wtyw_p).clamp_min(eps))
        hth = hd.T @ hd
        w = w * torch.sqrt((yp @ hd + ynw @ hth) / (yn @ hd + ypw @ hth).clamp_min(eps))
        if it % 10 == 0 or it == max_iter:
            new = rel_error()
            if not math.isfinite(new):
                raise FloatingPointError("convex NMF diverged")
            done = tol > 0 and abs(err - new) <= tol * max(err, eps)
            err = new
            if done:
                break
    labels = assign(w, hd.T, assignment)  # before the normalisation below, which would change a row's argmax
    scale = w.sum(0).clamp_min(eps)  # columns of G sum to 1; H absorbs the scale, G H is unchanged
    g, h = w / scale, (hd * scale).T
    return CNMFResult(G=g.cpu().numpy(), H=h.cpu().numpy(), centroids=(g.T @ x).cpu().numpy(),
                      assignment=labels, error=rel_error(), iterations=it)


def elbow_kmeans(x: np.ndarray, max_k: int = 14, threshold: float = 0.95, n_init: int = 10,
                 seed: int = 0, rule: str = "stop") -> tuple[int, list[float], np.ndarray]:
    """The released code's elbow: k-means for k = 1, 2, ... (at most ``max_k``), stopping at the first
    k whose inertia is above ``threshold`` x the previous one. ``rule="stop"`` (the released code)
    answers that k, the first that no longer lowered the inertia by more than ``1 - threshold``;
    ``rule="before"`` answers k - 1, the last k that still did (this project's earlier rule: on
    well-separated planted clusters it returns their number, where ``"stop"`` returns one more).
    ``max_k`` when the loop never stops.

    Returns (Q, the inertias computed, the k-means labels ``(M,)`` for Q).
    """
    if rule not in ELBOW_RULES:
        raise ValueError(f"elbow rule must be one of {ELBOW_RULES}, not {rule!r}")
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, dtype=np.float64)
    inertias: list[float] = []
    labels: list[np.ndarray] = []
    for k in range(1, min(max_k, len(x)) + 1):
        # one thread: on a few hundred points, thread start-up costs 20x the work
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")  # duplicate points: "Number of distinct clusters ... smaller"
            km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
        inertias.append(float(km.inertia_))
        labels.append(km.labels_.astype(np.int32))
        if k > 1 and (inertias[-2] <= 0.0 or inertias[-1] > threshold * inertias[-2]):
            return (k, inertias, labels[-1]) if rule == "stop" else (k - 1, inertias, labels[-2])
    return len(inertias), inertias, labels[-1]


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette score of a clustering; NaN when undefined (one cluster, or one point per cluster)."""
    from sklearn.metrics import silhouette_score

    n = len(np.unique(labels))
    if n < 2 or n >= len(x):
        return float("nan")
    return float(silhouette_score(np.asarray(x, dtype=np.float64), labels))


def convex_nmf_batched(ts: Sequence[np.ndarray | torch.Tensor], qs: Sequence[int],
                       init_labels: Sequence[np.ndarray | None], max_iter: int = 10000, tol: float = 1e-7,
                       device: str | torch.device | None = None, dtype: torch.dtype = torch.float64, seed: int = 0,
                       assignment: str = "g") -> list[CNMFResult]:
    """:func:`convex_nmf` of ``B`` heads at once: ``ts[b]`` ``(M_b, C_b)`` with ``qs[b]`` concepts, zero-padded
    to ``(B, M, C)`` and ``Q`` (padded rows and columns of ``G`` and ``H`` start at 0 and stay 0, so they
    change nothing). Each head stops on its own (frozen once its relative error settles), so every head
    gets :func:`convex_nmf`'s answer up to floating-point summation order. One batched matmul per step:
    what makes 144 heads cheap on a GPU, where single small matmuls are bound by kernel launches."""
    b = len(ts)
    if not (len(qs) == len(init_labels) == b):
        raise ValueError("ts, qs and init_labels must have one entry per head")
    if b == 0:
        return []
    dev = torch.device(device or "cpu")
    xs = [torch.as_tensor(t).to(device=dev, dtype=dtype) for t in ts]
    ms = [int(x.shape[0]) for x in xs]
    for m, q in zip(ms, qs, strict=True):
        if not 1 <= q <= m:
            raise ValueError(f"need 1 <= q <= number of tubelets ({m}), got q={q}")
    m_max, c_max, q_max = max(ms), max(int(x.shape[1]) for x in xs), max(qs)
    x = torch.zeros(b, m_max, c_max, device=dev, dtype=dtype)
    ind = torch.zeros(b, m_max, q_max, device=dev, dtype=dtype)
    live = torch.zeros(b, m_max, q_max, device=dev, dtype=dtype)  # 1 on each head's real (M_b, Q_b) block
    for i, (xi, q, lab) in enumerate(zip(xs, qs, init_labels, strict=True)):
        x[i, :ms[i], :xi.shape[1]] = xi
        if lab is None:
            lab = np.random.default_rng(seed).integers(0, q, size=ms[i])
        ind[i, torch.arange(ms[i], device=dev), torch.as_tensor(np.asarray(lab), device=dev, dtype=torch.long)] = 1.0
        live[i, :ms[i], :q] = 1.0
    with _one_cpu_thread(dev):
        hd = (ind + 0.2) * live
        w = hd / ind.sum(1, keepdim=True).clamp_min(1.0)
        y = x @ x.transpose(1, 2)
        yp, yn = _split(y)
        eps = torch.finfo(dtype).tiny ** 0.5
        norm = torch.linalg.norm(x, dim=(1, 2)).clamp_min(eps)
        xt = x.transpose(1, 2)

        def rel_error(w: torch.Tensor, hd: torch.Tensor) -> torch.Tensor:
            return torch.linalg.norm(xt - xt @ w @ hd.transpose(1, 2), dim=(1, 2)) / norm

        err = rel_error(w, hd)
        active = torch.ones(b, dtype=torch.bool, device=dev)
        iters = torch.zeros(b, dtype=torch.long, device=dev)
        for it in range(1, max_iter + 1):
            ypw, ynw = yp @ w, yn @ w
            wt = w.transpose(1, 2)
            wtyw_p, wtyw_n = wt @ ypw, wt @ ynw
            new_hd = hd * torch.sqrt((ypw + hd @ wtyw_n) / (ynw + hd @ wtyw_p).clamp_min(eps))
            hth = new_hd.transpose(1, 2) @ new_hd
            new_w = w * torch.sqrt((yp @ new_hd + ynw @ hth) / (yn @ new_hd + ypw @ hth).clamp_min(eps))
            keep = active.view(b, 1, 1)
            hd, w = torch.where(keep, new_hd, hd), torch.where(keep, new_w, w)
            iters = torch.where(active, it, iters)
            if it % 10 == 0 or it == max_iter:
                new = rel_error(w, hd)
                if not bool(torch.isfinite(new[active]).all()):
                    raise FloatingPointError("convex NMF diverged")
                done = (tol > 0) & ((err - new).abs() <= tol * torch.clamp(err, min=eps))
                err = torch.where(active, new, err)
                active = active & ~done
                if not bool(active.any()):
                    break
        out = []
        for i in range(b):
            wi, hi = w[i, :ms[i], :qs[i]], hd[i, :ms[i], :qs[i]]
            labels = assign(wi, hi.T, assignment)
            scale = wi.sum(0).clamp_min(eps)
            g, h = wi / scale, (hi * scale).T
            xi = x[i, :ms[i], :xs[i].shape[1]]
            error = float(torch.linalg.norm(xi.T - xi.T @ wi @ hi.T) / norm[i])
            out.append(CNMFResult(G=g.cpu().numpy(), H=h.cpu().numpy(), centroids=(g.T @ xi).cpu().numpy(),
                                  assignment=labels, error=error, iterations=int(iters[i])))
        return out
