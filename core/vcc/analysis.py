"""The notebook entry points of the VCC: :func:`analyse` (class VCCs) and :func:`debug` (the failure debugger).

::

    from core.vcc import VCCConfig, analyse
    result = analyse("efficientnet_lite0", "demo", "Egyptian cat",
                     VCCConfig(n_images=8, n_concepts=4, n_random_sets=3, random_set_size=4),
                     layers=["blocks.5", "conv_head"])
    result.graph.edges; result.save("artifacts")

``precompute vcc`` is this with images, augmentation and the run's bookkeeping around it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.checkpoint import CheckpointStore, NullStore
from core.data.images import ImageItem
from core.data.labels import label_index
from core.data.sources import load_images
from core.errors import DataError, UserError
from core.models import ModelBundle
from core.models.loading import load_model
from core.vcc import store as vcc_store
from core.vcc.config import VCCConfig, VCCDebugConfig
from core.vcc.forward import execution_order
from core.vcc.pipeline import Progress, VCCResult, build_vcc
from core.vcc.predict import predictions, top_record

DEFAULT_LAYERS = 4
Images = str | Sequence[str] | np.ndarray | Sequence[np.ndarray] | Sequence[ImageItem]


def default_layers(bundle: ModelBundle, every: bool = False, n: int = DEFAULT_LAYERS) -> list[str]:
    """The model's stages (``every``), or ``n`` of them evenly spaced, ending at the deepest."""
    stages = list(bundle.stages)
    if not stages:
        raise UserError(f"{bundle.spec}: no default layers known; name the layers (layers=...; see "
                        f"`python -m precompute layers --model {bundle.spec}`)")
    if every or len(stages) <= n:
        return stages
    picks = np.round(np.linspace(1, len(stages) - 1, n)).astype(int)
    return [stages[i] for i in dict.fromkeys(picks.tolist())]


