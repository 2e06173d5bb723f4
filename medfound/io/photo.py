"""Colour photographs (fundus, endoscopy, dermoscopy): :class:`PhotoReader` (Pillow).

Unlike MONAI's ``PILReader`` it applies the EXIF orientation (phones and some fundus cameras
store rotated pixels plus an orientation tag), returns channel-first ``(C, X, Y)`` (grey: ``(X, Y)``,
as MONAI's readers) and can put a physical pixel size in the affine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from monai.data import ImageReader
from PIL import Image, ImageOps, UnidentifiedImageError

from medfound.errors import ConfigError, ImageReadError, UnsupportedImageError
from medfound.io._common import (
    PathLike,
    as_names,
    base_meta,
    has_suffix,
    squeeze_single_channel,
)
from medfound.io.limits import check_image_file
from medfound.utils import check_bool, check_choice

__all__ = ["PhotoReader", "PHOTO_SUFFIXES"]

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".jpe")
_EXIF_ORIENTATION = 0x0112
_MODES = ("RGB", "L", None)


@dataclass
class _Photo:
    path: str
    image: Image.Image


class PhotoReader(ImageReader):
    """Read a PNG/JPEG/TIFF/BMP photograph as channel-first ``(C, X, Y)`` with EXIF orientation applied.

    Colour images are channel-first with ``original_channel_dim`` 0; a grey image (``mode="L"`` or
    a grey file with ``mode=None``) has no channel axis (``original_channel_dim`` "no_channel"), as
    MONAI's readers return grey images; ``ensure_channel_first=True`` gives ``(1, X, Y)``.

    Parameters
    ----------
    mode
        ``"RGB"`` (default; grey, palette and RGBA images are converted, alpha dropped), ``"L"``
        (grey, one channel) or ``None`` (keep the stored mode; 16-bit grey stays 16-bit).
    exif_orientation
        Apply the EXIF orientation tag (default True), so the array is upright as viewers show it.
    pixel_size
        Optional physical pixel size ``(x, y)`` in mm (or one number for both) for the affine;
        default 1.0 (pixel units).

    Metadata: MONAI's keys (``affine``, ``spatial_shape``, ``original_channel_dim``, ...) plus
    ``exif_orientation`` (the stored tag value, 1 when absent), ``mode`` (stored Pillow mode)
    and ``pixel_size_source`` (``"user"`` or ``"default"``).

    Example
    -------
    >>> from monai.transforms import LoadImage
    >>> import medfound.io
    >>> img = LoadImage(reader="PhotoReader")("fundus.jpg")  # doctest: +SKIP
    >>> img.shape  # (C, X, Y)  # doctest: +SKIP
    torch.Size([3, 1411, 1411])
    """

    def __init__(
        self, mode: str | None = "RGB", exif_orientation: bool = True, pixel_size: float | Sequence[float] | None = None
    ) -> None:
        super().__init__()
        self.mode = check_choice(mode, _MODES, "mode")
        self.exif_orientation = check_bool(exif_orientation, "exif_orientation")
        if pixel_size is None:
            self.pixel_size = None
        else:
            ps = [float(pixel_size)] * 2 if np.isscalar(pixel_size) else [float(v) for v in pixel_size]
            if len(ps) != 2 or min(ps) <= 0:
                raise ConfigError(f"pixel_size must be one positive number or (x, y), got {pixel_size}")
            self.pixel_size = ps

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """True for ``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.webp`` (TIFF goes to MicroscopyReader)."""
        return has_suffix(filename, PHOTO_SUFFIXES)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs) -> _Photo | list[_Photo]:
        """Open the image file(s) (header only; :meth:`get_data` decodes and closes them).

        A list of files is stacked as channels. A file Pillow cannot identify fails here, so that
        ``LoadImage`` moves on to its next reader.
        """
        names = as_names(data)
        if not names:
            raise ImageReadError("PhotoReader: no file given")
        out = []
        for n in names:
            if not os.path.isfile(n):
                raise ImageReadError(f"{n}: no such file")
            try:
                out.append(_Photo(n, Image.open(n)))
            except UnidentifiedImageError as err:
                raise ImageReadError(f"{n}: not an image Pillow can identify") from err
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
                raise ImageReadError(f"{n}: cannot open the image ({type(err).__name__}: {err})") from err
        return out if len(out) > 1 else out[0]

    def get_data(self, img: _Photo | Sequence[_Photo]) -> tuple[np.ndarray, dict]:
        """Array ``(C, X, Y)`` or ``(X, Y)`` for grey (uint8, or the stored depth with ``mode=None``) and metadata."""
        items = [img] if isinstance(img, _Photo) else list(img)
        try:
            for i in items:  # header only, before decoding (here, not in read(): LoadImage would fall back
                check_image_file(i.path)  # to MONAI's readers, which decode whatever the header says)
            results = [self._read_one(i.path, i.image) for i in items]
        finally:
            for i in items:
                i.image.close()
        shape = results[0][0].shape[1:]
        for (arr, _), item in zip(results[1:], items[1:]):
            if arr.shape[1:] != shape:
                raise ImageReadError(f"{item.path}: size {arr.shape[1:]} differs from {items[0].path} ({shape})")
        arr = results[0][0] if len(results) == 1 else np.concatenate([a for a, _ in results], axis=0)
        return squeeze_single_channel(arr, dict(results[0][1]))

    def _read_one(self, path: str, image: Image.Image) -> tuple[np.ndarray, dict]:
        try:
            with image as im:
                im.load()
                orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
                stored_mode = im.mode
                if self.exif_orientation and orientation != 1:
                    im = ImageOps.exif_transpose(im)
                arr = self._to_array(im, path)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise ImageReadError(f"{path}: cannot decode the image ({type(err).__name__}: {err})") from err
        # (H, W, C) -> MONAI's (C, X, Y)
        arr = np.ascontiguousarray(arr.transpose(2, 1, 0))
        sx, sy = self.pixel_size if self.pixel_size is not None else (1.0, 1.0)
        meta = base_meta(np.diag([sx, sy, 1.0]), arr.shape[1:], 0)
        meta.update(
            {
                "exif_orientation": orientation,
                "mode": stored_mode,
                "pixel_size_source": "user" if self.pixel_size is not None else "default",
            }
        )
        return arr, meta

    def _to_array(self, im: Image.Image, path: str) -> np.ndarray:
        high_depth = im.mode in ("I;16", "I;16B", "I;16L", "I", "F")
        if self.mode is None or (high_depth and self.mode == "L"):
            arr = np.asarray(im)
        elif high_depth and self.mode == "RGB":
            arr = np.asarray(im)  # keep the depth: Pillow's RGB conversion clips 16-bit grey
            arr = np.repeat(arr[..., None], 3, axis=-1)
        else:
            arr = np.asarray(im.convert(self.mode))
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3:
            raise UnsupportedImageError(f"{path}: Pillow mode {im.mode} gives shape {arr.shape}")
        return arr
