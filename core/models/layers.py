"""Layer addressing, activation capture through hooks, and activation layouts.

Layers are the dotted names of ``model.named_modules()``. Hooks are registered only inside
:func:`capture`, a context manager that removes every hook it added, also on exceptions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from core.errors import LayerError
from core.models.bundle import ModelBundle


def resolve_layers(model: nn.Module, names: Sequence[str], model_label: str = "the model") -> dict[str, nn.Module]:
    """Map each dotted name to its module, in the order given.

    Raises :class:`LayerError` for an unknown name; the message lists close matches and every
    valid name.
    """
    modules = dict(model.named_modules())
    valid = [n for n in modules if n]
    out: dict[str, nn.Module] = {}
    for name in names:
        if name not in modules or not name:
            close = difflib.get_close_matches(name, valid, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise LayerError(f"unknown layer {name!r} in {model_label}.{hint} "
                             f"Valid layers ({len(valid)}): {', '.join(valid)}")
        out[name] = modules[name]
    return out


def first_tensor(output: Any) -> torch.Tensor | None:
    """The activation tensor of a module output (attention blocks return tuples)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            t = first_tensor(item)
            if t is not None:
                return t
    if hasattr(output, "last_hidden_state"):
        return output.last_hidden_state
    return None


def count_hooks(model: nn.Module) -> int:
    """Number of forward hooks registered anywhere in ``model`` (tests use it)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@contextmanager
def capture(
    model: nn.Module | ModelBundle,
    layers: Sequence[str],
    detach: bool = True,
    reduce: Any = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` during forward passes run inside the ``with`` block.

    Yields a dict ``{layer: activation}`` filled on each forward (the last pass wins). ``reduce``
    (a function of the tensor) is applied in the hook, e.g. :func:`gap` to keep only ``(B, C)``.
    Every hook is removed when the block exits, whatever happens inside it.
    """
    bundle = model if isinstance(model, ModelBundle) else None
    module = bundle.model if bundle else model
    label = bundle.spec if bundle else type(module).__name__
    if bundle is not None and not bundle.hookable:
        raise LayerError(f"{label}: layers of a TorchScript model cannot be read (PyTorch does not "
                         "support hooks on ScriptModules); load it as py:<file.py>:<factory> or a "
                         "state dict instead")
    targets = resolve_layers(module, layers, label)
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str):
        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            t = first_tensor(out)
            if t is None:
                return
            if detach:
                t = t.detach()
            store[name] = reduce(t) if reduce is not None else t

        return hook

    try:
        for name, mod in targets.items():
            handles.append(mod.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for h in handles:
            h.remove()


# ------------------------------------------------------------------------------------------
# Layouts
# ------------------------------------------------------------------------------------------


def channels_first(act: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """Move the channel axis to position 1 for 4-D/5-D maps stored channels-last."""
    if channels_last and act.ndim >= 4:
        return act.movedim(-1, 1)
    return act


def gap(act: torch.Tensor, num_prefix_tokens: int = 0, channels_last: bool = False) -> torch.Tensor:
    """Global average pooling over every axis but the channel axis: returns ``(B, C)``.

    Layouts: ``(B, C)`` is returned as is; ``(B, C, H, W)`` and ``(B, C, T, H, W)`` are averaged
    over the trailing axes; tokens ``(B, N, C)`` over ``N`` after dropping the
    ``num_prefix_tokens`` leading (CLS) tokens, which do not sit on the space-time grid.
    """
    if act.ndim == 2:
        return act
    if act.ndim == 3:
        return act[:, num_prefix_tokens:].mean(dim=1)
    act = channels_first(act, channels_last)
    return act.flatten(2).mean(dim=2)


def tokens_to_grid(act: torch.Tensor, grid: Sequence[int], num_prefix_tokens: int = 0) -> torch.Tensor:
    """Tokens ``(B, N, C)`` to a channels-first map ``(B, C, *grid)``.

    ``grid`` is ``(T', H', W')`` or ``(H', W')``; the first ``num_prefix_tokens`` are dropped.
    """
    b, n, c = act.shape
    body = act[:, num_prefix_tokens:]
    expected = 1
    for g in grid:
        expected *= g
    if body.shape[1] != expected:
        raise LayerError(f"{n} tokens ({num_prefix_tokens} prefix) do not fit the token grid "
                         f"{tuple(grid)} ({expected} tokens); give the grid with #grid=...")
    return body.transpose(1, 2).reshape(b, c, *grid)


def to_feature_map(act: torch.Tensor, bundle: ModelBundle) -> torch.Tensor:
    """Any activation as channels-first ``(B, C, ...)``; tokens are put on the bundle's grid."""
    if act.ndim == 3:
        if bundle.token_grid is None:
            raise LayerError(f"{bundle.spec}: token activations need a token grid; give it with "
                             "#grid=T,H,W (or H,W) in the model spec")
        return tokens_to_grid(act, bundle.token_grid, bundle.num_prefix_tokens)
    return channels_first(act, bundle.channels_last)


def bundle_gap(act: torch.Tensor, bundle: ModelBundle) -> torch.Tensor:
    """:func:`gap` with the bundle's prefix-token count and channel layout."""
    return gap(act, bundle.num_prefix_tokens, bundle.channels_last)


@torch.no_grad()
def layer_shapes(bundle: ModelBundle, layers: Sequence[str] | None = None) -> dict[str, tuple[int, ...]]:
    """Output shape of each layer (all by default) for one dummy input."""
    names = list(layers) if layers is not None else bundle.layer_names()
    with capture(bundle, names) as acts:
        bundle(bundle.dummy_input(1))
    return {n: tuple(acts[n].shape) for n in names if n in acts}
