"""Every setting of the static/dynamic analysis, with its default, help and checks (the only home of them).

``precompute static-dynamic`` generates its flags from these fields (:mod:`precompute.config_args`);
a notebook passes ``StaticDynamicConfig(pairs=50, ...)`` to :func:`core.static_dynamic.analyse`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.static_dynamic.removal import DEFAULT_FRACTIONS
from core.static_dynamic.styles import STYLE_VERSION, STYLES

SEED_MAX = 2**32 - 1  # NumPy's legacy seeding takes 0 .. 2**32 - 1

# Whole-number settings: (lowest, highest). The upper bounds keep an absurd value from filling memory
# or running for days before it fails (the same bounds as the CLI's).
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "pairs": (2, 100_000), "clips_per_video": (1, 10_000), "batch_size": (1, 4096), "seed": (0, SEED_MAX),
    "removal_seeds": (1, 1000), "examples": (0, 100),
}


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class StaticDynamicConfig:
    """Settings of one static/dynamic analysis (methods.md section 1).

    ``pairs`` static and ``pairs`` dynamic pairs are drawn from ``seed`` over the clips; the layers'
    GAP'd features of both videos of every pair give the layer and unit scores, units are
    classified with the threshold ``lam``. ``removal`` adds accuracy curves with the top fractions of
    static, dynamic or random units of ``removal_layers`` zeroed.
    """

    layers: tuple[str, ...] | None = field(
        default=None, metadata=_help("dotted layer names (default: the model's stages)"))
    pairs: int = field(default=200, metadata=_help("pairs per factor (static and dynamic)"))
    lam: float = field(default=0.5, metadata={"help": "unit threshold on the per-unit scores, -1 to 1",
                                              "metavar": "LAMBDA"})
    styles: tuple[str, ...] | None = field(
        default=None, metadata=_help("shipped styles (default all: edge_preserving, pencil, palette, texture; "
                                     "names may be comma-separated) or a folder with one sub-folder of "
                                     "pre-stylized copies per style"))
    clips_per_video: int = field(default=4, metadata=_help("at most this many clips per video"))
    batch_size: int = field(default=16, metadata=_help("clips per forward pass"))
    seed: int = field(default=0, metadata=_help("seed of the pairs' random choices"))
    removal: bool = field(default=False, metadata=_help("neuron removal curves (needs labelled videos)"))
    removal_layers: tuple[str, ...] | None = field(
        default=None, metadata=_help("layers for removal (default: the last analysed layer)"))
    removal_fractions: tuple[float, ...] = field(
        default=DEFAULT_FRACTIONS, metadata=_help("fractions of units removed, increasing, from 0 to 1"))
    removal_seeds: int = field(default=3, metadata=_help("random-unit baselines of the removal curves"))
    examples: int = field(default=2, metadata=_help("example pairs written as videos (0: none)"))

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in INT_BOUNDS:
                lo, hi = INT_BOUNDS[f.name]
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ConfigError(f.name, f"must be a whole number, not {value!r}")
                if not lo <= value <= hi:
                    raise ConfigError(f.name, f"must be {lo} to {hi}, not {value}")
        if not isinstance(self.lam, (int, float)) or isinstance(self.lam, bool) or not math.isfinite(self.lam) \
                or not -1 <= self.lam <= 1:
            raise ConfigError("lam", f"is a threshold on per-unit correlations: it must be between -1 and 1, "
                              f"not {self.lam!r}")
        if not isinstance(self.removal, bool):
            raise ConfigError("removal", f"must be true or false, not {self.removal!r}")
        for name in ("layers", "removal_layers"):
            value = getattr(self, name)
            if value is None:
                continue
            names = _names(value)
            if not names:
                raise ConfigError(name, "names no layer (names are separated by spaces or commas)")
            object.__setattr__(self, name, names)
        fr = self.removal_fractions
        try:
            fr = tuple(float(f) for f in ([fr] if isinstance(fr, (int, float)) else fr))
        except (TypeError, ValueError):
            raise ConfigError("removal_fractions", f"must be numbers, not {fr!r}") from None
        if not fr or any(not (math.isfinite(f) and 0 <= f <= 1) for f in fr) or list(fr) != sorted(fr):
            raise ConfigError("removal_fractions", f"must be increasing values between 0 and 1, not {list(fr)}")
        object.__setattr__(self, "removal_fractions", fr)
        if self.styles is not None:
            parts = _names(self.styles)
            if not (len(parts) == 1 and Path(parts[0]).is_dir()):
                unknown = [p for p in parts if p not in STYLES]
                if unknown:
                    raise ConfigError("styles", f"names an unknown style {unknown[0]!r}; use some of "
                                      f"{', '.join(STYLES)} or a folder of pre-stylized copies")
                if len(parts) < 2:
                    raise ConfigError("styles", "must name at least two styles: dynamic pairs need two")
            object.__setattr__(self, "styles", parts)

    @property
    def styles_folder(self) -> str | None:
        """The folder of the user's pre-stylized copies, when ``styles`` names one."""
        if self.styles is not None and len(self.styles) == 1 and Path(self.styles[0]).is_dir():
            return self.styles[0]
        return None

    @property
    def style_names(self) -> list[str]:
        """The shipped styles used (empty with a folder of the user's own copies)."""
        if self.styles_folder:
            return []
        return list(self.styles) if self.styles else list(STYLES)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values (field names)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    def manifest(self, styles: list[str], layers: dict[str, list[str]], checkpoints: list[str]) -> dict[str, Any]:
        """The ``config`` of a run's manifest (its keys are what pages and old runs know): ``styles`` the
        styles used, ``layers`` per model spec, ``checkpoints`` of the training dynamics."""
        return {"pairs": self.pairs, "lambda": self.lam, "styles": styles, "styles_folder": self.styles_folder,
                "layers": layers, "batch_size": self.batch_size, "seed": self.seed, "removal": self.removal,
                "removal_layers": list(self.removal_layers) if self.removal_layers else None,
                "removal_fractions": list(self.removal_fractions), "removal_seeds": self.removal_seeds,
                "checkpoints": checkpoints, "examples": self.examples, "style_version": STYLE_VERSION}


def _names(value: Any) -> tuple[str, ...]:
    """A tuple of names from a string or sequence of strings, each possibly comma-separated."""
    items = [value] if isinstance(value, str) else list(value)
    return tuple(v for item in items for v in str(item).split(",") if v)
