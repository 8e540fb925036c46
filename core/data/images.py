"""Image sources: files and folders, the shipped photos, and preprocessing to model input.

Images are ``(H, W, 3)`` uint8 RGB arrays everywhere in the project; grayscale, palette,
16-bit and RGBA inputs are converted on load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.errors import DataError
from core.models.bundle import Preprocessing

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")


@dataclass
class ImageItem:
    """One image with where it came from and, when known, its class label (a folder name)."""

    id: str
    image: np.ndarray
    source: str
    label: str | None = None


def to_rgb_uint8(array: np.ndarray, name: str = "image") -> np.ndarray:
    """Any 2-D/3-D image array as ``(H, W, 3)`` uint8 (grey is repeated, alpha dropped)."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise DataError(f"{name}: expected an image, got an array of shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    a = a[:, :, :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if np.issubdtype(a.dtype, np.floating):
        a = np.clip(a, 0.0, 1.0) * 255.0 if a.max() <= 1.0 else np.clip(a, 0, 255)
    elif a.dtype == np.uint16:
        a = a / 257.0
    return np.ascontiguousarray(a.round().astype(np.uint8))


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8; a clear :class:`DataError` if it cannot.

    An image over PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89
    megapixels) is refused before it is decoded, also in the range where PIL itself only warns.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"image not found: {p}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    return to_rgb_uint8(np.asarray(im, dtype=np.float64) / max(np.asarray(im).max(), 1), str(p))
                return np.asarray(im.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"cannot read image {p}: it is a possible decompression bomb ({e}); to read it, raise "
                        "PIL.Image.MAX_IMAGE_PIXELS or make the image smaller") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {p}: {e}") from None


def image_folder(folder: str | Path, skip_bad: bool = True) -> list[ImageItem]:
    """All images under ``folder``; a sub-folder's name becomes its images' label.

    Unreadable files are skipped with a warning (``skip_bad``) or raise; a folder with no
    readable image is an error.
    """
    import warnings

    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    items = []
    for p in files:
        try:
            img = load_image(p)
        except DataError as e:
            if not skip_bad:
                raise
            warnings.warn(f"skipping {e}", stacklevel=2)
            continue
        rel = p.relative_to(root)
        label = rel.parts[0] if len(rel.parts) > 1 else None
        items.append(ImageItem(id=rel.with_suffix("").as_posix().replace("/", "__"), image=img,
                               source=str(p), label=label))
    if not items:
        raise DataError(f"no readable image in {root} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return items


# Shipped photos: (id, loader, ImageNet class index when one fits the photo).
_SKIMAGE_PHOTOS = {
    "chelsea": 285,  # Egyptian cat
    "coffee": 967,  # espresso
    # A rocket on its launch pad. ImageNet has no "rocket"; its "missile" class (657) holds such
    # photos. EfficientNet-Lite0 predicts "drilling platform": the project's real mistake.
    "rocket": 657,
    "stereo_motorcycle": 665,  # moped
    "astronaut": None,
    "camera": None,  # greyscale: shows that grey photos are taken as RGB
    "clock": 409,  # analog clock
}
_SKLEARN_PHOTOS = {"china": None, "flower": None}
_OPENCV_PHOTOS = {"orange.jpg": 950, "apple.jpg": 948, "butterfly.jpg": None, "baboon.jpg": 372,
                  "squirrel_cls.jpg": None, "messi5.jpg": None, "fruits.jpg": None}


def demo_images(names: Sequence[str] | None = None, opencv: bool = False) -> list[ImageItem]:
    """The real photos that ship with scikit-image and scikit-learn, or (``opencv``) with
    Debian's opencv-doc package.

    ``label`` is the ImageNet class index (as text) where the photo shows one, else ``None``.
    """
    import skimage.data
    from sklearn.datasets import load_sample_images

    items: list[ImageItem] = []
    if opencv:
        if not OPENCV_SAMPLES.is_dir():
            raise DataError(f"opencv-doc photos not found in {OPENCV_SAMPLES}; "
                            "install them with `apt-get install opencv-doc`")
        for fname, label in _OPENCV_PHOTOS.items():
            p = OPENCV_SAMPLES / fname
            if p.is_file():
                items.append(ImageItem(Path(fname).stem, load_image(p), f"opencv-doc {fname}",
                                       None if label is None else str(label)))
        return _select(items, names)
    for name, label in _SKIMAGE_PHOTOS.items():
        img = getattr(skimage.data, name)()
        if isinstance(img, tuple):  # stereo_motorcycle returns (left, right, disparity)
            img = img[0]
        items.append(ImageItem(name, to_rgb_uint8(img, name), f"skimage.data.{name}",
                               None if label is None else str(label)))
    sample = load_sample_images()
    for fname, img in zip(sample.filenames, sample.images, strict=True):
        stem = Path(fname).stem
        items.append(ImageItem(stem, to_rgb_uint8(img, stem), f"sklearn sample {Path(fname).name}",
                               None if _SKLEARN_PHOTOS.get(stem) is None else str(_SKLEARN_PHOTOS[stem])))
    return _select(items, names)


def _select(items: list[ImageItem], names: Sequence[str] | None) -> list[ImageItem]:
    if names:
        wanted = set(names)
        unknown = wanted - {i.id for i in items}
        if unknown:
            raise DataError(f"unknown demo image(s) {', '.join(sorted(unknown))}; "
                            f"available: {', '.join(i.id for i in items)}")
        items = [i for i in items if i.id in wanted]
    return items


def resize(image: np.ndarray, size: tuple[int, int], interpolation: str = "bilinear") -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 to ``size = (h, w)`` with PIL."""
    from PIL import Image

    method = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
              "lanczos": Image.LANCZOS}.get(interpolation, Image.BILINEAR)
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), method))


def preprocess_images(images: Sequence[np.ndarray], prep: Preprocessing) -> torch.Tensor:
    """Stack RGB uint8 images into the model input ``(B, 3, H, W)``: resize, scale, normalise."""
    if prep.input != "image":
        raise DataError(f"this model takes {prep.input} input, not images")
    arr = np.stack([resize(to_rgb_uint8(im), prep.size, prep.interpolation) for im in images])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    return (x - mean) / std


def thumbnail(image: np.ndarray, max_side: int = 256) -> np.ndarray:
    """A copy of ``image`` whose longer side is at most ``max_side``."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return image
    return resize(image, (max(1, round(h * scale)), max(1, round(w * scale))), "lanczos")
