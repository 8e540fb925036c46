"""`precompute vtcd` and `precompute rosetta`: the command-line jobs over :func:`core.vtcd.analyse` and
:func:`core.vtcd.rosetta` (dissertation chapter 4, methods.md section 2).

``vtcd`` loads the model and the clips, opens the run writer and passes it to :func:`core.vtcd.analyse`
as its checkpoint store (a killed run resumes where it stopped: discovery per layer, CRIS per video,
attribution per scope, ...), then saves the result through :mod:`core.vtcd.store`, which owns the run
layout (concepts.json, cris.npz, media, ...). ``rosetta`` reads several ``vtcd`` runs made on the same
videos and writes ``rosetta.json`` and the tuples' clips.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.artifacts import Run, RunWriter, open_run
from core.data.labels import label_index
from core.data.sources import load_videos
from core.errors import DataError, RunError, UserError
from core.vtcd import VTCDConfig, analyse
from core.vtcd import store as layout
from core.vtcd.analysis import resolve_target
from core.vtcd.config import RosettaConfig
from core.vtcd.ground_truth import synthetic_masks
from core.vtcd.rosetta import rosetta_of_runs
from precompute.common import load_model, resolve_device, seed_everything
from precompute.executor import executor_from_args
from precompute.units import vtcd_stages

KIND = layout.KIND
ROSETTA_KIND = layout.ROSETTA_KIND
FEATURES = {"keys": "key", "queries": "query", "values": "value", "output": "block"}
# Config fields whose flag keeps its shorter, older name (``--masks`` for ``n_masks``).
VTCD_FLAGS = {f.name: "--" + f.metadata["flag"].replace("_", "-") for f in dataclasses.fields(VTCDConfig)
              if "flag" in f.metadata}
# Fields the vtcd subcommand does not generate a flag for: --features (its own names) and the shared --seed.
VTCD_OWN = ("feature", "seed")


def flag_of(name: str) -> str:
    """The command-line flag of a VTCD config field (or of an analyse argument such as ``videos``)."""
    if name == "feature":
        return "--features"
    return VTCD_FLAGS.get(name) or "--" + name.replace("_", "-")


_FIELD_WORDS = re.compile(r"\b(" + "|".join(sorted((f.name for f in dataclasses.fields(VTCDConfig)),
                                                   key=len, reverse=True)) + r"|videos)\b")


def cli_words(text: str | None) -> str | None:
    """``text`` with the config field names core writes replaced by the command line's flags."""
    return None if text is None else _FIELD_WORDS.sub(lambda m: flag_of(m.group(1)), text)


# ----------------------------------------------------------------------------------------------
# Options


def build_config(args: Any) -> VTCDConfig:
    """The :class:`VTCDConfig` of the parsed flags (a bad value is one line naming its flag)."""
    from precompute.config_args import config_from_args

    return config_from_args(VTCDConfig, args, flags=VTCD_FLAGS,
                            feature=FEATURES[args.features], seed=int(args.seed))


def parse_heads(values: Sequence[str] | None) -> list[int] | None:
    """``--heads 0 1`` or ``--heads 0,1``: head indices (None: all heads)."""
    if not values:
        return None
    out = []
    for item in values:
        for part in str(item).split(","):
            if not part:
                continue
            if not part.strip().isdigit():
                raise UserError(f"--heads {part!r}: give head indices (0, 1, ...)")
            out.append(int(part))
    return sorted(set(out))


