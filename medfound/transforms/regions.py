"""Class-index maps to region masks: one binary channel per named union of classes.

Segmentation labels are **class-index maps** (fundus: 0 background, 1 rim, 2 cup); what a
method is scored on are **regions**, named unions of classes (fundus: disc = {1, 2},
cup = {2}; SCGM: gm = {1}, cord = {1, 2}; polyp: polyp = {1}). :class:`ClassesToRegions`
turns a ``(1, *spatial)`` class-index map into ``(R, *spatial)``, channel ``r`` being 1
where the class belongs to region ``r`` (regions in the mapping's order). This is the one
implementation used by the validation post-processing of DAC training and by the
per-case metrics of :mod:`medfound.evaluation.segmentation`.

Like MONAI's ``ConvertToMultiChannelBasedOnBratsClasses``, the single input channel is
replaced by the region channels; numpy in, numpy out; tensor (MetaTensor) in, tensor
(MetaTensor, metadata kept) out. Values are compared exactly (class maps hold whole
numbers, e.g. after ``AsDiscrete(argmax=True)`` or nearest-neighbour resizing).

Example
-------
>>> import torch
>>> from medfound.transforms.regions import ClassesToRegionsd
>>> t = ClassesToRegionsd(["pred"], {"disc": [1, 2], "cup": [2]})
>>> t({"pred": torch.tensor([[[0, 1], [2, 2]]])})["pred"].tolist()
[[[0.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]]
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from medfound.errors import LabelMismatchError
from medfound.utils import check_int, check_mapping

__all__ = ["ClassesToRegions", "ClassesToRegionsd", "ClassesToRegionsD", "ClassesToRegionsDict"]


def _check_regions(regions: Any) -> dict[str, list[int]]:
    regions = check_mapping(regions, "regions")
    if not regions:
        raise LabelMismatchError("regions must name at least one region, e.g. {'disc': [1, 2]}")
    out = {}
    for name, classes in regions.items():
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence) or not classes:
            raise LabelMismatchError(f"regions[{name!r}] must be a non-empty list of class indices, got {classes!r}")
        out[str(name)] = [check_int(c, f"regions[{name!r}]", low=0) for c in classes]
    return out


class ClassesToRegions(Transform):
    """Class-index map ``(1, *spatial)`` -> one binary channel per region ``(R, *spatial)``.

    Parameters
    ----------
    regions : region name -> class indices (a datalist's or split's ``"regions"``).
    dtype : output type (default ``torch.float32``, what MONAI metrics take; ``bool`` for masks).

    Example
    -------
    >>> import numpy as np
    >>> ClassesToRegions({"disc": [1, 2], "cup": [2]}, dtype=bool)(np.array([[0, 1, 2]])).tolist()
    [[False, True, True], [False, False, True]]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, regions: Mapping[str, Sequence[int]], dtype: Any = torch.float32) -> None:
        self.regions = _check_regions(regions)
        self.dtype = dtype

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False)
        if x.dim() < 2 or x.shape[0] != 1:
            raise LabelMismatchError(
                f"ClassesToRegions needs a one-channel class-index map (1, *spatial), got shape {tuple(x.shape)}"
            )
        masks = [torch.isin(x[0], torch.as_tensor(c, dtype=x.dtype, device=x.device)) for c in self.regions.values()]
        return convert_to_dst_type(torch.stack(masks), img, dtype=self.dtype)[0]


class ClassesToRegionsd(MapTransform):
    """Dictionary form of :class:`ClassesToRegions` (the same regions for every key)."""

    backend = ClassesToRegions.backend

    def __init__(self, keys: KeysCollection, regions: Mapping[str, Sequence[int]], dtype: Any = torch.float32,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ClassesToRegions(regions, dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


ClassesToRegionsD = ClassesToRegionsDict = ClassesToRegionsd
