"""VCC (chapter 5): known answers for segments, pruning, concepts, CAVs, ITCAV signs, the t-test,
the graph and its metrics, APS; and a small end-to-end build on a random-init CNN."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from core.data.images import preprocess_images
from core.errors import ConfigError
from core.models import ModelBundle, Preprocessing, count_hooks
from core.vcc import (
    Commonality,
    Edge,
    LayerCAVs,
    Node,
    PruneSigmoid,
    VCCConfig,
    VCCGraph,
    average_path_strength,
    build_vcc,
    discover_concepts,
    edge_pvalues,
    edge_values,
    fit_cavs,
    segment_crop,
    split_region,
    top_down_segments,
)
from core.vcc.forward import feature_grids, flat_activations, objective_gradients
from tests.models import TinyCNN

# ----------------------------------------------------------------------------------------------
# Helpers


def bundle_of(model: nn.Module, size: int = 32, stages: list[str] | None = None) -> ModelBundle:
    return ModelBundle("test", model.eval(), Preprocessing(size=(size, size), mean=(0.5,) * 3, std=(0.5,) * 3),
                       class_names=[f"c{i}" for i in range(5)], stages=stages or [])


def tiny_bundle() -> ModelBundle:
    torch.manual_seed(0)
    return bundle_of(TinyCNN(), stages=["stem", "block1", "block2"])


def blocky_images(n: int, seed: int, size: tuple[int, int] = (30, 40)) -> list[np.ndarray]:
    """Flat background with three coloured rectangles."""
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(n):
        im = np.empty((h, w, 3), np.uint8)
        im[:] = rng.integers(0, 256, 3)
        for _ in range(3):
            y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
            im[y:y + rng.integers(6, h // 2), x:x + rng.integers(6, w // 2)] = rng.integers(0, 256, 3)
        out.append(im)
    return out


def assert_partition(children: list[np.ndarray], parent: np.ndarray) -> None:
    cover = np.sum([c.astype(int) for c in children], axis=0)
    assert cover.max() <= 1, "pieces overlap"
    np.testing.assert_array_equal(cover.astype(bool), parent)


# ----------------------------------------------------------------------------------------------
# Segments


@pytest.mark.parametrize("method", ["slic", "kmeans"])
def test_split_region_recovers_two_planted_regions_inside_the_mask(method: str) -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(scale=0.05, size=(16, 16, 6))
    feats[:, :7] += np.array([3.0, 0, 0, 1, 0, 0])
    feats[:, 7:] += np.array([0, 0, 3.0, 0, 0, 1])
    mask = np.zeros((16, 16), bool)
    mask[2:14, 3:13] = True
    pieces, score = split_region(feats, mask, method, (2, 4), threshold=0.0)
    assert_partition(pieces, mask)
    left = mask.copy()
    left[:, 7:] = False
    assert any(np.array_equal(p, left) for p in pieces)
    assert all(not (p & left).any() or not (p & ~left).any() for p in pieces)  # no piece straddles the boundary
    if method == "kmeans":
        assert len(pieces) == 2 and score > 0.8
    else:
        # maskSLIC is spatially local: its 2-piece seeds sit one above the other and it settles on a
        # top/bottom cut (silhouette ~0); 3 pieces find the boundary and score best.
        assert len(pieces) == 3 and score > 0.3


def test_split_region_keeps_structureless_region_whole() -> None:
    feats = np.random.default_rng(1).normal(size=(12, 12, 8))
    mask = np.ones((12, 12), bool)
    pieces, score = split_region(feats, mask, "slic", (2, 4), threshold=0.5)
    assert len(pieces) == 1 and np.array_equal(pieces[0], mask) and math.isnan(score)


def test_top_down_segments_in_parallel_equal_the_serial_ones() -> None:
    rng = np.random.default_rng(3)
    grids = {n: rng.normal(size=(3, 10, 10, 4)).astype(np.float32) for n in ("a", "b", "c")}
    one = top_down_segments(grids, ["a", "b", "c"], threshold=-1.0)
    two = top_down_segments(grids, ["a", "b", "c"], threshold=-1.0, n_jobs=2)
    for field in ("masks", "image", "layer", "parent"):
        assert np.array_equal(getattr(one, field), getattr(two, field)), field
    assert np.array_equal(one.score, two.score, equal_nan=True)
    assert (one.parent[one.layer == 2] == -1).all() and (one.layer[one.parent[one.layer < 2]] > 0).all()


def test_top_down_segments_partition_their_parents_mask() -> None:
    bundle = tiny_bundle()
    images = blocky_images(4, 0)
    layers = ["stem", "block1", "block2"]
    grids = feature_grids(bundle, preprocess_images(images, bundle.preprocessing), layers, grid=12)
    segs = top_down_segments(grids, layers, threshold=-1.0)  # always split: every level is exercised
    deepest = len(layers) - 1
    for img in range(len(images)):
        top = [segs.masks[s] for s in np.flatnonzero((segs.layer == deepest) & (segs.image == img))]
        assert len(top) >= 2
        assert_partition(top, np.ones((12, 12), bool))
    for parent in np.flatnonzero(segs.layer > 0):
        kids = segs.children(parent)
        assert len(kids) >= 1
        assert np.all(segs.layer[kids] == segs.layer[parent] - 1) and np.all(segs.image[kids] == segs.image[parent])
        assert_partition([segs.masks[k] for k in kids], segs.masks[parent])
    assert np.all(segs.parent[segs.layer == deepest] == -1)
    assert max(len(segs.children(p)) for p in np.flatnonzero(segs.layer > 0)) >= 2


def test_segment_crop_is_the_bounding_box_filled_outside_the_segment() -> None:
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = mask[2, 1] = True  # grid cells of 2x2 pixels: rows 2-5, cols 2-5
    crop = segment_crop(image, mask, fill=117)
    assert crop.shape == (4, 4, 3)
    np.testing.assert_array_equal(crop[0:2, 2:4], image[2:4, 4:6])
    np.testing.assert_array_equal(crop[2:4, 0:2], image[4:6, 2:4])
    assert np.all(crop[0:2, 0:2] == 117) and np.all(crop[2:4, 2:4] == 117)
    np.testing.assert_array_equal(segment_crop(image, mask, fill=None), image[2:6, 2:6])


# ----------------------------------------------------------------------------------------------
# Concepts


def test_prune_sigmoid_gives_the_values_of_methods_md() -> None:
    y = PruneSigmoid()
    assert y(100) == pytest.approx(8.67, abs=0.01)
    assert y(1000) == pytest.approx(27.92, abs=0.01)
    assert y(5000) == pytest.approx(89.13, abs=0.01)
    assert y(0) == pytest.approx(6.5, abs=1e-9)  # A + (K - A) / 2


def test_kmeans_concepts_recover_planted_clusters_and_prune_the_small_one() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=20, size=(4, 16))
    sizes = [40, 30, 20, 3]
    truth = np.repeat(np.arange(4), sizes)
    x = centres[truth] + rng.normal(size=(len(truth), 16))
    lc = discover_concepts(x, n_concepts=4, max_members=25, seed=0)
    assert lc.min_size == pytest.approx(PruneSigmoid()(93))
    assert list(lc.sizes) == [40, 30, 20]  # the 3-member cluster falls under Y(93) ~ 8.5
    for c, planted in enumerate([0, 1, 2]):
        np.testing.assert_array_equal(np.flatnonzero(lc.labels == c), np.flatnonzero(truth == planted))
        np.testing.assert_allclose(lc.centroids[c], x[truth == planted].mean(0), rtol=1e-5, atol=1e-4)
        d = np.linalg.norm(x[lc.members[c]] - lc.centroids[c], axis=1)
        assert len(lc.members[c]) == min(25, sizes[planted]) and np.all(np.diff(d) >= -1e-9)
    assert np.all(lc.labels[truth == 3] == -1)
    assert (lc.n_pruned_size, lc.n_pruned_commonality) == (1, 0)


def test_commonality_rule_is_aces() -> None:
    rule = Commonality()
    assert rule.keeps(11, 20, 100)  # more than half of its members from distinct images
    assert not rule.keeps(10, 20, 100)
    assert rule.keeps(26, 100, 100) and not rule.keeps(25, 100, 100)  # > 0.25 s and > 0.25 N
    assert not rule.keeps(26, 105, 100)  # not > 0.25 s, and not > 0.5 N
    assert rule.keeps(51, 500, 100) and not rule.keeps(50, 500, 100)  # > 0.1 s and > 0.5 N
    assert not rule.keeps(51, 510, 100)
    with pytest.raises(ConfigError, match="high_share"):
        Commonality(high_share=1.5)


def test_commonality_filter_drops_a_cluster_from_too_few_images() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=20, size=(3, 16))
    sizes = [40, 30, 30]
    truth = np.repeat(np.arange(3), sizes)
    x = centres[truth] + rng.normal(size=(len(truth), 16))
    n_images = 20
    image_of = rng.integers(0, n_images, size=len(truth))
    image_of[truth == 1] = rng.integers(0, 3, size=30)  # cluster 1: 30 segments of 3 images
    on = discover_concepts(x, n_concepts=3, max_members=25, seed=0, image_of=image_of, n_images=n_images,
                           commonality=Commonality())
    off = discover_concepts(x, n_concepts=3, max_members=25, seed=0, image_of=image_of, n_images=n_images)
    assert list(off.sizes) == [40, 30, 30] and off.n_pruned_commonality == 0
    assert list(on.sizes) == [40, 30] and on.n_pruned_commonality == 1 and on.n_pruned_size == 0
    assert np.all(on.labels[truth == 1] == -1)
    assert sorted(on.cluster_images) == sorted([3, len(np.unique(image_of[truth == 0])),
                                                len(np.unique(image_of[truth == 2]))])
    with pytest.raises(ValueError, match="image_of"):
        discover_concepts(x, n_concepts=3, commonality=Commonality())


# ----------------------------------------------------------------------------------------------
# CAVs, ITCAV and the t-test


def test_logistic_cavs_equal_sklearn_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    d, alpha = 300, 0.01
    direction = rng.normal(size=d)
    pos = rng.normal(size=(15, d)) + 0.3 * direction
    negs = rng.normal(size=(3, 20, d))
    x = torch.as_tensor(np.concatenate([pos, negs.reshape(-1, d)]), dtype=torch.float32)
    neg_idx = 15 + np.arange(60).reshape(3, 20)
    got = fit_cavs(x, [np.arange(15)], neg_idx, alpha=alpha, method="logistic")[0].double().numpy()
    for r in range(3):
        data, y = np.concatenate([pos, negs[r]]), np.r_[np.ones(15), np.zeros(20)]
        ref = LogisticRegression(C=1 / (len(y) * alpha), tol=1e-12, max_iter=10_000).fit(data, y).coef_[0]
        assert np.dot(got[r], ref / np.linalg.norm(ref)) > 0.9999
        assert np.dot(got[r], direction) > 0
    sgd = fit_cavs(x, [np.arange(15)], neg_idx, alpha=alpha, method="sgd")[0].double().numpy()
    assert np.all(sgd @ direction > 0)
    np.testing.assert_allclose(np.linalg.norm(sgd, axis=1), 1.0, rtol=1e-5)


def svm_problem(rng: np.random.Generator, d: int, n_pos: int, n_neg: int, shift: float) -> tuple[np.ndarray, ...]:
    direction = rng.normal(size=d)
    x = np.concatenate([rng.normal(size=(n_pos, d)) + shift * direction, rng.normal(size=(n_neg, d))])
    return x, np.r_[np.ones(n_pos), np.zeros(n_neg)], direction


@pytest.mark.parametrize(("d", "n_pos", "n_neg", "shift"), [(300, 15, 20, 0.3), (5, 30, 25, 0.5), (40, 12, 30, 0.2)])
def test_svm_reaches_the_exact_minimiser_of_the_hinge_objective(d: int, n_pos: int, n_neg: int, shift: float) -> None:
    """Against LIBSVM (``SVC(kernel="linear", C=1/(alpha n))`` minimises ``1/alpha`` times the same objective)
    run to 1e-12: the same weight and bias, and an objective no higher (to 1e-7)."""
    from sklearn.svm import SVC

    from core.vcc.itcav import hinge_objective, svm_in_span

    rng = np.random.default_rng(d)
    x, y, _ = svm_problem(rng, d, n_pos, n_neg, shift)
    alpha = 0.01
    beta, b = svm_in_span(torch.as_tensor(x @ x.T)[None], torch.as_tensor(y), alpha)
    w = beta[0].numpy() @ x
    ref = SVC(kernel="linear", C=1 / (alpha * len(y)), tol=1e-12).fit(x, y)
    w_ref, b_ref = ref.coef_[0], float(ref.intercept_[0])
    ours, theirs = hinge_objective(w, float(b[0]), x, y, alpha), hinge_objective(w_ref, b_ref, x, y, alpha)
    assert ours <= theirs + 1e-7
    assert abs(ours - theirs) < 1e-6 * max(1.0, theirs)
    np.testing.assert_allclose(w, w_ref, rtol=1e-4, atol=1e-6 * np.abs(w_ref).max())
    assert float(b[0]) == pytest.approx(b_ref, abs=1e-4)
    # no feasible move of the weight lowers the objective (a first-order check of optimality)
    for _ in range(20):
        step = rng.normal(size=d) * 1e-4 * np.linalg.norm(w)
        assert hinge_objective(w + step, float(b[0]), x, y, alpha) >= ours - 1e-12


def test_svm_cavs_in_one_padded_batch_equal_one_problem_at_a_time() -> None:
    from core.vcc.itcav import svm_in_span

    rng = np.random.default_rng(1)
    d = 50
    x = torch.as_tensor(rng.normal(size=(70, d)) + np.r_[np.full(30, 0.5), np.zeros(40)][:, None])
    groups = [np.arange(0, 12), np.arange(12, 30)]  # different sizes: the batch is padded
    negatives = 30 + np.arange(40).reshape(2, 20)
    got = fit_cavs(x, groups, negatives, alpha=0.01, method="svm").numpy()
    for p, pos in enumerate(groups):
        for r, neg in enumerate(negatives):
            rows = np.concatenate([pos, neg])
            xs = x[rows].numpy()
            beta, _ = svm_in_span(torch.as_tensor(xs @ xs.T)[None], torch.as_tensor(np.r_[np.ones(len(pos)),
                                                                                             np.zeros(len(neg))]), 0.01)
            w = beta[0].numpy() @ xs
            np.testing.assert_allclose(got[p, r], w / np.linalg.norm(w), atol=1e-8)


def test_svm_cavs_point_like_sgdclassifier() -> None:
    """The released code's ``SGDClassifier(alpha=0.01)`` only approaches the minimiser this solver reaches: on
    a small well-conditioned problem (d = 10, n = 80) its direction is close (cosine 0.95-0.99), and its objective
    is higher."""
    from sklearn.linear_model import SGDClassifier

    from core.vcc.itcav import hinge_objective, svm_in_span

    rng = np.random.default_rng(0)
    cosines = []
    for _ in range(5):
        x, y, direction = svm_problem(rng, 10, 40, 40, 0.5)
        beta, b = svm_in_span(torch.as_tensor(x @ x.T)[None], torch.as_tensor(y), 0.01)
        w = beta[0].numpy() @ x
        sgd = SGDClassifier(alpha=0.01, random_state=0).fit(x, y)
        cosines.append(w @ sgd.coef_[0] / np.linalg.norm(w) / np.linalg.norm(sgd.coef_[0]))
        assert hinge_objective(w, float(b[0]), x, y, 0.01) <= hinge_objective(sgd.coef_[0], sgd.intercept_[0], x, y,
                                                                               0.01) + 1e-9
        assert w @ direction > 0
    assert np.mean(cosines) > 0.95 and min(cosines) > 0.9  # measured: 0.95-0.99, mean 0.970


def test_cav_training_rows_balance_by_truncation_and_split_67_percent() -> None:
    from sklearn.model_selection import train_test_split

    from core.vcc.itcav import training_rows

    pos, neg = np.arange(100, 150), np.arange(200, 220)
    p, n = training_rows(pos, neg, balance=True, train_fraction=0.67, rng=np.random.default_rng(0))
    labels = np.r_[np.ones(20), np.zeros(20)]
    train = train_test_split(np.arange(40), labels, test_size=0.33, stratify=labels, random_state=0)[2]
    assert len(p) == int(train.sum()) == 13 and len(n) == int((1 - train).sum()) == 13  # as scikit-learn's split
    assert set(p) <= set(pos[:20]) and set(n) <= set(neg)  # truncation keeps the first rows
    again = training_rows(pos, neg, balance=True, train_fraction=0.67, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(p, again[0])
    p, n = training_rows(pos, neg, balance=True)
    np.testing.assert_array_equal(p, pos[:20])
    np.testing.assert_array_equal(n, neg)
    p, n = training_rows(pos, neg, balance=False)
    assert len(p) == 50 and len(n) == 20
    cav = fit_cavs(torch.randn(220, 8, dtype=torch.float64), [pos], neg[None], balance=True, train_fraction=0.67)
    assert cav.shape == (1, 1, 8)


class TinyViT(nn.Module):
    """(B, 3, 16, 16) -> (B, 5): 4x4 patches to 16 tokens of width 6 after a CLS token; two token-wise blocks."""

    num_prefix_tokens = 1

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 6, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 6))
        self.blocks = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 6))
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], dim=1)
        h = torch.relu(self.blocks[0](t))
        t = self.blocks[1](h + h.mean(1, keepdim=True))  # the CLS token mixes into every token
        return self.head(t[:, 0] + t[:, 1:].mean(1))


def test_prefix_tokens_are_dropped_from_flat_activations_and_gradients() -> None:
    torch.manual_seed(0)
    model = TinyViT().eval()
    bundle = ModelBundle("vit", model, Preprocessing(size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3),
                         class_names=[f"c{i}" for i in range(5)], stages=["blocks.0", "blocks.1"], token_grid=(4, 4),
                         num_prefix_tokens=1)
    x = preprocess_images(blocky_images(3, 2), bundle.preprocessing)
    acts = flat_activations(bundle, x, "blocks.0")
    full = flat_activations(bundle, x, "blocks.0", drop_prefix_tokens=False)
    assert acts.shape == (3, 16 * 6) and full.shape == (3, 17 * 6)
    torch.testing.assert_close(acts, full[:, 6:])
    q = torch.randn(6)
    grads = objective_gradients(bundle, x, ["blocks.0"], upper="blocks.1", centroid=q)["blocks.0"]
    grads_full = objective_gradients(bundle, x, ["blocks.0"], upper="blocks.1", centroid=q,
                                     drop_prefix_tokens=False)["blocks.0"]
    assert grads.shape == (3, 16 * 6)
    torch.testing.assert_close(grads, grads_full[:, 6:])
    assert grads_full[:, :6].abs().sum() > 0  # the CLS token does carry gradient: dropping it is a choice
    # a CNN has no prefix tokens: nothing changes
    cnn = tiny_bundle()
    xc = preprocess_images(blocky_images(2, 3), cnn.preprocessing)
    torch.testing.assert_close(flat_activations(cnn, xc, "block1"),
                               flat_activations(cnn, xc, "block1", drop_prefix_tokens=False))


class Coupled(nn.Module):
    """``lower``: pixels to 4 channels (channel 0 is the red input); ``upper``: one unit, ``coupling``
    times lower channel 0; the head's logit 0 is the upper unit's mean."""

    def __init__(self, coupling: float) -> None:
        super().__init__()
        self.lower = nn.Conv2d(3, 4, 1, bias=False)
        self.upper = nn.Conv2d(4, 1, 1, bias=False)
        self.head = nn.Linear(1, 5)
        with torch.no_grad():
            self.lower.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5]]).view(4, 3, 1, 1))
            self.upper.weight.copy_(torch.tensor([coupling, 0, 0, 0]).view(1, 4, 1, 1))
            self.head.weight.zero_()
            self.head.bias.zero_()
            self.head.weight[0, 0] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.upper(self.lower(x)).mean((2, 3)))


def noise_images(n: int, rng: np.random.Generator, red: int | None = None) -> list[np.ndarray]:
    ims = rng.integers(0, 256, size=(n, 8, 8, 3)).astype(np.uint8)
    if red is not None:
        ims[..., 0] = red
    return list(ims)


def coupled_cavs(bundle: ModelBundle, concept: list[np.ndarray], randoms: list[np.ndarray], n_sets: int,
                 seed: int = 0) -> LayerCAVs:
    """CAVs at ``lower`` of one concept and of a pseudo-concept (the first random set) against the other sets."""
    x = flat_activations(bundle, preprocess_images([*concept, *randoms], bundle.preprocessing), "lower")
    k = len(concept)
    size = len(randoms) // (n_sets + 1)
    pseudo = k + np.arange(size)
    sets = k + size + np.arange(n_sets * size).reshape(n_sets, size)
    cavs = fit_cavs(x, [np.arange(k), pseudo], sets, seed=seed)
    return LayerCAVs("lower", cavs[:1], cavs[1])


@pytest.mark.parametrize("coupling", [1.0, -1.0])
def test_itcav_edge_has_the_sign_of_the_coupling(coupling: float) -> None:
    rng = np.random.default_rng(0)
    bundle = bundle_of(Coupled(coupling), size=8)
    cavs = coupled_cavs(bundle, noise_images(12, rng, red=250), noise_images(60, rng), n_sets=5)
    probes = preprocess_images(noise_images(10, rng), bundle.preprocessing)
    # Upper concept far above any reachable value: moving towards it means raising the upper unit.
    grads = objective_gradients(bundle, probes, ["lower"], upper="upper", centroid=torch.tensor([50.0]))
    s = grads["lower"] @ cavs.cavs[0].T  # (10 probes, 5 sets)
    assert torch.all(torch.sign(s) == math.copysign(1.0, coupling))
    values, _ = edge_values(bundle, probes, [cavs], upper="upper", centroid=torch.tensor([50.0]))["lower"]
    np.testing.assert_array_equal(values, np.full((1, 5), 1.0 if coupling > 0 else 0.0))
    tcav, _ = edge_values(bundle, probes, [cavs], class_index=0)["lower"]  # the class logit, plain TCAV
    np.testing.assert_array_equal(tcav, values)


def test_edge_pvalues_are_the_paired_two_sided_t_test() -> None:
    values = np.array([[0.6, 0.7, 0.8, 0.65, 0.75], [0.5, 0.4, 0.6, 0.45, 0.55]])
    rand = np.array([0.5, 0.55, 0.45, 0.5, 0.52])
    got = edge_pvalues(values, rand)
    for row, p in zip(values, got, strict=True):
        d = row - rand
        t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
        assert p == pytest.approx(2 * stats.t.sf(abs(t), len(d) - 1), rel=1e-10)
    assert got[0] < 0.05 < got[1]
    np.testing.assert_array_equal(edge_pvalues(np.array([[0.5, 0.5], [0.9, 0.8]]), np.array([0.5, 0.5])),
                                  [1.0, edge_pvalues(np.array([[0.9, 0.8]]), np.array([0.5, 0.5]))[0]])
    assert edge_pvalues(np.array([[0.9, 0.9, 0.9]]), np.array([0.4, 0.4, 0.4]))[0] == 0.0


def test_t_test_drops_a_noise_concept_and_keeps_a_real_one() -> None:
    rng = np.random.default_rng(0)
    bundle = bundle_of(Coupled(1.0), size=8)
    randoms = noise_images(21 * 10, rng)
    for im in randoms[:10]:  # the pseudo-concept: the population's mean red, random green and blue
        im[..., 0] = 128
    probes = preprocess_images(noise_images(10, rng), bundle.preprocessing)
    q = torch.tensor([50.0])
    real = coupled_cavs(bundle, noise_images(12, rng, red=250), randoms, n_sets=20)
    # Noise for the upper unit, which reads red only: images drawn like the pseudo-concept's
    noise = coupled_cavs(bundle, noise_images(12, rng, red=128), randoms, n_sets=20)
    (v_real, r_real), = edge_values(bundle, probes, [real], upper="upper", centroid=q).values()
    (v_noise, r_noise), = edge_values(bundle, probes, [noise], upper="upper", centroid=q).values()
    np.testing.assert_array_equal(r_real, r_noise)  # one pseudo-concept, one null
    assert 0.2 < r_real.mean() < 0.8  # its direction points either way, depending on the random set
    assert np.all(v_real == 1.0) and edge_pvalues(v_real, r_real)[0] < 0.05
    assert edge_pvalues(v_noise, r_noise)[0] >= 0.05


def test_t_test_keeps_about_five_percent_of_pure_noise_edges() -> None:
    rng = np.random.default_rng(0)
    rand = rng.uniform(0.3, 0.7, size=(2000, 20))
    noise = np.clip(rand + rng.normal(scale=0.1, size=rand.shape), 0, 1)
    kept = np.mean([edge_pvalues(v, r)[0] < 0.05 for v, r in zip(noise, rand, strict=True)])
    assert 0.03 < kept < 0.07
    shifted = np.clip(rand + 0.1 + rng.normal(scale=0.1, size=rand.shape), 0, 1)
    assert np.mean([edge_pvalues(v, r)[0] < 0.05 for v, r in zip(shifted, rand, strict=True)]) > 0.95


def test_gradients_reach_every_lower_layer_and_match_direct_autograd() -> None:
    bundle = tiny_bundle()
    m = bundle.model
    x = preprocess_images(blocky_images(3, 1), bundle.preprocessing)
    q = torch.randn(24)
    got = objective_gradients(bundle, x, ["stem", "block1"], upper="block2", centroid=q)
    a = m.stem(x).detach().requires_grad_(True)
    b = m.block1(a)
    y = m.block2(b).mean((2, 3))
    ga, gb = torch.autograd.grad(-(y - q).norm(dim=1).sum(), [a, b])
    torch.testing.assert_close(got["stem"], ga.flatten(1), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got["block1"], gb.flatten(1), rtol=1e-4, atol=1e-6)
    assert count_hooks(m) == 0


# ----------------------------------------------------------------------------------------------
# Graph, metrics, APS


def small_graph() -> VCCGraph:
    nodes = [Node("a:0", "a", 0, 12, [0, 1, 2], [0, 1]), Node("a:1", "a", 1, 9, [3, 4], [3]),
             Node("b:0", "b", 0, 7, [5, 6], [5]), Node("class:3", "class", 3, 10, kind="class", label="cat")]
    edges = [Edge("a:0", "b:0", 0.8, 0.01, True, [0.7, 0.9], [0.5, 0.4]),
             Edge("a:1", "b:0", 0.4, 0.2, False, [0.3, 0.5], [0.5, 0.4]),
             Edge("b:0", "class:3", 0.6, float("nan"), True, [0.6, 0.6], [0.5, 0.5]),
             Edge("a:0", "class:3", 0.2, 0.03, True, [0.1, 0.3], [0.5, 0.5])]
    return VCCGraph(["a", "b"], 3, "cat", nodes, edges, meta={"note": "hand-built"})


def test_graph_json_round_trips() -> None:
    g = small_graph()
    text = g.to_json()
    assert "NaN" not in text
    back = VCCGraph.from_json(text)
    assert back == g
    assert math.isnan(back.edges[2].p_value)
    assert back.to_json() == text


def test_graph_loads_with_extra_node_keys() -> None:
    g = small_graph()
    d = json.loads(g.to_json())
    for n in d["nodes"]:
        n["exemplar_files"] = [f"classes/x/exemplars/{n['id']}.webp"]  # as the vcc job writes them
    assert VCCGraph.from_json(json.dumps(d)) == g
    assert VCCGraph.from_dict(d) == g


def test_graph_metrics_per_layer_group_edge_weights_by_source() -> None:
    rows = {m.layer: m for m in small_graph().metrics()}
    assert list(rows) == ["a", "b", "class"]
    # branching factor: significant incoming edges per concept
    assert (rows["a"].n_concepts, rows["a"].n_edges) == (2, 0) and math.isnan(rows["a"].branching_factor)
    assert (rows["b"].n_concepts, rows["b"].n_edges, rows["b"].branching_factor) == (1, 1, 1.0)
    assert (rows["class"].n_edges, rows["class"].branching_factor) == (2, 2.0)
    # edge weights: the significant edges leaving the layer (a:0 -> b:0 0.8, a:0 -> class 0.2; b:0 -> class 0.6)
    assert rows["a"].weight_edges == 2 and rows["a"].grouped_by == "source"
    assert rows["a"].mean_edge_weight == pytest.approx(0.5) and rows["a"].edge_weight_variance == pytest.approx(0.09)
    assert rows["b"].weight_edges == 1 and rows["b"].mean_edge_weight == pytest.approx(0.6)
    assert rows["b"].edge_weight_variance == 0.0
    assert rows["class"].weight_edges == 0 and math.isnan(rows["class"].mean_edge_weight)
    assert rows["class"].to_dict()["mean_edge_weight"] is None


def test_graph_metrics_grouped_by_target() -> None:
    rows = {m.layer: m for m in small_graph().metrics("target")}
    assert math.isnan(rows["a"].mean_edge_weight) and rows["a"].weight_edges == 0
    assert rows["b"].mean_edge_weight == pytest.approx(0.8) and rows["b"].edge_weight_variance == 0.0
    assert rows["class"].mean_edge_weight == pytest.approx(0.4)
    assert rows["class"].edge_weight_variance == pytest.approx(0.04)
    assert (rows["class"].n_edges, rows["class"].branching_factor, rows["class"].grouped_by) == (2, 2.0, "target")
    with pytest.raises(ValueError, match="group_by"):
        small_graph().metrics("layer")


def test_average_path_strength_over_paths_of_any_length() -> None:
    g = small_graph()
    aps = average_path_strength(g)
    assert aps["b:0"] == pytest.approx(0.6)
    assert aps["a:0"] == pytest.approx(((0.8 + 0.6) / 2 + 0.2) / 2)  # two paths: via b:0 and direct
    assert math.isnan(aps["a:1"])  # its only edge is not significant
    assert average_path_strength(g, significant_only=False)["a:1"] == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------
# End to end


def test_build_vcc_end_to_end_on_a_tiny_cnn() -> None:
    bundle = tiny_bundle()
    bundle.model.train()
    cfg = VCCConfig(grid=12, n_concepts=4, prune=PruneSigmoid(A=0.0, K=2.0), n_random_sets=4, random_set_size=3,
                    suppression_scales=(0.0, 2.0), n_random_directions=2, batch_size=16, kmeans_n_init=2)
    progress = []
    result = build_vcc(bundle, ["block2", "stem", "block1"], blocky_images(5, 0), blocky_images(15, 1),
                       class_index=2, config=cfg, progress=lambda *a: progress.append(a))
    g = result.graph
    layers = ["stem", "block1", "block2"]
    assert g.layers == layers and result.segments.layers == layers
    assert bundle.model.training and count_hooks(bundle.model) == 0
    concepts = [n for n in g.nodes if n.kind == "concept"]
    assert concepts and {n.layer for n in concepts} <= set(layers)
    for n in concepts:
        assert n.members and n.exemplars == n.members[:4]
        assert np.all(result.segments.layer[n.members] == layers.index(n.layer))
        assert np.all(result.segment_concept[n.members] == n.index)
        assert len(result.centroids[n.layer]) == len(g.layer_nodes(n.layer))
        img, layer, mask = result.concept_segments(n.id)[0]
        assert layer == n.layer and mask.shape == (12, 12) and 0 <= img < 5
    depth = {name: i for i, name in enumerate([*layers, "class"])}
    node_layer = {n.id: n.layer for n in g.nodes}
    assert g.edges and any(e.target == g.class_id for e in g.edges)
    for e in g.edges:
        assert depth[node_layer[e.target]] == depth[node_layer[e.source]] + 1  # adjacent layers only
        assert len(e.values) == len(e.random_values) == 4 and 0 <= e.weight <= 1 and 0 <= e.p_value <= 1
        assert e.significant == (e.p_value < 0.05)
    assert [m.layer for m in g.metrics()] == [*layers, "class"]
    assert VCCGraph.from_json(g.to_json()) == g
    for pid in np.flatnonzero(result.segments.layer > 0):
        assert_partition([result.segments.masks[k] for k in result.segments.children(pid)],
                         result.segments.masks[pid])
    fid = result.fidelity
    assert set(fid.suppression) == set(layers)
    for name, curves in fid.suppression.items():
        assert curves.concept_accuracy.shape == (len(g.layer_nodes(name)), 2)
        assert curves.random_accuracy.shape == (2, 2)
        assert curves.matched_kind == "segments"
        assert curves.matched_accuracy.shape == ((2, 2) if len(g.layer_nodes(name)) else (0, 2))
        assert np.all(curves.concept_accuracy[:, 0] == curves.random_accuracy[0, 0])  # eps 0: the baseline
    assert set(fid.ls) == {n.id for n in concepts}
    assert {p[0] for p in progress} >= {"segment features", "edges"}
    assert {"segmentation", "CAVs", "ITCAV"} <= set(result.timings)
    assert VCCConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    json.dumps(fid.to_dict(), allow_nan=False)
    arrays = result.arrays()
    assert arrays["segment_masks"].shape == (len(result.segments), 12, 12)
    assert arrays["centroids.2"].shape == result.centroids["block2"].shape


def test_suppression_auc_and_falls_faster() -> None:
    from core.vcc.fidelity import SuppressionCurves

    scales = np.array([0.0, 1.0, 2.0])
    curves = SuppressionCurves("l", scales, 3 * scales, 3.0, ["l:0"], np.array([[1.0, 0.0, 0.0]]),
                               np.array([[1.0, 1.0, 0.0], [1.0, 0.5, 0.0]]))
    concept, random = curves.auc()
    assert concept == pytest.approx(0.25) and random == pytest.approx((0.75 + 0.5) / 2)
    assert curves.falls_faster()
    same = SuppressionCurves("l", scales, scales, 1.0, ["l:0"], np.array([[1.0, 0.5, 0.0]]),
                             np.array([[1.0, 0.5, 0.0]]))
    assert not same.falls_faster()  # a tie is not faster
    empty = SuppressionCurves("l", scales, scales, 1.0, [], np.zeros((0, 3)), np.array([[1.0, 0.5, 0.0]]))
    assert np.isnan(empty.auc()[0]) and not empty.falls_faster()
    assert np.isnan(curves.auc_matched()) and curves.falls_faster_matched() is None
    matched = SuppressionCurves("l", scales, scales, 1.0, ["l:0"], np.array([[1.0, 0.5, 0.0]]),
                                np.array([[1.0, 1.0, 1.0]]), np.array([[1.0, 0.0, 0.0], [1.0, 0.5, 0.0]]), "segments")
    assert matched.auc_matched() == pytest.approx((0.25 + 0.5) / 2)
    assert matched.falls_faster() and not matched.falls_faster_matched()
    d = matched.to_dict()
    assert d["matched_kind"] == "segments" and len(d["matched_accuracy"]) == 2
    json.dumps(curves.to_dict(), allow_nan=False)


def test_matched_random_directions() -> None:
    from core.vcc.fidelity import matched_directions

    rng = np.random.default_rng(0)
    feats = np.abs(rng.normal(size=(200, 8)))
    seg = matched_directions(feats, [50, 10], 4, "segments", seed=1)
    assert seg.shape == (4, 8) and np.all(seg >= 0)
    # each is the mean of a random set of the given size: near the overall mean, closer for bigger sets
    spread = np.linalg.norm(seg - feats.mean(0), axis=1)
    assert spread[0] < spread[1] and spread[2] < spread[3]
    np.testing.assert_array_equal(seg, matched_directions(feats, [50, 10], 4, "segments", seed=1))
    nonneg = matched_directions(feats, [50], 6, "nonnegative")
    assert nonneg.shape == (6, 8) and np.all(nonneg >= 0)
    assert matched_directions(feats, [], 4, "segments").shape == (0, 8)
    assert matched_directions(feats, [5], 4, "off").shape == (0, 8)
    with pytest.raises(ValueError, match="matched"):
        matched_directions(feats, [5], 4, "gaussian")


@pytest.mark.parametrize(("key", "value", "match"), [
    ("cav_method", "hinge", "cav_method"), ("cav_train_fraction", 0.0, "cav_train_fraction"),
    ("cav_train_fraction", 1.5, "cav_train_fraction"), ("cav_alpha", 0.0, "cav_alpha"),
    ("matched_random", "yes", "matched_random"), ("metrics_group_by", "layer", "metrics_group_by"),
    ("commonality", {"low_share": -1}, "low_share")])
def test_bad_vcc_settings_are_one_line_errors(key: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        VCCConfig(**{key: value})
    assert "\n" not in str(e.value)


def test_vcc_defaults_follow_the_released_code() -> None:
    cfg = VCCConfig()
    assert (cfg.cav_method, cfg.cav_alpha, cfg.cav_balance, cfg.cav_train_fraction) == ("svm", 0.01, True, 0.67)
    assert cfg.drop_prefix_tokens and cfg.commonality == Commonality() and cfg.metrics_group_by == "source"
    assert cfg.matched_random == "segments"
    off = VCCConfig(commonality=None)
    assert VCCConfig.from_dict(json.loads(json.dumps(off.to_dict()))) == off


# ----------------------------------------------------------------------------------------------
# Batched concept suppression (issue 11, item 12)


def loop_suppression_curves(bundle: ModelBundle, layer: str, x: torch.Tensor, class_index: int,
                            directions: np.ndarray, scales: list[float], n_random: int, seed: int, batch_size: int,
                            matched: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The per-item loop suppression_curves ran before it was batched: one pass per (direction, eps)."""
    from core.vcc.forward import gap_and_logits, shifted_logits

    feats, logits = gap_and_logits(bundle, x, [layer], batch_size)
    eps = np.asarray(scales, dtype=np.float64) * float(feats[layer].norm(dim=1).mean())
    base = float((logits.argmax(1) == class_index).float().mean())
    rand = np.random.default_rng(seed).normal(size=(n_random, feats[layer].shape[1]))

    def curve(d: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(d)
        unit = torch.as_tensor(d / norm if norm > 0 else d, dtype=torch.float32)
        return np.asarray([base if e == 0 else float((shifted_logits(bundle, x, layer, -float(e) * unit, batch_size)
                                                      .argmax(1) == class_index).float().mean()) for e in eps])

    def curves(dirs: np.ndarray) -> np.ndarray:
        return np.stack([curve(d) for d in dirs]) if len(dirs) else np.zeros((0, len(eps)))

    return curves(directions), curves(rand), None if matched is None else curves(matched)


class SkipCat(nn.Module):
    """A DenseNet-like skip: ``block1``'s input is concatenated with its output (the expanded pass fails)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return self.head(torch.cat([s, self.block1(s)], 1).mean((2, 3)))


@pytest.mark.parametrize(("model", "layer", "batch_size"), [("tiny", "block1", 7), ("tiny", "stem", 64),
                                                            ("tiny", "block2", 1), ("skip", "block1", 5)])
def test_batched_suppression_equals_the_per_item_loop(model: str, layer: str, batch_size: int) -> None:
    from core.vcc.fidelity import suppression_curves

    torch.manual_seed(1)
    bundle = tiny_bundle() if model == "tiny" else bundle_of(SkipCat())
    x = preprocess_images(blocky_images(6, 3), bundle.preprocessing)
    logits = bundle.model(x)
    cls = int(logits.argmax(1).mode().values)  # a class the images are (mostly) put in: curves that move
    channels = dict(bundle.model.named_modules())[layer][0].out_channels
    rng = np.random.default_rng(2)
    directions = rng.normal(size=(3, channels)).astype(np.float32)
    directions[1] = 0.0  # a zero direction stays a zero shift
    matched = np.abs(rng.normal(size=(2, channels)))
    scales = [0.0, 1.0, 4.0, 16.0, 64.0]
    got = suppression_curves(bundle, layer, x, cls, directions, ["a", "b", "c"], scales, 3, 4, batch_size, matched,
                             "nonnegative")
    want = loop_suppression_curves(bundle, layer, x, cls, directions, scales, 3, 4, batch_size, matched)
    np.testing.assert_array_equal(got.concept_accuracy, want[0])
    np.testing.assert_array_equal(got.random_accuracy, want[1])
    np.testing.assert_array_equal(got.matched_accuracy, want[2])
    assert len(np.unique(np.concatenate([want[0], want[1], want[2]]))) > 1  # the curves are not all flat
    assert count_hooks(bundle.model) == 0


def test_batched_suppression_runs_few_passes() -> None:
    """Each pass carries up to batch_size shifted copies of one image's activation."""
    from core.vcc.forward import shifted_correct

    bundle = tiny_bundle()
    x = preprocess_images(blocky_images(4, 5), bundle.preprocessing)
    calls = []
    bundle.model.stem.register_forward_hook(lambda _m, i, _o: calls.append(len(i[0])))
    shifts = torch.randn(40, 16)
    counts = shifted_correct(bundle, x, "block1", shifts, 1, batch_size=16)
    assert counts.shape == (40,) and counts.min() >= 0 and counts.max() <= 4
    # probe (1 image + 2 repeated), then 3 passes of 1 image per image (40 shifts / 16), the first reused
    assert calls == [1, 2] + [1] * (4 * 3 - 1)
