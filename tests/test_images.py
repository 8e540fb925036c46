from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data.images import demo_images, image_folder, load_image, preprocess_images, to_rgb_uint8
from core.errors import DataError
from core.models import Preprocessing


def test_grayscale_and_rgba_become_rgb(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    Image.fromarray(rgba).save(tmp_path / "a.png")
    g = load_image(tmp_path / "g.png")
    a = load_image(tmp_path / "a.png")
    assert g.shape == (8, 8, 3) and (g[..., 0] == grey).all() and (g[..., 2] == grey).all()
    assert a.shape == (8, 8, 3) and (a[..., 0] == 200).all()
    assert to_rgb_uint8(np.ones((4, 4))).max() == 255


def test_corrupt_and_missing_images_are_named(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        load_image(bad)
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "nope.png")


def test_folder_labels_and_skips(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / cls / "x.png")
    (tmp_path / "dog" / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.warns(UserWarning, match="bad.png"):
        items = image_folder(tmp_path)
    assert sorted((i.id, i.label) for i in items) == [("cat__x", "cat"), ("dog__x", "dog")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no readable image"):
        image_folder(empty)


def test_preprocess_shape_and_normalisation():
    img = np.full((30, 40, 3), 255, np.uint8)
    x = preprocess_images([img, img], Preprocessing("image", (16, 16), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
    assert x.shape == (2, 3, 16, 16)
    assert np.allclose(x.numpy(), 1.0)


def test_demo_photos_are_real_and_labelled():
    items = {i.id: i for i in demo_images()}
    assert {"chelsea", "coffee", "rocket"} <= set(items)
    assert items["chelsea"].label == "285" and items["chelsea"].image.shape == (300, 451, 3)
    assert items["camera"].image.shape[2] == 3  # a grey photo, taken as RGB
    with pytest.raises(DataError, match="unknown demo image"):
        demo_images(["no_such_photo"])
