"""`python -m precompute ...`: the command line of the offline jobs.

Every analysis subcommand shares ``--model --layers --out --device --seed --config --run-id
--overwrite --executor --ray-address``. ``--config FILE`` (YAML or JSON) holds the same keys as the
flags; flags given on the command line win. On success the last line on stdout is the new run
folder. Bad input exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.errors import UserError
from precompute.executor import add_executor_arguments

DEFAULT_OUT = "artifacts"
DEMO_ROOT = Path(__file__).resolve().parents[1] / "assets" / "demo"


class CliError(UserError):
    """Bad command-line usage."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, instead of usage + message
        raise CliError(f"{message} (see `python -m precompute {self.prog.split()[-1]} --help`)")


def _split_commas(values: Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    return [v for item in values for v in str(item).split(",") if v]


def _add_common(p: argparse.ArgumentParser, several_models: bool = False) -> None:
    if several_models:
        p.add_argument("--model", nargs="+", help="one or more model specs, scored on the same data (required)")
    else:
        p.add_argument("--model", help="model spec (required; see `python -m precompute models` and the README)")
    p.add_argument("--layers", nargs="+", help="dotted layer names (default: the model's stages)")
    p.add_argument("--out", default=DEFAULT_OUT, help="artifact root (default: artifacts/)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help="YAML or JSON file with the same keys as these flags")
    p.add_argument("--run-id", help="name of the run folder (default: date, model and config hash)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run with the same --run-id")
    add_executor_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="precompute", description="Concept Lens offline jobs: analyses that write artifact runs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("models", help="list the built-in model names")
    p.add_argument("--table", action="store_true", help="a Markdown table of the shipped zoo checkpoints")

    p = sub.add_parser("layers", help="list a model's addressable layers with output shapes")
    p.add_argument("--model", required=True)
    p.add_argument("--layers", nargs="+", help="only these layers")
    p.add_argument("--stages", action="store_true", help="only the model's default stages")
    p.add_argument("--device", default="cpu")

    p = sub.add_parser("runs", help="list the runs under an artifact root")
    p.add_argument("--root", default=DEFAULT_OUT)
    p.add_argument("--verify", action="store_true", help="also check every file's sha256")

    p = sub.add_parser("predict", help="predictions and per-layer GAP features on images")
    _add_common(p)
    p.add_argument("--images", nargs="+",
                   help="image models: 'demo' (default), 'opencv-doc', a folder (sub-folders = classes), or files")
    p.add_argument("--videos", help="video models: 'demo' (default: real clips), a folder (sub-folders = "
                   "classes) or file, or synthetic:<task>[:<n>]")
    p.add_argument("--clips-per-video", type=int, default=4, help="at most this many clips per video")
    p.add_argument("--batch-size", type=int, default=16)

    p = sub.add_parser("static-dynamic", help="static, dynamic, joint and residual units of video models")
    _add_static_dynamic(p)

    p = sub.add_parser("train", help="train a zoo video model on the synthetic benchmark")
    p.add_argument("--model", help="zoo architecture: c2d, r3d, slowfast, two_stream, vit or tubelet_vit "
                   "(required)")
    p.add_argument("--task", choices=("appearance", "motion", "both", "occlusion"), default="motion")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--train-size", type=int, default=2000, help="training videos (generated, cached)")
    p.add_argument("--val-size", type=int, default=500, help="held-out videos for accuracy")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="frame side in pixels")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic videos")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="artifacts/models", help="where checkpoint folders go")
    p.add_argument("--name", help="checkpoint folder name (default <model>-<task>)")
    p.add_argument("--cache-dir", default="artifacts/cache", help="cache of generated videos")
    p.add_argument("--epoch-dtype", choices=("float32", "float16"), default="float32",
                   help="storage of the per-epoch checkpoints (float16 halves their size)")
    p.add_argument("--keep-optimizer", action="store_true", help="keep optimizer state of every epoch")
    p.add_argument("--overwrite", action="store_true", help="train again over a finished model")
    p.add_argument("--vit-stem", choices=("cnn", "conv", "linear"), default="cnn",
                   help="vit only: token embedding (see core/models/video_zoo.py)")
    p.add_argument("--embed-init", choices=("random", "difference"), default="random",
                   help="tubelet_vit only: the tubelet embedding's starting weights; difference: half its channels "
                        "start as temporal-difference filters (see core/models/video_zoo.py)")
    p.add_argument("--init-from", help="a checkpoint (spec) whose tensors of matching name and shape seed the "
                   "model, e.g. r3d-motion for the vit's hybrid stem")
    p.add_argument("--static-dropout", type=float, default=0.0, metavar="RATE",
                   help="drop this fraction of the classifier's input channels while training (0 = off; "
                   "on top of the model's own dropout)")
    p.add_argument("--dropout-kind", choices=("static", "standard"), default="static",
                   help="static: StaticDropout (dissertation 3.5.2; static channels more likely); "
                   "standard: plain dropout at the same rate (default static)")
    p.add_argument("--static-dropout-every", type=int, default=30, metavar="N",
                   help="StaticDropout: re-estimate the channel scores and the mask every N iterations")
    p.add_argument("--finetune-epochs", type=int, default=0, metavar="K",
                   help="after --epochs, K more epochs without --static-dropout at constant --finetune-lr")
    p.add_argument("--finetune-lr", type=float, default=1e-5, help="learning rate of the fine-tune epochs")
    p.add_argument("--schedule", choices=("onecycle", "cosine"), default="onecycle",
                   help="learning-rate schedule: one-cycle, or linear warm-up then cosine decay")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="--schedule cosine: warm-up length")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the loss (0 = off)")
    p.add_argument("--train-augment", choices=("none", "shift"), default="none",
                   help="shift: random whole-clip shift and brightness/contrast jitter (label-preserving)")
    p.add_argument("--distill-from", help="a checkpoint of the same classes whose logits the model also learns, "
                   "e.g. r3d-motion")
    p.add_argument("--distill-weight", type=float, default=0.5, help="weight of the distillation loss (0 to 1)")
    p.add_argument("--distill-temperature", type=float, default=2.0, help="softmax temperature of distillation")
    p.add_argument("--curriculum-epochs", type=int, default=0, metavar="K",
                   help="the first K epochs train on the first --curriculum-classes classes only")
    p.add_argument("--curriculum-classes", type=int, metavar="C", help="how many classes the curriculum starts with")
    p.add_argument("--config", help="YAML or JSON file with the same keys as these flags")

    p = sub.add_parser("demo", help="regenerate the shipped demo runs (CPU is enough)")
    p.add_argument("--out", default=str(DEMO_ROOT), help="where to write them (default: assets/demo)")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("vcc", help="Visual Concept Connectome: concepts per layer and their interlayer edges")
    _add_common(p)
    p.add_argument("--all-layers", action="store_true",
                   help="every stage of the model (default: four stages, evenly spaced, ending at the deepest)")
    p.add_argument("--target-class", help="the class (index or name) whose images --images holds")
    p.add_argument("--classes", nargs="+", help="several classes (indices or names): --images holds one "
                   "sub-folder per class")
    p.add_argument("--num-classes", type=int, help="the first N classes among the sub-folders of --images")
    p.add_argument("--images", nargs="+", help="'demo' (default: the shipped photos, labelled), 'opencv-doc', "
                   "a folder (sub-folders = classes) or image files")
    p.add_argument("--random", nargs="+", help="images of other classes for CAVs and t-tests: 'demo' (default), "
                   "'opencv-doc', a folder or files; images labelled with the analysed class are left out")
    p.add_argument("--augment", type=int, default=0, metavar="N", help="fill a class with fewer than N images "
                   "up to N with random crops and flips of its photos (recorded as such; default 0: off)")
    p.add_argument("--random-augment", type=int, default=0, metavar="N",
                   help="fill the random pool up to N images with crops and flips (default 0: off)")
    p.add_argument("--from-predictions", type=int, default=0, metavar="N",
                   help="a class with no labelled image in --images gets the crops and flips (N per photo) that the "
                   "model predicts as it, recorded as such (e.g. the predicted class of a mistake; default 0: off)")
    p.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1),
                   help="processes for the top-down segmentation, which runs on the CPU (default: the cores, at "
                   "most 8; results do not depend on it)")
    _add_vcc_settings(p)

    p = sub.add_parser("vcc-debug", help="failure debugger: an image's segments against two classes' VCCs")
    _add_common(p)
    p.add_argument("--image", nargs="+", help="image files or folders (default: the misclassified discovery "
                   "images of --runs whose predicted class has a VCC there)")
    p.add_argument("--true-class", help="the true class (index or name) of the --image files (default: the "
                   "sub-folder names of a folder)")
    p.add_argument("--runs", nargs="+", help="vcc runs (folders, or run ids under --out) holding the VCCs of "
                   "the true and the predicted classes (required)")
    _add_vcc_debug_settings(p)

    p = sub.add_parser("vtcd", help="VTCD: spatiotemporal concepts of a video transformer, CRIS importance, "
                       "attribution curves, head pruning")
    _add_common(p)
    _add_vtcd_settings(p)

    p = sub.add_parser("rosetta", help="Rosetta concepts: concepts shared by several vtcd runs on the same videos")
    p.add_argument("--runs", nargs="+", help="two or more vtcd runs (folders, or run ids under --out) (required)")
    _add_rosetta_settings(p)
    p.add_argument("--media-tuples", type=int, default=24, help="tuples (highest R first) rendered as clips")
    p.add_argument("--media-videos", type=int, default=2, help="videos rendered per tuple")
    add_executor_arguments(p)  # accepted for a uniform command line; Rosetta only reads runs, in the driver
    p.add_argument("--out", default=DEFAULT_OUT, help="artifact root (default: artifacts/)")
    p.add_argument("--run-id", help="name of the run folder (default: date, models and config hash)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run with the same --run-id")

    p = sub.add_parser("report", help="one self-contained HTML report of runs (offline; runs of one kind side by side)")
    from precompute.report import add_arguments as add_report_arguments
    add_report_arguments(p)
    return parser


