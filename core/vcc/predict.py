"""A classifier's softmax predictions on images and their top-k record (shared by the VCC job, the failure
debugger and its dashboard page)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.data.images import preprocess_images
from core.models import ModelBundle
from core.vcc.forward import batches

TOP_K = 5


@torch.no_grad()
def predictions(bundle: ModelBundle, images: list[np.ndarray], batch_size: int) -> np.ndarray:
    """Softmax probabilities ``(n, K)`` of the images."""
    x = preprocess_images(images, bundle.preprocessing)
    out = []
    for sl in batches(len(x), batch_size):
        out.append(bundle(x[sl].to(bundle.device)).float().softmax(-1).cpu())
    return torch.cat(out).numpy()


def top_record(bundle: ModelBundle, probs: np.ndarray, label: int | None) -> dict[str, Any]:
    """The ``TOP_K`` classes of ``probs``, the predicted class and whether it is ``label`` (None: unknown)."""
    order = np.argsort(-probs)[:TOP_K]
    pred = int(order[0])
    return {"top": [{"index": int(i), "name": bundle.class_name(int(i)), "prob": float(probs[i])} for i in order],
            "predicted": pred, "predicted_name": bundle.class_name(pred),
            "correct": None if label is None else pred == label}
