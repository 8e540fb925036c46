"""GAP'd layer features of model inputs, batched, computed in inference mode on the model's device."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from core.data.videos import normalise_clip
from core.models import ModelBundle, bundle_gap, capture


def to_batch(inputs: Sequence[np.ndarray | tuple[np.ndarray, np.ndarray]], bundle: ModelBundle,
             device: torch.device) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Fitted uint8 clips ``(T, H, W, 3)`` (or ``(rgb, flow_rgb)`` pairs) as a model batch
    ``(B, 3, T, H, W)`` (or a pair of them), normalised on ``device``."""
    prep = bundle.preprocessing
    if isinstance(inputs[0], tuple):
        rgb = normalise_clip(np.stack([i[0] for i in inputs]), prep, device)
        flow = normalise_clip(np.stack([i[1] for i in inputs]), prep, device)
        return rgb, flow
    return normalise_clip(np.stack(inputs), prep, device)


@torch.inference_mode()
def gap_features(bundle: ModelBundle, layers: Sequence[str], x: torch.Tensor | tuple[torch.Tensor, ...],
                 ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per layer the GAP'd activation ``(B, C)`` float64 (pooled on the device before it leaves it),
    and the logits ``(B, K)``.

    A frame-wise 2-D layer inside a video model sees ``B * T`` images; its ``(B * T, C)`` rows are
    averaged over each clip's frames (clip-major order, as ``x.transpose(1, 2).reshape(B * T, ...)``
    gives), so every layer reports one vector per clip.
    """
    with capture(bundle, layers, reduce=lambda a: bundle_gap(a, bundle)) as acts:
        logits = bundle(x)
    b = logits.shape[0]
    out = {}
    for n in layers:
        a = acts[n]
        if a.shape[0] != b and a.shape[0] % b == 0:
            a = a.reshape(b, a.shape[0] // b, *a.shape[1:]).mean(dim=1)
        out[n] = a.double().cpu().numpy()
    return out, logits.double().cpu().numpy()