VCC_DEBUG_FLAGS = {"n_paths": "--paths"}  # VCCDebugConfig fields whose flag is not --<field-name>


def _add_vcc_debug_settings(p: argparse.ArgumentParser) -> None:
    """One flag per field of core.vcc.VCCDebugConfig (its defaults)."""
    from core.vcc.config import VCCDebugConfig
    from precompute.config_args import add_config_arguments

    add_config_arguments(p.add_argument_group("failure debugger settings (core.vcc.VCCDebugConfig)"),
                         VCCDebugConfig, flags=VCC_DEBUG_FLAGS)


STATIC_DYNAMIC_FLAGS = {"lam": "--lambda"}  # StaticDynamicConfig fields whose flag is not --<field-name>


def _add_static_dynamic(p: argparse.ArgumentParser) -> None:
    """Inputs of the job, and one flag per field of core.static_dynamic.StaticDynamicConfig (its defaults)."""
    from core.static_dynamic.config import StaticDynamicConfig
    from precompute.config_args import add_config_arguments

    _add_common(p, several_models=True)
    p.set_defaults(seed=StaticDynamicConfig.seed)  # --layers and --seed: shared flags, config fields
    p.add_argument("--videos", help="'demo' (default: real clips), a folder (sub-folders = classes) or file, "
                   "or synthetic:<task>[:<n>]")
    p.add_argument("--cache-dir", default="artifacts/cache", help="cache of restyled clips ('' to disable)")
    p.add_argument("--checkpoints", nargs="+", help="training dynamics: checkpoint specs or folders, or the "
                   "folder of one training run (its epochs/epoch-NN)")
    g = p.add_argument_group("static/dynamic settings (core.static_dynamic.StaticDynamicConfig; methods.md section 1)")
    add_config_arguments(g, StaticDynamicConfig, exclude=("layers", "seed"), flags=STATIC_DYNAMIC_FLAGS)


