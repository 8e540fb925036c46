"""Image tiles with captions as one element of the page (light mode), instead of an image and a caption element
per tile: a browser then renders one element where it rendered 2-3 per tile (each costs tens of ms in a new tab
on a small machine: benchmarks/results.md). Interactive mode keeps Streamlit's own images (with their
full-screen button) and buttons.

A tile is clickable when the gallery has ``on_pick``: the click reports the tile's ``pick`` value. Without it, a
click enlarges the tile's image over the page (a second click, or Escape, closes it).
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import streamlit as st

from core.viz import md_text
from core.viz_vcc import data_uri
from core.viz_vtcd import image_uri
from pages.components.svg_chart import light, svg_chart


@dataclass(frozen=True)
class Tile:
    """One tile: ``image`` as an image file's bytes (of the type of ``name``'s suffix) or a uint8 ``(H, W, 3)``
    array (None: ``problem`` is shown instead), ``caption`` as plain text (escaped here; lines split at
    newlines), ``pick`` the value a click reports, ``selected``: outlined as the one shown elsewhere."""

    image: bytes | np.ndarray | None
    caption: str = ""
    pick: str | None = None
    problem: str | None = None
    name: str = "image.png"
    selected: bool = False


SMALL_PNG = 16_000
"""PNG bytes up to this size are sent as they are."""

_STYLE = """<style>
.cl-gallery { display: grid; gap: 0.75rem; margin-bottom: 1rem; }
.cl-gallery figure { margin: 0; min-width: 0; }
.cl-gallery img { display: block; width: 100%; height: auto; border-radius: 0.25rem; image-rendering: auto; }
.cl-gallery figcaption { font-size: 0.8rem; line-height: 1.3; opacity: 0.75; margin-top: 0.25rem;
  overflow-wrap: anywhere; }
.cl-gallery .cl-problem { font-size: 0.8rem; padding: 0.5rem; border-radius: 0.25rem;
  background: rgba(255, 189, 69, 0.2); }
.cl-gallery [data-pick]:hover img, .cl-gallery [data-zoom]:hover img { filter: brightness(0.9); }
.cl-gallery [data-zoom] { cursor: zoom-in; }
.cl-gallery figure.cl-selected img { outline: 3px solid #ff4b4b; outline-offset: 2px; }
.cl-gallery figure.cl-zoomed { position: fixed; inset: 0; z-index: 100000; cursor: zoom-out; display: flex;
  flex-direction: column; align-items: center; justify-content: center; background: rgba(0, 0, 0, 0.85); }
.cl-gallery figure.cl-zoomed img { width: auto; height: auto; max-width: 92vw; max-height: 86vh;
  min-width: min(60vw, 60vh); object-fit: contain; image-rendering: pixelated; }
.cl-gallery figure.cl-zoomed figcaption { color: #fff; opacity: 1; font-size: 1rem; }
</style>"""


@st.cache_data(max_entries=512, show_spinner=False)
def _src(image: bytes | np.ndarray, name: str) -> str:
    """The picture as a ``data:`` URI (made once per picture: a rerun re-encodes nothing). Large PNGs (photo
    thumbnails) are sent as WebP: the whole gallery travels in one message (the 12 thumbnails of a Predictions
    page of the demo: 351 KB as PNG, 35 KB as WebP)."""
    if isinstance(image, bytes | bytearray):
        if not name.lower().endswith(".png") or len(image) <= SMALL_PNG:
            return data_uri(bytes(image), name)
        from PIL import Image

        with Image.open(io.BytesIO(bytes(image))) as im:
            image = np.asarray(im.convert("RGB"))
    small = image.shape[0] * image.shape[1] <= 160 * 160  # small frames stay sharp (PNG); photos compress
    return image_uri(image, "png") if small else image_uri(image, "webp", 88)


def gallery_html(tiles: Sequence[Tile], columns: int, pickable: bool) -> str:
    """The tiles as one escaped HTML grid of ``columns`` columns (``data-pick`` on each tile when ``pickable``,
    else ``data-zoom``)."""
    cells = []
    for t in tiles:
        caption = "<br>".join(html.escape(line) for line in str(t.caption).split("\n")) if t.caption else ""
        if t.image is None:
            body = f"<div class='cl-problem'>{html.escape(t.problem or 'no image')}</div>"
            attr = ""
        else:
            alt = html.escape(str(t.caption).split("\n")[0], quote=True)
            body = f"<img src='{_src(t.image, t.name)}' alt='{alt}'>"
            attr = (f" data-pick='{html.escape(str(t.pick), quote=True)}' title='Click to inspect'"
                    if pickable and t.pick is not None else " data-zoom='1' title='Click to enlarge'")
        if t.selected:
            attr += " class='cl-selected'"
        cells.append(f"<figure{attr}>{body}<figcaption>{caption}</figcaption></figure>")
    cols = max(1, int(columns))
    return (f"{_STYLE}<div class='cl-gallery' style='grid-template-columns: repeat({cols}, minmax(0, 1fr))'>"
            + "".join(cells) + "</div>")


def gallery(tiles: Sequence[Tile], *, key: str, columns: int = 4,
            on_pick: Callable[[str], None] | None = None) -> None:
    """``tiles`` in a grid of ``columns``. Light mode: one element (a click on a tile calls ``on_pick(pick)``, or
    enlarges it when there is no ``on_pick``). Interactive mode: ``st.image`` and a caption per tile, and an
    "Inspect" button per tile that calls ``on_pick`` (keys ``{key}-{pick}``)."""
    if light():
        svg_chart(gallery_html(tiles, columns, on_pick is not None), key=key, on_pick=on_pick)
        return
    for start in range(0, len(tiles), columns):
        for col, t in zip(st.columns(columns), tiles[start:start + columns], strict=False):
            with col:
                _native(t, key, on_pick)


def _native(t: Tile, key: str, on_pick: Callable[[str], None] | None) -> None:
    if t.image is None:
        st.warning(t.problem or "no image")
    else:
        st.image(t.image, width="stretch")
    if t.caption:
        st.caption("  \n".join(md_text(line) for line in str(t.caption).split("\n")))
    if on_pick is not None and t.pick is not None:
        st.button("Inspect", key=f"{key}-{t.pick}", on_click=on_pick, args=(t.pick,), type="tertiary",
                  icon=":material/search:")
