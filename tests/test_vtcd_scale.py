"""Smoke run of VTCD on the real VideoMAE architecture through ``hf:``, shrunk to seconds (issue 13): one
clip, one layer, a few masks, both SLIC backends; out-of-memory back-off inside the real CRIS and feature
loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.models.resolve import resolve_model
from core.vtcd import VTCDConfig
from core.vtcd.features import extract_features, feature_sites, prepare_videos
from core.vtcd.pipeline import cris, discover

transformers = pytest.importorskip("transformers")
CFG = VTCDConfig(n_masks=8, head_masks=4, max_concepts=3, kmeans_n_init=1, cnmf_max_iter=50, bootstrap=10,
                 batch_size=4, n_segments=6)


@pytest.fixture(scope="module")
def videomae(tmp_path_factory: pytest.TempPathFactory):
    """A random VideoMAE (the real classes) with 2 layers of 2 heads on 4 frames of 32x32, and one clip."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("scale") / "videomae-tiny"
    config = transformers.VideoMAEConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=96, image_size=32, num_frames=4, tubelet_size=2,
                                         patch_size=8, num_labels=5)
    transformers.VideoMAEForVideoClassification(config).save_pretrained(folder, safe_serialization=True)
    bundle = resolve_model(f"hf:{folder}")
    t, y, x = np.meshgrid(np.arange(8), np.arange(40), np.arange(48), indexing="ij")
    clip = np.stack([(x * 5 + t * 9) % 256, (y * 6) % 256, ((x + y + 3 * t) % 17) * 15], -1).astype(np.uint8)
    yield bundle, prepare_videos(bundle, [clip])
    torch.set_num_threads(before)


@pytest.mark.parametrize("backend", ["skimage", "torch"])
def test_one_clip_one_layer_both_backends(videomae, backend: str) -> None:
    bundle, x = videomae
    layer = bundle.stages[-1]
    cfg = CFG.replace(slic_backend=backend)
    res = discover(bundle, x, [layer], None, cfg)
    assert bundle.token_grid == (2, 4, 4) and res.seg_grid == (4, 16, 16)
    assert [u.head for u in res.units] == [0, 1] and res.n_concepts >= 2
    for u in res.units:
        assert u.labels.shape == (1, 4, 16, 16) and u.tubelet_features.shape[1] == 24
    imp = cris(bundle, x, res, config=cfg)
    assert imp.concepts.values.shape == (1, 8) and np.isfinite(imp.concepts.values).all()
    assert imp.heads.importance.shape == (2,)


def test_torch_backend_finds_skimages_tubelets(videomae) -> None:
    bundle, x = videomae
    xs = torch.cat([x, x.flip(-2)])
    a = discover(bundle, xs, bundle.stages, None, CFG.replace(n_segments=12))
    b = discover(bundle, xs, bundle.stages, None, CFG.replace(n_segments=12, slic_backend="torch"))
    for ua, ub in zip(a.units, b.units, strict=True):
        np.testing.assert_array_equal(ub.labels, ua.labels)  # float64 SLIC: scikit-image's labels
        np.testing.assert_allclose(ub.tubelet_features, ua.tubelet_features, rtol=1e-5, atol=1e-6)