def _add_rosetta_settings(p: argparse.ArgumentParser) -> None:
    """One flag per field of core.vtcd.RosettaConfig (its defaults)."""
    from core.vtcd import RosettaConfig
    from precompute.config_args import add_config_arguments

    add_config_arguments(p.add_argument_group("Rosetta settings (core.vtcd.RosettaConfig; methods.md section 2)"),
                         RosettaConfig)


def _add_vtcd_settings(p: argparse.ArgumentParser) -> None:
    """Inputs of VTCD and one flag per field of core.vtcd.VTCDConfig (its defaults; ``--features`` and the
    shared ``--seed`` set ``feature`` and ``seed``)."""
    from core.vtcd import VTCDConfig
    from precompute import vtcd as vtcd_job
    from precompute.config_args import add_config_arguments

    p.set_defaults(seed=VTCDConfig.seed)
    flag_name = {v: k for k, v in vtcd_job.FEATURES.items()}
    p.add_argument("--videos", help="'demo' (default: real clips), a folder (sub-folders = classes) or file, "
                   "or synthetic:<task>[:<n>]")
    p.add_argument("--clips-per-video", type=int, default=4, help="at most this many clips per video")
    p.add_argument("--heads", nargs="+", help="head indices of every layer (default: all)")
    p.add_argument("--features", choices=tuple(vtcd_job.FEATURES), default=flag_name[VTCDConfig.feature],
                   help=f"what a head's tubelets are cut from (default {flag_name[VTCDConfig.feature]}; output: the "
                   "block output)")
    p.add_argument("--target-class", help="the class (index or name) the metric is taken on, for every clip")
    p.add_argument("--target", choices=("auto", "label", "prediction"), default="auto",
                   help="without --target-class: each clip's label, or its unmasked prediction (label-free: "
                   "agreement with it); auto: labels when every clip has one (default)")
    p.add_argument("--ground-truth", action="store_true", help="synthetic videos: IoU of the best concept with "
                   "the target object's masks, against random-crop tubelets (ground_truth.json)")
    p.add_argument("--media-videos", type=int, default=3, help="top videos rendered as clips per concept")
    p.add_argument("--media-concepts", type=int, default=0,
                   help="render clips for the N most important concepts only (default 0: all)")
    p.add_argument("--attribution", action=argparse.BooleanOptionalAction, default=True,
                   help="attribution curves and head pruning (default on)")
    g = p.add_argument_group("VTCD settings (core.vtcd.VTCDConfig; methods.md section 2)")
    add_config_arguments(g, VTCDConfig, exclude=vtcd_job.VTCD_OWN, flags=vtcd_job.VTCD_FLAGS)


