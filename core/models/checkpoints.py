"""Optimizer state in safetensors + JSON, so training can resume without pickles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

OPTIMIZER_WEIGHTS = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"


def save_optimizer(optimizer: torch.optim.Optimizer, folder: Path, extra: dict[str, Any] | None = None) -> None:
    """Write the optimizer's tensors (``state.<param>.<name>``) and its param groups as JSON."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            key = f"state.{idx}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value.detach().cpu().contiguous()
            else:
                scalars[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / OPTIMIZER_WEIGHTS))
    (folder / OPTIMIZER_JSON).write_text(json.dumps(
        {"param_groups": state["param_groups"], "scalars": scalars, "extra": extra or {}}, indent=1))


def load_optimizer(optimizer: torch.optim.Optimizer, folder: Path) -> dict[str, Any]:
    """Restore what :func:`save_optimizer` wrote; returns its ``extra`` dict."""
    from safetensors.torch import load_file

    meta = json.loads((folder / OPTIMIZER_JSON).read_text())
    tensors = load_file(str(folder / OPTIMIZER_WEIGHTS))
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta["extra"]
