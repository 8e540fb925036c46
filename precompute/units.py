"""The units of work each job fans out (:mod:`precompute.executor`), and the functions their workers run.

Each worker function takes the run's partial folder as a checkpoint store (first argument), loads the
model from its spec on the worker, and calls the same core entry point as the serial job with the same
settings, so the parts it saves are the ones the serial job would save; the driver's serial pass then
reads them back. Units:

- static/dynamic: one model (``--model``) or training checkpoint (``--checkpoints``) per task;
- VCC: one class per task; vcc-debug: one image per task;
- VTCD: discovery one layer per task; CRIS one clip per task (up to :data:`MAX_CRIS_TASKS` tasks, then
  groups of clips; the first clip of concepts and of heads alone first, since it settles the shared
  prefix the others reuse); attribution curves and head pruning stay in the driver's pass;
- predict: one batch of images or clips per task.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from core.parts import FocusStore
from precompute.executor import Unit

_MODELS: dict[tuple[str, str, tuple[str, ...] | None], Any] = {}
"""A worker process's loaded models (Ray reuses worker processes for later tasks)."""


def _model(spec: str, device: str, layers: Sequence[str] | None) -> tuple[Any, list[str]]:
    from precompute.common import load_model, resolve_device

    key = (spec, device, tuple(layers) if layers else None)
    if key not in _MODELS:
        _MODELS.clear()  # one model at a time: a worker's memory is for the task
        _MODELS[key] = load_model(spec, resolve_device(device), layers)
    return _MODELS[key]


# ----------------------------------------------------------------------------------------------
# static/dynamic


def static_dynamic_unit(store: Any, items: Any, common: dict[str, Any], spec: str, device: str, config: Any,
                        tag: str, seed: int) -> None:
    """One model or checkpoint: :func:`core.static_dynamic.analyse` under ``parts/<tag>/``."""
    from core.static_dynamic import analyse
    from precompute.common import load_model, resolve_device, seed_everything

    seed_everything(seed)
    bundle, _ = load_model(spec, resolve_device(device), config.layers)
    analyse(bundle, items, config, store, tag=tag, **common)
    store.save_json(static_dynamic_done(tag), {"tag": tag})


def static_dynamic_done(tag: str) -> str:
    return f"parts/{tag}/done.json"


def static_dynamic_units(work: Sequence[tuple[str, str, Any, str]], device: str, seed: int) -> list[Unit]:
    """``work``: ``(what, spec, config, tag)`` per model and checkpoint, ``what`` ``model`` or ``checkpoint``."""
    return [Unit(f"{what} {spec}", static_dynamic_unit, (spec, device, config, tag, seed), static_dynamic_done(tag))
            for what, spec, config, tag in work]


# ----------------------------------------------------------------------------------------------
# VCC


def vcc_class_unit(store: Any, spec: str, device: str, layers: list[str], config: Any, seed: int, images: list[Any],
                   index: int, random: list[Any], info: list[dict[str, Any]], extra: dict[str, Any],
                   n_jobs: int = 1) -> None:
    """One class: :func:`core.vcc.analyse` writes ``classes/<slug>/`` (``class.json`` last); ``n_jobs``
    processes segment its images (the task's CPUs)."""
    from core.vcc import analyse
    from precompute.common import seed_everything

    seed_everything(seed)
    bundle, _ = _model(spec, device, layers)
    analyse(bundle, images, index, config, store, None, random=random, layers=layers, n_jobs=n_jobs, info=info,
            extra=extra)


# ----------------------------------------------------------------------------------------------
# vcc-debug


def vcc_debug_unit(store: Any, plans: list[Any], spec: str, device: str, config: Any, seed: int, n: int) -> None:
    """Image ``n`` of ``plans`` through :func:`core.vcc.analysis.debug_images` (the other images are other
    tasks')."""
    from core.vcc import store as layout
    from core.vcc.analysis import debug_images
    from precompute.common import seed_everything

    seed_everything(seed)
    bundle, _ = _model(spec, device, None)
    mine = {layout.debug_part(n), layout.debug_segments(n)}
    others = {layout.debug_part(m) for m in range(len(plans))} | {layout.debug_segments(m) for m in range(len(plans))}
    debug_images(bundle, plans, FocusStore(store, mine, others.__contains__), config=config)


def vcc_debug_units(n_images: int, spec: str, device: str, config: Any, seed: int) -> list[Unit]:
    from core.vcc import store as layout

    return [Unit(f"image {n}", vcc_debug_unit, (spec, device, config, seed, n), layout.debug_part(n))
            for n in range(n_images)]


