"""The optic disc of a fundus photograph: locate it, and crop a region of interest centred on it.

- :func:`locate_optic_disc`: the brightest disc-sized region of the retina, without a mask.
- :class:`OpticDiscCrop`: a fixed-size ROI centred on the disc, from a disc/cup mask when one is
  given (:func:`~medfound.transforms.fundus.disc_cup.disc_from_mask`), else located by brightness;
  inverts with ``Invertd``.

Images are channel-first RGB ``(3, H, W)``, uint8 or float in [0, 1]; array and dictionary forms.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform

from medfound.errors import InvalidImageError
from medfound.transforms._utils import (
    BoxCrop,
    box_of,
    centred_box,
    check_same_spatial,
    check_spatial_dims,
    dilate2d,
    erode2d,
    odd_size,
    source_of,
    spatial_tuple,
    to_tensor,
)
from medfound.transforms.fundus.disc_cup import disc_from_mask
from medfound.transforms.fundus.field_of_view import fov_mask
from medfound.transforms.intensity import gaussian_blur, luma, to_unit_float
from medfound.utils import check_choice, check_float

__all__ = [
    "locate_optic_disc",
    "OpticDiscCrop",
    "OpticDiscCropd",
    "OpticDiscCropD",
    "OpticDiscCropDict",
]

logger = logging.getLogger(__name__)


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
    small = luma(x_small) if x_small.shape[0] >= 3 else x_small[0]  # brightness: luma of RGB, else channel 0
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
    k = odd_size(disc_r * 0.5)  # wider than the vessels at the disc, narrower than the disc
    lum = erode2d(dilate2d(lum, k), k)
    # the illumination estimate is smooth: compute it at a quarter of the working size
    f = 4 if min(size) >= 64 else 1
    num = F.avg_pool2d((lum * fov_f)[None, None], f)[0, 0] if f > 1 else lum * fov_f
    den = F.avg_pool2d(fov_f[None, None], f)[0, 0] if f > 1 else fov_f
    sigma_bg = diameter / 6 / f
    background = gaussian_blur(num, sigma_bg) / gaussian_blur(den, sigma_bg).clamp_min(1e-3)
    if f > 1:
        background = F.interpolate(background[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    contrast = lum / background.clamp_min(1e-3)
    score = gaussian_blur(contrast, disc_r / 2)
    inner = erode2d(fov_f, odd_size(disc_r * 0.5)) > 0.5
    score = torch.where(inner if bool(inner.any()) else fov_s, score, torch.full_like(score, -1.0))
    idx = int(torch.argmax(score))
    r, c = divmod(idx, size[1])
    return ((r + 0.5) * h / size[0] - 0.5, (c + 0.5) * w / size[1] - 0.5)


class OpticDiscCrop(BoxCrop):
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
        self.roi_size = None if roi_size is None else spatial_tuple(roi_size, 2, "roi_size")
        self.roi_fraction = check_float(roi_fraction, "roi_fraction", low=0.0, high=1.0, low_open=True)
        self.mask_encoding = check_choice(mask_encoding, ("dofe", "index", "channels"), "mask_encoding")
        self.disc_fraction = check_float(disc_fraction, "disc_fraction", low=0.0, high=1.0, low_open=True)

    def center(self, img: torch.Tensor, mask: NdarrayOrTensor | None = None) -> tuple[list[float], str]:
        """Disc centre (row, column) and where it came from."""
        if mask is not None:
            m = to_tensor(mask)
            check_same_spatial(img, m, "OpticDiscCrop")
            disc = disc_from_mask(m, self.mask_encoding)
            if bool(disc.any()):
                start, end = box_of(disc)
                return [(s + e - 1) / 2.0 for s, e in zip(start, end)], "mask"
            logger.warning("OpticDiscCrop: the mask has no disc%s; locating the disc from brightness", source_of(m))
        return list(locate_optic_disc(img, disc_fraction=self.disc_fraction)), "brightness"

    def roi(self, img: torch.Tensor) -> tuple[int, int]:
        if self.roi_size is not None:
            return self.roi_size  # type: ignore[return-value]
        side = max(1, int(round(self.roi_fraction * min(img.shape[1:]))))
        return side, side

    def crop_at(self, img: torch.Tensor, center: Sequence[float], source: str, roi: Sequence[int]) -> torch.Tensor:
        start, end = centred_box([c + 0.5 for c in center], roi)
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


OpticDiscCropD = OpticDiscCropDict = OpticDiscCropd