class Bars:
    """``progress(stage, done, total)`` as one tqdm bar per stage on stderr."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


# ----------------------------------------------------------------------------------------------
# The vtcd job


def run(args: Any) -> Path:
    seed_everything(int(args.seed))
    device = resolve_device(args.device)
    cfg = build_config(args)
    bundle, layers = load_model(args.model, device, args.layers)
    if bundle.preprocessing.input == "image":
        raise DataError(f"{bundle.spec} is an image model{bundle.input_hint()}; VTCD needs a video model "
                        "(a video transformer)")
    heads = parse_heads(args.heads)
    source = args.videos or "demo"
    gt = bool(args.ground_truth)
    if gt and not source.startswith("synthetic:"):
        raise UserError("--ground-truth needs synthetic videos (--videos synthetic:<task>[:<n>]): only they have "
                        "object masks")
    clips_per_video = args.clips_per_video
    items, data_spec = load_videos(source, bundle, clips_per_video)
    if len(items) < 2:
        raise DataError(f"--videos {source}: VTCD needs at least 2 clips, got {len(items)}")
    target = args.target_class if args.target_class not in (None, "") else args.target
    media_videos = int(args.media_videos)
    media_concepts = int(args.media_concepts)
    attribution_on = bool(args.attribution)
    masks = synthetic_masks(source.split(":")[1], bundle, len(items)) if gt else False
    try:
        target_mode = resolve_target(target, [label_index(it.label, bundle.class_names) for it in items], bundle)
    except UserError as e:
        raise _reworded(e, _flags_in_target_error(str(e))) from None
    config = {"vtcd": cfg.to_dict(), "layers": layers, "heads": heads, "target": target_mode,
              "media_videos": media_videos, "media_concepts": media_concepts, "ground_truth": gt,
              "attribution": attribution_on, "clips_per_video": clips_per_video}
    bars = Bars()
    executor = executor_from_args(args)
    with RunWriter(args.out, KIND, model=bundle.describe(), data=data_spec, config=config,
                   run_id=args.run_id, overwrite=bool(args.overwrite)) as writer, executor:
        try:  # --executor ray: discovery per layer and CRIS per clip as tasks; analyse reads their parts back
            vtcd_stages(executor, writer, items, args.model, args.device, cfg, layers, heads, target, int(args.seed))
            result = analyse(bundle, items, cfg, store=writer, progress=bars, layers=layers, heads=heads,
                             target=target, attribution=attribution_on, ground_truth_masks=masks)
        except UserError as e:
            text = cli_words(str(e)) or ""
            raise _reworded(e, "--" + text if text.startswith("heads ") else text) from None
        finally:
            bars.close()
        result.data = data_spec
        for w in result.warnings:
            writer.warn(w["code"], cli_words(w["message"]) or "", setting=cli_words(w["setting"]), layer=w["layer"],
                        figure=w["figure"])
        result.save(writer, media_videos=media_videos, media_concepts=media_concepts)
        writer.remove(layout.PARTS)
        return writer.finish(layout.summary(result))


def _reworded(e: UserError, text: str) -> UserError:
    """``e`` with the message ``text`` (same class where it takes one message)."""
    try:
        return type(e)(text)
    except TypeError:
        return UserError(text)


def _flags_in_target_error(text: str) -> str:
    return (text.replace("target class ", "--target-class ").replace("target 'label'", "--target label")
            .replace("target 'prediction'", "--target prediction").replace("or a class", "or --target-class"))


# ----------------------------------------------------------------------------------------------
# Rosetta concepts across runs


def find_run(ref: str, root: str) -> Run:
    """A ``vtcd`` run by folder or by run id under ``<root>/vtcd/``."""
    p = Path(ref)
    if not p.is_dir():
        p = Path(root) / KIND / ref
    if not p.is_dir():
        raise RunError(f"--runs {ref}: no such run folder (nor a run id under {Path(root) / KIND})")
    run = open_run(p)
    if run.kind != KIND:
        raise RunError(f"--runs {ref}: a {run.kind!r} run, not a vtcd run")
    return run


def build_rosetta_config(args: Any) -> RosettaConfig:
    from precompute.config_args import config_from_args

    return config_from_args(RosettaConfig, args)


def run_rosetta(args: Any) -> Path:
    refs = list(args.runs or [])
    if len(refs) < 2:
        raise UserError("--runs: Rosetta concepts need at least two vtcd runs made on the same videos")
    cfg = build_rosetta_config(args)
    runs = [find_run(r, args.out) for r in refs]
    folders = [r.path.resolve() for r in runs]
    if len(set(folders)) < len(folders):
        raise UserError("--runs lists the same run twice; give runs of different models (or seeds) on the same "
                        "videos")
    media_tuples = int(args.media_tuples)
    media_videos = int(args.media_videos)
    loaded = [layout.load(r) for r in runs]
    try:
        ra = rosetta_of_runs(loaded, cfg, media_videos)
    except DataError as e:
        raise DataError(f"--runs: {e}") from None
    config = {"runs": [{"run_id": r.run_id, "config_hash": r.manifest.get("config_hash")} for r in runs],
              "epsilon": cfg.epsilon, "delta": cfg.delta, "average": cfg.average, "grid": ra.grid,
              "max_d": cfg.max_d, "media_tuples": media_tuples, "media_videos": media_videos}
    model = [{"spec": d.concepts_doc["model"]["spec"], "label": lab, "run": r.run_id}
             for r, d, lab in zip(runs, loaded, ra.labels, strict=True)]
    bars = Bars()
    with RunWriter(args.out, ROSETTA_KIND, model=model, data=runs[0].manifest["data"], config=config,
                   run_id=args.run_id, overwrite=bool(args.overwrite)) as writer:
        try:
            layout.save_rosetta(ra, writer, media_tuples=media_tuples, media_videos=media_videos, progress=bars)
        finally:
            bars.close()
        writer.remove(layout.PARTS)
        return writer.finish(layout.rosetta_summary(ra))
