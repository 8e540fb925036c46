"""`precompute predict`: a model's predictions and per-layer GAP features on images or video clips.

Image models read ``--images``; video models read ``--videos`` (``demo`` real clips, a folder or
file, or ``synthetic:<task>[:<n>]`` clips of the synthetic benchmark's test split).

The run layout (kind ``predictions``) is :mod:`core.predictions_store`'s. Work is done in batches
saved as parts; a killed run resumes at the next unfinished batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import predictions_store as store
from core.artifacts import RunWriter
from core.data.images import ImageItem, preprocess_images, thumbnail
from core.data.labels import label_index
from core.data.sources import load_images, load_videos
from core.data.videos import preprocess_clips
from core.errors import DataError
from core.models import ModelBundle, bundle_gap, capture
from precompute.common import batched, load_model, progress, resolve_device, seed_everything
from precompute.executor import executor_from_args
from precompute.units import predict_units

TOP_K = 5


@torch.no_grad()
def run(args: Any) -> Path:
    seed_everything(args.seed)
    device = resolve_device(args.device)
    bundle, layers = load_model(args.model, device, args.layers)
    if bundle.preprocessing.input == "image":
        if args.videos:
            raise DataError(f"{args.model} is an image model{bundle.input_hint()}; give --images, not --videos")
        items, data_spec = load_images(args.images or ["demo"])
    else:
        if args.images:
            raise DataError(f"{args.model} is a video model{bundle.input_hint()}; give --videos, not --images")
        items, data_spec = load_videos(args.videos or "demo", bundle, args.clips_per_video)
    config = {"layers": layers, "batch_size": args.batch_size, "top_k": TOP_K, "seed": args.seed}
    executor = executor_from_args(args)
    with RunWriter(args.out, store.KIND, model=bundle.describe(), data=data_spec, config=config,
                   run_id=args.run_id, overwrite=args.overwrite) as writer, executor:
        batches = batched(items, args.batch_size)
        executor.fan_out(writer, "predict", predict_units(batches, args.model, args.device, layers, args.seed))
        for b, batch in enumerate(progress(batches, "predict", len(batches))):
            part = store.part_file(b)
            if not writer.has(part):
                writer.write_npz(part, **_forward(bundle, layers, batch, device))
        parts = [writer.load_npz(store.part_file(b)) for b in range(len(batches))]
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        logits = merged.pop(store.LOGITS)
        shapes = {k[len("shape:"):]: v[0].tolist() for k, v in merged.items() if k.startswith("shape:")}
        feats = {k: v for k, v in merged.items() if not k.startswith("shape:")}
        records = _records(bundle, items, logits)
        stills = [thumbnail(item.image[len(item.image) // 2] if item.image.ndim == 4 else item.image)
                  for item in items]
        store.write(writer, model=bundle.describe(), records=records, logits=logits, features=feats,
                    shapes=shapes, layers=layers, thumbnails=stills)
        labelled = [r for r in records if r["correct"] is not None]
        summary = {
            "n_images": len(records),
            "n_layers": len(layers),
            "n_labelled": len(labelled),
            "top1_accuracy": (sum(r["correct"] for r in labelled) / len(labelled)) if labelled else None,
            "misclassified": [r["id"] for r in labelled if not r["correct"]],
        }
        return writer.finish(summary)


def _forward(
    bundle: ModelBundle, layers: list[str], batch: list[ImageItem], device: torch.device
) -> dict[str, np.ndarray]:
    """GAP'd ``(B, C)`` features per layer, logits ``(B, K)`` and activation shapes of one batch."""
    if bundle.preprocessing.input == "image":
        x: Any = preprocess_images([i.image for i in batch], bundle.preprocessing).to(device)
    else:
        x = preprocess_clips([i.image for i in batch], bundle.preprocessing)
        x = tuple(t.to(device) for t in x) if isinstance(x, tuple) else x.to(device)
    with capture(bundle, layers) as acts:
        logits = bundle(x).float().cpu()
    out = {n: bundle_gap(acts[n], bundle).float().cpu().numpy() for n in layers}
    out[store.LOGITS] = logits.numpy()
    for n in layers:  # per-image activation shape, kept for layers.json
        out[f"shape:{n}"] = np.tile(np.array(acts[n].shape[1:], dtype=np.int64), (len(batch), 1))
    return out


def _records(bundle: ModelBundle, items: list[ImageItem], logits: np.ndarray) -> list[dict[str, Any]]:
    probs = torch.from_numpy(logits).softmax(-1).numpy()
    records = []
    files: set[str] = set()
    for item, p in zip(items, probs, strict=True):
        file = store.image_file(item.id, files)
        files.add(file)
        order = np.argsort(-p)[:TOP_K]
        label = label_index(item.label, bundle.class_names)
        pred = int(order[0])
        records.append({
            "id": item.id,
            "file": file,
            "source": item.source,
            "size": list(item.image.shape[-3:-1]),
            "label": label,
            "label_name": bundle.class_name(label) if label is not None else item.label,
            "top": [{"index": int(i), "name": bundle.class_name(int(i)), "prob": float(p[i])} for i in order],
            "predicted": pred,
            "predicted_name": bundle.class_name(pred),
            "correct": None if label is None else pred == label,
        })
    return records
