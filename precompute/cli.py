"""`python -m precompute ...`: the command line of the offline jobs.

Every analysis subcommand shares ``--model --layers --out --device --seed --config --run-id
--overwrite``. ``--config FILE`` (YAML or JSON) holds the same keys as the flags; flags given on
the command line win. On success the last line on stdout is the new run folder. Bad input exits
with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.errors import UserError

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
    _add_common(p, several_models=True)
    p.add_argument("--videos", help="'demo' (default: real clips), a folder (sub-folders = classes) or file, "
                   "or synthetic:<task>[:<n>]")
    p.add_argument("--clips-per-video", type=int, default=4, help="at most this many clips per video")
    p.add_argument("--pairs", type=int, default=200, help="pairs per factor (static and dynamic)")
    p.add_argument("--lambda", dest="lam", type=float, default=0.5, help="unit threshold on the per-unit scores")
    p.add_argument("--styles", nargs="+", help="shipped styles (default all: edge_preserving, pencil, palette, "
                   "texture) or a folder with one sub-folder of pre-stylized copies per style")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--cache-dir", default="artifacts/cache", help="cache of restyled clips ('' to disable)")
    p.add_argument("--removal", action="store_true", help="neuron removal curves (needs labelled videos)")
    p.add_argument("--removal-layers", nargs="+", help="layers for --removal (default: the last analysed layer)")
    p.add_argument("--removal-fractions", nargs="+", type=float,
                   help="fractions of units removed (default 0..1 by 0.1)")
    p.add_argument("--removal-seeds", type=int, default=3, help="random-unit baselines")
    p.add_argument("--checkpoints", nargs="+", help="training dynamics: checkpoint specs or folders, or the "
                   "folder of one training run (its epochs/epoch-NN)")
    p.add_argument("--examples", type=int, default=2, help="example pairs written as videos (0: none)")

    p = sub.add_parser("train", help="train a zoo video model on the synthetic benchmark")
    p.add_argument("--model", help="zoo architecture: c2d, r3d, slowfast, two_stream or vit (required)")
    p.add_argument("--task", choices=("appearance", "motion", "both"), default="motion")
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
    p.add_argument("--config", help="YAML or JSON file with the same keys as these flags")

    p = sub.add_parser("demo", help="regenerate the shipped demo runs (CPU is enough)")
    p.add_argument("--out", default=str(DEMO_ROOT), help="where to write them (default: assets/demo)")
    p.add_argument("--device", default="auto")
    return parser


def _load_config(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise CliError(f"config file not found: {p}")
    text = p.read_text()
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
        config = _load_config(config_path)
        sub = _subparsers(parser)[argv[0]]
        known = {a.dest for a in sub._actions}
        unknown = sorted(set(config) - known)
        if unknown:
            raise CliError(f"config file {config_path}: unknown key(s) {', '.join(unknown)}; "
                           f"known: {', '.join(sorted(known - {'help', 'config'}))}")
        sub.set_defaults(**config)
    args = parser.parse_args(argv)
    if "model" in vars(args) and not args.model:
        raise CliError(f"--model is required (on the command line or in --config); "
                       f"see `python -m precompute {args.command} --help`")
    if hasattr(args, "layers"):
        args.layers = _split_commas(args.layers)
    if getattr(args, "batch_size", 1) < 1:
        raise CliError("--batch-size must be at least 1")
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


def cmd_runs(args: argparse.Namespace) -> None:
    from core.artifacts import list_runs
    from core.errors import RunError

    entries = list_runs(args.root)
    if not entries:
        print(f"no runs under {args.root}")
        return
    for e in entries:
        if e.partial:
            print(f"incomplete  {e.kind:<16} {e.path.name:<40} status {e.partial_status}; "
                  "rerun the same command to resume")
            continue
        if e.run is None:
            print(f"INVALID     {e.kind:<16} {e.path.name:<40} {e.error}")
            continue
        m = e.run.manifest
        status = "complete"
        if args.verify:
            try:
                e.run.verify()
            except RunError as err:
                status = f"CORRUPT: {err}"
        model = m["model"].get("spec") if isinstance(m["model"], dict) else m["model"]
        summary = ", ".join(f"{k}={v}" for k, v in m["summary"].items() if not isinstance(v, (list, dict)))
        print(f"{status:<11} {e.kind:<16} {m['run_id']:<40} {model}  {m['created']}  {summary}")


def cmd_predict(args: argparse.Namespace) -> None:
    from precompute import predict

    print(predict.run(args))


def cmd_static_dynamic(args: argparse.Namespace) -> None:
    from precompute import static_dynamic

    if isinstance(args.model, str):
        args.model = [args.model]
    if args.pairs < 2:
        raise CliError("--pairs must be at least 2 (a covariance needs two pairs)")
    if args.removal_seeds < 1:
        raise CliError("--removal-seeds must be at least 1")
    fractions = args.removal_fractions or []
    if any(not 0 <= f <= 1 for f in fractions) or fractions != sorted(fractions):
        raise CliError("--removal-fractions must be increasing values between 0 and 1")
    args.removal_layers = _split_commas(args.removal_layers)
    print(static_dynamic.run(args))


def cmd_train(args: argparse.Namespace) -> None:
    from precompute import train

    for key in ("epochs", "train_size", "val_size", "frames", "size"):
        if getattr(args, key) < 1:
            raise CliError(f"--{key.replace('_', '-')} must be at least 1")
    print(train.run(args))


def cmd_demo(args: argparse.Namespace) -> None:
    from precompute import demo

    for path in demo.run(Path(args.out), args.device):
        print(path)


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "models": cmd_models,
    "layers": cmd_layers,
    "runs": cmd_runs,
    "predict": cmd_predict,
    "static-dynamic": cmd_static_dynamic,
    "train": cmd_train,
    "demo": cmd_demo,
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
    except KeyboardInterrupt:
        print("interrupted; finished parts are kept: rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
