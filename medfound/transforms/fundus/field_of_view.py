"""The circular field of view (FOV) of a fundus camera: a mask, and a crop to it.

- :func:`fov_mask`, :class:`FieldOfViewMask`: the FOV as a bool ``(H, W)`` / float ``(1, H, W)`` mask.
- :class:`FieldOfViewCrop`: crop to the FOV (square by default, padded where the FOV is clipped by
  the image border); inverts with ``Invertd``.

Images are channel-first RGB ``(3, H, W)``, uint8 or float in [0, 1]; array and dictionary forms.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, Transform
from monai.utils import TransformBackends

from medfound.errors import ConfigError, InvalidImageError
from medfound.transforms._utils import (
    BoxCrop,
    box_of,
    centred_box,
    check_same_spatial,
    check_spatial_dims,
    dilate2d,
    erode2d,
    new_meta_like,
    odd_size,
    percentiles,
    source_of,
    to_tensor,
)
from medfound.transforms.intensity import to_unit_float
from medfound.utils import check_bool, check_float, check_int

__all__ = [
    "fov_mask",
    "FieldOfViewMask",
    "FieldOfViewMaskd",
    "FieldOfViewMaskD",
    "FieldOfViewMaskDict",
    "FieldOfViewCrop",
    "FieldOfViewCropd",
    "FieldOfViewCropD",
    "FieldOfViewCropDict",
]


def _fill_convex(mask: torch.Tensor) -> torch.Tensor:
    """Fill every row and every column between its first and last True pixel, and keep the intersection.

    For a round or clipped-round field of view this closes dark interior regions (vessels, macula,
    vignetting) without a connected-component pass.
    """
    m = mask.detach().cpu().numpy()
    rows = np.logical_or.accumulate(m, axis=1) & np.logical_or.accumulate(m[:, ::-1], axis=1)[:, ::-1]
    cols = np.logical_or.accumulate(m, axis=0) & np.logical_or.accumulate(m[::-1], axis=0)[::-1]
    return torch.from_numpy(rows & cols).to(mask.device)


def fov_mask(image: NdarrayOrTensor, threshold: float = 0.1, opening: float = 0.02) -> torch.Tensor:
    """Field-of-view mask ``(H, W)`` (bool) of a fundus photograph ``(C, H, W)``.

    Pixels brighter than ``threshold`` times the image's robust maximum (99th percentile of the
    brightest channel, lightly smoothed against JPEG noise) are inside; a morphological opening
    of ``opening`` times the image size removes thin bright marks outside (text, scale bars),
    and row/column filling closes dark regions inside.

    Example
    -------
    >>> import torch
    >>> yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    >>> img = ((yy - 32) ** 2 + (xx - 32) ** 2 < 28 ** 2).float().expand(3, 64, 64) * 0.6
    >>> m = fov_mask(img)
    >>> bool(m[32, 32]), bool(m[0, 0]), int(m.sum()) in range(2400, 2550)
    (True, False, True)
    """
    x = to_unit_float(to_tensor(image))
    if x.ndim != 3:
        raise InvalidImageError(f"fov_mask expects a (C, H, W) image, got shape {tuple(x.shape)}{source_of(image)}")
    h, w = x.shape[1:]
    bright = x.amax(0)
    k = odd_size(min(h, w) / 200)
    if k > 1:
        bright = F.avg_pool2d(bright[None, None], k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
    peak = float(percentiles(bright, (99.0,))[0])
    if peak <= 0:
        raise InvalidImageError(f"fov_mask: the image is black, no field of view{source_of(image)}")
    inside = (bright > threshold * peak).float()
    k_open = odd_size(opening * min(h, w))
    inside = dilate2d(erode2d(inside, k_open), k_open) > 0.5
    if not bool(inside.any()):
        raise InvalidImageError(f"fov_mask: no pixel above the threshold after opening{source_of(image)}")
    return _fill_convex(inside)


class FieldOfViewMask(Transform):
    """The field-of-view mask of a fundus photograph as a ``(1, H, W)`` float 0/1 MetaTensor (see :func:`fov_mask`).

    Example
    -------
    >>> import torch
    >>> img = torch.zeros(3, 32, 32); img[:, 8:24, 8:24] = 0.5
    >>> m = FieldOfViewMask()(img)
    >>> tuple(m.shape), float(m.sum())
    ((1, 32, 32), 256.0)
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, threshold: float = 0.1, opening: float = 0.02) -> None:
        self.threshold = check_float(threshold, "threshold", low=0.0, high=1.0)
        self.opening = check_float(opening, "opening", low=0.0, high=1.0)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        img_t = to_tensor(img)
        mask = fov_mask(img_t, self.threshold, self.opening)
        return new_meta_like(mask[None].to(torch.float32), img_t)