def resolve_class(text: str | int, bundle: ModelBundle) -> int:
    """A class index or name of the model; an unknown one is a one-line error with suggestions."""
    names = bundle.class_names
    text = str(text).strip()
    index = label_index(text, names)
    if index is not None and (not names or 0 <= index < len(names)):
        return index
    if text.isdigit():
        raise UserError(f"class index {text} is out of range for {bundle.spec} ({len(names or [])} classes)")
    if not names:
        raise UserError(f"{bundle.spec} has no class names; give the class as an index")
    flat = {part.strip().lower(): n for n in names for part in n.split(",")}
    close = difflib.get_close_matches(text.lower(), list(flat), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; give an index or a class name"
    raise UserError(f"unknown class {text!r} for {bundle.spec}{hint}")


def as_items(images: Images) -> list[ImageItem]:
    """Images as items: a source spec (``demo``, ``opencv-doc``, a folder with one sub-folder per class,
    image files), an ``(N, H, W, 3)`` uint8 array, a list of ``(H, W, 3)`` arrays, or items."""
    if isinstance(images, (str, Path)):
        return load_images([str(images)])[0]
    if isinstance(images, np.ndarray):
        images = list(images) if images.ndim == 4 else [images]
    images = list(images)
    if images and all(isinstance(x, (str, Path)) for x in images):
        return load_images([str(x) for x in images])[0]
    out = []
    for i, x in enumerate(images):
        if isinstance(x, ImageItem):
            out.append(x)
        else:
            out.append(ImageItem(f"image{i:03d}", np.asarray(x), f"array {i}", None))
    return out


def _class_images(items: list[ImageItem], bundle: ModelBundle, index: int, n: int) -> list[ImageItem]:
    labels = [label_index(it.label, bundle.class_names) for it in items]
    if not any(lab is not None for lab in labels):
        return items[:n]  # unlabelled: all of them are the class's
    found = [it for it, lab in zip(items, labels, strict=True) if lab == index]
    if not found:
        raise DataError(f"no images of class {index} ({bundle.class_name(index)}) among the images given")
    return found[:n]


def analyse(model: str | ModelBundle, images: Images, classes: int | str | Sequence[int | str],
            config: VCCConfig | None = None, store: CheckpointStore | None = None,
            progress: Progress | None = None, *, random: Images = "demo", layers: Sequence[str] | None = None,
            device: str | torch.device = "auto", n_jobs: int = 1, info: list[dict[str, Any]] | None = None,
            extra: dict[str, Any] | None = None) -> VCCResult | list[VCCResult]:
    """The VCC of each class of ``classes`` (one index or name: a :class:`VCCResult`; a list: a list).

    ``model``: a spec or a loaded bundle; ``images`` and ``random``: a source spec, arrays or items
    (labelled images go to their class, images labelled with the analysed class are left out of the
    random pool; unlabelled ``images`` are all the class's); at most ``config.n_images`` per class.
    ``layers`` default to four of the model's stages. ``store`` (default: keeps nothing) holds each
    finished class (:mod:`core.vcc.store`'s layout): a class it holds with the same settings and layers
    is read back, not recomputed (the model is not compared: use one store per model).
    ``info`` (per image ``{id, source, origin, augment}``) and ``extra`` (entry fields) are recorded
    with a single class, as the job does.
    """
    config = config or VCCConfig()
    store = store if store is not None else NullStore()
    bundle, chosen = load_model(model, device, layers)
    if bundle.preprocessing.input != "image":
        raise DataError(f"{bundle.spec} takes {bundle.preprocessing.input} input{bundle.input_hint()}; "
                        "the VCC needs an image classifier")
    layers = execution_order(bundle, chosen if layers else default_layers(bundle))
    single = isinstance(classes, (int, str, np.integer))
    wanted = [resolve_class(c, bundle) for c in ([classes] if single else classes)]
    items = as_items(images)
    pool = as_items(random)
    results = []
    for index in dict.fromkeys(wanted):
        name = bundle.class_name(index)
        slug = vcc_store.class_slug(index, name)
        if vcc_store.is_finished(store, slug):
            done = vcc_store.load_class(store, slug)
            if done.config == config and done.graph.layers == layers:
                results.append(done)
                continue  # else made with other settings: computed again over it
        if hasattr(store, "remove"):
            store.remove(vcc_store.class_dir(slug))  # files of an attempt that was killed part way
        mine = _class_images(items, bundle, index, config.n_images)
        rand = [it.image for it in pool if label_index(it.label, bundle.class_names) != index]
        if len(rand) < 2:
            raise DataError(f"{len(rand)} random image(s) of classes other than {name}; CAVs and t-tests need "
                            "at least 2")
        arrays = [it.image for it in mine]
        result = build_vcc(bundle, layers, arrays, rand, index, config, progress=progress, n_jobs=n_jobs)
        result.images = arrays
        result.probs = predictions(bundle, arrays, config.batch_size)
        result.records["top"] = [top_record(bundle, p, index) for p in result.probs]
        given = info if single and info is not None else [{"id": it.id, "source": it.source} for it in mine]
        vcc_store.save_class(store, result, info=given, extra=extra if single else None)
        results.append(result)
    return results[0] if single else results


def debug_images(bundle: ModelBundle, plans: Sequence[tuple[np.ndarray, Any, Any]],
                 store: CheckpointStore | None = None, *, config: VCCDebugConfig | None = None,
                 progress: Progress | None = None) -> list[Any]:
    """The failure debugger (settings ``config``, ``None``: :class:`VCCDebugConfig` defaults) on each
    ``(image, true class's ClassVCC, predicted class's ClassVCC or None)`` of ``plans``: a
    :class:`core.vcc.debug.Analysis` per image. ``store`` keeps each finished image (its segment
    arrays, then its record): an image it holds is read back, not analysed again."""
    from core.vcc.debug import Analysis
    from core.vcc.debug import analyse as debug_one

    store = store if store is not None else NullStore()
    out = []
    for n, (image, true, predicted) in enumerate(plans):
        part, segs = vcc_store.debug_part(n), vcc_store.debug_segments(n)
        if store.has(part) and store.has(segs):
            out.append(Analysis(store.load_json(part), store.load_arrays(segs)))
        else:
            result = debug_one(bundle, image, true, predicted, config)
            store.save_arrays(segs, **result.arrays)
            store.save_json(part, result.record)
            out.append(result)
        if progress:
            progress("images", n + 1, len(plans))
    return out


def debug(model: str | ModelBundle, images: Images, runs: Sequence[str | Path | Any], true_class: int | str,
          *, config: VCCDebugConfig | None = None, device: str | torch.device = "auto",
          store: CheckpointStore | None = None) -> list[Any]:
    """The failure debugger (settings ``config``, ``None``: :class:`VCCDebugConfig` defaults) on ``images``
    of class ``true_class``: for each image a
    :class:`core.vcc.debug.Analysis` (its record and segment arrays) against the VCCs of its true and
    predicted classes found in ``runs`` (``vcc`` run folders or :class:`core.artifacts.Run` objects);
    ``store`` as in :func:`debug_images`."""
    from core.artifacts import Run
    from core.vcc.debug import load_vccs, pick_vccs

    config = config if config is not None else VCCDebugConfig()
    bundle, _ = load_model(model, device, None)
    opened = [r if isinstance(r, Run) else vcc_store.find_run(r) for r in runs]
    vccs = load_vccs(opened)
    index = resolve_class(true_class, bundle)
    plans = []
    for it in as_items(images):
        pred = int(np.argmax(predictions(bundle, [it.image], config.batch_size)[0]))
        plans.append((it.image, *pick_vccs(vccs, index, pred)))
    return debug_images(bundle, plans, store, config=config)
