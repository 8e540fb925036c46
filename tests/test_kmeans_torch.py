"""k-means in torch (core.kmeans_torch) against scikit-learn's KMeans: the same clusters on separated
blobs, the same quality (inertia) on structureless data, deterministic for a seed, sane on degenerate input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from core.kmeans_torch import kmeans


@pytest.mark.parametrize(("n", "dim", "k"), [(400, 8, 5), (1500, 64, 25)])
def test_separated_blobs_give_scikit_learns_clusters(n: int, dim: int, k: int) -> None:
    x, truth = make_blobs(n, dim, centers=k, cluster_std=0.5, center_box=(-50, 50), random_state=0)
    ours = kmeans(x, k, n_init=4, seed=0)
    ref = KMeans(k, n_init=4, random_state=0).fit(x)
    assert adjusted_rand_score(truth, ours.labels) == 1.0
    assert adjusted_rand_score(ref.labels_, ours.labels) == 1.0
    assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-6)
    # the centres are the members' means, in the order of the labels
    for c in range(k):
        np.testing.assert_allclose(ours.centers[c], x[ours.labels == c].mean(0), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_structureless_data_reach_scikit_learns_inertia_within_a_few_percent(dtype: torch.dtype) -> None:
    x = np.abs(np.random.default_rng(0).normal(size=(1200, 96)))  # non-negative, like GAP features
    ours = kmeans(x, 25, n_init=4, seed=0, dtype=dtype)
    ref = KMeans(25, n_init=4, random_state=0).fit(x)
    assert abs(ours.inertia / ref.inertia_ - 1) < 0.03
    np.testing.assert_allclose(ours.inertia, ((x - ours.centers[ours.labels]) ** 2).sum(), rtol=1e-6)
    assert 1 <= ours.n_iter <= 300


def test_the_same_seed_gives_the_same_clustering_and_restarts_keep_the_best() -> None:
    x = np.random.default_rng(1).normal(size=(500, 16))
    a, b = kmeans(x, 7, n_init=3, seed=5), kmeans(x, 7, n_init=3, seed=5)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centers, b.centers)
    one = [kmeans(x, 7, n_init=1, seed=s).inertia for s in range(3)]
    assert kmeans(x, 7, n_init=10, seed=0).inertia <= min(one) + 1e-9


def test_duplicate_points_and_k_equal_to_n_do_not_break_it() -> None:
    x = np.repeat(np.eye(3), 10, axis=0)  # three distinct points, ten times each
    res = kmeans(x, 5, n_init=2, seed=0)
    assert res.labels.min() >= 0 and res.labels.max() < 5 and res.inertia == pytest.approx(0.0, abs=1e-9)
    assert len(np.unique(res.centers[res.labels], axis=0)) == 3
    y = np.random.default_rng(0).normal(size=(6, 4))
    full = kmeans(y, 6, n_init=1, seed=0)
    assert sorted(full.labels.tolist()) == list(range(6)) and full.inertia == pytest.approx(0.0, abs=1e-9)


def test_bad_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="k must be"):
        kmeans(np.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match="non-empty"):
        kmeans(np.zeros((0, 2)), 1)


def test_a_tensor_stays_on_its_device_and_gives_the_arrays_result() -> None:
    x = np.random.default_rng(2).normal(size=(300, 8))
    a = kmeans(torch.as_tensor(x), 4, n_init=2, seed=0)
    b = kmeans(x, 4, n_init=2, seed=0, device="cpu")
    np.testing.assert_array_equal(a.labels, b.labels)