def _add_vcc_settings(p: argparse.ArgumentParser) -> None:
    """One flag per field of core.vcc.VCCConfig (its defaults and help; methods.md section 3)."""
    from core.vcc.config import VCCConfig
    from precompute import vcc as vcc_job
    from precompute.config_args import add_config_arguments

    p.set_defaults(seed=VCCConfig.seed)  # the shared --seed is a config field
    g = p.add_argument_group("VCC settings (core.vcc.VCCConfig; defaults from methods.md section 3)")
    add_config_arguments(g, VCCConfig, exclude=vcc_job.VCC_OWN, flags=vcc_job.VCC_FLAGS)
    fields = VCCConfig.__dataclass_fields__
    g.add_argument("--prune", nargs="+", metavar="KEY=VALUE", help=fields["prune"].metadata["help"])
    g.add_argument("--commonality", nargs="+", metavar="KEY=VALUE", help=fields["commonality"].metadata["help"])


# Whole-number options: (lowest, highest); None leaves that side to the analysis' own config (the
# static-dynamic settings are all checked by core.static_dynamic.StaticDynamicConfig).
# The upper bounds keep an absurd value from filling memory or running for days before it fails.
SEED_MAX = 2**32 - 1  # NumPy's legacy seeding takes 0 .. 2**32 - 1
INT_BOUNDS: dict[str, tuple[int | None, int]] = {
    "seed": (0, SEED_MAX), "data_seed": (0, SEED_MAX),
    "batch_size": (1, 4096),
    "clips_per_video": (1, 10_000),
    "epochs": (1, 10_000), "finetune_epochs": (0, 10_000),
    "train_size": (1, 1_000_000), "val_size": (1, 1_000_000),
    "frames": (1, 512), "size": (1, 1024),
    "static_dropout_every": (1, 1_000_000),
    "augment": (0, 100_000), "random_augment": (0, 100_000), "from_predictions": (0, 10_000),
    "num_classes": (1, 100_000),
    "jobs": (1, 256),
    "paths": (1, 1000),
    "media_videos": (0, 1000), "media_concepts": (0, 10_000), "media_tuples": (0, 10_000),
    "max_d": (1, 64),
}  # VCC, VTCD and Rosetta settings: ranges in core.vcc.config.VCCConfig and core.vtcd.config


def _flag(dest: str) -> str:
    return "--lambda" if dest == "lam" else "--" + dest.replace("_", "-")


def _check_out(value: str, flag: str) -> None:
    """``--out`` must be a folder or not exist yet, with no file in the way above it."""
    p = Path(value)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                where = "" if q == p else f" ({q} is a file)"
                raise CliError(f"{flag} {p} is not a folder{where}; give a folder for the output")
            return


