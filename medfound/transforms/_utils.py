"""Private helpers shared by medfound's transforms (not public API)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import CropForeground, InvertibleTransform
from monai.utils import convert_to_tensor

from medfound.errors import ConfigError, InvalidImageError, LabelMismatchError
from medfound.utils import check_float

# torch.quantile refuses inputs above 2**24 elements; larger arrays go through numpy or kthvalue
_QUANTILE_LIMIT = 2**24


def source_of(img: Any) -> str:
    """``" (file: NAME)"`` when ``img`` is a MetaTensor that knows its file, else ``""``; for error messages."""
    if isinstance(img, MetaTensor):
        name = img.meta.get("filename_or_obj")
        if isinstance(name, (list, tuple)):
            name = name[0] if name else None
        if name:
            return f" (file: {name})"
    return ""


def to_tensor(img: NdarrayOrTensor) -> torch.Tensor:
    """``img`` as a tensor, a MetaTensor when metadata tracking is on (MONAI's default)."""
    return convert_to_tensor(img, track_meta=get_track_meta())


def as_float(img: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Floating-point view of ``img`` (integer and bool inputs are converted; floats keep their precision)."""
    return img if torch.is_floating_point(img) else img.to(dtype)


def check_spatial_dims(img: torch.Tensor, dims: int | Sequence[int], what: str) -> None:
    """Raise :class:`InvalidImageError` unless ``img`` is channel-first with one of ``dims`` spatial dimensions."""
    allowed = (dims,) if isinstance(dims, int) else tuple(dims)
    if img.ndim - 1 not in allowed:
        wanted = " or ".join(f"{d}D" for d in allowed)
        raise InvalidImageError(
            f"{what} expects a channel-first {wanted} image (C, spatial...), got shape {tuple(img.shape)}"
            f"{source_of(img)}"
        )


def non_finite_counts(img: torch.Tensor) -> tuple[int, int]:
    """``(NaN count, infinite count)`` of a tensor; ``(0, 0)`` for integer and bool tensors.

    One cheap reduction first (NaN and inf propagate into the sum); the counting passes run only
    when the sum is not finite.
    """
    if not (torch.is_floating_point(img) or torch.is_complex(img)):
        return 0, 0
    raw = img.as_tensor() if isinstance(img, MetaTensor) else img
    total = raw.sum(dtype=torch.complex128 if torch.is_complex(raw) else torch.float64)
    if bool(torch.isfinite(total)):
        return 0, 0
    n_nan = int(torch.isnan(raw).sum())
    return n_nan, int((~torch.isfinite(raw)).sum()) - n_nan


def check_finite(img: torch.Tensor, what: str) -> None:
    """Raise :class:`InvalidImageError` if ``img`` holds NaN or infinite values."""
    n_nan, n_inf = non_finite_counts(img)
    if n_nan or n_inf:
        raise InvalidImageError(f"{what}: image has {n_nan + n_inf} NaN or infinite values{source_of(img)}")


def check_same_spatial(img: torch.Tensor, other: torch.Tensor, what: str, other_name: str = "mask") -> None:
    """Raise :class:`LabelMismatchError` if ``other`` does not match ``img``'s spatial shape."""
    if tuple(other.shape[-(img.ndim - 1):]) != tuple(img.shape[1:]) or other.ndim > img.ndim:
        raise LabelMismatchError(
            f"{what}: {other_name} of shape {tuple(other.shape)} does not match the image's spatial shape "
            f"{tuple(img.shape[1:])}{source_of(img) or source_of(other)}"
        )


def percentiles(values: torch.Tensor, q: Sequence[float]) -> torch.Tensor:
    """Percentiles ``q`` (0-100) of all elements of ``values``, linear interpolation (as ``numpy.percentile``).

    Works on any size and device: CPU tensors go through ``numpy.percentile`` (partition, O(n)), large
    device tensors through ``torch.kthvalue``, so a 512x512x400 CT volume is fine.
    """
    flat = values.reshape(-1)
    if isinstance(flat, MetaTensor):
        flat = flat.as_tensor()
    if flat.numel() == 0:
        raise InvalidImageError("cannot compute percentiles of an empty selection of voxels")
    flat = flat.float() if not torch.is_floating_point(flat) or flat.dtype == torch.float16 else flat
    qs = [float(v) for v in q]
    if any(not 0.0 <= v <= 100.0 for v in qs):
        raise ConfigError(f"percentiles must lie in [0, 100], got {qs}")
    if flat.device.type == "cpu":
        return torch.as_tensor(np.percentile(flat.numpy(), qs), dtype=flat.dtype)
    if flat.numel() <= _QUANTILE_LIMIT:
        return torch.quantile(flat, torch.tensor(qs, device=flat.device, dtype=flat.dtype) / 100.0)
    return kth_percentiles(flat, qs)


def kth_percentiles(flat: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    """Percentiles of a 1D tensor by ``torch.kthvalue`` (any size, any device), interpolated like numpy."""
    n = flat.numel()
    out = []
    for v in qs:
        pos = float(v) / 100.0 * (n - 1)
        lo_i = int(np.floor(pos))
        frac = pos - lo_i
        lo = torch.kthvalue(flat, lo_i + 1).values
        hi = torch.kthvalue(flat, min(lo_i + 2, n)).values if frac > 0 else lo
        out.append(lo + (hi - lo) * frac)
    return torch.stack(out)


def check_percentiles(lower: Any, upper: Any) -> tuple[float, float]:
    """``(lower, upper)`` as floats with ``0 <= lower < upper <= 100``, else :class:`ConfigError` naming them."""
    lo = check_float(lower, "lower", low=0.0, high=100.0)
    hi = check_float(upper, "upper", low=0.0, high=100.0)
    if not lo < hi:
        raise ConfigError(f"lower must be below upper (percentiles), got {lower}, {upper}")
    return lo, hi


def spatial_tuple(size: int | Sequence[int], ndim: int, what: str) -> tuple[int, ...]:
    """``size`` repeated to ``ndim`` entries (an int means the same for every axis), validated positive."""
    if isinstance(size, (int, np.integer)):
        out = (int(size),) * ndim
    else:
        out = tuple(int(s) for s in size)
        if len(out) == 1:
            out = out * ndim
    if len(out) != ndim or any(s <= 0 for s in out):
        raise ConfigError(f"{what} must be a positive int or {ndim} positive ints, got {size!r}")
    return out


def new_meta_like(data: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``data`` wrapped as a MetaTensor carrying a copy of ``like``'s metadata and applied operations."""
    if isinstance(like, MetaTensor) and get_track_meta():
        out = MetaTensor(data.as_tensor() if isinstance(data, MetaTensor) else data)
        out.copy_meta_from(like, copy_attr=True)
        return out
    return data.as_tensor() if isinstance(data, MetaTensor) else data


def odd_size(n: float) -> int:
    """``n`` rounded to an odd window size >= 1 (a centred window needs an odd size)."""
    k = max(1, int(round(n)))
    return k if k % 2 else k + 1


def dilate2d(x: torch.Tensor, k: int) -> torch.Tensor:
    """Grey-level dilation of a 2D tensor with a ``k`` x ``k`` square (max pooling, same size)."""
    return F.max_pool2d(x[None, None], k, stride=1, padding=k // 2)[0, 0] if k > 1 else x


def erode2d(x: torch.Tensor, k: int) -> torch.Tensor:
    """Grey-level erosion of a 2D tensor with a ``k`` x ``k`` square."""
    return -dilate2d(-x, k) if k > 1 else x


def box_of(mask: torch.Tensor) -> tuple[list[int], list[int]]:
    """(start, end) of the bounding box of a non-empty 2D bool mask, end exclusive."""
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    return [int(rows[0]), int(cols[0])], [int(rows[-1]) + 1, int(cols[-1]) + 1]


def centred_box(center: Sequence[float], size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of a box of ``size`` whose centre is ``center`` (pixel-edge coordinates)."""
    start = np.array([int(math.floor(c - s / 2.0 + 0.5)) for c, s in zip(center, size)], dtype=np.int64)
    return start, start + np.asarray(size, dtype=np.int64)


class BoxCrop(InvertibleTransform):
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
