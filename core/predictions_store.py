"""The on-disk layout of a ``predictions`` run: the one place that knows its file names.

Run layout (kind ``predictions``)::

    predictions.json  {"model": ..., "images": [{id, file, source, size, label, label_name, top,
                       predicted, predicted_name, correct}, ...]}
    features.npz      one (N, C) array of GAP'd activations per layer, plus "logits" (N, K)
    layers.json       [{"layer": name, "shape": [...]}, ...]  (activation shape per image)
    images/<id>.webp  thumbnails (the middle frame of a clip)

While the job runs, batches are saved as ``parts/batch-NNNN.npz`` (removed when it finishes), so a killed
run resumes at the next unfinished batch. ``precompute predict`` writes through :func:`write`; the
Predictions page reads the files named here through :mod:`core.ui_cache`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.artifacts import RunWriter, slug

KIND = "predictions"
PREDICTIONS = "predictions.json"
FEATURES = "features.npz"
LAYERS = "layers.json"
IMAGES = "images"
PARTS = "parts"
LOGITS = "logits"  # the array of FEATURES holding the (N, K) logits


def part_file(batch: int) -> str:
    """The scratch file of batch ``batch`` (a resumable unit of work)."""
    return f"{PARTS}/batch-{batch:04d}.npz"


def image_file(image_id: str, taken: set[str]) -> str:
    """A thumbnail name for ``image_id`` not in ``taken`` (two ids can differ only in unsafe characters)."""
    file = f"{IMAGES}/{slug(image_id, 80)}.webp"
    if file in taken:
        file = f"{IMAGES}/{slug(image_id, 70)}-{len(taken)}.webp"
    return file


def write(writer: RunWriter, *, model: dict[str, Any], records: Sequence[dict[str, Any]], logits: np.ndarray,
          features: Mapping[str, np.ndarray], shapes: Mapping[str, list[int]], layers: Sequence[str],
          thumbnails: Sequence[np.ndarray]) -> None:
    """Write the run's files: ``thumbnails[i]`` (uint8 ``(H, W, 3)``) at ``records[i]["file"]``, ``logits``
    ``(N, K)`` and ``features[layer]`` ``(N, C)``, each layer's per-image activation shape, then the records;
    and drop the batch parts."""
    for record, still in zip(records, thumbnails, strict=True):
        writer.write_image(record["file"], still)
    writer.write_npz(FEATURES, **{LOGITS: logits}, **features)
    writer.write_json(LAYERS, [{"layer": n, "shape": shapes[n]} for n in layers])
    writer.write_json(PREDICTIONS, {"model": model, "images": list(records)})
    writer.remove(PARTS)
