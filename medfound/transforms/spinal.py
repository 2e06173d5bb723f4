"""Spinal cord MRI transforms (SCGM): rater consensus, orientation, cord-centred crop, axial slices.

Label encoding (the SCGM challenge's): 0 background, 1 grey matter (GM), 2 white matter
(WM); the cord is GM + WM (label > 0).

- :class:`MajorityVote`: stacked rater masks ``(R, ...)`` -> consensus class-index map ``(1, ...)``.
- :class:`AxialOrientation`: MONAI ``Orientation`` to RAS, so the last axis runs inferior ->
  superior and ``[..., k]`` is the k-th axial slice (invertible).
- :class:`CordCenteredCrop`: fixed-size crop (padded where it leaves the image) centred on the
  cord's centre of mass; a MONAI ``CropForeground``, so it inverts with ``Invertd``.
- :class:`NormalizePerSlice`: intensity normalisation of each slice on its own (sites and
  slices differ in gain and bias field).
- :class:`AxialSlices`: a volume -> list of 2D slices with their affines and slice index.

Each comes as array transform and dictionary transform (``Food``/``FooD``/``FooDict``).

Example
-------
>>> import torch
>>> from monai.data import MetaTensor
>>> raters = MetaTensor(torch.tensor([[[[1, 2, 0]]], [[[1, 2, 2]]], [[[2, 2, 0]]], [[[1, 0, 0]]]]))
>>> MajorityVote()(raters).flatten().tolist()   # (4 raters, 1x1x3 voxels)
[1, 2, 0]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    CropForeground,
    CropForegroundd,
    MapTransform,
    Orientation,
    Orientationd,
    SplitDim,
    Transform,
)
from monai.utils import TransformBackends, convert_to_tensor

from medfound.errors import ConfigError, LabelMismatchError
from medfound.transforms._utils import check_percentiles
from medfound.utils import check_choice, check_int

__all__ = [
    "GM_LABEL",
    "WM_LABEL",
    "MajorityVote",
    "MajorityVoted",
    "MajorityVoteD",
    "MajorityVoteDict",
    "AxialOrientation",
    "AxialOrientationd",
    "AxialOrientationD",
    "AxialOrientationDict",
    "CordCenteredCrop",
    "CordCenteredCropd",
    "CordCenteredCropD",
    "CordCenteredCropDict",
    "NormalizePerSlice",
    "NormalizePerSliced",
    "NormalizePerSliceD",
    "NormalizePerSliceDict",
    "AxialSlices",
    "AxialSlicesd",
    "AxialSlicesD",
    "AxialSlicesDict",
]

GM_LABEL, WM_LABEL = 1, 2
_TIES = ("background", "foreground")
#: NIfTI world axes (left->right, posterior->anterior, inferior->superior), stated explicitly
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def _source_name(img: Any) -> str:
    meta = getattr(img, "meta", None) or {}
    name = meta.get("filename_or_obj")
    if isinstance(name, (list, tuple)):
        name = ", ".join(str(n) for n in name)
    return str(name) if name else "rater masks"


class MajorityVote(Transform):
    """Consensus of rater masks: cord and grey matter by majority, white matter = cord minus GM.

    A voxel is cord when more than half of the raters label it GM or WM, and grey matter
    when more than half label it GM. A tie (exactly half, possible with an even number of
    raters such as SCGM's four) goes to ``tie``: ``"background"`` (default, conservative:
    the voxel is not cord / not GM) or ``"foreground"``. Because every rater's GM lies in
    that rater's cord, the GM vote never exceeds the cord vote, so the consensus GM lies
    inside the consensus cord.

    Parameters
    ----------
    tie : ``"background"`` or ``"foreground"``, see above.
    num_raters : if given, the number of channels must equal it.

    Input ``(R, *spatial)`` with values in {0, 1, 2}; output ``(1, *spatial)`` uint8 class
    indices (0 background, 1 GM, 2 WM), a MetaTensor with the input's metadata.

    Example
    -------
    >>> votes = torch.tensor([[1, 1, 2, 0], [1, 2, 2, 0], [2, 2, 0, 0], [0, 1, 0, 1]])[:, None]
    >>> MajorityVote()(votes).flatten().tolist(), MajorityVote(tie="foreground")(votes).flatten().tolist()
    ([2, 2, 0, 0], [1, 1, 2, 0])
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, tie: str = "background", num_raters: int | None = None) -> None:
        self.tie = check_choice(tie, _TIES, "tie")
        self.num_raters = check_int(num_raters, "num_raters", low=1, allow_none=True)

    def __call__(self, img: Any) -> MetaTensor:
        raters = convert_to_tensor(img, track_meta=True)
        if raters.ndim < 2:
            raise LabelMismatchError(f"{_source_name(img)}: expected stacked rater masks (R, *spatial), "
                                     f"got shape {tuple(raters.shape)}")
        n = raters.shape[0]
        if self.num_raters is not None and n != self.num_raters:
            raise LabelMismatchError(f"{_source_name(img)}: {n} rater masks, expected {self.num_raters}")
        # numpy: these small element-wise passes are data loading work, run single-threaded
        plain = (raters.as_tensor() if isinstance(raters, MetaTensor) else raters).cpu().numpy()
        valid = np.isin(plain, (0, GM_LABEL, WM_LABEL))
        if not valid.all():
            bad = [int(v) if float(v).is_integer() else float(v) for v in np.unique(plain[~valid])]
            raise LabelMismatchError(f"{_source_name(img)}: rater mask values {bad[:8]} are not 0/1/2 "
                                     "(background / grey matter / white matter)")
        cord_votes = 2 * np.count_nonzero(plain > 0, axis=0)[None]
        gm_votes = 2 * np.count_nonzero(plain == GM_LABEL, axis=0)[None]
        if self.tie == "background":
            cord, gm = cord_votes > n, gm_votes > n
        else:
            cord, gm = cord_votes >= n, gm_votes >= n
        out = torch.from_numpy(np.where(gm, GM_LABEL, np.where(cord, WM_LABEL, 0)).astype(np.uint8))
        if isinstance(raters, MetaTensor):
            out = MetaTensor(out, meta=raters.meta, applied_operations=list(raters.applied_operations))
            out.meta["majority_vote"] = {"raters": int(n), "tie": self.tie}
        else:
            out = MetaTensor(out)
        return out


