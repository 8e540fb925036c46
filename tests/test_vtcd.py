"""VTCD (chapter 4): convex NMF, the elbow, SLIC tubelets, CRIS (batched and one mask per pass),
attribution, Rosetta concepts, hook hygiene. Tiny models and data only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.models import ModelBundle, Preprocessing, count_hooks
from core.models.video_zoo import VideoTransformer
from core.vtcd import (
    UnitSet,
    VTCDConfig,
    attribution_curves,
    convex_nmf,
    cris,
    cris_units,
    discover,
    draw_masks,
    elbow_kmeans,
    extract_features,
    feature_sites,
    importance_from_masks,
    masked_metrics,
    masked_metrics_reference,
    rosetta,
    to_common_grid,
    video_tubelets,
)
from core.vtcd.cnmf import assign
from core.vtcd.features import prepare_videos, take
from core.vtcd.importance import bootstrap_interval, released_importance
from core.vtcd.masking import coverage_to_tokens
from core.vtcd.rosetta import pairwise_r, tuple_r
from core.vtcd.tubelets import drop_small, slic_labels, tubelet_masks, upsample_features

PREP = Preprocessing(input="video", size=32, frames=8, mean=(0.45,) * 3, std=(0.225,) * 3)


def tiny_vit(seed: int = 0) -> ModelBundle:
    torch.manual_seed(seed)
    m = VideoTransformer(num_classes=3, frames=8, size=32, dim=32, depth=2, heads=2, stem="linear", patch=8).eval()
    return ModelBundle(spec="tiny-vit", model=m, preprocessing=PREP, token_grid=m.grid,
                       stages=["blocks.0", "blocks.1"])


def tiny_videos(n: int = 3) -> list[np.ndarray]:
    from core.data.synthetic import SyntheticConfig, make_video

    cfg = SyntheticConfig(task="appearance", frames=8, size=32)
    return [make_video(cfg, i).frames for i in range(n)]


FAST = VTCDConfig(max_concepts=5, kmeans_n_init=2, cnmf_max_iter=300, n_masks=24, batch_size=8)


@pytest.fixture(scope="module")
def vit_run():
    bundle, videos = tiny_vit(), tiny_videos()
    return bundle, videos, discover(bundle, videos, config=FAST)


# ------------------------------------------------------------------------------------------------
# Convex NMF and the elbow


def _blobs(q: int, per: int = 25, dim: int = 16, spread: float = 6.0, noise: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, spread, (q, dim))  # mixed signs: plain NMF would not apply
    labels = np.repeat(np.arange(q), per)
    return centers[labels] + rng.normal(0.0, noise, (len(labels), dim)), labels, centers


def test_convex_nmf_recovers_planted_clusters_and_keeps_constraints():
    x, labels, centers = _blobs(4)
    assert (x < 0).any()
    res = convex_nmf(x, 4, init_labels=np.random.default_rng(1).integers(0, 4, len(x)), max_iter=2000)
    assert res.G.shape == (len(x), 4) and res.H.shape == (4, len(x))
    assert (res.G >= 0).all() and (res.H >= 0).all()
    np.testing.assert_allclose(res.G.sum(0), 1.0, atol=1e-9)  # centroids are convex combinations of tubelets
    np.testing.assert_allclose(res.centroids, res.G.T @ x, atol=1e-9)
    recon = np.linalg.norm(x.T - x.T @ res.G @ res.H) / np.linalg.norm(x)
    assert recon == pytest.approx(res.error, rel=1e-6) and res.error < 0.1
    # the assignment is the planted clustering up to a permutation, and centroids sit on the planted centres
    for q in range(4):
        members = labels[res.assignment == q]
        assert len(members) == 25 and (members == members[0]).all()
        assert np.abs(res.centroids[q] - centers[members[0]]).max() < 0.5


def test_convex_nmf_same_on_float32():
    x, _, _ = _blobs(3, seed=2)
    a = convex_nmf(x, 3, init_labels=np.arange(len(x)) % 3, max_iter=200)
    b = convex_nmf(torch.as_tensor(x, dtype=torch.float32), 3, init_labels=np.arange(len(x)) % 3, max_iter=200,
                   dtype=torch.float32)
    np.testing.assert_array_equal(a.assignment, b.assignment)
    np.testing.assert_allclose(a.error, b.error, rtol=1e-3)


@pytest.mark.parametrize("q", [3, 5])
def test_elbow_stops_one_past_planted_clusters_as_the_released_code(q):
    """On well-separated planted clusters the loop stops at the first k that no longer lowers the inertia
    by 5%, q + 1: the released rule answers that k; the ``before`` rule answers q."""
    x, _, _ = _blobs(q, per=20, seed=q)
    chosen, inertias, km = elbow_kmeans(x, max_k=14, threshold=0.95, n_init=3)
    assert chosen == q + 1
    assert len(inertias) == q + 1 and inertias[q] > 0.95 * inertias[q - 1]
    assert all(inertias[k] <= 0.95 * inertias[k - 1] for k in range(1, q))
    assert len(np.unique(km)) == q + 1  # the labels of the chosen k
    before, inertias_b, km_b = elbow_kmeans(x, max_k=14, threshold=0.95, n_init=3, rule="before")
    assert before == q and inertias_b == inertias and len(np.unique(km_b)) == q


def test_elbow_that_never_stops_takes_max_k_and_rejects_unknown_rules():
    x = np.random.default_rng(0).normal(size=(40, 2)) * np.array([100.0, 1.0])  # inertia keeps falling fast
    chosen, inertias, _ = elbow_kmeans(x, max_k=3, threshold=0.999, n_init=2)
    assert chosen == 3 and len(inertias) == 3
    with pytest.raises(ValueError, match="elbow rule"):
        elbow_kmeans(x, rule="previous")


def test_assignment_rules_read_rows_of_g_or_columns_of_h():
    g = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.2]])  # (M=3, Q=2)
    h = np.array([[0.2, 0.7, 0.9], [0.8, 0.3, 0.1]])  # (Q=2, M=3)
    np.testing.assert_array_equal(assign(g, h, "g"), [0, 1, 0])
    np.testing.assert_array_equal(assign(g, h, "h"), [1, 0, 0])
    with pytest.raises(ValueError, match="assignment"):
        assign(g, h, "x")


def test_convex_nmf_assignment_rules_on_planted_and_overlapping_clusters():
    x, labels, _ = _blobs(3, seed=4)
    init = np.random.default_rng(2).integers(0, 3, len(x))
    g_rule = convex_nmf(x, 3, init, max_iter=2000, assignment="g")
    h_rule = convex_nmf(x, 3, init, max_iter=2000, assignment="h")
    for res in (g_rule, h_rule):  # well-separated clusters: both rules give the planted clustering
        for q in range(3):
            members = labels[res.assignment == q]
            assert len(members) == 25 and (members == members[0]).all()
    np.testing.assert_array_equal(h_rule.assignment, h_rule.H.argmax(0))
    # overlapping clusters: the rules disagree on some points, and "g" is not the row argmax of the
    # column-normalised G that is returned (it reads G before the normalisation, as the updates leave it)
    xo, _, _ = _blobs(4, per=30, spread=1.0, noise=1.0, seed=5)
    init = np.random.default_rng(3).integers(0, 4, len(xo))
    go = convex_nmf(xo, 4, init, max_iter=3000, tol=0.0, assignment="g")
    ho = convex_nmf(xo, 4, init, max_iter=3000, tol=0.0, assignment="h")
    np.testing.assert_allclose(go.G, ho.G)
    assert (go.assignment != ho.assignment).any()


def test_convex_nmf_tolerance_stop_gives_the_released_iteration_count_assignment():
    """Stopping on the tolerance gives the same assignment as the released code's 10,000 updates."""
    xo, _, _ = _blobs(4, per=30, spread=2.0, noise=1.0, seed=6)
    init = np.random.default_rng(4).integers(0, 4, len(xo))
    early = convex_nmf(xo, 4, init)  # defaults: at most 10,000 updates, tolerance 1e-7
    full = convex_nmf(xo, 4, init, max_iter=10000, tol=0.0)
    assert full.iterations == 10000 and early.iterations < 10000
    np.testing.assert_array_equal(early.assignment, full.assignment)


