"""Precision of forward passes (core/precision.py, VTCDConfig.precision): fp32 changes nothing, bf16
autocasts, unknown names and unusable devices are one clear line, and bf16 CRIS rankings agree with fp32
within the tolerance stated in docs/faithfulness.md ("VTCD at scale")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from core.errors import ConfigError, UserError
from core.precision import PrecisionError, autocast, autocast_dtype, check_precision, to_fp32
from core.vtcd import VTCDConfig
from core.vtcd.analysis import _clips, load_model
from core.vtcd.features import extract_features, feature_sites, prepare_videos
from core.vtcd.pipeline import cris, discover
from precompute import cli
from tests.test_vtcd_job import make_tiny_ckpt

# Measured on the tiny ViT below (3 and 6 synthetic clips, loss and probability): Spearman 0.996-1.000,
# top quarter identical. The floor leaves room for other seeds and BLAS builds.
MIN_SPEARMAN = 0.95
MIN_TOP_OVERLAP = 0.75


def test_fp32_is_a_no_op_and_bf16_autocasts_on_cpu() -> None:
    a = torch.randn(4, 4)
    with autocast("fp32", "cpu"):
        assert (a @ a).dtype == torch.float32
    with autocast("bf16", torch.device("cpu")):
        assert (a @ a).dtype == torch.bfloat16
    assert autocast_dtype("fp32") is None and autocast_dtype("fp16") == torch.float16
    assert to_fp32(torch.ones(2, dtype=torch.bfloat16)).dtype == torch.float32
    assert to_fp32(np.ones(2, np.float16)).dtype == np.float32


def test_bad_precision_is_one_clear_line() -> None:
    with pytest.raises(PrecisionError, match="precision must be one of fp32, bf16, fp16, not 'fp64'") as e:
        check_precision("fp64", "cpu")
    assert isinstance(e.value, UserError)
    with pytest.raises(ConfigError, match=r"^precision must be one of fp32, bf16, fp16, not 'half'$"):
        VTCDConfig(precision="half")
    with pytest.raises(ConfigError, match=r"^slic_backend must be one of skimage, torch, not 'cuda'$"):
        VTCDConfig(slic_backend="cuda")
    with pytest.raises(ConfigError, match=r"^stream_features must be true or false, not 'yes'$"):
        VTCDConfig(stream_features="yes")


def test_device_that_cannot_autocast_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda kind: False)
    with pytest.raises(PrecisionError, match=r"^precision fp16: torch cannot autocast on cpu; use --precision fp32$"):
        check_precision("fp16", "cpu")
    check_precision("fp32", "cpu")  # fp32 never needs autocast


def test_flags_come_from_the_config() -> None:
    p = cli._subparsers(cli.build_parser())["vtcd"]
    text = p.format_help()
    assert "--precision {fp32,bf16,fp16}" in text and "--slic-backend {skimage,torch}" in text
    assert "--stream-features" in text
    args = p.parse_args(["--model", "m", "--videos", "v", "--precision", "bf16", "--slic-backend", "torch"])
    assert (args.precision, args.slic_backend) == ("bf16", "torch")
    assert VTCDConfig().precision == "fp32" and VTCDConfig().slic_backend == "skimage"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    ckpt = make_tiny_ckpt(tmp_path_factory.mktemp("precision") / "tiny-vit")
    bundle, layers = load_model(f"ckpt:{ckpt}", "cpu", None)
    x = prepare_videos(bundle, _clips("synthetic:appearance:3", bundle, None, None)[0])
    yield bundle, layers, x
    torch.set_num_threads(before)


def test_bf16_features_are_fp32_tensors_close_to_fp32(tiny) -> None:
    bundle, layers, x = tiny
    sites = feature_sites(bundle, layers, "key")
    f32, _ = extract_features(bundle, x, sites, 2)
    f16, l16 = extract_features(bundle, x, sites, 2, "bf16")
    for a, b in zip(f32, f16, strict=True):
        assert b.dtype == torch.float32 and b.shape == a.shape
        assert not torch.equal(a, b)  # bf16 really ran
        assert float((a - b).norm() / a.norm()) < 0.05  # bf16: 8 mantissa bits, ~0.4% per rounding
    assert l16.dtype == torch.float32


def test_bf16_cris_rankings_agree_with_fp32(tiny) -> None:
    bundle, layers, x = tiny
    cfg = VTCDConfig(n_masks=64, head_masks=32, max_concepts=4, kmeans_n_init=2, cnmf_max_iter=100, batch_size=16,
                     bootstrap=0)
    res = discover(bundle, x, layers, None, cfg)
    a = cris(bundle, x, res, config=cfg)
    b = cris(bundle, x, res, config=cfg.replace(precision="bf16"))
    assert not np.array_equal(a.concepts.values, b.concepts.values)  # bf16 really ran
    np.testing.assert_array_equal(a.concepts.removed, b.concepts.removed)  # the same masks
    for ia, ib in ((a.concepts, b.concepts), (a.heads, b.heads)):
        assert spearmanr(ia.importance, ib.importance).statistic >= MIN_SPEARMAN
        k = max(1, len(ia.importance) // 4)
        assert len(set(ia.ranking()[:k]) & set(ib.ranking()[:k])) / k >= MIN_TOP_OVERLAP


def test_cris_forward_passes_run_in_the_precision(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, layers, x = tiny
    seen: list[torch.dtype | None] = []
    real = bundle.model.forward

    def spy(*args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return real(*args, **kwargs)

    cfg = VTCDConfig(n_masks=4, head_masks=0, max_concepts=2, kmeans_n_init=1, cnmf_max_iter=10, bootstrap=0,
                     share_prefix=False)
    res = discover(bundle, x, layers[:1], [0], cfg)
    monkeypatch.setattr(bundle.model, "forward", spy)
    cris(bundle, x, res, config=cfg.replace(precision="bf16"))
    assert seen and set(seen) == {torch.bfloat16}
    seen.clear()
    cris(bundle, x, res, config=cfg)
    assert seen and set(seen) == {None}
