"""Private helpers shared by medfound's transforms (not public API)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.utils import convert_to_tensor

from medfound.errors import ConfigError, InvalidImageError, LabelMismatchError

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


def check_finite(img: torch.Tensor, what: str) -> None:
    """Raise :class:`InvalidImageError` if ``img`` holds NaN or infinite values."""
    if not torch.is_floating_point(img):
        return
    raw = img.as_tensor() if isinstance(img, MetaTensor) else img
    # one cheap reduction first (NaN and inf propagate into the sum); count only when it is not finite
    if not bool(torch.isfinite(raw.sum(dtype=torch.float64))):
        bad = int((~torch.isfinite(raw)).sum())
        if bad:
            raise InvalidImageError(f"{what}: image has {bad} NaN or infinite values{source_of(img)}")


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


def set_meta(img: torch.Tensor, **items: Any) -> None:
    """Set metadata entries on a MetaTensor (no-op for plain tensors)."""
    if isinstance(img, MetaTensor):
        img.meta.update(items)
