"""Class labels: a folder name or index text as a class index of a model."""

from __future__ import annotations


def _norm(text: str) -> str:
    return text.strip().lower().replace("_", " ")


def label_index(label: str | None, class_names: list[str] | None) -> int | None:
    """A folder name or index text as a class index of the model, if it names one."""
    if label is None:
        return None
    if label.isdigit():
        return int(label)
    if class_names:
        wanted = _norm(label)
        for i, name in enumerate(class_names):
            if wanted == _norm(name) or wanted in [_norm(s) for s in name.split(",")]:
                return i
    return None
