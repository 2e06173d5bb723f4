"""PhotoReader: EXIF orientation, channel-first layout, modes, pixel size, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_io import IO_DATA
from monai.transforms import EnsureChannelFirst, LoadImage
from PIL import Image

from medfound.errors import ConfigError, ImageReadError
from medfound.io import PhotoReader

PHOTO = IO_DATA / "he_histology.jpg"


def _read(path, **kw):
    r = PhotoReader(**kw)
    return r.get_data(r.read(path))


@pytest.fixture(scope="module")
def pixels():
    with Image.open(PHOTO) as im:
        return np.asarray(im.convert("RGB"))  # (H, W, 3) as stored


def test_matches_monai_pilreader_layout(pixels):
    arr, meta = _read(PHOTO)
    assert arr.shape == (3, 500, 300) and arr.dtype == np.uint8  # (C, X, Y)
    np.testing.assert_array_equal(arr, pixels.transpose(2, 1, 0))
    monai = EnsureChannelFirst()(LoadImage(reader="PILReader", image_only=True)(str(PHOTO)))
    np.testing.assert_array_equal(arr, monai.numpy().astype(np.uint8))
    assert meta["exif_orientation"] == 1 and meta["original_channel_dim"] == 0


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [
        (2, lambda a: a[:, ::-1]),  # mirrored horizontally
        (3, lambda a: np.rot90(a, 2)),  # rotated 180
        (6, lambda a: np.rot90(a, -1)),  # display needs a 90 degree clockwise turn
        (8, lambda a: np.rot90(a, 1)),  # display needs a 90 degree anticlockwise turn
    ],
)
def test_exif_orientation_applied(tmp_path, pixels, orientation, upright):
    path = tmp_path / f"o{orientation}.png"  # PNG keeps the pixels exact; Pillow writes the eXIf chunk
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif)
    arr, meta = _read(path)
    expected = upright(pixels)
    np.testing.assert_array_equal(arr, np.ascontiguousarray(expected).transpose(2, 1, 0))
    assert meta["exif_orientation"] == orientation
    raw, _ = _read(path, exif_orientation=False)
    np.testing.assert_array_equal(raw, pixels.transpose(2, 1, 0))


def test_modes_and_depth(tmp_path, pixels):
    grey16 = (pixels[..., 1].astype(np.uint16) * 257)
    p16 = tmp_path / "g16.png"
    Image.fromarray(grey16).save(p16)
    arr, meta = _read(p16, mode=None)
    assert arr.shape == (500, 300) and arr.max() > 255 and np.isnan(meta["original_channel_dim"])
    np.testing.assert_array_equal(arr, grey16.T)
    rgb, _ = _read(p16)  # RGB of 16-bit grey keeps the values (Pillow's conversion would clip)
    np.testing.assert_array_equal(rgb, np.repeat(grey16.T[None], 3, axis=0))
    rgba = tmp_path / "a.png"
    Image.fromarray(np.dstack([pixels, np.full(pixels.shape[:2], 7, np.uint8)])).save(rgba)
    arr, meta = _read(rgba)
    np.testing.assert_array_equal(arr, pixels.transpose(2, 1, 0))
    assert meta["mode"] == "RGBA"
    grey, _ = _read(PHOTO, mode="L")
    assert grey.shape == (500, 300)
    with pytest.raises(ConfigError, match="mode must be one of"):
        PhotoReader(mode="CMYK")


def test_pixel_size_in_affine():
    _, meta = _read(PHOTO, pixel_size=(0.01, 0.012))
    np.testing.assert_allclose(meta["affine"], np.diag([0.01, 0.012, 1.0]))
    assert meta["pixel_size_source"] == "user"
    img = LoadImage(reader="PhotoReader", pixel_size=0.02, image_only=True)(str(PHOTO))
    np.testing.assert_allclose(img.pixdim.numpy(), [0.02, 0.02])


def test_bad_photos_named(tmp_path):
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(PHOTO.read_bytes()[:3000])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: cannot decode"):
        _read(cut)
    text = tmp_path / "text.png"
    text.write_text("not an image")
    with pytest.raises(ImageReadError, match=r"text\.png: not an image"):
        _read(text)
