"""Transforms for colour fundus photographs.

- :func:`fov_mask`, :class:`FieldOfViewMask`, :class:`FieldOfViewCrop`: the circular field of
  view (FOV) of the camera, and a crop to it (square by default); the crop inverts with ``Invertd``.
- :func:`locate_optic_disc`, :class:`OpticDiscCrop`: a fixed-size region of interest centred on
  the optic disc, found from a disc mask or, without one, as the brightest disc-sized blob.
- :class:`GreenChannel`: the channel with the best vessel and disc contrast.
- :func:`clahe`, :class:`CLAHE`: contrast-limited adaptive histogram equalisation (Zuiderveld;
  the tiling, clipping and bilinear interpolation of OpenCV's implementation), in torch.
- :class:`DecodeDiscCup`, :class:`EncodeDiscCup`: the common disc/cup mask encoding (0 cup,
  128 rim, 255 background, as in REFUGE, Drishti-GS, RIM-ONE and the DoFE release) to disc and
  cup channels or to the class-index map 0 background, 1 rim, 2 cup (disc = rim + cup), and back.

Images are channel-first RGB ``(3, H, W)``, uint8 or float in [0, 1]; array and dictionary forms.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import CropForeground, InvertibleTransform, MapTransform, Transform

from medfound.errors import ConfigError, InvalidImageError, LabelMismatchError
from medfound.transforms._utils import (
    check_same_spatial,
    check_spatial_dims,
    new_meta_like,
    percentiles,
    source_of,
    spatial_tuple,
    to_tensor,
)

__all__ = [
    "to_unit_float",
    "fov_mask",
    "FieldOfViewMask",
    "FieldOfViewMaskd",
    "FieldOfViewMaskD",
    "FieldOfViewMaskDict",
    "FieldOfViewCrop",
    "FieldOfViewCropd",
    "FieldOfViewCropD",
    "FieldOfViewCropDict",
    "locate_optic_disc",
    "disc_from_mask",
    "OpticDiscCrop",
    "OpticDiscCropd",
    "OpticDiscCropD",
    "OpticDiscCropDict",
    "GreenChannel",
    "GreenChanneld",
    "GreenChannelD",
    "GreenChannelDict",
    "clahe",
    "CLAHE",
    "CLAHEd",
    "CLAHED",
    "CLAHEDict",
    "DISC_CUP_VALUES",
    "DecodeDiscCup",
    "DecodeDiscCupd",
    "DecodeDiscCupD",
    "DecodeDiscCupDict",
    "EncodeDiscCup",
    "EncodeDiscCupd",
    "EncodeDiscCupD",
    "EncodeDiscCupDict",
]

logger = logging.getLogger(__name__)

_LUMA = (0.299, 0.587, 0.114)


def to_unit_float(img: torch.Tensor) -> torch.Tensor:
    """Plain float32 tensor in [0, 1]: integers divided by their type's maximum, floats kept."""
    x = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
    if not torch.is_floating_point(x):
        peak = 1.0 if x.dtype == torch.bool else float(torch.iinfo(x.dtype).max)
        return x.to(torch.float32) / peak
    return x.to(torch.float32)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(H, W) brightness of a (C, H, W) float image (BT.601 luma for RGB, the channel itself otherwise)."""
    if x.shape[0] >= 3:
        w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x[:3] * w).sum(0)
    return x[0]


def _odd(n: float) -> int:
    k = max(1, int(round(n)))
    return k if k % 2 else k + 1


def _dilate(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.max_pool2d(x[None, None], k, stride=1, padding=k // 2)[0, 0] if k > 1 else x


def _erode(x: torch.Tensor, k: int) -> torch.Tensor:
    return -_dilate(-x, k) if k > 1 else x


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a 2D tensor, reflect-padded (replicate when the image is too small)."""
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    y = x[None, None]
    mode = "reflect" if min(x.shape) > radius else "replicate"
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode=mode), k.view(1, 1, -1, 1))
    return y[0, 0]


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
    k = _odd(min(h, w) / 200)
    if k > 1:
        bright = F.avg_pool2d(bright[None, None], k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
    peak = float(percentiles(bright, (99.0,))[0])
    if peak <= 0:
        raise InvalidImageError(f"fov_mask: the image is black, no field of view{source_of(image)}")
    inside = (bright > threshold * peak).float()
    k_open = _odd(opening * min(h, w))
    inside = _dilate(_erode(inside, k_open), k_open) > 0.5
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

    backend = [torch.Tensor.__name__]

    def __init__(self, threshold: float = 0.1, opening: float = 0.02) -> None:
        self.threshold = float(threshold)
        self.opening = float(opening)

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


def _box_of(mask: torch.Tensor) -> tuple[list[int], list[int]]:
    """(start, end) of the bounding box of a 2D bool mask, end exclusive."""
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    return [int(rows[0]), int(cols[0])], [int(rows[-1]) + 1, int(cols[-1]) + 1]


def _centred_box(center: Sequence[float], size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    start = np.array([int(math.floor(c - s / 2.0 + 0.5)) for c, s in zip(center, size)], dtype=np.int64)
    return start, start + np.asarray(size, dtype=np.int64)


class _BoxCrop(InvertibleTransform):
    """Crop a box that may reach beyond the image (the outside is padded); inverts with ``Invertd``.

    Uses :meth:`monai.transforms.CropForeground.crop_pad`, so the recorded operation is MONAI's own.
    """

    backend = CropForeground.backend

    def __init__(self, pad_mode: str = "constant", **pad_kwargs: Any) -> None:
        self._cropper = CropForeground(mode=pad_mode, allow_smaller=False, **pad_kwargs)

    def crop(self, img: torch.Tensor, start: np.ndarray, end: np.ndarray) -> torch.Tensor:
        return self._cropper.crop_pad(img, np.asarray(start), np.asarray(end))

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        return self._cropper.inverse(data)


class FieldOfViewCrop(_BoxCrop):
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
        self.margin = int(margin)
        self.square = square
        self.threshold = float(threshold)
        self.opening = float(opening)

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
        start, end = _box_of(fov)
        start = [s - self.margin for s in start]
        end = [e + self.margin for e in end]
        if self.square:
            side = max(e - s for s, e in zip(start, end))
            center = [(s + e) / 2.0 for s, e in zip(start, end)]
            return _centred_box(center, (side, side))
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


# ------------------------------------------------------------------------------------------------
# optic disc


def locate_optic_disc(
    image: NdarrayOrTensor, fov: NdarrayOrTensor | None = None, disc_fraction: float = 0.12, work_size: int = 256
) -> tuple[float, float]:
    """Locate the optic disc of a fundus photograph ``(C, H, W)`` as ``(row, column)`` in pixels.

    The disc is the brightest disc-sized region of the retina. On a copy scaled to ``work_size``:
    luma; dark vessels closed (grey-level closing); illumination fall-off removed by dividing by
    a broad FOV-normalised blur; a blur of about the disc radius (``disc_fraction`` is the disc
    diameter relative to the FOV diameter); the maximum inside the (slightly eroded) field of view.

    Example
    -------
    >>> import torch
    >>> yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    >>> img = 0.4 * ((yy - 64) ** 2 + (xx - 64) ** 2 < 60 ** 2).float()
    >>> img = img + 0.4 * ((yy - 50) ** 2 + (xx - 30) ** 2 < 8 ** 2).float()
    >>> r, c = locate_optic_disc(img.expand(3, 128, 128))
    >>> abs(r - 50) < 3 and abs(c - 30) < 3
    True
    """
    img_t = to_tensor(image)
    x = to_unit_float(img_t)
    if x.ndim != 3:
        raise InvalidImageError(
            f"locate_optic_disc expects a (C, H, W) image, got shape {tuple(x.shape)}{source_of(image)}"
        )
    h, w = x.shape[1:]
    scale = min(1.0, work_size / max(h, w))
    size = (max(8, int(round(h * scale))), max(8, int(round(w * scale))))
    x_small = F.interpolate(x[None], size=size, mode="area")[0] if size != (h, w) else x
    small = _luma(x_small)
    if fov is None:
        fov_s = fov_mask(x_small)
    else:
        f = to_tensor(fov)
        check_same_spatial(img_t, f, "locate_optic_disc", "field-of-view mask")
        fov_full = ((f.as_tensor() if isinstance(f, MetaTensor) else f).reshape(h, w) > 0).float()
        fov_s = F.interpolate(fov_full[None, None], size=size, mode="area")[0, 0] > 0.5
    if not bool(fov_s.any()):
        raise InvalidImageError(f"locate_optic_disc: empty field of view{source_of(image)}")
    rows, cols = torch.nonzero(fov_s, as_tuple=True)
    diameter = float(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1)
    disc_r = max(1.0, disc_fraction * diameter / 2)
    fov_f = fov_s.float()
    # outside the FOV take the FOV's mean so the closing and blurs do not pull in the black border
    lum = torch.where(fov_s, small, small[fov_s].mean())
    k = _odd(disc_r * 0.5)  # wider than the vessels at the disc, narrower than the disc
    lum = _erode(_dilate(lum, k), k)
    # the illumination estimate is smooth: compute it at a quarter of the working size
    f = 4 if min(size) >= 64 else 1
    num = F.avg_pool2d((lum * fov_f)[None, None], f)[0, 0] if f > 1 else lum * fov_f
    den = F.avg_pool2d(fov_f[None, None], f)[0, 0] if f > 1 else fov_f
    sigma_bg = diameter / 6 / f
    background = _gaussian_blur(num, sigma_bg) / _gaussian_blur(den, sigma_bg).clamp_min(1e-3)
    if f > 1:
        background = F.interpolate(background[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    contrast = lum / background.clamp_min(1e-3)
    score = _gaussian_blur(contrast, disc_r / 2)
    inner = _erode(fov_f, _odd(disc_r * 0.5)) > 0.5
    score = torch.where(inner if bool(inner.any()) else fov_s, score, torch.full_like(score, -1.0))
    idx = int(torch.argmax(score))
    r, c = divmod(idx, size[1])
    return ((r + 0.5) * h / size[0] - 0.5, (c + 0.5) * w / size[1] - 0.5)


#: the disc/cup mask encoding of REFUGE, Drishti-GS, RIM-ONE and the DoFE release
DISC_CUP_VALUES: dict[str, int] = {"cup": 0, "rim": 128, "background": 255}


def disc_from_mask(mask: NdarrayOrTensor, encoding: str = "dofe") -> torch.Tensor:
    """The optic disc ``(H, W)`` (bool) of a disc/cup mask in one of three ``encoding`` s.

    ``"dofe"``: 0 cup, 128 rim, 255 background (disc = value below 192); ``"index"``: 0 background,
    1 rim, 2 cup (disc = non-zero); ``"channels"``: channel 0 is the disc.

    Example
    -------
    >>> import torch
    >>> disc_from_mask(torch.tensor([[[255, 128, 0]]])).tolist()
    [[False, True, True]]
    """
    m = to_tensor(mask)
    m = m.as_tensor() if isinstance(m, MetaTensor) else m
    if m.ndim != 3:
        raise LabelMismatchError(f"a disc/cup mask must be (C, H, W), got shape {tuple(m.shape)}{source_of(mask)}")
    if encoding == "dofe":
        return m[0] < 192
    if encoding == "index":
        return m[0] > 0
    if encoding == "channels":
        return m[0] > 0.5
    raise ConfigError(f"unknown mask encoding {encoding!r}; use 'dofe', 'index' or 'channels'")


class OpticDiscCrop(_BoxCrop):
    """Crop a fixed-size region of interest centred on the optic disc (padding outside the image).

    The centre is the centre of the disc's bounding box in ``mask`` when a mask with a disc is
    given, else :func:`locate_optic_disc`. The output's metadata records ``disc_center`` (row,
    column, in the input image) and ``disc_center_source`` (``"mask"`` or ``"brightness"``).
    ``Invertd`` pads a prediction back to the full image.

    Parameters
    ----------
    roi_size : ROI side(s) in pixels; ``None``: ``roi_fraction`` of the image's shorter side.
    roi_fraction : ROI side relative to the shorter image side when ``roi_size`` is ``None``.
    mask_encoding : encoding of the mask (see :func:`disc_from_mask`).
    disc_fraction : disc diameter relative to the FOV diameter, for :func:`locate_optic_disc`.

    Example
    -------
    >>> import torch
    >>> mask = torch.full((1, 100, 100), 255); mask[0, 20:40, 60:80] = 128
    >>> out = OpticDiscCrop(roi_size=40)(torch.rand(3, 100, 100), mask=mask)
    >>> tuple(out.shape), out.meta["disc_center"], out.meta["disc_center_source"]
    ((3, 40, 40), [29.5, 69.5], 'mask')
    """

    def __init__(self, roi_size: int | Sequence[int] | None = None, roi_fraction: float = 0.4,
                 mask_encoding: str = "dofe", disc_fraction: float = 0.12, pad_mode: str = "constant",
                 **pad_kwargs: Any) -> None:
        super().__init__(pad_mode, **pad_kwargs)
        if roi_size is None and not 0 < roi_fraction <= 1:
            raise ConfigError(f"roi_fraction must lie in (0, 1], got {roi_fraction}")
        self.roi_size = roi_size
        self.roi_fraction = float(roi_fraction)
        self.mask_encoding = mask_encoding
        self.disc_fraction = float(disc_fraction)

    def center(self, img: torch.Tensor, mask: NdarrayOrTensor | None = None) -> tuple[list[float], str]:
        """Disc centre (row, column) and where it came from."""
        if mask is not None:
            m = to_tensor(mask)
            check_same_spatial(img, m, "OpticDiscCrop")
            disc = disc_from_mask(m, self.mask_encoding)
            if bool(disc.any()):
                start, end = _box_of(disc)
                return [(s + e - 1) / 2.0 for s, e in zip(start, end)], "mask"
            logger.warning("OpticDiscCrop: the mask has no disc%s; locating the disc from brightness", source_of(m))
        return list(locate_optic_disc(img, disc_fraction=self.disc_fraction)), "brightness"

    def roi(self, img: torch.Tensor) -> tuple[int, int]:
        if self.roi_size is not None:
            return spatial_tuple(self.roi_size, 2, "roi_size")  # type: ignore[return-value]
        side = max(1, int(round(self.roi_fraction * min(img.shape[1:]))))
        return side, side

    def crop_at(self, img: torch.Tensor, center: Sequence[float], source: str, roi: Sequence[int]) -> torch.Tensor:
        start, end = _centred_box([c + 0.5 for c in center], roi)
        out = self.crop(img, start, end)
        if isinstance(out, MetaTensor):
            out.meta["disc_center"] = [float(c) for c in center]
            out.meta["disc_center_source"] = source
        return out

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> torch.Tensor:
        img_t = to_tensor(img)
        check_spatial_dims(img_t, 2, "OpticDiscCrop")
        center, source = self.center(img_t, mask)
        return self.crop_at(img_t, center, source, self.roi(img_t))

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        out = super().inverse(data)
        if isinstance(out, MetaTensor):
            out.meta.pop("disc_center", None)
            out.meta.pop("disc_center_source", None)
        return out


class OpticDiscCropd(MapTransform, InvertibleTransform):
    """Dictionary form of :class:`OpticDiscCrop`: centre from ``mask_key`` (if given and non-empty)
    or located in ``source_key``; the same ROI is cut from every key.

    Example
    -------
    >>> import torch
    >>> mask = torch.full((1, 64, 64), 255); mask[0, 10:20, 10:20] = 0
    >>> crop = OpticDiscCropd(("image", "mask"), mask_key="mask", roi_size=32)
    >>> d = crop({"image": torch.rand(3, 64, 64), "mask": mask})
    >>> tuple(d["image"].shape), int(d["mask"][0, 16, 16]), int(d["mask"][0, 0, 0])
    ((3, 32, 32), 0, 0)
    """

    backend = OpticDiscCrop.backend

    def __init__(self, keys: KeysCollection, source_key: str = "image", mask_key: str | None = None,
                 roi_size: int | Sequence[int] | None = None, roi_fraction: float = 0.4, mask_encoding: str = "dofe",
                 disc_fraction: float = 0.12, pad_mode: str = "constant", allow_missing_keys: bool = False,
                 **pad_kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key
        self.mask_key = mask_key
        self.cropper = OpticDiscCrop(roi_size, roi_fraction, mask_encoding, disc_fraction, pad_mode, **pad_kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        src = to_tensor(d[self.source_key])
        check_spatial_dims(src, 2, "OpticDiscCropd")
        mask = d.get(self.mask_key) if self.mask_key is not None else None
        center, source = self.cropper.center(src, mask)
        roi = self.cropper.roi(src)
        for key in self.key_iterator(d):
            d[key] = self.cropper.crop_at(to_tensor(d[key]), center, source, roi)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cropper.inverse(d[key])
        return d


# ------------------------------------------------------------------------------------------------
# green channel and CLAHE


class GreenChannel(Transform):
    """Keep the green channel of an RGB image (best vessel, disc and lesion contrast in fundus
    photographs), repeated to ``num_channels`` (3 for the encoders).

    Example
    -------
    >>> import torch
    >>> out = GreenChannel(num_channels=3)(torch.tensor([[[0.1]], [[0.5]], [[0.9]]]))
    >>> out.flatten().tolist()
    [0.5, 0.5, 0.5]
    """

    backend = [torch.Tensor.__name__]

    def __init__(self, num_channels: int = 1) -> None:
        if num_channels < 1:
            raise ConfigError(f"num_channels must be >= 1, got {num_channels}")
        self.num_channels = int(num_channels)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        img_t = to_tensor(img)
        if img_t.ndim < 3 or img_t.shape[0] < 3:
            raise InvalidImageError(f"GreenChannel expects an RGB image (3, H, W), got shape {tuple(img_t.shape)}"
                                    f"{source_of(img_t)}")
        x = img_t.as_tensor() if isinstance(img_t, MetaTensor) else img_t
        green = x[1:2].repeat(self.num_channels, *([1] * (x.ndim - 1)))
        return new_meta_like(green.contiguous(), img_t)


class GreenChanneld(MapTransform):
    """Dictionary form of :class:`GreenChannel`.

    Example
    -------
    >>> import torch
    >>> tuple(GreenChanneld("image")({"image": torch.rand(3, 4, 4)})["image"].shape)
    (1, 4, 4)
    """

    backend = GreenChannel.backend

    def __init__(self, keys: KeysCollection, num_channels: int = 1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.selector = GreenChannel(num_channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.selector(d[key])
        return d


def clahe(
    image: torch.Tensor, clip_limit: float = 2.0, tile_grid: Sequence[int] = (8, 8), nbins: int = 256
) -> torch.Tensor:
    """Contrast-limited adaptive histogram equalisation of a 2D image ``(H, W)`` with values in [0, 1].

    The image is split into ``tile_grid`` (rows, columns) tiles, reflect-padded as OpenCV pads; each
    tile's ``nbins``-bin histogram is clipped at ``clip_limit`` times its mean bin count (at least
    1) and the excess spread evenly over all bins; each tile's cumulative histogram is its
    mapping; every pixel's output interpolates bilinearly between the mappings of the four
    nearest tile centres. This is Zuiderveld's algorithm with OpenCV's conventions: for a uint8
    image ``u``, ``255 * clahe(u / 255, c, (gy, gx))`` equals
    ``cv2.createCLAHE(c, (gx, gy)).apply(u)`` to within one grey level (OpenCV rounds its
    mappings to integers, this keeps them as floats). Runs on the image's device.

    Example
    -------
    >>> import torch
    >>> x = torch.linspace(0.2, 0.4, 64 * 64).reshape(64, 64)
    >>> y = clahe(x, clip_limit=40.0, tile_grid=(1, 1))
    >>> round(float(y.min()), 2), round(float(y.max()), 2)
    (0.02, 1.0)
    """
    if image.ndim != 2:
        raise InvalidImageError(f"clahe expects a 2D image (H, W), got shape {tuple(image.shape)}")
    gy, gx = (int(v) for v in spatial_tuple(tile_grid, 2, "tile_grid"))
    if clip_limit <= 0:
        raise ConfigError(f"clip_limit must be positive, got {clip_limit}")
    x = image.to(torch.float32).clamp(0.0, 1.0)
    h, w = x.shape
    dev = x.device
    # pad to a multiple of the grid exactly as OpenCV does (reflect-101; when either side is not a
    # multiple, both get tiles - size % tiles rows/columns, a full extra tile on a divisible side)
    ph, pw = (gy - h % gy, gx - w % gx) if (h % gy or w % gx) else (0, 0)
    th, tw = (h + ph) // gy, (w + pw) // gx
    area = th * tw
    if dev.type == "cpu":
        bins = torch.from_numpy(np.minimum((x.numpy() * nbins).astype(np.int32), nbins - 1))
        hist = _tile_histograms_numpy(bins.numpy(), ph, pw, gy, gx, nbins)
    else:
        bins = (x * nbins).long().clamp_(0, nbins - 1)
        hist = _tile_histograms_torch(bins, ph, pw, gy, gx, nbins)
    limit = float(max(int(clip_limit * area / nbins), 1))  # OpenCV truncates the limit to an integer count
    excess = (hist - limit).clamp_min(0).sum(1, keepdim=True)
    hist = hist.clamp_max(limit)
    batch = torch.floor(excess / nbins)
    hist = hist + batch
    residual = (excess - batch * nbins).squeeze(1)  # the rest goes to every step-th bin, as OpenCV does
    step = torch.clamp(torch.floor(nbins / residual.clamp_min(1)), min=1).unsqueeze(1)
    idx = torch.arange(nbins, device=dev).unsqueeze(0).float()
    hist = hist + (((idx % step) == 0) & ((idx / step) < residual.unsqueeze(1))).float()
    lut = (torch.cumsum(hist, 1) / area).clamp(0.0, 1.0)  # (tiles, nbins), values in [0, 1]
    # bilinear interpolation between the four nearest tile centres (OpenCV's CLAHE_Interpolation_Body)
    if dev.type == "cpu":
        return torch.from_numpy(_interpolate_blocks(bins.numpy(), lut.numpy(), th, tw, gy, gx))
    return _interpolate_gather(bins, lut, th, tw, gy, gx)


def _tile_histograms_numpy(bins: np.ndarray, ph: int, pw: int, gy: int, gx: int, nbins: int) -> torch.Tensor:
    """(tiles, nbins) histograms on the CPU: one bincount over a tile-and-bin key, no tile rearrangement.
    Padding is reflect-101 (numpy "reflect", which also reflects repeatedly for pads larger than the image)."""
    h, w = bins.shape
    padded = np.pad(bins, ((0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")
    th, tw = (h + ph) // gy, (w + pw) // gx
    tile_of_row = (np.arange(h + ph, dtype=np.int32) // th) * gx
    tile_of_col = np.arange(w + pw, dtype=np.int32) // tw
    key = (tile_of_row[:, None] + tile_of_col[None, :]) * nbins + padded
    counts = np.bincount(key.ravel(), minlength=gy * gx * nbins).reshape(gy * gx, nbins)
    return torch.from_numpy(counts.astype(np.float32))


def _tile_histograms_torch(bins: torch.Tensor, ph: int, pw: int, gy: int, gx: int, nbins: int) -> torch.Tensor:
    """(tiles, nbins) histograms on any device (reflect-101 padding; replicate when the pad exceeds the image)."""
    h, w = bins.shape
    padded = bins
    if ph or pw:
        mode = "reflect" if (ph < h and pw < w) else "replicate"
        padded = F.pad(bins[None, None].float(), (0, pw, 0, ph), mode=mode)[0, 0].long()
    th, tw = (h + ph) // gy, (w + pw) // gx
    tiles = padded.reshape(gy, th, gx, tw).permute(0, 2, 1, 3).reshape(gy * gx, th * tw)
    offsets = (torch.arange(gy * gx, device=bins.device) * nbins).unsqueeze(1)
    hist = torch.bincount((tiles + offsets).reshape(-1), minlength=gy * gx * nbins)
    return hist.reshape(gy * gx, nbins).float()


def _interpolate_gather(bins: torch.Tensor, lut: torch.Tensor, th: int, tw: int, gy: int, gx: int) -> torch.Tensor:
    """Device interpolation: four gathers from the whole LUT (fast on GPUs, where gathers are cheap)."""
    h, w = bins.shape
    nbins = lut.shape[1]
    dev = bins.device
    ys = torch.arange(h, device=dev, dtype=torch.float32) / th - 0.5
    xs = torch.arange(w, device=dev, dtype=torch.float32) / tw - 0.5
    y1, x1 = torch.floor(ys), torch.floor(xs)
    ya, xa = (ys - y1).view(h, 1), (xs - x1).view(1, w)
    y1i, x1i = y1.long(), x1.long()
    y2i, x2i = (y1i + 1).clamp(max=gy - 1), (x1i + 1).clamp(max=gx - 1)
    y1i, x1i = y1i.clamp(min=0), x1i.clamp(min=0)
    flat = lut.reshape(-1)

    def look(ty: torch.Tensor, tx: torch.Tensor) -> torch.Tensor:
        return flat[(ty.view(h, 1) * gx + tx.view(1, w)) * nbins + bins]

    top = look(y1i, x1i) * (1 - xa) + look(y1i, x2i) * xa
    bottom = look(y2i, x1i) * (1 - xa) + look(y2i, x2i) * xa
    return top * (1 - ya) + bottom * ya


def _interp_runs(n: int, tile: int, tiles: int) -> list[tuple[int, int, int, int, np.ndarray]]:
    """Runs of pixels along one axis that share their two nearest tile centres:
    ``(start, stop, first tile, second tile, weight of the second)``, as OpenCV computes them."""
    pos = np.arange(n, dtype=np.float32) / np.float32(tile) - np.float32(0.5)
    lower = np.floor(pos)
    frac = pos - lower
    lower_i = lower.astype(np.int64)
    cuts = [0, *(np.flatnonzero(np.diff(lower_i)) + 1).tolist(), n]
    runs = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        t = int(lower_i[a])
        runs.append((a, b, min(max(t, 0), tiles - 1), min(max(t + 1, 0), tiles - 1), frac[a:b]))
    return runs


def _interpolate_blocks(bins: np.ndarray, lut: np.ndarray, th: int, tw: int, gy: int, gx: int) -> np.ndarray:
    """CPU interpolation block by block: within a block the same four tile mappings apply, and
    gathering from four small (nbins,) tables is several times faster than from the whole LUT."""
    h, w = bins.shape
    idx = bins.astype(np.uint8 if lut.shape[1] <= 256 else np.int32)
    out = np.empty((h, w), np.float32)
    col_runs = _interp_runs(w, tw, gx)
    for r0, r1, ty1, ty2, ya in _interp_runs(h, th, gy):
        ya = ya[:, None]
        for c0, c1, tx1, tx2, xa in col_runs:
            blk = idx[r0:r1, c0:c1]
            a, top = lut[ty1 * gx + tx1][blk], lut[ty1 * gx + tx2][blk]
            c, bottom = lut[ty2 * gx + tx1][blk], lut[ty2 * gx + tx2][blk]
            top -= a  # in place from here on: a + (b - a) * xa, c + (d - c) * xa, then along y
            top *= xa
            top += a
            bottom -= c
            bottom *= xa
            bottom += c
            bottom -= top
            bottom *= ya
            np.add(bottom, top, out=out[r0:r1, c0:c1])
    return out


class CLAHE(Transform):
    """Contrast-limited adaptive histogram equalisation (see :func:`clahe`) of a 2D image ``(C, H, W)``.

    ``channels="value"`` equalises the HSV value (the per-pixel maximum over channels) and scales
    all channels by the same factor, so hue and saturation are kept (the usual choice for colour
    fundus photographs); ``"each"`` equalises every channel on its own. Output float32 in [0, 1].

    Example
    -------
    >>> import torch
    >>> img = torch.rand(3, 64, 64) * 0.3
    >>> out = CLAHE(clip_limit=2.0, tile_grid=(4, 4))(img)
    >>> tuple(out.shape), float(out.max()) <= 1.0, float(out.amax(0).std()) > float(img.amax(0).std())
    ((3, 64, 64), True, True)
    """

    backend = [torch.Tensor.__name__]

    def __init__(self, clip_limit: float = 2.0, tile_grid: int | Sequence[int] = (8, 8), nbins: int = 256,
                 channels: str = "value") -> None:
        if channels not in ("value", "each"):
            raise ConfigError(f"CLAHE channels must be 'value' or 'each', got {channels!r}")
        self.clip_limit = float(clip_limit)
        self.tile_grid = spatial_tuple(tile_grid, 2, "tile_grid")
        self.nbins = int(nbins)
        self.channels = channels

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        img_t = to_tensor(img)
        check_spatial_dims(img_t, 2, "CLAHE")
        x = to_unit_float(img_t).clamp(0.0, 1.0)
        if self.channels == "each" or x.shape[0] == 1:
            out = torch.stack([clahe(c, self.clip_limit, self.tile_grid, self.nbins) for c in x])
        else:
            value = x.amax(0)
            eq = clahe(value, self.clip_limit, self.tile_grid, self.nbins)
            ratio = torch.where(value > 0, eq / value.clamp_min(1e-8), torch.zeros_like(value))
            out = (x * ratio).clamp(0.0, 1.0)
        return new_meta_like(out, img_t)


class CLAHEd(MapTransform):
    """Dictionary form of :class:`CLAHE`.

    Example
    -------
    >>> import torch
    >>> tuple(CLAHEd("image", tile_grid=2)({"image": torch.rand(3, 16, 16)})["image"].shape)
    (3, 16, 16)
    """

    backend = CLAHE.backend

    def __init__(self, keys: KeysCollection, clip_limit: float = 2.0, tile_grid: int | Sequence[int] = (8, 8),
                 nbins: int = 256, channels: str = "value", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.equalizer = CLAHE(clip_limit, tile_grid, nbins, channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.equalizer(d[key])
        return d


# ------------------------------------------------------------------------------------------------
# disc / cup masks


class DecodeDiscCup(Transform):
    """Decode a disc/cup mask (0 cup, 128 rim, 255 background; 1 or 3 equal channels).

    ``output="channels"``: ``(2, H, W)`` with channel 0 the disc (rim + cup) and channel 1 the cup,
    values 0/1. ``output="index"``: ``(1, H, W)`` class map 0 background, 1 rim, 2 cup. Values are
    assigned to the nearest code (below 64 cup, below 192 rim), so resampled masks decode too;
    ``strict=True`` instead rejects anything but 0, 128 and 255 with :class:`LabelMismatchError`.

    Example
    -------
    >>> import torch
    >>> m = torch.tensor([[[255, 128, 0]]], dtype=torch.uint8)
    >>> DecodeDiscCup()(m).tolist(), DecodeDiscCup(output="index")(m).tolist()
    ([[[0.0, 1.0, 1.0]], [[0.0, 0.0, 1.0]]], [[[0.0, 1.0, 2.0]]])
    """

    backend = [torch.Tensor.__name__]

    def __init__(
        self, output: str = "channels", strict: bool = False, dtype: torch.dtype | str = torch.float32
    ) -> None:
        if output not in ("channels", "index"):
            raise ConfigError(f"DecodeDiscCup output must be 'channels' or 'index', got {output!r}")
        self.output = output
        self.strict = strict
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    def __call__(self, mask: NdarrayOrTensor) -> torch.Tensor:
        m_t = to_tensor(mask)
        m = m_t.as_tensor() if isinstance(m_t, MetaTensor) else m_t
        if m.ndim != 3 or m.shape[0] not in (1, 3, 4):
            raise LabelMismatchError(
                f"a disc/cup mask must be (1 or 3, H, W), got shape {tuple(m.shape)}{source_of(m_t)}"
            )
        v = m[0].to(torch.float32)
        if m.shape[0] >= 3 and not (torch.equal(m[0], m[1]) and torch.equal(m[0], m[2])):
            raise LabelMismatchError(f"the channels of an RGB disc/cup mask differ{source_of(m_t)}")
        if self.strict:
            bad = ~((v == 0) | (v == 128) | (v == 255))
            if bool(bad.any()):
                found = torch.unique(v[bad])[:5].tolist()
                raise LabelMismatchError(
                    f"disc/cup mask holds values other than 0, 128, 255 (e.g. {found}){source_of(m_t)}"
                )
        cup = v < 64
        disc = v < 192
        if self.output == "channels":
            out = torch.stack([disc, cup]).to(self.dtype)
        else:
            out = (disc.to(torch.int64) + cup.to(torch.int64))[None].to(self.dtype)
        return new_meta_like(out, m_t)


class DecodeDiscCupd(MapTransform):
    """Dictionary form of :class:`DecodeDiscCup`.

    Example
    -------
    >>> import torch
    >>> DecodeDiscCupd("mask", output="index")({"mask": torch.tensor([[[0, 255]]])})["mask"].tolist()
    [[[2.0, 0.0]]]
    """

    backend = DecodeDiscCup.backend

    def __init__(self, keys: KeysCollection, output: str = "channels", strict: bool = False,
                 dtype: torch.dtype | str = torch.float32, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.decoder = DecodeDiscCup(output, strict, dtype)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.decoder(d[key])
        return d


class EncodeDiscCup(Transform):
    """Encode disc and cup back to the 0 cup / 128 rim / 255 background mask (uint8).

    ``input="channels"``: ``(2, H, W)`` disc and cup (a cup pixel outside the disc still encodes
    as cup); ``input="index"``: ``(1, H, W)`` map 0 background, 1 rim, 2 cup. ``num_channels`` is
    1 or 3 (RGB masks as in the DoFE release). Inverse of :class:`DecodeDiscCup`.

    Example
    -------
    >>> import torch
    >>> EncodeDiscCup(input="index")(torch.tensor([[[0, 1, 2]]])).tolist()
    [[[255, 128, 0]]]
    """

    backend = [torch.Tensor.__name__]

    # ``input`` mirrors DecodeDiscCup(output=...)
    def __init__(self, input: str = "channels", num_channels: int = 1) -> None:  # noqa: A002
        if input not in ("channels", "index"):
            raise ConfigError(f"EncodeDiscCup input must be 'channels' or 'index', got {input!r}")
        if num_channels not in (1, 3):
            raise ConfigError(f"num_channels must be 1 or 3, got {num_channels}")
        self.input = input
        self.num_channels = num_channels

    def __call__(self, labels: NdarrayOrTensor) -> torch.Tensor:
        l_t = to_tensor(labels)
        x = l_t.as_tensor() if isinstance(l_t, MetaTensor) else l_t
        if self.input == "channels":
            if x.ndim != 3 or x.shape[0] != 2:
                raise LabelMismatchError(f"EncodeDiscCup expects (2, H, W) disc and cup, got shape {tuple(x.shape)}")
            disc, cup = x[0] > 0.5, x[1] > 0.5
        else:
            if x.ndim != 3 or x.shape[0] != 1:
                raise LabelMismatchError(f"EncodeDiscCup expects a (1, H, W) class map, got shape {tuple(x.shape)}")
            cls = torch.round(x[0].to(torch.float32)).to(torch.int64)
            if bool(((cls < 0) | (cls > 2)).any()):
                raise LabelMismatchError(f"class map holds values outside 0, 1, 2{source_of(l_t)}")
            disc, cup = cls >= 1, cls == 2
        out = torch.full(disc.shape, DISC_CUP_VALUES["background"], dtype=torch.uint8, device=x.device)
        out[disc] = DISC_CUP_VALUES["rim"]
        out[cup] = DISC_CUP_VALUES["cup"]
        return new_meta_like(out[None].repeat(self.num_channels, 1, 1), l_t)


class EncodeDiscCupd(MapTransform):
    """Dictionary form of :class:`EncodeDiscCup`.

    Example
    -------
    >>> import torch
    >>> EncodeDiscCupd("pred")({"pred": torch.tensor([[[1.0, 1.0]], [[0.0, 1.0]]])})["pred"].tolist()
    [[[128, 0]]]
    """

    backend = EncodeDiscCup.backend

    def __init__(self, keys: KeysCollection, input: str = "channels", num_channels: int = 1,  # noqa: A002
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.encoder = EncodeDiscCup(input, num_channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.encoder(d[key])
        return d


FieldOfViewMaskD = FieldOfViewMaskDict = FieldOfViewMaskd
FieldOfViewCropD = FieldOfViewCropDict = FieldOfViewCropd
OpticDiscCropD = OpticDiscCropDict = OpticDiscCropd
GreenChannelD = GreenChannelDict = GreenChanneld
CLAHED = CLAHEDict = CLAHEd
DecodeDiscCupD = DecodeDiscCupDict = DecodeDiscCupd
EncodeDiscCupD = EncodeDiscCupDict = EncodeDiscCupd
