"""The shared hook context manager (core.models.hooks): registers post and pre hooks, removes them all."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.models import count_hooks
from core.models.hooks import hooks


def test_pre_and_post_hooks_run_and_are_removed() -> None:
    lin = nn.Linear(2, 2)
    seen: list[str] = []
    with hooks([(lin, lambda *a: seen.append("post")), (lin, lambda *a: seen.append("pre"), True)]):
        assert count_hooks(lin) == 2
        lin(torch.zeros(1, 2))
    assert seen == ["pre", "post"] and count_hooks(lin) == 0


def test_hooks_removed_when_the_block_raises() -> None:
    lin = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="boom"), hooks([(lin, lambda *a: None), (lin, lambda *a: None, True)]):
        assert count_hooks(lin) == 2
        raise RuntimeError("boom")
    assert count_hooks(lin) == 0


def test_hooks_removed_when_a_registration_fails() -> None:
    lin = nn.Linear(2, 2)

    class NotAModule:
        def register_forward_hook(self, _fn: object) -> None:
            raise ValueError("cannot hook")

    pairs = [(lin, lambda *a: None), (NotAModule(), lambda *a: None)]
    with pytest.raises(ValueError, match="cannot hook"), hooks(pairs):  # type: ignore[arg-type]
        pass
    assert count_hooks(lin) == 0


def test_analyses_share_the_one_context_manager() -> None:
    import core.vcc.forward as vcc_forward
    import core.vtcd.diagnostics as vtcd_diagnostics
    import core.vtcd.masking as vtcd_masking

    assert vcc_forward.hooks is hooks and vtcd_masking.hooks is hooks and vtcd_diagnostics.hooks is hooks
