"""Stores for work done in other processes: a worker writes the parts of a run it was given.

The precompute jobs fan their units of work out (``--executor ray``, :mod:`precompute.executor`): each
worker computes one unit (a VCC class, a static/dynamic model, a VTCD layer or clip) by calling the same
core entry point the serial job calls, with a store over the run's partial folder on the shared artifact
root. The driver then runs the serial job, which finds every part saved and reads it back instead of
computing it: the assembled run is the serial run, file for file.

- :class:`FolderStore`: the partial folder of a run another process (the driver) holds open. It writes
  exactly the bytes the driver's :class:`core.artifacts.RunWriter` would (it shares its writers) but
  never takes the run's lock, never writes the manifest, never finishes.
- :class:`FocusStore`: computes only some parts of an entry point that loops over many (one VTCD layer
  or clip): parts other workers compute read as present (placeholders that the entry point only keeps
  in its loop), and once every focused part is saved it raises :class:`Focused` to stop the call.

Pure: no Ray here; workers import this module.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import RunWriter


class FolderStore(RunWriter):
    """The checkpoint-store (and file-writing) side of a :class:`RunWriter` over an existing partial
    run folder ``folder``, for a worker process: no lock, no manifest, no finish."""

    def __init__(self, folder: str | Path) -> None:  # not RunWriter's: the driver owns the run
        self.dir = Path(folder)
        self.kind_dir = self.dir.parent
        self.kind = self.kind_dir.name
        self.overwrite = False
        self.resumed = True
        self._finished = False
        self._locks = []
        self.manifest = {}
        if not self.dir.is_dir():
            raise FileNotFoundError(self.dir)

    def warn(self, code: str, message: str, **_: Any) -> dict[str, Any]:
        raise TypeError("a worker's store records no warnings; the driver records them from the result")

    def finish(self, summary: dict[str, Any] | None = None) -> Path:
        raise TypeError("a worker's store never finishes a run; the driver does")

    def fail(self, error: BaseException) -> None:
        return None

    def _write_manifest(self) -> None:
        raise TypeError("a worker's store never writes the manifest")


class Focused(Exception):  # a signal, not an error
    """Raised by :class:`FocusStore` once every part it was asked for is saved."""


class FocusStore:
    """``base`` (a checkpoint store) restricted to computing the parts ``focus``.

    A name matching ``others`` (a regular expression, or a predicate on names: parts of the same loop that
    other workers compute) that ``base`` does not hold yet reads as present, with placeholder contents
    (zero-dimensional zeros); the entry point's loop keeps them but never uses them, because this store
    raises :class:`Focused` when the last focused part is saved, which is before the loop ends.
    """

    def __init__(self, base: Any, focus: Iterable[str], others: str | Callable[[str], bool]) -> None:
        self.base = base
        self.focus = set(focus)
        self.left = {n for n in self.focus if not base.has(n)}
        self.others = (lambda name, rx=re.compile(others): bool(rx.fullmatch(name))) if isinstance(others, str) \
            else others

    def _placeholder(self, name: str) -> bool:
        return name not in self.focus and self.others(name) and not self.base.has(name)

    def has(self, name: str) -> bool:
        return self._placeholder(name) or self.base.has(name)

    def load_json(self, name: str) -> Any:
        return {} if self._placeholder(name) else self.base.load_json(name)

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        if self._placeholder(name):
            return defaultdict(lambda: np.zeros(()))
        return self.base.load_arrays(name)

    def save_json(self, name: str, obj: Any) -> None:
        self.base.save_json(name, obj)
        self._saved(name)

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        self.base.save_arrays(name, **arrays)
        self._saved(name)

    def _saved(self, name: str) -> None:
        self.left.discard(name)
        if name in self.focus and not self.left:
            raise Focused(name)