def _validate(args: argparse.Namespace) -> None:
    """Ranges of numbers, names and paths, checked before any model or data is loaded."""
    values = vars(args)
    for dest, value in values.items():
        items = value if isinstance(value, list) else [value]
        for v in items:
            if isinstance(v, float) and not math.isfinite(v):
                raise CliError(f"{_flag(dest)} must be a finite number, not {v}")
        if dest in INT_BOUNDS and isinstance(value, int) and not isinstance(value, bool):
            lo, hi = INT_BOUNDS[dest]
            if (lo is not None and value < lo) or value > hi:
                raise CliError(f"{_flag(dest)} must be {f'{lo} to {hi}' if lo is not None else f'at most {hi}'}, "
                               f"not {value}")
    for dest in ("lr", "finetune_lr"):
        if values.get(dest) is not None and values[dest] <= 0:
            raise CliError(f"{_flag(dest)} must be above 0, not {values[dest]}")
    if values.get("weight_decay") is not None and values["weight_decay"] < 0:
        raise CliError(f"--weight-decay must be at least 0, not {values['weight_decay']}")
    from precompute.common import check_folder_name

    if values.get("run_id") is not None:
        check_folder_name(args.run_id, "--run-id")
    if args.command == "train" and args.name is not None:
        check_folder_name(args.name, "--name")
    if isinstance(values.get("out"), str) and args.command != "runs":
        _check_out(args.out, "--out")
    for dest in ("layers", "removal_layers"):
        if values.get(dest) is not None:
            names = _split_commas(values[dest])
            if not names:
                raise CliError(f"{_flag(dest)}: no layer name given (names are separated by spaces or commas)")
            setattr(args, dest, names)


