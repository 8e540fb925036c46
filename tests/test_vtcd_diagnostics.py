"""Attention diagnostics (core/vtcd/diagnostics.py): known answers on hand-set transformers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.models import count_hooks
from core.vtcd import feature_sites, prepare_videos
from core.vtcd.diagnostics import attention_diagnostics, attention_entropy, attention_module, sdpa_key_mask
from tests.test_vtcd import tiny_videos, tiny_vit


def test_entropy_is_one_for_uniform_attention_and_near_zero_for_a_peaked_one():
    n, d = 16, 4
    q = torch.zeros(2, n, d)
    k = torch.randn(2, n, d)
    torch.testing.assert_close(attention_entropy(q, k), torch.ones(2, dtype=torch.float64))
    k = torch.zeros(1, n, d)
    k[0, 3, 0] = 1.0
    q = torch.zeros(1, n, d)
    q[0, :, 0] = 200.0  # every query attends to key 3 only
    assert float(attention_entropy(q, k)[0]) < 1e-6
    # two keys share the attention equally: entropy log 2 / log n
    k[0, 5, 0] = 1.0
    assert float(attention_entropy(q, k)[0]) == pytest.approx(math.log(2) / math.log(n), abs=1e-6)


def test_attention_module_is_the_branch_that_joins_the_residual():
    bundle = tiny_vit()
    modules = dict(bundle.model.named_modules())
    site = feature_sites(bundle, ["blocks.1"], "key")[0]
    assert attention_module(modules, site) == "blocks.1.attn"
    # Hugging Face naming: layer.0.attention.attention.key -> layer.0.attention (self-attention + output)
    hf = {n: torch.nn.Identity() for n in ("enc.layer.0", "enc.layer.0.attention", "enc.layer.0.attention.attention",
                                           "enc.layer.0.attention.attention.key")}
    site_hf = type(site)("enc.layer.0", "enc.layer.0.attention.attention.key", "key", "tokens", 2, 8, 0, (1, 2, 2))
    assert attention_module(hf, site_hf) == "enc.layer.0.attention"


def test_sdpa_mask_removes_keys_from_the_softmax_and_is_always_restored():
    q = torch.randn(1, 1, 4, 8)
    k = torch.randn(1, 1, 4, 8)
    v = torch.eye(4).reshape(1, 1, 4, 4)
    original = F.scaled_dot_product_attention
    state = {"mask": torch.tensor([[True, False, True, False]]), "calls": 0}
    with sdpa_key_mask(state):
        out = F.scaled_dot_product_attention(q, k, v)
    assert F.scaled_dot_product_attention is original and state["calls"] == 1
    # the output is a weighting of the value rows: removed keys get exactly zero weight
    assert torch.all(out[..., [1, 3]] == 0) and torch.allclose(out.sum(-1), torch.ones(1, 1, 4))
    with pytest.raises(RuntimeError), sdpa_key_mask(state):
        raise RuntimeError("boom")
    assert F.scaled_dot_product_attention is original


def test_diagnostics_of_a_transformer_with_a_silenced_block():
    bundle = tiny_vit(seed=1)
    with torch.no_grad():  # block 1's attention writes nothing to the residual: removing anything there is free
        bundle.model.blocks[1].attn.proj.weight.zero_()
        bundle.model.blocks[1].attn.proj.bias.zero_()
    x = prepare_videos(bundle, tiny_videos(3))
    layers = ["blocks.0", "blocks.1"]
    keys, queries = feature_sites(bundle, layers, "key"), feature_sites(bundle, layers, "query")
    d = attention_diagnostics(bundle, x, keys, queries, [0, 1, 2], rho=0.5, n_draws=4, seed=0)
    assert count_hooks(bundle.model) == 0
    assert [b.layer for b in d.blocks] == layers and d.n_videos == 3 and d.n_draws == 4
    b0, b1 = d.blocks
    assert b1.branch_abs < 1e-6 and b1.keys_zero_abs < 1e-6 and b1.keys_removed_abs < 1e-6  # batch rounding only
    assert b0.branch_abs > 1e-4 and b0.keys_zero_abs > 1e-5 and b0.keys_removed_abs > 1e-5
    for b in d.blocks:
        assert 0.0 < b.entropy <= 1.0 and len(b.entropy_heads) == 2
    # the entropy is the attention the model computes: recompute block 0, head 1, video 0 by hand
    store = {}
    attn = bundle.model.blocks[0].attn
    handles = [attn.q.register_forward_hook(lambda m, i, o: store.update(q=o)),
               attn.k.register_forward_hook(lambda m, i, o: store.update(k=o))]
    try:
        with torch.no_grad():
            bundle(x)
    finally:
        for h in handles:
            h.remove()
    qh = store["q"].reshape(3, 64, 2, 16)[:, :, 1].transpose(0, 1)  # (N, V, 16)
    kh = store["k"].reshape(3, 64, 2, 16)[:, :, 1].transpose(0, 1)
    p = torch.softmax(qh[:, 0] @ kh[:, 0].T / 4.0, dim=-1).double()
    manual = float(-(p * p.log()).sum(-1).mean() / math.log(64))
    per_video = [float(attention_entropy(qh[:, v][None], kh[:, v][None])[0]) for v in range(3)]
    assert per_video[0] == pytest.approx(manual, rel=1e-5)
    assert d.blocks[0].entropy_heads[1] == pytest.approx(np.mean(per_video), rel=1e-5)
    json_ready = d.to_dict()
    assert json_ready["blocks"][1]["keys_removed_abs"] < 1e-6
