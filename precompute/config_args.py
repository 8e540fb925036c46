"""Command-line flags generated from an analysis config dataclass (the config is the only home of defaults).

Usage in a subcommand::

    FLAGS = {"lam": "--lambda"}           # field -> flag where the name differs (optional)
    add_config_arguments(p, StaticDynamicConfig, exclude=("seed", "layers"), flags=FLAGS)
    ...
    config = config_from_args(StaticDynamicConfig, args, flags=FLAGS)

One flag per dataclass field: ``--field-name`` (dashes for underscores; ``flags`` renames), dest the
field name, so ``--config`` files use the field names (the CLI's loader also accepts the long flag
name). From the type hint:

- ``bool`` -> ``--x`` / ``--no-x`` (:class:`argparse.BooleanOptionalAction`);
- ``int`` / ``float`` / ``str`` -> that type; ``X | None`` -> X, unset stays ``None``;
- ``Literal["a", "b"]`` -> ``choices``;
- ``tuple[X, ...]`` / ``list[X]`` -> ``nargs="+"``; ``tuple[X, X]`` -> ``nargs=2``.

The argparse default is the field's default (or ``default_factory()``); the help is
``field.metadata["help"]`` plus ``(default: ...)`` unless the help already mentions its default
(``metadata["metavar"]`` sets the metavar). Excluded fields get no flag here (the subcommand adds
its own, e.g. the shared ``--seed``) but :func:`config_from_args` still reads them from ``args``
when present. Validation stays in the config's ``__post_init__``: a
:class:`core.errors.ConfigError` naming a field is re-raised naming the flag instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from core.errors import ConfigError

C = TypeVar("C")


def flag_name(field: str, flags: Mapping[str, str] | None = None) -> str:
    """The command-line flag of config field ``field`` (``--field-name`` unless ``flags`` renames it)."""
    return (flags or {}).get(field) or "--" + field.replace("_", "-")


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(hint, False)``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
        raise TypeError(f"unsupported union type {hint!r} for a command-line flag")
    return hint, False


def _scalar(hint: Any) -> dict[str, Any]:
    """argparse ``type``/``choices`` of a scalar hint."""
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        kinds = {type(c) for c in choices}
        if len(kinds) != 1 or next(iter(kinds)) not in (str, int, float):
            raise TypeError(f"Literal choices must all be str, int or float: {hint!r}")
        return {"type": next(iter(kinds)), "choices": list(choices)}
    if hint in (int, float, str):
        return {"type": hint}
    raise TypeError(f"unsupported type {hint!r} for a command-line flag")


def _argument_kwargs(hint: Any) -> dict[str, Any]:
    """argparse keyword arguments (type, choices, nargs, action) of a field type hint."""
    hint, _ = _unwrap_optional(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return {"nargs": "+", **_scalar(args[0])}
        if origin is tuple and args and all(a == args[0] for a in args):
            return {"nargs": len(args), **_scalar(args[0])}
        raise TypeError(f"unsupported sequence type {hint!r} for a command-line flag")
    return _scalar(hint)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value)) if value else "none"
    return str(value)


def add_config_arguments(parser: argparse.ArgumentParser | Any, config_class: type, *, exclude: tuple[str, ...] = (),
                         flags: Mapping[str, str] | None = None) -> dict[str, str]:
    """Add one flag per field of the dataclass ``config_class`` to ``parser`` (a parser or an argument
    group), except the fields in ``exclude``; returns ``{field: flag}`` of the flags added."""
    hints = typing.get_type_hints(config_class)
    unknown = set(exclude) | set(flags or {})
    names = {f.name for f in dataclasses.fields(config_class)}
    if unknown - names:
        raise TypeError(f"{config_class.__name__} has no field(s) {', '.join(sorted(unknown - names))}")
    added = {}
    for f in dataclasses.fields(config_class):
        if f.name in exclude or not f.init:
            continue
        kwargs = _argument_kwargs(hints[f.name])
        default = _default(f)
        help_text = str(f.metadata.get("help", ""))
        if "default" not in help_text:
            shown = ("on" if default else "off") if isinstance(default, bool) else _shown(default)
            help_text = f"{help_text} (default: {shown})".strip()
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        flag = flag_name(f.name, flags)
        parser.add_argument(flag, dest=f.name, default=default, help=help_text.replace("%", "%%"), **kwargs)
        added[f.name] = flag
    return added


def config_from_args(config_class: type[C], args: argparse.Namespace | Mapping[str, Any], *,
                     flags: Mapping[str, str] | None = None, **overrides: Any) -> C:
    """``config_class`` from the parsed ``args`` (every field present in it; ``overrides`` win).

    Lists become tuples where the field is a tuple. A :class:`ConfigError` from the config's
    validation is raised again naming the command-line flag (``--lambda``) instead of the field.
    """
    values = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
    hints = typing.get_type_hints(config_class)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(config_class):
        if not f.init or (f.name not in values and f.name not in overrides):
            continue
        value = overrides[f.name] if f.name in overrides else values[f.name]
        hint, _ = _unwrap_optional(hints[f.name])
        if isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[f.name] = value
    try:
        return config_class(**kwargs)
    except ConfigError as e:
        if e.field in kwargs:
            raise ConfigError(flag_name(e.field, flags), e.problem) from None
        raise