def _load_config(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise CliError(f"config file not found: {p}")
    text = p.read_text(encoding="utf-8", errors="replace")  # not UTF-8: fails to parse below, naming the file
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:
        raise CliError(f"config file {p} is not valid {p.suffix.lstrip('.').upper() or 'JSON'}: "
                       f"{str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise CliError(f"config file {p} must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_NUMBERS = {int: ("a whole number", (int,)), float: ("a number", (int, float))}
"""Numeric option types: how an error names them, and the config-file value types they accept."""


def _config_value(key: str, value: Any, action: argparse.Action, path: str) -> Any:
    """``value`` from a config file as the command line would have given it for ``action``.

    YAML and JSON already give typed values, which argparse does not convert or check for defaults:
    each is checked against the option's type, count and choices here. A plain value for an option
    that takes several is one item (``images: /data/cats``, not its letters).
    """
    where = f"config file {path}: {key}"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)):
        if not isinstance(value, bool):
            raise CliError(f"{where} must be true or false, not {_short(value)}")
        return value
    several = action.nargs not in (None, "?")
    if several:
        items = value if isinstance(value, list) else [value]
        if isinstance(action.nargs, int) and len(items) != action.nargs:
            raise CliError(f"{where} needs {action.nargs} values, not {_short(value)}")
        if action.nargs == "+" and not items:
            raise CliError(f"{where} needs at least one value")
    else:
        items = [value]
    out = []
    for item in items:
        if action.type in _NUMBERS:
            what, kinds = _NUMBERS[action.type]
            ok = isinstance(item, str) or (isinstance(item, kinds) and not isinstance(item, bool))
            try:
                item = action.type(item) if ok else item
            except ValueError:
                ok = False
            if not ok:
                raise CliError(f"{where} must be {what}{' each' if several else ''}, not {_short(value)}")
        else:
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise CliError(f"{where} must be {'text or a list of text' if several else 'text'}, "
                               f"not {_short(value)}")
            item = str(item)
        if action.choices is not None and item not in action.choices:
            raise CliError(f"{where} must be one of {', '.join(map(str, action.choices))}, not {_short(item)}")
        out.append(item)
    return out if several else out[0]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; values from ``--config`` fill in what the command line leaves out."""
    parser = build_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    config_path = pre.parse_known_args(argv)[0].config
    if config_path and argv and argv[0] in _subparsers(parser):
        config = {k: v for k, v in _load_config(config_path).items() if v is not None}  # `key:` alone: unset
        sub = _subparsers(parser)[argv[0]]
        actions: dict[str, argparse.Action] = {}
        for a in sub._actions:  # a key is the option's dest or its long name (lambda for --lambda)
            if a.dest in ("help", "config"):
                continue
            actions[a.dest] = a
            for opt in a.option_strings:
                if opt.startswith("--") and not opt.startswith("--no-"):
                    actions.setdefault(opt[2:].replace("-", "_"), a)
        if "config" in config:
            raise CliError(f"config file {config_path}: 'config' cannot be set inside a config file "
                           "(it would name another one); merge the two files")
        unknown = sorted(set(config) - set(actions))
        if unknown:
            raise CliError(f"config file {config_path}: unknown key(s) {', '.join(unknown)}; "
                           f"known: {', '.join(sorted(actions))}")
        sub.set_defaults(**{actions[k].dest: _config_value(k, v, actions[k], config_path)
                            for k, v in config.items()})
    args = parser.parse_args(argv)
    if "model" in vars(args) and not args.model:
        raise CliError(f"--model is required (on the command line or in --config); "
                       f"see `python -m precompute {args.command} --help`")
    _validate(args)
    return args


# ----------------------------------------------------------------------------------------------
# Subcommands that only read
# ----------------------------------------------------------------------------------------------


def zoo_table() -> str:
    """Markdown table of the checkpoints in assets/models: parameters, task, accuracy, training."""
    from core.models.resolve import ASSETS_MODELS

    rows = ["| model | architecture | parameters | task | classes | held-out accuracy | epochs | "
            "training time | machine |", "|---|---|---|---|---|---|---|---|---|"]
    for meta_path in sorted(ASSETS_MODELS.glob("*/model.json")):
        m = json.loads(meta_path.read_text())
        t = m.get("training", {})
        acc = m.get("metrics", {}).get("val_accuracy")
        rows.append(f"| `{meta_path.parent.name}` | {m['architecture']} | {m.get('num_params', 0) / 1e3:.0f}k | "
                    f"{m.get('task', '')} | {len(m.get('classes', []))} | "
                    f"{'' if acc is None else f'{100 * acc:.1f}%'} (n={t.get('val_size', '?')}) | "
                    f"{t.get('epochs', '')} | {t.get('seconds', 0) / 60:.1f} min | {t.get('machine', '')} |")
    return "\n".join(rows)


def cmd_models(args: argparse.Namespace) -> None:
    from core.models import builtin_models

    if args.table:
        print(zoo_table())
        return
    models = builtin_models()
    width = max(map(len, models))
    for name, what in models.items():
        print(f"{name:<{width}}  {what}")


def cmd_layers(args: argparse.Namespace) -> None:
    from core.models import layer_shapes, resolve_layers, resolve_model
    from precompute.common import resolve_device

    bundle = resolve_model(args.model, resolve_device(args.device))
    names = bundle.layer_names()
    if args.stages:
        names = list(bundle.stages)
    if args.layers:
        resolve_layers(bundle.model, _split_commas(args.layers), args.model)
        names = _split_commas(args.layers)
    shapes = layer_shapes(bundle, names) if bundle.hookable else {}
    modules = dict(bundle.model.named_modules())
    stages = set(bundle.stages)
    p = bundle.preprocessing
    print(f"# {bundle.description}; input {p.input} {p.size[0]}x{p.size[1]}"
          + (f"x{p.frames} frames" if p.frames else "") + "; * = default stage; shapes for batch 1")
    if not bundle.hookable:
        print("# TorchScript: layer outputs cannot be hooked, so shapes are unknown")
    width = max(map(len, names), default=10)
    for n in names:
        shape = "x".join(map(str, shapes[n])) if n in shapes else "-"
        print(f"{'*' if n in stages else ' '} {n:<{width}}  {type(modules[n]).__name__:<24} {shape}")


def _one_line(value: Any, limit: int = 300) -> str:
    """``value`` as printable text on one line (names and summaries of a run are not trusted)."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cmd_runs(args: argparse.Namespace) -> None:
    from core.artifacts import list_runs
    from core.errors import RunError

    entries = list_runs(args.root)
    if not entries:
        print(f"no runs under {args.root}")
        return
    for e in entries:
        name, kind = _one_line(e.path.name, 120), _one_line(e.kind, 40)
        if e.partial:
            print(f"incomplete  {kind:<16} {name:<40} status {e.partial_status}; "
                  "rerun the same command to resume")
            continue
        if e.run is None:
            print(f"INVALID     {kind:<16} {name:<40} {_one_line(e.error, 1000)}")
            continue
        m = e.run.manifest  # validated by list_runs: every key has the right type
        status = "complete"
        if args.verify:
            try:
                e.run.verify()
            except (RunError, OSError) as err:
                status = f"CORRUPT: {_one_line(err, 1000)}"
        model = m["model"].get("spec") if isinstance(m["model"], dict) else m["model"]
        summary = ", ".join(f"{k}={v}" for k, v in m["summary"].items() if not isinstance(v, (list, dict)))
        print(f"{status:<11} {kind:<16} {m['run_id']:<40} {_one_line(model, 120)}  {_one_line(m['created'], 40)}  "
              f"{_one_line(summary)}")