# ------------------------------------------------------------------------------------------------
# Tubelets


def test_slic_tubelets_partition_the_volume_and_drop_small_ones():
    rng = np.random.default_rng(0)
    feat = torch.as_tensor(rng.normal(size=(4, 4, 4, 8)), dtype=torch.float32)
    feat[:, :2] += 3.0  # some structure for SLIC to find
    up = upsample_features(feat, (8, 16, 16)).numpy()
    assert up.shape == (8, 16, 16, 8)
    labels = slic_labels(up, n_segments=12, compactness=0.1)
    masks = tubelet_masks(labels)
    np.testing.assert_array_equal(masks.sum(0), 1)  # every voxel in exactly one tubelet
    assert 2 <= len(masks) <= 40

    sizes = masks.reshape(len(masks), -1).sum(1)
    cut = np.sort(sizes)[1] / labels.size  # drops the smallest tubelet(s) only
    tubes = video_tubelets(feat, (8, 16, 16), min_fraction=cut)
    kept = tubes.masks()
    assert kept.sum(0).max() == 1 and ((tubes.labels == -1) == (kept.sum(0) == 0)).all()
    assert tubes.count == int((sizes >= cut * labels.size).sum()) < len(masks)
    assert (kept.reshape(tubes.count, -1).sum(1) >= cut * labels.size).all()
    for i in range(tubes.count):
        np.testing.assert_allclose(tubes.features[i], up[kept[i]].mean(0), rtol=1e-5, atol=1e-5)


