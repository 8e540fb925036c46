"""`precompute static-dynamic`: static and dynamic units of video models (chapter 3, methods.md section 1).

Orchestration only: the analysis of each model is :func:`core.static_dynamic.analyse` (settings in
:class:`core.static_dynamic.StaticDynamicConfig`, run layout in :mod:`core.static_dynamic.store`).
This job loads the models (``--model`` may be repeated: they are scored on the same pairs) and the
clips once, picks the device, shows progress, passes its run writer as the checkpoint store (a
killed run resumes at the next unfinished batch of pairs or removal step), adds the metric over
training checkpoints (``--checkpoints``) and writes the run.

Restyled clips are cached under ``--cache-dir`` by content hash (a second analysis of the same
videos does not restyle them again).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.artifacts import RunWriter
from core.data.labels import label_index
from core.data.sources import load_videos
from core.errors import DataError, UserError
from core.models import ModelBundle
from core.static_dynamic import StaticDynamicConfig, StaticDynamicResult, analyse
from core.static_dynamic.analysis import StyleCache, load_user_styles, model_label  # noqa: F401  (re-exported)
from precompute.common import load_model, progress, resolve_device, seed_everything
from precompute.executor import executor_from_args
from precompute.units import static_dynamic_units


def expand_checkpoints(values: Sequence[str]) -> list[str]:
    """``--checkpoints``: specs, checkpoint folders, or the folder of one training run (its
    ``epochs/epoch-NN`` folders in epoch order)."""
    specs: list[str] = []
    for v in values:
        p = Path(v)
        epochs = sorted((p / "epochs").glob("epoch-*")) if p.is_dir() else []
        if not epochs and p.is_dir():
            epochs = sorted(p.glob("epoch-*"))
        if epochs:
            specs.extend(f"ckpt:{e}" for e in epochs if (e / "model.json").is_file())
        elif p.is_dir():
            specs.append(f"ckpt:{p}")
        else:
            specs.append(v)
    return specs


def _epoch_of(bundle: ModelBundle, spec: str, index: int) -> int:
    epoch = (bundle.extra or {}).get("epoch")
    if isinstance(epoch, int):
        return epoch
    m = re.search(r"epoch[-_]?(\d+)", spec)
    return int(m.group(1)) if m else index + 1


def run(args: Any, config: StaticDynamicConfig) -> Path:
    """The job: ``args`` holds model, videos, device, out, run_id, overwrite, cache_dir and checkpoints;
    ``config`` every analysis setting. Returns the finished run folder."""
    seed_everything(config.seed)
    device = resolve_device(args.device)
    specs = args.model if isinstance(args.model, list) else [args.model]
    loaded = [load_model(spec, device, config.layers) for spec in specs]
    for bundle, _ in loaded:
        if bundle.preprocessing.input == "image":
            raise DataError(f"{bundle.spec} is an image model{bundle.input_hint()}; the static/dynamic analysis "
                            "needs a video model")
    first = loaded[0][0]
    items, data_spec = load_videos(args.videos or "demo", first, config.clips_per_video)
    styles, user_styles = config.style_names, None
    if config.styles_folder:
        user_styles = load_user_styles(config.styles_folder, items, config.clips_per_video,
                                       first.preprocessing.frames or 16)
        styles = list(user_styles)
    removable = {b.spec for b, _ in loaded if any(label_index(it.label, b.class_names) is not None for it in items)}
    if config.removal and not removable:
        raise DataError("--removal needs labelled videos whose labels are classes of the model "
                        "(sub-folders named after its classes, or synthetic:<task>)")
    if config.removal and len(removable) < len(loaded):
        skipped = ", ".join(b.spec for b, _ in loaded if b.spec not in removable)
        warnings.warn(f"--removal: no video is labelled with a class of {skipped}; no removal curves for it",
                      stacklevel=2)
    if config.removal and config.removal_layers:
        known = {n for _, names in loaded for n in names}
        unknown = [n for n in config.removal_layers if n not in known]
        if unknown:
            raise UserError(f"--removal-layers {unknown[0]}: not among the analysed layers of any model "
                            f"({', '.join(sorted(known))})")
    checkpoints = expand_checkpoints(args.checkpoints or [])
    cache_dir = Path(args.cache_dir) / "styles" if args.cache_dir else None
    manifest_config = config.manifest(styles, {b.spec: names for b, names in loaded}, checkpoints)
    model_field = first.describe() if len(loaded) == 1 else {"spec": " + ".join(specs),
                                                             "models": [b.describe() for b, _ in loaded]}
    common = {"cache_dir": cache_dir, "user_styles": user_styles}
    mines = [dataclasses.replace(config, removal=config.removal and bundle.spec in removable,
                                 examples=config.examples if m == 0 else 0) for m, (bundle, _) in enumerate(loaded)]
    quiet = dataclasses.replace(config, removal=False, examples=0)
    executor = executor_from_args(args)
    with RunWriter(args.out, "static-dynamic", model=model_field, data=data_spec, config=manifest_config,
                   run_id=args.run_id, overwrite=args.overwrite) as writer, executor:
        # --executor ray: every model and checkpoint a task writing its parts; the loops below read them back
        work = [("model", spec, dataclasses.replace(mine, examples=0), f"m{m}")
                for m, (spec, mine) in enumerate(zip(specs, mines, strict=True))]
        work += [("checkpoint", spec, quiet, f"c{c}") for c, spec in enumerate(checkpoints)]
        executor.fan_out(writer, "models", static_dynamic_units(work, args.device, config.seed), (items, common))
        results = []
        for m, (bundle, _) in enumerate(loaded):
            results.append(analyse(bundle, items, mines[m], writer, progress, tag=f"m{m}", **common))
        dynamics = None
        if checkpoints:
            dynamics = {"checkpoints": [], "records": []}
            for c, spec in enumerate(progress(checkpoints, "checkpoints", len(checkpoints))):
                bundle, _ = load_model(spec, device, config.layers)
                label = f"epoch {_epoch_of(bundle, spec, c)}"
                (scored,) = analyse(bundle, items, quiet, writer, progress, tag=f"c{c}", **common).models
                metrics = (bundle.extra or {}).get("metrics") or {}
                dynamics["checkpoints"].append({"label": label, "spec": spec, "epoch": _epoch_of(bundle, spec, c),
                                                "val_accuracy": metrics.get("val_accuracy")})
                for layer, sc in zip(scored.layers, scored.scores, strict=True):
                    dynamics["records"].append({"checkpoint": label, "epoch": _epoch_of(bundle, spec, c),
                                                "layer": layer, **sc.record()})
        result = dataclasses.replace(StaticDynamicResult.merge(results), data=data_spec, model_spec=model_field,
                                     manifest_config=manifest_config, dynamics=dynamics,
                                     n_labelled=results[0].n_labelled)
        result.save(writer)
        writer.remove("parts")
        return writer.finish(result.summary())