def oom_above(bundle, limit: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the model raise CUDA's out-of-memory error for batches over ``limit``; returns the batch sizes seen."""
    seen: list[int] = []
    real = bundle.model.forward

    def forward(*args, **kwargs):
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        seen.append(int(pixels.shape[0]))
        if pixels.shape[0] > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(bundle.model, "forward", forward)
    return seen


def test_cris_and_features_back_off_on_out_of_memory(videomae, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, x = videomae
    layer = bundle.stages[0]
    cfg = CFG.replace(share_prefix=False, head_masks=0)
    res = discover(bundle, x, [layer], None, cfg)
    ref = cris(bundle, x, res, config=cfg)
    seen = oom_above(bundle, 2, monkeypatch)
    got = cris(bundle, x, res, config=cfg)
    np.testing.assert_allclose(got.concepts.values, ref.concepts.values, rtol=1e-5, atol=1e-6)
    assert 4 in seen and max(s for s in seen[seen.index(4) + 1:]) <= 2  # tried 4 once, then kept 2
    xs = torch.cat([x, x, x])
    sites = feature_sites(bundle, [layer], "key")
    f_ref, _ = extract_features(bundle, xs, sites, 1)
    f_got, _ = extract_features(bundle, xs, sites, 3)  # 3 clips at once run out of memory: 1 at a time
    torch.testing.assert_close(f_got[0], f_ref[0])


def planted(m: int, c: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = 4 * rng.normal(size=(k, c))
    return centres[rng.integers(0, k, m)] + rng.normal(size=(m, c))


def test_batched_convex_nmf_gives_each_heads_answer() -> None:
    from sklearn.cluster import KMeans

    from core.vtcd.cnmf import convex_nmf, convex_nmf_batched

    ts = [planted(30, 8, 4, 0), planted(12, 8, 3, 1), planted(50, 6, 5, 2), planted(7, 8, 2, 3)]  # ragged
    qs = [4, 3, 5, 2]
    labels = [KMeans(q, n_init=2, random_state=0).fit(t).labels_ for t, q in zip(ts, qs, strict=True)]
    batch = convex_nmf_batched(ts, qs, labels, 3000, 1e-4)
    iterations = set()
    for t, q, lab, got in zip(ts, qs, labels, batch, strict=True):
        ref = convex_nmf(t, q, lab, 3000, 1e-4)
        assert got.iterations == ref.iterations  # each head stops on its own
        iterations.add(got.iterations)
        np.testing.assert_array_equal(got.assignment, ref.assignment)
        np.testing.assert_allclose(got.G, ref.G, atol=1e-10)
        np.testing.assert_allclose(got.centroids, ref.centroids, atol=1e-9)
        assert got.error == pytest.approx(ref.error, abs=1e-12)
    assert len(iterations) > 1  # the heads really stopped at different updates


def test_discovery_with_batched_heads_gives_the_same_concepts(videomae, monkeypatch: pytest.MonkeyPatch) -> None:
    """The discovery loop of a GPU run (every head's tubelets first, one batched convex NMF), taken on the CPU."""
    from core.vtcd import pipeline

    bundle, x = videomae
    xs = torch.cat([x, x.flip(-1)])
    ref = discover(bundle, xs, bundle.stages, None, CFG)
    monkeypatch.setattr(pipeline, "_batch_heads", lambda device: True)
    got = discover(bundle, xs, bundle.stages, None, CFG)
    assert len(got.units) == len(ref.units) == 4
    for a, b in zip(ref.units, got.units, strict=True):
        np.testing.assert_array_equal(b.labels, a.labels)
        np.testing.assert_array_equal(b.assignment, a.assignment)
        np.testing.assert_allclose(b.G, a.G, atol=1e-6)
        assert (b.q_elbow, b.inertias) == (a.q_elbow, a.inertias)


def test_cluster_heads_batches_off_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batched branch (taken on a GPU) gives the one-by-one answers; run here with the batch on the CPU."""
    from core.vtcd import pipeline

    real = pipeline.convex_nmf_batched
    calls: list[int] = []

    def on_cpu(ts, *args, **kwargs):
        calls.append(len(ts))
        return real(ts, *args[:4], "cpu", *args[5:], **kwargs)

    monkeypatch.setattr(pipeline, "convex_nmf_batched", on_cpu)
    feats = [planted(40, 6, 3, s).astype(np.float32) for s in range(3)]
    cfg = VTCDConfig(max_concepts=5, kmeans_n_init=2, cnmf_max_iter=500)
    got = pipeline.cluster_heads(feats, cfg, "cuda")
    ref = pipeline.cluster_heads(feats, cfg, "cpu")
    assert calls == [3]
    for (qa, ia, ra, sa), (qb, ib, rb, sb) in zip(got, ref, strict=True):
        assert (qa, ia) == (qb, ib) and sa == pytest.approx(sb)
        np.testing.assert_array_equal(ra.assignment, rb.assignment)
        np.testing.assert_allclose(ra.centroids, rb.centroids, atol=1e-8)


@pytest.mark.parametrize("backend", ["skimage", "torch"])
def test_streamed_features_give_identical_results(videomae, backend: str) -> None:
    bundle, x = videomae
    xs = torch.cat([x, x.flip(-1)])
    cfg = CFG.replace(slic_backend=backend, feature_batch_size=1)
    ref = discover(bundle, xs, bundle.stages, None, cfg)
    got = discover(bundle, xs, bundle.stages, None, cfg.replace(stream_features=True))
    assert len(got.units) == len(ref.units) == 4
    for a, b in zip(ref.units, got.units, strict=True):
        for name in ("labels", "tubelet_features", "assignment", "G", "H", "centroids"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(got.logits, ref.logits)


def test_features_stream_into_memory_maps(videomae, tmp_path) -> None:
    bundle, x = videomae
    xs = torch.cat([x, x.flip(-1), x])
    sites = feature_sites(bundle, bundle.stages, "key")
    ref, ref_logits = extract_features(bundle, xs, sites, 2)
    got, logits = extract_features(bundle, xs, sites, 2, out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features-00.npy", "features-01.npy"]
    for i, (a, b) in enumerate(zip(ref, got, strict=True)):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
        on_disk = np.load(tmp_path / f"features-{i:02d}.npy", mmap_mode="r")
        assert on_disk.shape == (3, 2, 2, 4, 4, 24)
        np.testing.assert_array_equal(on_disk, a.numpy())
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=0)
