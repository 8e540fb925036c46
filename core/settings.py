"""Settings dataclasses read back from a run's manifest."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_known_fields(cls: type[T], data: dict[str, Any], what: str) -> T:
    """``cls(**data)`` for a dataclass; a key that is not one of its fields is an error naming it."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return cls(**data)
