"""Checkpoint stores: where an analysis keeps finished parts of its work so a rerun can skip them.

Every core entry point (``core.static_dynamic.analyse``, ``core.vtcd.analyse``, ``core.vcc.analyse``)
takes an optional ``store``. Before computing a unit of work it asks ``store.has(name)``; after, it
saves the unit with ``save_json``/``save_arrays``. Names are plain relative file names
(``parts/layer1.npz``, ``cris/heads.json``): ``.json`` names hold JSON, ``.npz`` names hold arrays.

- :class:`MemoryStore`: a dict, for notebooks that want resume within one kernel;
- :class:`NullStore` (the default): keeps nothing, so every call recomputes;
- :class:`core.artifacts.RunWriter` implements the same methods over a partial run folder, which
  is how the precompute jobs resume after a kill.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class CheckpointStore(Protocol):
    """The five methods an entry point uses to skip finished work."""

    def has(self, name: str) -> bool:
        """True when part ``name`` was saved before."""

    def load_json(self, name: str) -> Any:
        """The JSON value saved as ``name``."""

    def save_json(self, name: str, obj: Any) -> None:
        """Save a JSON-serialisable value (numpy scalars and arrays allowed) as ``name``."""

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays saved as ``name``."""

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        """Save named arrays (no object dtype) as ``name``."""


def _plain(obj: Any) -> Any:
    """``obj`` as plain JSON values, as a file round trip would give it."""
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    return json.loads(json.dumps(obj, default=default))


class MemoryStore:
    """Parts kept in memory: resume within one Python session (a notebook kernel)."""

    def __init__(self) -> None:
        self.json: dict[str, Any] = {}
        self.arrays: dict[str, dict[str, np.ndarray]] = {}

    def has(self, name: str) -> bool:
        return name in self.json or name in self.arrays

    def load_json(self, name: str) -> Any:
        return copy.deepcopy(self.json[name])

    def save_json(self, name: str, obj: Any) -> None:
        self.json[name] = _plain(obj)

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.arrays[name].items()}

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        for k, a in arrays.items():
            if np.asarray(a).dtype == object:
                raise TypeError(f"array {k!r} has dtype object; stores never hold pickles")
        self.arrays[name] = {k: np.array(v, copy=True) for k, v in arrays.items()}


class NullStore:
    """Keeps nothing: every part is computed (the default of every entry point)."""

    def has(self, name: str) -> bool:
        return False

    def load_json(self, name: str) -> Any:
        raise KeyError(name)

    def save_json(self, name: str, obj: Any) -> None:
        return None

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        raise KeyError(name)

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        return None