def cmd_predict(args: argparse.Namespace) -> None:
    from precompute import predict

    print(predict.run(args))


def cmd_static_dynamic(args: argparse.Namespace) -> None:
    from core.static_dynamic.config import StaticDynamicConfig
    from precompute import static_dynamic
    from precompute.config_args import config_from_args

    if isinstance(args.model, str):
        args.model = [args.model]
    config = config_from_args(StaticDynamicConfig, args, flags=STATIC_DYNAMIC_FLAGS)
    print(static_dynamic.run(args, config))


def cmd_train(args: argparse.Namespace) -> None:
    from precompute import train

    for key in ("epochs", "train_size", "val_size", "frames", "size"):
        if getattr(args, key) < 1:
            raise CliError(f"--{key.replace('_', '-')} must be at least 1")
    print(train.run(args))


def cmd_vcc(args: argparse.Namespace) -> None:
    from precompute import vcc

    chosen = [f for f, v in (("--target-class", args.target_class), ("--classes", args.classes),
                             ("--num-classes", args.num_classes)) if v is not None]
    if len(chosen) > 1:
        raise CliError(f"give one of --target-class, --classes and --num-classes, not {' and '.join(chosen)}")
    if args.layers and args.all_layers:
        raise CliError("give --layers or --all-layers, not both")
    if args.augment < 0 or args.random_augment < 0:
        raise CliError("--augment and --random-augment must be at least 0")
    print(vcc.run(args))


def cmd_vcc_debug(args: argparse.Namespace) -> None:
    from precompute import vcc_debug

    if not args.runs:
        raise CliError("--runs is required: the vcc runs holding the VCCs of the true and predicted classes")
    print(vcc_debug.run(args, vcc_debug.build_config(args)))


def cmd_vtcd(args: argparse.Namespace) -> None:
    from precompute import vtcd

    if args.clips_per_video is not None and args.clips_per_video < 1:
        raise CliError("--clips-per-video must be at least 1")
    if args.media_videos < 0 or args.media_concepts < 0:
        raise CliError("--media-videos and --media-concepts must be at least 0")
    print(vtcd.run(args))


def cmd_rosetta(args: argparse.Namespace) -> None:
    from precompute import vtcd

    if not args.runs or len(args.runs) < 2:
        raise CliError("--runs needs at least two vtcd runs made on the same videos")
    if args.media_tuples < 0 or args.media_videos < 0:
        raise CliError("--media-tuples and --media-videos must be at least 0")
    print(vtcd.run_rosetta(args))


def cmd_report(args: argparse.Namespace) -> None:
    from precompute import report

    print(report.run(args))


def cmd_demo(args: argparse.Namespace) -> None:
    from precompute import demo

    for argv in demo.commands(Path(args.out), args.device):  # each command prints its run folder
        sub = parse_args(argv)
        COMMANDS[sub.command](sub)


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "models": cmd_models,
    "layers": cmd_layers,
    "runs": cmd_runs,
    "predict": cmd_predict,
    "static-dynamic": cmd_static_dynamic,
    "train": cmd_train,
    "demo": cmd_demo,
    "vcc": cmd_vcc,
    "vcc-debug": cmd_vcc_debug,
    "vtcd": cmd_vtcd,
    "rosetta": cmd_rosetta,
    "report": cmd_report,
}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    warnings.showwarning = _show_warning
    try:
        args = parse_args(list(sys.argv[1:] if argv is None else argv))
        COMMANDS[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: file not found: {e.filename or e}", file=sys.stderr)
        return 2
    except PermissionError as e:
        print(f"error: permission denied: {e.filename or e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" while writing {e.filename}" if e.filename else ""
        print(f"error: disk full{where}: free space and rerun the same command to resume", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished parts are kept: rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