class FieldOfViewMaskd(MapTransform):
    """Dictionary form of :class:`FieldOfViewMask`: writes the mask of ``keys`` (one key) to ``mask_key``.

    Example
    -------
    >>> import torch
    >>> img = torch.zeros(3, 16, 16); img[:, 4:12, 4:12] = 1.0
    >>> float(FieldOfViewMaskd("image")({"image": img})["fov"].sum())
    64.0
    """

    backend = FieldOfViewMask.backend

    def __init__(self, keys: KeysCollection, mask_key: str = "fov", threshold: float = 0.1, opening: float = 0.02,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ConfigError(f"FieldOfViewMaskd takes one image key, got {self.keys}")
        self.mask_key = mask_key
        self.masker = FieldOfViewMask(threshold, opening)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.mask_key] = self.masker(d[key])
        return d


class FieldOfViewCrop(BoxCrop):
    """Crop a fundus photograph to its field of view (square by default, padding where the FOV is clipped).

    Parameters
    ----------
    margin : pixels added around the FOV box.
    square : make the box square around the FOV centre (clipped FOVs are padded back to a disc's box).
    threshold, opening : as :func:`fov_mask`.
    pad_mode : padding outside the image.

    Call with ``mask=`` to crop to a given FOV mask instead of computing one. ``Invertd`` pads back.

    Example
    -------
    >>> import torch
    >>> img = torch.zeros(3, 40, 60); img[:, 10:30, 20:44] = 1.0
    >>> out = FieldOfViewCrop(square=True)(img)
    >>> tuple(out.shape), float(out[0, 0, 0]), float(out[0, 4, 0])
    ((3, 24, 24), 0.0, 1.0)
    """

    def __init__(self, margin: int = 0, square: bool = True, threshold: float = 0.1, opening: float = 0.02,
                 pad_mode: str = "constant", **pad_kwargs: Any) -> None:
        super().__init__(pad_mode, **pad_kwargs)
        self.margin = check_int(margin, "margin")
        self.square = check_bool(square, "square")
        self.threshold = check_float(threshold, "threshold", low=0.0, high=1.0)
        self.opening = check_float(opening, "opening", low=0.0, high=1.0)

    def box(self, img: torch.Tensor, mask: NdarrayOrTensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The crop box ``(start, end)`` (row, column) for ``img``."""
        if mask is None:
            fov = fov_mask(img, self.threshold, self.opening)
        else:
            m = to_tensor(mask)
            check_same_spatial(img, m, "FieldOfViewCrop")
            fov = (m.as_tensor() if isinstance(m, MetaTensor) else m).reshape(img.shape[1:]) > 0
            if not bool(fov.any()):
                raise InvalidImageError(f"FieldOfViewCrop: the field-of-view mask is empty{source_of(img)}")
        start, end = box_of(fov)
        start = [s - self.margin for s in start]
        end = [e + self.margin for e in end]
        if self.square:
            side = max(e - s for s, e in zip(start, end))
            center = [(s + e) / 2.0 for s, e in zip(start, end)]
            return centred_box(center, (side, side))
        return np.asarray(start), np.asarray(end)

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> torch.Tensor:
        img_t = to_tensor(img)
        check_spatial_dims(img_t, 2, "FieldOfViewCrop")
        start, end = self.box(img_t, mask)
        return self.crop(img_t, start, end)


class FieldOfViewCropd(MapTransform, InvertibleTransform):
    """Dictionary form of :class:`FieldOfViewCrop`: the box comes from ``source_key`` (or from the
    mask at ``mask_key``) and crops every key in ``keys``.

    Example
    -------
    >>> import torch
    >>> img = torch.zeros(3, 20, 20); img[:, 5:15, 2:18] = 0.8
    >>> d = FieldOfViewCropd(("image", "label"), source_key="image")({"image": img, "label": torch.ones(1, 20, 20)})
    >>> tuple(d["image"].shape), tuple(d["label"].shape)
    ((3, 16, 16), (1, 16, 16))
    """

    backend = FieldOfViewCrop.backend

    def __init__(self, keys: KeysCollection, source_key: str = "image", mask_key: str | None = None, margin: int = 0,
                 square: bool = True, threshold: float = 0.1, opening: float = 0.02, pad_mode: str = "constant",
                 allow_missing_keys: bool = False, **pad_kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key
        self.mask_key = mask_key
        self.cropper = FieldOfViewCrop(margin, square, threshold, opening, pad_mode, **pad_kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        src = to_tensor(d[self.source_key])
        check_spatial_dims(src, 2, "FieldOfViewCropd")
        start, end = self.cropper.box(src, d[self.mask_key] if self.mask_key is not None else None)
        for key in self.key_iterator(d):
            d[key] = self.cropper.crop(to_tensor(d[key]), start, end)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cropper.inverse(d[key])
        return d


FieldOfViewMaskD = FieldOfViewMaskDict = FieldOfViewMaskd
FieldOfViewCropD = FieldOfViewCropDict = FieldOfViewCropd
