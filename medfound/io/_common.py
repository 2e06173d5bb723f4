"""Small helpers shared by medfound's readers: file-name handling, affines, metadata."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data.utils import orientation_ras_lps
from monai.utils import MetaKeys, SpaceKeys

PathLike = str | os.PathLike

__all__ = [
    "as_names",
    "suffix_of",
    "has_suffix",
    "affine_from_geometry",
    "base_meta",
    "squeeze_single_channel",
]


def as_names(data: Sequence[PathLike] | PathLike) -> tuple[str, ...]:
    """File names as a tuple of strings, whether given one path or a sequence of paths."""
    if isinstance(data, (str, os.PathLike)):
        return (os.fspath(data),)
    return tuple(os.fspath(d) for d in data)


def suffix_of(name: PathLike) -> str:
    """Lower-case suffix including compound ones (``.ome.tif``, ``.nii.gz``)."""
    n = Path(name).name.lower()
    for compound in (".ome.tiff", ".ome.tif", ".ome.btf", ".nii.gz", ".seg.nrrd"):
        if n.endswith(compound):
            return compound
    return Path(n).suffix


def has_suffix(data: Sequence[PathLike] | PathLike, suffixes: Sequence[str]) -> bool:
    """True when every name ends with one of ``suffixes`` (lower-case, with dot)."""
    names = as_names(data)
    return bool(names) and all(Path(n).name.lower().endswith(tuple(suffixes)) for n in names)


def affine_from_geometry(
    direction: np.ndarray, spacing: Sequence[float], origin: Sequence[float], lps_to_ras: bool = True
) -> np.ndarray:
    """Affine of a grid as ITK defines it (``direction @ diag(spacing)``, ``origin``), optionally LPS -> RAS.

    This is the construction of :class:`monai.data.ITKReader`, so volumes read by medfound line up
    with volumes read by MONAI's readers.
    """
    direction = np.asarray(direction, dtype=np.float64)
    r = direction.shape[0]
    affine = np.eye(r + 1)
    affine[:r, :r] = direction @ np.diag(np.asarray(spacing, dtype=np.float64)[:r])
    affine[:r, -1] = np.asarray(origin, dtype=np.float64)[:r]
    return orientation_ras_lps(affine) if lps_to_ras else affine


def base_meta(
    affine: np.ndarray,
    spatial_shape: Sequence[int],
    channel_dim: int | float | None,
    space: str = SpaceKeys.RAS,
) -> dict[str, Any]:
    """The metadata keys every MONAI reader sets (``filename_or_obj`` is added by ``LoadImage``)."""
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.sqrt((affine[:-1, :-1] ** 2).sum(axis=0))
    return {
        MetaKeys.ORIGINAL_AFFINE: affine.copy(),
        MetaKeys.AFFINE: affine.copy(),
        MetaKeys.SPATIAL_SHAPE: np.asarray(spatial_shape, dtype=np.int64),
        MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if channel_dim is None else channel_dim,
        MetaKeys.SPACE: space,
        "spacing": spacing,
    }


def squeeze_single_channel(arr: np.ndarray, meta: dict) -> tuple[np.ndarray, dict]:
    """Channel-first data with one channel loses its channel axis, as MONAI's readers return grey images.

    ``original_channel_dim`` becomes ``"no_channel"`` (NaN), so ``EnsureChannelFirst`` adds the axis
    back and ``SaveImage`` can write it (MONAI's writers count spatial dimensions from that key).
    Several channels stay channel-first with ``original_channel_dim`` 0.
    """
    if arr.shape[0] == 1:
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = float("nan")
        return arr[0], meta
    meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
    return arr, meta
