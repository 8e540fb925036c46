"""VCC at scale (issue 13): the minimum segment size, concept k-means in torch, ITCAV gradients batched
over the members of every upper concept, segment images run once, reduced-precision forward passes, and
tiny real-shape runs of torchvision's ResNet-50 and VGG16 so these paths never rot."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from core.data.images import preprocess_images
from core.errors import ConfigError, UserError
from core.models.loading import load_model
from core.vcc import LayerCAVs, PruneSigmoid, VCCConfig, build_vcc, discover_concepts, edge_values, top_down_segments
from core.vcc.forward import feature_grids, forward_precision, gap_and_logits, objective_gradients
from core.vcc.itcav import edge_values_grouped
from core.vcc.pipeline import _segment_gap
from core.vcc.segments import segment_inputs, split_region
from tests.test_vcc import assert_partition, blocky_images, tiny_bundle

LAYERS = ["stem", "block1", "block2"]


def _grids(n_images: int = 3, grid: int = 12) -> dict[str, np.ndarray]:
    bundle = tiny_bundle()
    x = preprocess_images(blocky_images(n_images, 0), bundle.preprocessing)
    return feature_grids(bundle, x, LAYERS, grid=grid)


# ----------------------------------------------------------------------------------------------
# Minimum segment size


def test_a_region_under_the_minimum_size_is_kept_whole_without_trying_a_split() -> None:
    feats = np.random.default_rng(0).normal(scale=0.1, size=(8, 8, 2))
    feats[:, 4:] += 5.0  # two obvious halves
    mask = np.ones((8, 8), bool)
    assert len(split_region(feats, mask, "kmeans", min_size=64)[0]) == 2  # 64 cells: tried, split
    pieces, score = split_region(feats, mask, "kmeans", min_size=65)
    assert len(pieces) == 1 and np.array_equal(pieces[0], mask) and np.isnan(score)


def test_min_segment_size_off_is_the_default_segmentation() -> None:
    grids = _grids()
    default = top_down_segments(grids, LAYERS, threshold=-1.0)
    off = top_down_segments(grids, LAYERS, threshold=-1.0, min_size=0)
    for field in ("masks", "image", "layer", "parent"):
        assert np.array_equal(getattr(default, field), getattr(off, field)), field
    assert VCCConfig().min_segment_size == 0


def test_min_segment_size_bounds_the_segments_and_keeps_the_partition() -> None:
    grids = _grids()
    full = top_down_segments(grids, LAYERS, threshold=-1.0)  # always split: down to small pieces
    floor = 20
    bounded = top_down_segments(grids, LAYERS, threshold=-1.0, min_size=floor)
    assert len(bounded) < len(full)
    assert len(bounded.ids("stem")) < len(full.ids("stem"))
    sizes = bounded.masks.reshape(len(bounded), -1).sum(1)
    for pid in np.flatnonzero(bounded.layer > 0):
        kids = bounded.children(pid)
        assert_partition([bounded.masks[k] for k in kids], bounded.masks[pid])
        if sizes[pid] < floor:  # not split again: the same mask one layer down
            assert len(kids) == 1 and np.array_equal(bounded.masks[kids[0]], bounded.masks[pid])
    whole = top_down_segments(grids, LAYERS, threshold=-1.0, min_size=12 * 12 + 1)
    assert len(whole) == 3 * len(LAYERS) and whole.masks.all()


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"min_segment_size": -1}, "min_segment_size"), ({"min_segment_size": 1.5}, "min_segment_size"),
    ({"concept_kmeans": "gpu"}, "concept_kmeans"), ({"kmeans_auto_segments": 0}, "kmeans_auto_segments"),
    ({"precision": "fp8"}, "precision")])
def test_new_settings_are_validated_in_one_line(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        VCCConfig(**kwargs)
    assert e.value.field == field and "\n" not in str(e.value)


def test_kmeans_backend_follows_the_setting_and_the_threshold() -> None:
    assert VCCConfig().kmeans_backend(10**9) == "sklearn"
    assert VCCConfig(concept_kmeans="torch").kmeans_backend(3) == "torch"
    auto = VCCConfig(concept_kmeans="auto", kmeans_auto_segments=100)
    assert (auto.kmeans_backend(99), auto.kmeans_backend(100)) == ("sklearn", "torch")
    assert VCCConfig.from_dict(auto.to_dict()) == auto


# ----------------------------------------------------------------------------------------------
# Concepts with k-means in torch


def test_concepts_from_torch_kmeans_match_scikit_learns_on_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=20.0, size=(4, 16))
    x = np.concatenate([c + rng.normal(size=(30 + 10 * i, 16)) for i, c in enumerate(centres)])
    a = discover_concepts(x, 4, PruneSigmoid(A=0.0, K=2.0), backend="sklearn")
    b = discover_concepts(x, 4, PruneSigmoid(A=0.0, K=2.0), backend="torch", device="cpu")
    np.testing.assert_array_equal(a.sizes, b.sizes)
    np.testing.assert_array_equal(a.labels, b.labels)  # kept concepts are ordered by size: same ranks
    np.testing.assert_allclose(a.centroids, b.centroids, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="backend"):
        discover_concepts(x, 4, backend="cuml")


# ----------------------------------------------------------------------------------------------
# ITCAV batched over the members of every upper concept; segment images run once


def test_grouped_itcav_equals_one_call_per_upper_concept() -> None:
    bundle = tiny_bundle()
    images = blocky_images(6, 2)
    x = preprocess_images(images, bundle.preprocessing)
    gen = torch.Generator().manual_seed(0)
    d = 8 * 16 * 16  # stem: (8, 16, 16) flattened
    cavs = LayerCAVs("stem", torch.nn.functional.normalize(torch.randn(3, 4, d, generator=gen), dim=-1),
                     torch.nn.functional.normalize(torch.randn(4, d, generator=gen), dim=-1))
    centroids = torch.randn(3, 16, generator=gen)
    owner = np.array([0, 0, 1, 2, 2, 2])  # members of three upper concepts at block1
    grouped = edge_values_grouped(bundle, lambda sl: x[sl], owner, [cavs], "block1", centroids, batch_size=4)
    for u in range(3):
        rows = np.flatnonzero(owner == u)
        one = edge_values(bundle, x[rows], [cavs], upper="block1", centroid=centroids[u], batch_size=32)
        (v1, r1), (v2, r2) = one["stem"], grouped[u]["stem"]
        np.testing.assert_allclose(v1, v2, atol=1e-5)
        np.testing.assert_allclose(r1, r2, atol=1e-5)
    assert not np.allclose(grouped[0]["stem"][0], grouped[2]["stem"][0])  # the centroids matter


def test_segment_features_run_each_distinct_segment_image_once_and_match_one_pass_per_segment() -> None:
    bundle = tiny_bundle()
    images = blocky_images(3, 0)
    grids = feature_grids(bundle, preprocess_images(images, bundle.preprocessing), LAYERS, grid=12)
    segs = top_down_segments(grids, LAYERS, threshold=-1.0, min_size=30)  # regions repeat at shallow layers
    keys = {(int(segs.image[i]), segs.masks[i].tobytes()) for i in range(len(segs))}
    assert len(keys) < len(segs)
    calls = []
    hook = bundle.model.register_forward_hook(lambda _m, i, _o: calls.append(len(i[0])))
    try:
        feats, logits = _segment_gap(bundle, images, segs, 1, VCCConfig(batch_size=7), None)
    finally:
        hook.remove()
    assert sum(calls) == len(keys)
    for li, name in enumerate(LAYERS):
        ids = segs.ids(li)
        assert feats[name].shape[0] == len(ids)
        for row, sid in enumerate(ids):
            g, lg = gap_and_logits(bundle, segment_inputs(images, segs, [sid], bundle.preprocessing), LAYERS)
            np.testing.assert_allclose(feats[name][row], g[name][0].numpy(), rtol=1e-5, atol=1e-5)
            assert abs(logits[sid] - float(lg[0, 1])) < 1e-5


def test_segment_features_halve_the_batch_on_out_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.vcc import pipeline

    bundle = tiny_bundle()
    images = blocky_images(2, 0)
    grids = feature_grids(bundle, preprocess_images(images, bundle.preprocessing), LAYERS, grid=12)
    segs = top_down_segments(grids, LAYERS, threshold=-1.0)
    want, want_logits = _segment_gap(bundle, images, segs, 1, VCCConfig(batch_size=8), None)
    real, sizes = pipeline.gap_and_logits, []

    def small_memory(b: Any, x: torch.Tensor, layers: Any, batch_size: int = 32) -> Any:
        sizes.append(len(x))
        if len(x) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(b, x, layers, batch_size)

    monkeypatch.setattr(pipeline, "gap_and_logits", small_memory)
    got, got_logits = _segment_gap(bundle, images, segs, 1, VCCConfig(batch_size=8), None)
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) == 2
    for name in LAYERS:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_logits, want_logits, rtol=1e-5, atol=1e-6)


def test_a_layer_without_concepts_between_layers_with_concepts_gets_no_edges() -> None:
    # Y(t) falls with t (B < 0): the deepest layer, with the fewest segments, loses every cluster
    prune = PruneSigmoid(A=0.0, K=1e5, B=-0.5)  # Y(11) ~ 400, Y(31) ~ 0.02
    cfg = VCCConfig(grid=12, n_concepts=3, prune=prune, commonality=None, n_random_sets=2, random_set_size=3,
                    fidelity=False, kmeans_n_init=1, silhouette_threshold=-1.0)
    result = build_vcc(tiny_bundle(), LAYERS, blocky_images(4, 0), blocky_images(8, 1), 1, cfg)
    layer_of = {nd.id: nd.layer for nd in result.graph.nodes}
    assert not result.graph.layer_nodes("block2") and result.graph.layer_nodes("block1")
    assert {(layer_of[e.source], layer_of[e.target]) for e in result.graph.edges} == {("stem", "block1")}


# ----------------------------------------------------------------------------------------------
# Precision


def test_bf16_forward_passes_are_close_to_fp32_and_not_equal() -> None:
    bundle = tiny_bundle()
    x = preprocess_images(blocky_images(4, 0), bundle.preprocessing)
    f32, l32 = gap_and_logits(bundle, x, LAYERS)
    with forward_precision("bf16"):
        f16, l16 = gap_and_logits(bundle, x, LAYERS)
    assert l16.dtype == torch.float32 and f16["block2"].dtype == torch.float32
    assert not torch.equal(l16, l32)  # the passes did run in bf16
    torch.testing.assert_close(l16, l32, rtol=0.05, atol=0.05)
    f32_again, _ = gap_and_logits(bundle, x, LAYERS)  # the block ends: fp32 again
    assert torch.equal(f32_again["block2"], f32["block2"])


def test_bf16_itcav_gradients_point_where_the_fp32_ones_do() -> None:
    bundle = tiny_bundle()
    x = preprocess_images(blocky_images(6, 0), bundle.preprocessing)
    q = torch.randn(24, generator=torch.Generator().manual_seed(0))
    g32 = objective_gradients(bundle, x, ["stem", "block1"], "block2", q)
    with forward_precision("bf16"):
        g16 = objective_gradients(bundle, x, ["stem", "block1"], "block2", q)
    for name in g32:
        assert g16[name].dtype == torch.float32 and not torch.equal(g16[name], g32[name])
        assert torch.nn.functional.cosine_similarity(g32[name], g16[name], dim=1).min() > 0.99


def test_a_precision_the_device_cannot_run_is_one_user_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda kind: False)
    with pytest.raises(UserError) as e:
        build_vcc(tiny_bundle(), LAYERS, blocky_images(2, 0), blocky_images(4, 1), 0, VCCConfig(precision="bf16"))
    assert "bf16" in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------------
# Real shapes: torchvision ResNet-50 and VGG16 (random init), tiny inputs


SMOKE = VCCConfig(n_images=1, grid=8, n_concepts=3, kmeans_n_init=1, prune=PruneSigmoid(A=0.0, K=1.0),
                  commonality=None, n_random_sets=2, random_set_size=2, fidelity=False, batch_size=16,
                  min_segment_size=4, concept_kmeans="torch", precision="bf16")


@pytest.mark.parametrize(("name", "layers"), [("resnet50", ["layer1.0", "layer4.2"]),
                                              ("vgg16", ["features.0", "features.28"])])
def test_torchvision_real_shapes_run_end_to_end(name: str, layers: list[str]) -> None:
    torch.manual_seed(0)
    bundle, _ = load_model(f"torchvision:{name}#size=64", "cpu", layers)
    images = blocky_images(2, 0, size=(64, 64))
    result = build_vcc(bundle, layers, images, blocky_images(6, 1, size=(64, 64)), 3, SMOKE)
    g = result.graph
    assert g.layers == layers
    assert {n.layer for n in g.nodes if n.kind == "concept"} == set(layers)
    assert any(e.target == g.class_id for e in g.edges)
    assert all(np.isfinite(f).all() for f in result.segment_features.values())
    assert {"segmentation", "segment features", "concepts", "CAVs", "ITCAV"} <= set(result.timings)