def test_drop_small_renumbers_and_marks_dropped():
    labels = np.zeros((1, 10, 100), np.int32)
    labels[0, 0, :1] = 1  # 1 voxel of 1000: 0.1% is kept (not under)
    labels[0, 1, :] = 2
    labels[0, 2, :3] = 3
    out = drop_small(labels, 0.002)
    assert set(np.unique(out)) == {-1, 0, 1, 2}
    assert (out[labels == 1] == -1).all() and (out[labels == 3] == 2).all()
    assert (drop_small(labels, 0.001)[labels == 1] == 1).all()


def test_coverage_to_tokens_keeps_cells_covered_at_least_half():
    support = np.zeros((8, 16, 16), bool)
    support[2:4, 4:8, 0:4] = True  # exactly token (1, 1, 0) of a (4, 4, 4) grid
    support[6:8, 12:14, 12:16] = True  # half of token (3, 3, 3)
    support[0:2, 0:1, 0:4] = True  # a quarter of token (0, 0, 0)
    tok = coverage_to_tokens(support, (4, 4, 4), 0.5).numpy()
    assert set(zip(*np.nonzero(tok), strict=True)) == {(1, 1, 0), (3, 3, 3)}


# ------------------------------------------------------------------------------------------------
# Features and the discovery pipeline


def test_features_are_the_key_heads_on_the_token_grid():
    bundle = tiny_vit()
    x = prepare_videos(bundle, tiny_videos(2))
    sites = feature_sites(bundle, ["blocks.1"], "key")
    assert sites[0].module == "blocks.1.attn.k" and sites[0].heads == 2 and sites[0].grid == (4, 4, 4)
    feats, logits = extract_features(bundle, x, sites, batch_size=1)
    store = {}
    h = bundle.model.blocks[1].attn.k.register_forward_hook(lambda m, i, o: store.update(k=o.detach()))
    try:
        bundle(x)
    finally:
        h.remove()
    k = store["k"]  # (V, N, D), tokens time-major
    assert feats[0].shape == (2, 2, 4, 4, 4, 16) and logits.shape == (2, 3)
    t, yy, xx, head = 3, 1, 2, 1
    torch.testing.assert_close(feats[0][1, head, t, yy, xx], k[1, t * 16 + yy * 4 + xx, 16:32])