class MajorityVoted(MapTransform):
    """Dictionary form of :class:`MajorityVote` (``keys`` hold stacked rater masks).

    Load the raters of one case as one channel-stacked image, e.g. an item
    ``{"label": [r1, r2, r3, r4]}`` through ``LoadImaged(keys="label")`` (files are
    stacked on a new first axis) before this transform.
    """

    def __init__(self, keys: KeysCollection, tie: str = "background", num_raters: int | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.voter = MajorityVote(tie=tie, num_raters=num_raters)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.voter(d[key])
        return d


class AxialOrientation(Orientation):
    """MONAI :class:`~monai.transforms.Orientation` with ``axcodes="RAS"`` by default.

    The axis labels are NIfTI's RAS world axes unless ``labels`` is given.

    After it, the last spatial axis runs inferior -> superior, so ``img[..., k]`` is an
    axial slice (what :class:`AxialSlices` takes by default). Invertible as ``Orientation``.

    Example
    -------
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> img = MetaTensor(torch.zeros(1, 4, 5, 6), affine=torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0])))
    >>> AxialOrientation()(img).affine.diagonal().tolist()
    [1.0, 1.0, 1.0, 1.0]
    """

    def __init__(self, axcodes: str = "RAS", **kwargs: Any) -> None:
        kwargs.setdefault("labels", _RAS_LABELS)
        super().__init__(axcodes=axcodes, **kwargs)


class AxialOrientationd(Orientationd):
    """Dictionary form of :class:`AxialOrientation` (MONAI ``Orientationd`` with ``axcodes="RAS"``)."""

    def __init__(self, keys: KeysCollection, axcodes: str = "RAS", **kwargs: Any) -> None:
        kwargs.setdefault("labels", _RAS_LABELS)
        super().__init__(keys, axcodes=axcodes, **kwargs)


def _is_cord(x: torch.Tensor) -> torch.Tensor:
    return x > 0


class CordCenteredCrop(CropForeground):
    """Crop of fixed size centred on the cord's centre of mass (padding where it leaves the image).

    The centre is the mean position of the voxels ``select_fn`` selects (default: label > 0,
    the cord) over the whole input, rounded; without any such voxel the image centre is
    used. Axes with a size of ``-1`` (or ``None``/``0``) are kept whole (e.g. ``(64, 64, -1)``
    crops every axial slice of a volume around the same in-plane centre). A MONAI
    ``CropForeground``: metadata and affine follow the crop and ``Invertd`` undoes it.

    Parameters
    ----------
    roi_size : output size per spatial axis (``-1`` keeps an axis).
    select_fn : voxels defining the centre (applied to the input, or to ``source_key`` in
        the dictionary form).
    channel_indices : channels used for the centre (default all).
    mode : padding mode (``"constant"``, zero, by default); ``pad_kwargs`` go to the padder.

    Example
    -------
    >>> label = torch.zeros(1, 20, 20); label[0, 2:6, 3:5] = 1
    >>> out = CordCenteredCrop((8, 8))(label)
    >>> tuple(out.shape), int(out.sum())  # the 4x2 cord fits in the 8x8 box
    ((1, 8, 8), 8)
    """

    def __init__(
        self,
        roi_size: Sequence[int | None] | int,
        select_fn: Callable[[torch.Tensor], torch.Tensor] = _is_cord,
        channel_indices: Sequence[int] | int | None = None,
        mode: str = "constant",
        lazy: bool = False,
        **pad_kwargs: Any,
    ) -> None:
        super().__init__(select_fn=select_fn, channel_indices=channel_indices, margin=0, allow_smaller=False,
                         mode=mode, lazy=lazy, **pad_kwargs)
        self.roi_size = roi_size

    def compute_bounding_box(self, img: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Start and end of the box (may reach outside the image; the outside is padded)."""
        spatial = np.asarray(img.peek_pending_shape() if isinstance(img, MetaTensor) else img.shape[1:])
        roi = [self.roi_size] * len(spatial) if isinstance(self.roi_size, int) else list(self.roi_size)
        if len(roi) != len(spatial):
            raise ConfigError(f"roi_size {list(roi)} does not match {len(spatial)} spatial axes")
        size = np.array([s if r is None or int(r) <= 0 else int(r) for r, s in zip(roi, spatial)])
        data = img if self.channel_indices is None else img[list(self.channel_indices)]
        mask = torch.as_tensor(self.select_fn(torch.as_tensor(data))).reshape(data.shape).any(0)
        coords = torch.nonzero(mask)
        centre = coords.double().mean(0).numpy() + 0.5 if len(coords) else spatial / 2.0
        start = np.floor(centre - size / 2.0 + 0.5).astype(int)
        full = size == spatial
        start[full] = 0  # kept axes are not shifted
        return start, start + size


class CordCenteredCropd(CropForegroundd):
    """Dictionary form of :class:`CordCenteredCrop`: the centre comes from ``source_key``
    (the label), the same box crops every key.

    Example
    -------
    >>> data = {"image": torch.rand(1, 20, 20), "label": torch.zeros(1, 20, 20)}
    >>> data["label"][0, 12:16, 12:16] = 1
    >>> out = CordCenteredCropd(["image", "label"], source_key="label", roi_size=(6, 6))(data)
    >>> out["image"].shape, int(out["label"].sum())
    (torch.Size([1, 6, 6]), 16)
    """

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str,
        roi_size: Sequence[int | None] | int,
        select_fn: Callable[[torch.Tensor], torch.Tensor] = _is_cord,
        channel_indices: Sequence[int] | int | None = None,
        mode: Sequence[str] | str = "constant",
        start_coord_key: str | None = None,
        end_coord_key: str | None = None,
        allow_missing_keys: bool = False,
        lazy: bool = False,
        **pad_kwargs: Any,
    ) -> None:
        super().__init__(keys, source_key=source_key, mode=mode, start_coord_key=start_coord_key,
                         end_coord_key=end_coord_key, allow_missing_keys=allow_missing_keys, lazy=lazy)
        self.cropper = CordCenteredCrop(roi_size, select_fn=select_fn, channel_indices=channel_indices,
                                        lazy=lazy, **pad_kwargs)


_NORM_MODES = ("percentile", "zscore", "minmax")


class NormalizePerSlice(Transform):
    """Normalise intensities of each slice (and channel) on its own.

    Parameters
    ----------
    axis : spatial axis along which slices are taken (default ``-1``, the axial axis after
        :class:`AxialOrientation`); ``None`` normalises the whole image per channel (a 2D slice).
    mode : ``"percentile"`` (default: map the ``lower``/``upper`` percentiles to 0/1 and clip,
        robust to the bright CSF and outliers), ``"minmax"`` (to [0, 1]) or ``"zscore"``
        (zero mean, unit standard deviation).
    lower, upper : percentiles for ``"percentile"``.

    A constant slice becomes all zeros. Output float32, metadata kept.

    Example
    -------
    >>> vol = torch.stack([torch.arange(4.0).reshape(1, 2, 2), 10 * torch.arange(4.0).reshape(1, 2, 2)], -1)
    >>> out = NormalizePerSlice(mode="minmax")(vol)
    >>> out[0, :, :, 0].flatten().tolist() == out[0, :, :, 1].flatten().tolist()
    True
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, axis: int | None = -1, mode: str = "percentile", lower: float = 0.5,
                 upper: float = 99.5) -> None:
        self.axis = check_int(axis, "axis", allow_none=True)
        self.mode = check_choice(mode, _NORM_MODES, "mode")
        self.lower, self.upper = check_percentiles(lower, upper)

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        """``x``: (N, V) rows normalised independently (float64)."""
        if self.mode == "zscore":
            mean, std = x.mean(1, keepdims=True), x.std(1, keepdims=True)
            return np.where(std > 0, (x - mean) / np.maximum(std, 1e-12), 0.0)
        if self.mode == "minmax":
            lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
        else:
            lo, hi = np.percentile(x, [self.lower, self.upper], axis=1, keepdims=True)
        span = hi - lo
        out = np.where(span > 0, (x - lo) / np.maximum(span, 1e-12), 0.0)
        return np.clip(out, 0.0, 1.0) if self.mode == "percentile" else out

    def __call__(self, img: Any) -> Any:
        t = convert_to_tensor(img, track_meta=True)
        data = (t.as_tensor() if isinstance(t, MetaTensor) else t).cpu().numpy().astype(np.float64)
        if self.axis is None:
            out = self._normalise(data.reshape(data.shape[0], -1)).reshape(data.shape)
        else:
            axis = self.axis if self.axis >= 0 else data.ndim + self.axis
            if not 1 <= axis < data.ndim:
                raise ConfigError(f"axis {self.axis} is not a spatial axis of an input with shape {tuple(data.shape)}")
            moved = np.moveaxis(data, axis, 1)  # (C, S, ...)
            flat = moved.reshape(moved.shape[0] * moved.shape[1], -1)
            out = np.moveaxis(self._normalise(flat).reshape(moved.shape), 1, axis)
        out = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
        if isinstance(t, MetaTensor):
            return MetaTensor(out, meta=t.meta, applied_operations=list(t.applied_operations))
        return out


class NormalizePerSliced(MapTransform):
    """Dictionary form of :class:`NormalizePerSlice`."""

    def __init__(self, keys: KeysCollection, axis: int | None = -1, mode: str = "percentile", lower: float = 0.5,
                 upper: float = 99.5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = NormalizePerSlice(axis=axis, mode=mode, lower=lower, upper=upper)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d


class AxialSlices(Transform):
    """Split a volume ``(C, X, Y, Z)`` into its slices ``(C, X, Y)`` along ``axis`` (default the last).

    Each slice keeps the metadata; its affine is the volume's shifted to that slice (MONAI
    ``SplitDim``), and ``meta["slice_index"]`` says which slice it was.

    Example
    -------
    >>> slices = AxialSlices()(MetaTensor(torch.zeros(1, 4, 5, 3)))
    >>> len(slices), tuple(slices[2].shape), slices[2].meta["slice_index"]
    (3, (1, 4, 5), 2)
    """

    def __init__(self, axis: int = -1) -> None:
        self.axis = axis

    def __call__(self, img: Any) -> list[Any]:
        t = convert_to_tensor(img, track_meta=True)
        axis = self.axis if self.axis >= 0 else t.ndim + self.axis
        if not 1 <= axis < t.ndim or t.ndim < 3:
            raise ConfigError(f"axis {self.axis} is not a spatial axis of an input with shape {tuple(t.shape)}")
        slices = SplitDim(dim=axis, keepdim=False, update_meta=True)(t)
        for k, s in enumerate(slices):
            if isinstance(s, MetaTensor):
                s.meta = dict(s.meta)
                s.meta["slice_index"] = k
        return slices


class AxialSlicesd(MapTransform):
    """Dictionary form of :class:`AxialSlices`: one output dict per slice (a list).

    All ``keys`` must have the same number of slices; other entries are copied into every
    slice's dict, and ``slice_key`` (default ``"slice_index"``) is added. With
    ``label_key`` and ``labelled_only=True`` only slices whose label has foreground are
    kept.

    Example
    -------
    >>> data = {"image": torch.rand(1, 4, 4, 3), "label": torch.zeros(1, 4, 4, 3), "domain": "site1"}
    >>> data["label"][0, 1, 1, 1] = 2
    >>> out = AxialSlicesd(["image", "label"], label_key="label", labelled_only=True)(data)
    >>> [(d["slice_index"], d["domain"]) for d in out]
    [(1, 'site1')]
    """

    def __init__(self, keys: KeysCollection, axis: int = -1, label_key: str | None = None,
                 labelled_only: bool = False, slice_key: str = "slice_index", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if labelled_only and label_key is None:
            raise ConfigError("labelled_only needs a label_key")
        self.slicer = AxialSlices(axis)
        self.label_key, self.labelled_only, self.slice_key = label_key, labelled_only, slice_key

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        split = {key: self.slicer(d[key]) for key in self.key_iterator(d)}
        counts = {len(v) for v in split.values()}
        if len(counts) > 1:
            raise LabelMismatchError(f"keys {list(split)} have different numbers of slices: "
                                     f"{ {k: len(v) for k, v in split.items()} }")
        n = counts.pop() if counts else 0
        out = []
        for k in range(n):
            if self.labelled_only and not bool((torch.as_tensor(split[self.label_key][k]) > 0).any()):
                continue
            item = dict(d)
            item.update({key: v[k] for key, v in split.items()})
            item[self.slice_key] = k
            out.append(item)
        return out


MajorityVoteD = MajorityVoteDict = MajorityVoted
AxialOrientationD = AxialOrientationDict = AxialOrientationd
CordCenteredCropD = CordCenteredCropDict = CordCenteredCropd
NormalizePerSliceD = NormalizePerSliceDict = NormalizePerSliced
AxialSlicesD = AxialSlicesDict = AxialSlicesd
