"""Devices and model loading shared by the core entry points and the precompute jobs.

``model`` arguments of ``core.*.analyse`` are a spec string or a loaded :class:`ModelBundle`;
:func:`load_model` turns either into ``(bundle, layers)`` and checks both before any work.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from core.errors import UserError
from core.models.bundle import ModelBundle
from core.models.layers import resolve_layers
from core.models.resolve import resolve_model


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r}: no CUDA GPU is available here; use cpu or auto (--device)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"device {name!r} is not a device; use auto, cpu or cuda (--device)") from None


def load_model(model: str | ModelBundle, device: torch.device | str = "auto", layers: Sequence[str] | None = None
               ) -> tuple[ModelBundle, list[str]]:
    """Resolve the model (a spec, or a bundle used as it is) and check the requested layers (default:
    its stages) and one forward pass before any work."""
    if isinstance(model, ModelBundle):
        bundle, spec = model, model.spec
    else:
        bundle, spec = resolve_model(model, resolve_device(device)), model
    names = list(layers) if layers else list(bundle.stages)
    if not names:
        raise UserError(f"{spec}: no default layers known; name the layers to analyse (--layers; see "
                        f"`python -m precompute layers --model {spec}`)")
    resolve_layers(bundle.model, names, spec)
    check_forward(bundle)
    return bundle, names


@torch.no_grad()
def check_forward(bundle: ModelBundle) -> None:
    """One forward pass of a zero batch of the declared input before any work: a model that fails on
    it, or returns no logits ``(B, K)``, is refused in one line naming the spec and the input."""
    x = bundle.dummy_input(1)
    shape = " and ".join(str(tuple(t.shape)) for t in (x if isinstance(x, tuple) else (x,)))
    try:
        logits = bundle(x)
    except UserError:
        raise
    except Exception as e:  # the user's model code: any failure means the spec and the model disagree
        first = (str(e).strip().splitlines() or [""])[0]
        raise UserError(f"{bundle.spec}: a forward pass on a zero {bundle.preprocessing.input} batch {shape} "
                        f"failed ({type(e).__name__}: {first[:300]}){bundle.input_hint()}; check the input kind, "
                        "#size and #frames of the spec") from None
    if logits.ndim != 2:
        raise UserError(f"{bundle.spec}: the model returned a tensor of shape {tuple(logits.shape)} for an input "
                        f"{shape}; it must return logits (B, K)")