def test_discover_result_structure(vit_run):
    bundle, _, res = vit_run
    assert [(u.layer, u.head) for u in res.units] == [("blocks.0", 0), ("blocks.0", 1), ("blocks.1", 0),
                                                      ("blocks.1", 1)]
    assert res.seg_grid == (8, 16, 16) and res.video_shape == (8, 32, 32)
    for u in res.units:
        assert 1 <= u.n_concepts <= u.q_elbow <= 5
        sup = u.supports()
        assert sup.shape == (u.n_concepts, 3, 8, 16, 16)
        # concepts of a head partition what the kept tubelets cover
        np.testing.assert_array_equal(sup.sum(0), (u.labels >= 0).astype(int))
        for q in range(u.n_concepts):
            m = u.members(q)
            assert len(m) > 0
            union = np.zeros_like(sup[q])
            for row in m:
                union[u.tubelet_video[row]] |= u.labels[u.tubelet_video[row]] == u.tubelet_id[row]
            np.testing.assert_array_equal(union, sup[q])
    assert res.supports("video").shape == (res.n_concepts, 3, 8, 32, 32)
    assert res.supports("tokens").shape == (res.n_concepts, 3, 4, 4, 4)
    assert len(res.concept_names) == res.n_concepts and count_hooks(bundle.model) == 0


# ------------------------------------------------------------------------------------------------
# CRIS


class _KeyOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.heads = 2
        self.k = nn.Linear(4, 4)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = _KeyOnly()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.attn.k(tokens)