# ----------------------------------------------------------------------------------------------
# VTCD

VTCD_DISCOVERY = r"parts/discover-\d+\.npz"
MAX_CRIS_TASKS = 64
"""CRIS tasks per kind of unit (concepts, heads): beyond that, clips are grouped, since each task prepares every
clip and runs the unmasked model on all of them (the targets and baselines) before its own."""
VTCD_CRIS = r"parts/cris-(concepts|heads)/video-\d+\.npz"


def vtcd_unit(store: Any, items: list[Any], spec: str, device: str, config: Any, layers: list[str],
              heads: list[int] | None, target: Any, seed: int, focus: list[str], others: str) -> None:
    """The parts ``focus`` of :func:`core.vtcd.analyse` (a layer's discovery, a clip's CRIS)."""
    from core.vtcd import analyse
    from precompute.common import seed_everything

    seed_everything(seed)
    bundle, _ = _model(spec, device, layers)
    analyse(bundle, items, config, store=FocusStore(store, focus, others), layers=layers, heads=heads,
            target=target, attribution=False)


def vtcd_stages(executor: Any, writer: Any, items: list[Any], spec: str, device: str, config: Any,
                layers: list[str], heads: list[int] | None, target: Any, seed: int) -> None:
    """Discovery per layer, then CRIS per clip (the first clip of concepts and of heads alone, first)."""
    if not getattr(executor, "parallel", False):
        return

    def units(names: list[str], others: str, per_task: int = 1) -> list[Unit]:
        chunks = [names[i:i + per_task] for i in range(0, len(names), per_task)]
        return [Unit(_vtcd_key(c, layers, items), vtcd_unit, (spec, device, config, layers, heads, target, seed, c,
                                                              others), c[-1]) for c in chunks]

    common = (items,)
    executor.fan_out(writer, "VTCD discovery (layers)",
                     units([f"parts/discover-{i:02d}.npz" for i in range(len(layers))], VTCD_DISCOVERY),
                     common)
    tags = ["cris-concepts"] + (["cris-heads"] if config.n_head_masks > 0 else [])
    for tag in tags:
        executor.fan_out(writer, f"VTCD {tag} (first clip)", units([f"parts/{tag}/video-0000.npz"], VTCD_CRIS),
                         common)
    per_task = -(-(len(items) - 1) // MAX_CRIS_TASKS)  # every task reads all clips: not too many of them
    rest = [u for tag in tags
            for u in units([f"parts/{tag}/video-{v:04d}.npz" for v in range(1, len(items))], VTCD_CRIS, per_task)]
    executor.fan_out(writer, "VTCD CRIS (clips)", rest, common)


def _vtcd_key(names: list[str], layers: list[str], items: list[Any]) -> str:
    """``layer blocks.0``, ``clip <id> (CRIS heads)`` or ``clips <id>..<id> (...)``: what VTCD parts are of."""
    index = [int(re.findall(r"\d+", n.rsplit("/", 1)[-1])[0]) for n in names]
    if names[0].startswith("parts/discover-"):
        return f"layer {layers[index[0]]}"
    what = "CRIS heads" if "heads" in names[0] else "CRIS concepts"
    if len(index) == 1:
        return f"clip {items[index[0]].id} ({what})"
    return f"clips {items[index[0]].id}..{items[index[-1]].id} ({what})"


# ----------------------------------------------------------------------------------------------
# predict


def predict_unit(store: Any, spec: str, device: str, layers: list[str], seed: int, b: int, batch: list[Any]) -> None:
    """One batch: predictions and GAP features as ``parts/batch-NNNN.npz``."""
    import torch

    from core import predictions_store
    from precompute.common import resolve_device, seed_everything
    from precompute.predict import _forward

    seed_everything(seed)
    bundle, _ = _model(spec, device, layers)
    with torch.no_grad():
        arrays = _forward(bundle, layers, batch, resolve_device(device))
    store.write_npz(predictions_store.part_file(b), **arrays)


def predict_units(batches: Sequence[Sequence[Any]], spec: str, device: str, layers: list[str], seed: int) -> list[Unit]:
    from core import predictions_store

    return [Unit(f"batch {b}", predict_unit, (spec, device, layers, seed, b, list(batch)),
                 predictions_store.part_file(b)) for b, batch in enumerate(batches)]
