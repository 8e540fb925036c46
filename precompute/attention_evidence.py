"""Does a zoo transformer's attention do the work? Per block, on held-out synthetic clips of its task:
the normalised attention entropy and the change in P(true class) when the block's attention branch
is removed (:func:`core.vtcd.diagnostics.attention_diagnostics`).

    python -m precompute.attention_evidence --model vit-motion tubelet_vit-motion --videos 24

prints a markdown table (the one in ``assets/models/README.md``) and, with ``--json FILE``, writes the
figures. Clips are the first ``--videos`` of the ``val`` split (balanced over classes), at the
model's frame count and size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.data import synthetic
from core.errors import UserError
from core.models import resolve_model
from core.vtcd.diagnostics import attention_diagnostics
from core.vtcd.features import feature_sites, prepare_videos


def measure(spec: str, n_videos: int = 24, rho: float = 0.5, n_draws: int = 4, seed: int = 0,
            batch_size: int = 8) -> dict[str, Any]:
    """Attention evidence of the transformer checkpoint ``spec`` on ``n_videos`` held-out clips of its
    task: ``{"model", "task", "n_videos", "accuracy", "baseline", "blocks": [...]}``, each block a dict of
    :class:`core.vtcd.diagnostics.BlockDiagnostics` (``branch_delta``: signed mean change in P(true
    class) with the attention branch zeroed; ``branch_abs``: mean absolute change)."""
    bundle = resolve_model(spec)
    task = bundle.extra.get("task")  # zoo checkpoints record their task
    if task not in synthetic.TASKS:
        raise UserError(f"{spec}: not a zoo checkpoint of a synthetic task (task {task!r}); "
                        "give a model trained by `precompute train`")
    if not bundle.stages or bundle.token_grid is None:
        raise UserError(f"{spec}: not a transformer (no token grid); attention evidence needs attention blocks")
    pre = bundle.preprocessing
    config = synthetic.SyntheticConfig(task=task, frames=int(pre.frames or 16), size=int(pre.size[0]))
    data = synthetic.make_split(config, n_videos, "val")
    bundle.model.eval()
    x = prepare_videos(bundle, list(data["frames"]))
    with torch.no_grad():
        logits = torch.cat([bundle(x[i:i + batch_size]) for i in range(0, n_videos, batch_size)])
    accuracy = float((logits.argmax(-1).cpu().numpy() == data["labels"]).mean())
    keys = feature_sites(bundle, bundle.stages, "key")
    queries = feature_sites(bundle, bundle.stages, "query")
    diag = attention_diagnostics(bundle, x, keys, queries, data["labels"].tolist(), rho, n_draws, seed, batch_size)
    return {"model": spec, "task": task, "n_videos": n_videos, "accuracy": accuracy, **diag.to_dict()}


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per model and block."""
    rows = ["| model | block | attention entropy (1 = uniform) | change in P(true class), attention branch "
            "removed (mean, mean abs) | clips |", "|---|---|---|---|---|"]
    for r in results:
        for b in r["blocks"]:
            ent = "n/a" if b["entropy"] is None else f"{b['entropy']:.2f}"
            rows.append(f"| `{r['model']}` | `{b['layer']}` | {ent} | {b['branch_delta']:+.3f}, {b['branch_abs']:.3f} "
                        f"| {r['n_videos']} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", required=True, help="transformer checkpoints (specs)")
    p.add_argument("--videos", type=int, default=24, help="held-out clips per model")
    p.add_argument("--draws", type=int, default=4, help="random key draws of the key-removal diagnostics")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    if args.videos < 1 or args.draws < 1:
        p.error("--videos and --draws must be at least 1")
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    try:
        results = [measure(m, args.videos, n_draws=args.draws) for m in args.model]
    except UserError as e:  # bad input: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