class CarrierModel(nn.Module):
    """Tokens on a (1, 4, 4) grid; the class-0 logit is the head-0 key of tokens 8..11 only."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv3d(3, 4, (2, 8, 8), stride=(2, 8, 8))
        self.blocks = nn.Sequential(_Block())
        with torch.no_grad():
            self.embed.weight.zero_()
            self.embed.bias.fill_(1.0)
            self.blocks[0].attn.k.weight.copy_(torch.eye(4))
            self.blocks[0].attn.k.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.blocks(self.embed(x).flatten(2).transpose(1, 2))
        carrier = 3.0 * k[:, 8:12, 0].sum(1)
        noise = 0.2 * k[:, :, 2].sum(1)  # head 1: every token, so no head-1 concept matters much
        return torch.stack([carrier, torch.zeros_like(carrier) + 0.5 * noise, torch.zeros_like(carrier)], 1)


def _carrier_units(bundle: ModelBundle, n_videos: int) -> UnitSet:
    sites = feature_sites(bundle, ["blocks.0"], "key")
    quarters = [np.arange(16) // 4 == i for i in range(4)]
    tokens = [np.repeat(q[None], n_videos, 0) for q in quarters]
    tokens += [np.repeat((np.arange(16) % 2 == i)[None], n_videos, 0) for i in range(2)]
    return UnitSet.from_units(sites, [0] * 6, [0, 0, 0, 0, 1, 1], tokens, [f"c{i}" for i in range(6)])


@pytest.mark.parametrize("metric", ["loss", "probability"])
def test_cris_ranks_the_concept_that_carries_the_answer_first(metric):
    prep = Preprocessing(input="video", size=32, frames=2, mean=(0.5,) * 3, std=(0.25,) * 3)
    bundle = ModelBundle(spec="carrier", model=CarrierModel().eval(), preprocessing=prep, token_grid=(1, 4, 4),
                         stages=["blocks.0"])
    x = torch.zeros(2, 3, 2, 32, 32)
    units = _carrier_units(bundle, 2)
    res = cris_units(bundle, x, units, targets=[0, 0], n_masks=60, rho=0.5, metric=metric, batch_size=16,
                     expand_at="blocks.0")
    assert res.removed.shape == (2, 60, 6) and (res.removed.sum(2) == 3).all()
    assert res.ranking()[0] == 2
    # exactly half the units go per mask, so the others get a small negative share of the carrier's effect
    assert res.importance[2] > 0.2 and np.abs(np.delete(res.importance, 2)).max() < 0.5 * res.importance[2]
    assert res.expand_at == "blocks.0" and count_hooks(bundle.model) == 0


def test_importance_from_masks_known_answer():
    removed = np.array([[[1, 0], [0, 1], [1, 1], [0, 0]]], bool)
    values = np.array([[1.0, 3.0, 0.0, 4.0]])
    per_video, mean = importance_from_masks(removed, values, higher_is_better=True)
    assert per_video.shape == (1, 2)
    # unit 0: kept in masks 1, 3 (mean 3.5), removed in 0, 2 (mean 0.5)
    np.testing.assert_allclose(mean, [3.0, 1.0])
    np.testing.assert_allclose(importance_from_masks(removed, values, higher_is_better=False)[1], [-3.0, -1.0])
    masks = draw_masks(50, 13, 0.5, np.random.default_rng(0))
    assert (masks.sum(1) == 6).all() and len({m.tobytes() for m in masks}) > 45
    assert masks.mean(0).min() > 0.3 and masks.mean(0).max() < 0.7


def test_released_estimator_and_bootstrap_interval():
    removed = np.array([[[1, 0], [0, 1], [1, 1], [0, 0]]], bool)
    values = np.array([[1.0, 3.0, 0.0, 4.0]])
    # the released code's estimator: mean D over the masks that keep the unit
    np.testing.assert_allclose(released_importance(removed, values), [3.5, 2.5])
    np.testing.assert_allclose(released_importance(removed, values, higher_is_better=False), [-3.5, -2.5])
    # unit 2 carries the metric (D = 1 kept, 0.2 removed, plus noise). Each mask removes exactly 3 of 6
    # units, so a unit kept leaves the carrier removed with probability 3/5 and a unit removed with 2/5:
    # expected importance 0.8 for the carrier and -0.8 / 5 = -0.16 for every other unit. Over repeated
    # experiments the 90% intervals cover these about 90% of the time, and they narrow with more masks.
    expected = np.array([-0.16, -0.16, 0.8, -0.16, -0.16, -0.16])
    rng = np.random.default_rng(0)

    def experiment(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = draw_masks(k, 6, 0.5, rng)[None]
        v = 1.0 - 0.8 * r[0, :, 2] + rng.normal(0, 0.1, k)[None]
        low, high = bootstrap_interval(r, v, n_boot=200, level=0.9, seed=int(rng.integers(1 << 30)))
        return low, high, importance_from_masks(r, v)[1]

    covered = []
    for _ in range(100):
        low, high, mean = experiment(200)
        assert (low <= mean).all() and (mean <= high).all()
        covered.append((low < expected) & (expected < high))
    coverage = np.mean(covered)
    assert 0.82 < coverage < 0.96, coverage
    widths = [float(np.mean(np.subtract(*experiment(k)[1::-1]))) for k in (200, 2000)]
    low, high, _ = experiment(2000)
    assert low[2] > 0.7 and high[2] < 0.9
    # a loss flips the sign of the interval with the estimate
    r = draw_masks(300, 6, 0.5, rng)[None]
    v = rng.normal(size=(1, 300))
    lo, hi = bootstrap_interval(r, v, n_boot=100, seed=3)
    lo_loss, hi_loss = bootstrap_interval(r, v, higher_is_better=False, n_boot=100, seed=3)
    np.testing.assert_allclose([lo_loss, hi_loss], [-hi, -lo])
    assert widths[1] < 0.5 * widths[0]
    nan_low, _ = bootstrap_interval(removed, values, n_boot=0)
    assert np.isnan(nan_low).all()


@pytest.mark.parametrize("metric", ["probability", "loss"])
def test_batched_masks_equal_one_mask_per_forward(vit_run, metric):
    bundle, videos, res = vit_run
    x = prepare_videos(bundle, videos)
    units = res.concept_units()
    removed = draw_masks(10, units.n_units, 0.5, np.random.default_rng(3))
    removed[0] = False
    for v in range(2):
        ref = masked_metrics_reference(bundle, take(x, v), units, v, removed, 1, metric)
        for expand in (None, "blocks.0"):
            got = masked_metrics(bundle, take(x, v), units, v, removed, 1, metric, batch_size=4, expand_at=expand)
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert np.ptp(ref) > 1e-4  # the masks do change the output
    with torch.no_grad():
        base = torch.softmax(bundle(take(x, 1)), 1)[0, 1].item()
    if metric == "probability":
        assert ref[0] == pytest.approx(base, abs=1e-6)


def test_cris_pipeline_records_every_mask(vit_run):
    bundle, videos, res = vit_run
    imp = cris(bundle, videos, res)
    c = imp.concepts
    assert c.removed.shape == (3, FAST.n_masks, res.n_concepts) and c.values.shape == (3, FAST.n_masks)
    assert c.names == res.concept_names and np.isfinite(c.importance).all()
    assert c.expand_at == "blocks.0"
    np.testing.assert_array_equal(c.targets, res.predictions)
    ref = masked_metrics_reference(bundle, take(prepare_videos(bundle, videos), 2), res.concept_units(), 2,
                                   c.removed[2], int(c.targets[2]), "loss")
    np.testing.assert_allclose(c.values[2], ref, rtol=1e-5, atol=1e-6)
    assert imp.heads is not None and imp.heads.removed.shape == (3, FAST.n_masks, 4)
    assert count_hooks(bundle.model) == 0


def test_attribution_curves_follow_the_order():
    prep = Preprocessing(input="video", size=32, frames=2, mean=(0.5,) * 3, std=(0.25,) * 3)
    bundle = ModelBundle(spec="carrier", model=CarrierModel().eval(), preprocessing=prep, token_grid=(1, 4, 4))
    units = _carrier_units(bundle, 1)
    good = np.array([0.0, 0.1, 1.0, 0.2, 0.0, 0.0])
    curves = attribution_curves(bundle, torch.zeros(1, 3, 2, 32, 32), units, {"cris": good}, [0], "probability",
                                steps=7, n_random=3)
    pos, neg = curves.curves["cris/positive"], curves.curves["cris/negative"]
    assert pos[0] == pytest.approx(neg[0]) and pos[1] < pos[0] - 0.3  # the carrier goes first
    assert neg[-2] == pytest.approx(neg[0], abs=1e-3) and neg[-1] < neg[0] - 0.3  # kept until the last step
    assert curves.auc["cris/positive"] < curves.auc["random"] < curves.auc["cris/negative"]


# ------------------------------------------------------------------------------------------------
# Rosetta


def test_rosetta_pairs_each_concept_of_a_run_with_its_copy(vit_run):
    _, _, res = vit_run
    sup = to_common_grid(res.supports("video"), (8, 16, 16))
    imp = np.linspace(1.0, 0.0, res.n_concepts)
    out = rosetta([sup, sup.copy()], [imp, imp], epsilon=1.0, delta=0.15, average="present")
    pairs = {(t.concepts[0], t.concepts[1]): t.r for t in out.tuples}
    for i in range(res.n_concepts):
        assert pairs[(i, i)] == pytest.approx(1.0)
        assert max(r for (a, _), r in pairs.items() if a == i) == pytest.approx(1.0)
    assert len(out.survivors[2][0]) == res.n_concepts
    # the released average counts a video where the concept is absent as 0: R of a self-pair is the
    # fraction of videos it appears in
    released = rosetta([sup, sup.copy()], [imp, imp], epsilon=1.0, delta=0.0)
    pairs = {(t.concepts[0], t.concepts[1]): t.r for t in released.tuples}
    for i in range(res.n_concepts):
        assert pairs[(i, i)] == pytest.approx(sup[i].any(-1).mean())
    # the epsilon filter keeps the top 15% by importance only
    top = rosetta([sup, sup], [imp, imp], epsilon=0.15, delta=0.15)
    n = int(np.ceil(0.15 * res.n_concepts))
    assert list(top.candidates[0]) == list(range(n))
    assert {t.concepts for t in top.tuples} == {(i, i) for i in range(n)}


def test_rosetta_r_counts_a_video_where_both_concepts_are_absent_as_zero():
    p = 6
    a = np.zeros((1, 3, p), bool)
    b = np.zeros((1, 3, p), bool)
    a[0, 0, :2] = b[0, 0, :2] = True  # video 0: the same support, IoU 1
    a[0, 1, :2] = True  # video 1: IoU |{1}| / |{0, 1, 2}| = 1/3
    b[0, 1, 1:3] = True  # video 2: neither concept appears
    np.testing.assert_allclose(pairwise_r(a, b), [[(1.0 + 1.0 / 3.0 + 0.0) / 3.0]])
    np.testing.assert_allclose(pairwise_r(a, b, "present"), [[(1.0 + 1.0 / 3.0) / 2.0]])
    assert tuple_r([a[0], b[0]]) == pytest.approx(4.0 / 9.0)
    assert tuple_r([a[0], b[0]], "present") == pytest.approx(2.0 / 3.0)
    # delta 0.5 lies between the two: the released rule drops the pair, the "present" rule keeps it
    assert rosetta([a, b], [np.ones(1)] * 2, epsilon=1.0, delta=0.5).tuples == []
    kept = rosetta([a, b], [np.ones(1)] * 2, epsilon=1.0, delta=0.5, average="present")
    assert [(t.concepts, round(t.r, 6)) for t in kept.tuples] == [((0, 0), round(2.0 / 3.0, 6))]
    with pytest.raises(ValueError, match="average"):
        rosetta([a, b], [np.ones(1)] * 2, average="some")


def test_rosetta_grows_tuples_and_drops_unmatched_concepts():
    v, p = 2, 100
    a = np.zeros((2, v, p), bool)
    a[0, :, :50] = True
    a[1, :, 50:] = True
    b = np.zeros((2, v, p), bool)
    b[0, :, :45] = True  # R = 0.9 with a[0]
    b[1, :, 95:] = True  # R <= 0.1 with everything
    c = a.copy()
    out = rosetta([a, b, c], [np.ones(2)] * 3, epsilon=1.0, delta=0.15)
    assert [list(s) for s in out.survivors[2]] == [[0, 1], [0], [0, 1]]
    three = [t for t in out.tuples if t.d == 3]
    assert [(t.concepts, round(t.r, 6)) for t in three] == [((0, 0, 0), 0.9)]
    assert out.mean_r[3] == pytest.approx(0.9 / 4)  # (0, 0, 0) and three empty intersections


# ------------------------------------------------------------------------------------------------
# Hooks


def test_hooks_removed_after_exceptions(vit_run):
    bundle, videos, res = vit_run
    x = take(prepare_videos(bundle, videos), 0)
    units = res.concept_units()
    removed = np.ones((2, units.n_units), bool)
    with pytest.raises(IndexError):  # a bad target fails inside the hooked block
        masked_metrics(bundle, x, units, 0, removed, 99, "loss", 2, "blocks.0")
    assert count_hooks(bundle.model) == 0
    with pytest.raises(IndexError):
        masked_metrics_reference(bundle, x, units, 0, removed, 99, "loss")
    assert count_hooks(bundle.model) == 0

    def boom(model: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        model(inp)
        raise RuntimeError("boom")

    broken = ModelBundle(spec="broken", model=bundle.model, preprocessing=PREP, token_grid=bundle.token_grid,
                         forward_fn=boom)
    with pytest.raises(RuntimeError, match="boom"):
        masked_metrics(broken, x, units, 0, removed, 0, "loss", 2, None)
    with pytest.raises(RuntimeError, match="boom"):
        extract_features(broken, x, res.sites)
    assert count_hooks(bundle.model) == 0


def test_cnn_channel_blocks_play_heads():
    from core.models.video_zoo import R3D

    torch.manual_seed(0)
    model = R3D(num_classes=3, widths=(4, 8, 8, 8)).eval()
    bundle = ModelBundle(spec="tiny-r3d", model=model, preprocessing=PREP, stages=["layer1", "layer2"])
    videos = tiny_videos(2)
    cfg = VTCDConfig(max_concepts=3, kmeans_n_init=1, cnmf_max_iter=100, channel_blocks=2, n_masks=6, batch_size=4)
    res = discover(bundle, videos, layers=["layer2"], config=cfg)
    site = res.sites[0]
    assert (site.layout, site.kind, site.heads, site.channels, site.grid) == ("map", "block", 2, 8, (4, 4, 4))
    assert res.units[1].tubelet_features.shape[1] == 4
    x = prepare_videos(bundle, videos)
    units = res.concept_units()
    removed = draw_masks(6, units.n_units, 0.5, np.random.default_rng(0))
    ref = masked_metrics_reference(bundle, take(x, 1), units, 1, removed, 0, "logit")
    got = masked_metrics(bundle, take(x, 1), units, 1, removed, 0, "logit", batch_size=3, expand_at="layer2")
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert np.ptp(ref) > 0


def test_config_from_dict_names_unknown_settings() -> None:
    assert VTCDConfig.from_dict(VTCDConfig().to_dict()) == VTCDConfig()
    with pytest.raises(ValueError, match=r"unknown VTCD setting.*n_maskz"):
        VTCDConfig.from_dict({**VTCDConfig().to_dict(), "n_maskz": 3})


def test_vtcd_runs_on_a_hugging_face_videomae(tmp_path) -> None:
    """A local Hugging Face VideoMAE (separate query/key/value modules): keys of every head are found,
    concepts discovered, and CRIS masks them (an all-concept mask changes the output)."""
    transformers = pytest.importorskip("transformers")
    from core.models import resolve_model
    from core.vtcd.masking import masked_metrics

    cfg = transformers.VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
                                      num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3)
    torch.manual_seed(0)
    transformers.VideoMAEForVideoClassification(cfg).eval().save_pretrained(tmp_path / "vmae")
    bundle = resolve_model(f"hf:{tmp_path / 'vmae'}")
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8) for _ in range(3)]
    result = discover(bundle, videos, config=VTCDConfig(n_masks=8, max_concepts=4, kmeans_n_init=2))
    assert [s.module for s in result.sites] == [f"videomae.encoder.layer.{i}.attention.attention.key" for i in (0, 1)]
    assert [(u.layer, u.head) for u in result.units] == [(f"videomae.encoder.layer.{i}", h) for i in (0, 1)
                                                        for h in (0, 1)]
    assert result.n_concepts >= 4
    units = result.concept_units()
    x = take(prepare_videos(bundle, videos), 0)
    none_all = masked_metrics(bundle, x, units, 0, np.array([[False] * units.n_units, [True] * units.n_units]), 0,
                              "logit", 2)
    assert abs(none_all[0] - none_all[1]) > 1e-6
