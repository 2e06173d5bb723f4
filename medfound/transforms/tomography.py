"""Transforms for tomography (CT and MR volumes) and for feeding them to 2D models.

- :class:`CTWindow`: named or custom Hounsfield-unit windows mapped to [0, 1]; several windows
  give several channels (e.g. lung, mediastinum and bone as the 3 input channels of a 2D encoder).
- :class:`MRPercentileNormalize`: robust per-volume percentile scaling, optionally inside a mask.
- :class:`ResampleToSpacing`: MONAI's :class:`~monai.transforms.Spacing` with modality defaults
  (linear for images, nearest for labels, float32).
- :class:`SampleSlices` / :class:`RandSampleSlices`: 3D volume to 2D items along an anatomical
  axis, with 2.5D neighbours as channels, chosen as all slices, the slices that contain a label,
  or random draws; each item records its slice index and inverts back into the volume.

Array and dictionary forms throughout (``Foo``, ``Food``/``FooD``/``FooDict``).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from copy import deepcopy
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import InvertibleTransform, MapTransform, RandomizableTransform, Spacing, Spacingd, Transform
from monai.transforms.traits import MultiSampleTrait
from monai.utils import TraceKeys, TransformBackends, ensure_tuple, ensure_tuple_rep

from medfound.errors import ConfigError, InvalidImageError, LabelMismatchError
from medfound.transforms._utils import (
    as_float,
    check_finite,
    check_same_spatial,
    check_spatial_dims,
    new_meta_like,
    source_of,
    to_tensor,
)
from medfound.transforms.intensity import PercentileNormalize, PercentileNormalized
from medfound.utils import check_bool, check_choice, check_int, check_probability

__all__ = [
    "CT_WINDOWS",
    "resolve_ct_windows",
    "CTWindow",
    "CTWindowd",
    "CTWindowD",
    "CTWindowDict",
    "MRPercentileNormalize",
    "MRPercentileNormalized",
    "MRPercentileNormalizeD",
    "MRPercentileNormalizeDict",
    "ResampleToSpacing",
    "ResampleToSpacingd",
    "ResampleToSpacingD",
    "ResampleToSpacingDict",
    "PLANES",
    "plane_axis",
    "slices_with_label",
    "SampleSlices",
    "SampleSlicesd",
    "SampleSlicesD",
    "SampleSlicesDict",
    "RandSampleSlices",
    "RandSampleSlicesd",
    "RandSampleSlicesD",
    "RandSampleSlicesDict",
]

logger = logging.getLogger(__name__)

#: Named CT windows as (centre/level, width) in Hounsfield units; the common radiology values
#: (as tabulated e.g. by Radiopaedia, "Windowing (CT)").
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "temporal_bone": (600.0, 2800.0),
    "soft_tissue": (50.0, 400.0),
    "liver": (30.0, 150.0),
}

WindowSpec = str | Mapping[str, float] | Sequence[float]


def resolve_ct_windows(
    window: WindowSpec | Sequence[WindowSpec] | None = None, center: float | None = None, width: float | None = None
) -> list[tuple[float, float]]:
    """Turn a window specification into a list of ``(centre, width)`` pairs.

    ``window`` is a name from :data:`CT_WINDOWS`, a mapping ``{"center": c, "width": w}``, a
    pair ``[c, w]``, or a list of those (one output channel each). ``center``/``width`` give one
    custom window instead.

    Example
    -------
    >>> resolve_ct_windows(["lung", {"center": 40, "width": 400}])
    [(-600.0, 1500.0), (40.0, 400.0)]
    """
    if window is None:
        if center is None or width is None:
            raise ConfigError("CTWindow needs a window name (e.g. 'lung') or both center and width")
        specs: list[Any] = [{"center": center, "width": width}]
    elif isinstance(window, (str, Mapping)):
        specs = [window]
    elif len(window) == 2 and all(isinstance(v, (int, float)) for v in window):
        specs = [window]
    else:
        specs = list(window)
    out = []
    for spec in specs:
        if isinstance(spec, str):
            name = spec.lower().replace(" ", "_").replace("-", "_")
            if name not in CT_WINDOWS:
                raise ConfigError(f"unknown CT window {spec!r}; named windows: {', '.join(CT_WINDOWS)}")
            c, w = CT_WINDOWS[name]
        elif isinstance(spec, Mapping):
            try:
                c, w = float(spec["center"]), float(spec["width"])
            except KeyError as err:
                raise ConfigError(f"a custom CT window needs 'center' and 'width', got {dict(spec)}") from err
        else:
            c, w = (float(v) for v in spec)
        if w <= 0:
            raise ConfigError(f"CT window width must be positive, got {w}")
        out.append((float(c), float(w)))
    return out


class CTWindow(Transform):
    """Map Hounsfield units through one or more CT windows to [0, 1].

    A window of centre ``c`` and width ``w`` maps ``c - w/2`` to 0 and ``c + w/2`` to 1, linearly,
    and clips outside (``clip=True``). With several windows the outputs are stacked along the
    channel axis, window by window, so ``["lung", "mediastinum", "bone"]`` turns a 1-channel CT
    into a 3-channel image for a 2D encoder.

    One window is MONAI's ``ScaleIntensityRange(c - w/2, c + w/2, 0, 1, clip=True)`` (identical
    output); this adds the named windows and several windows as channels, in 0.6 of its time
    (one new buffer, then in place; ``examples/benchmarks/transforms_bench.py``, 512 x 512 x 64 HU).

    Parameters
    ----------
    window : a name from :data:`CT_WINDOWS`, ``{"center": c, "width": w}``, ``[c, w]``, or a list of those.
    center, width : one custom window (instead of ``window``).
    clip : clip to [0, 1].
    dtype : output dtype.

    Example
    -------
    >>> import torch
    >>> hu = torch.tensor([[[-1000.0, -600.0, 50.0, 150.0]]])
    >>> CTWindow("lung")(hu)[0, 0].tolist()
    [0.23333333432674408, 0.5, 0.9333333373069763, 1.0]
    >>> tuple(CTWindow(["lung", "mediastinum", "bone"])(hu).shape)
    (3, 1, 4)
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        window: WindowSpec | Sequence[WindowSpec] | None = "soft_tissue",
        center: float | None = None,
        width: float | None = None,
        clip: bool = True,
        dtype: torch.dtype | str = torch.float32,
    ) -> None:
        if center is not None or width is not None:
            window = None
        self.windows = resolve_ct_windows(window, center, width)
        self.clip = check_bool(clip, "clip")
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        img_t = to_tensor(img)
        if img_t.ndim < 2:
            raise InvalidImageError(f"CTWindow expects a channel-first image, got shape {tuple(img_t.shape)}")
        check_finite(img_t, "CTWindow")
        hu = as_float(img_t.as_tensor() if isinstance(img_t, MetaTensor) else img_t).to(self.dtype)
        outs = []
        for c, w in self.windows:
            out = torch.sub(hu, c - w / 2.0).div_(w)  # one new buffer per window, then in place
            outs.append(out.clamp_(0.0, 1.0) if self.clip else out)
        return new_meta_like(torch.cat(outs, 0) if len(outs) > 1 else outs[0], img_t)


class CTWindowd(MapTransform):
    """Dictionary form of :class:`CTWindow`.

    Example
    -------
    >>> import torch
    >>> CTWindowd("image", window="brain")({"image": torch.tensor([[0.0, 40.0, 80.0]])})["image"].tolist()
    [[0.0, 0.5, 1.0]]
    """

    backend = CTWindow.backend

    def __init__(
        self,
        keys: KeysCollection,
        window: WindowSpec | Sequence[WindowSpec] | None = "soft_tissue",
        center: float | None = None,
        width: float | None = None,
        clip: bool = True,
        dtype: torch.dtype | str = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.windower = CTWindow(window, center, width, clip, dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.windower(d[key])
        return d


# ------------------------------------------------------------------------------------------------
# MR normalisation and resampling


class MRPercentileNormalize(PercentileNormalize):
    """Robust MR intensity normalisation: the volume's ``lower``/``upper`` percentiles map to 0 and 1.

    MR intensities have no absolute scale, and a few very bright voxels (vessels, fat, artefacts)
    would squash a min-max scaling, hence percentiles. Measured over the whole volume (all
    channels together), over non-zero voxels (``nonzero=True``, for skull-stripped or masked
    data), or inside a mask passed at call time: :class:`~medfound.transforms.intensity.PercentileNormalize`
    with MR defaults.

    Example
    -------
    >>> import torch
    >>> x = torch.cat([torch.zeros(50), torch.arange(1.0, 101.0)]).reshape(1, 150)
    >>> y = MRPercentileNormalize(lower=0, upper=100, nonzero=True)(x)
    >>> round(float(y[0, 50]), 4), float(y[0, -1])
    (0.0, 1.0)
    """

    def __init__(
        self,
        lower: float = 0.5,
        upper: float = 99.5,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        nonzero: bool = False,
        channel_wise: bool = False,
        dtype: torch.dtype | str = torch.float32,
    ) -> None:
        super().__init__(lower, upper, b_min, b_max, clip, channel_wise, nonzero, dtype)


class MRPercentileNormalized(PercentileNormalized):
    """Dictionary form of :class:`MRPercentileNormalize`; ``mask_key`` names an optional mask (e.g. brain).

    Example
    -------
    >>> import torch
    >>> d = MRPercentileNormalized("image", lower=0, upper=100)({"image": torch.tensor([[1.0, 3.0]])})
    >>> d["image"].tolist()
    [[0.0, 1.0]]
    """

    def __init__(
        self,
        keys: KeysCollection,
        lower: float = 0.5,
        upper: float = 99.5,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        nonzero: bool = False,
        channel_wise: bool = False,
        mask_key: str | None = None,
        dtype: torch.dtype | str = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, lower, upper, b_min, b_max, clip, channel_wise, nonzero, mask_key, dtype,
                         allow_missing_keys)


class ResampleToSpacing(Spacing):
    """:class:`monai.transforms.Spacing` with tomography defaults: linear interpolation (nearest for
    labels with ``is_label=True``), float32 output, border padding. A non-positive ``pixdim`` entry
    keeps that axis's spacing (e.g. ``(0.8, 0.8, -1)`` resamples in plane only). Inverts with ``Invertd``.

    Example
    -------
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> img = MetaTensor(torch.rand(1, 8, 8, 4), affine=torch.diag(torch.tensor([2.0, 2.0, 5.0, 1.0])))
    >>> tuple(ResampleToSpacing(pixdim=(1.0, 1.0, -1))(img).shape)
    (1, 15, 15, 4)
    """

    def __init__(
        self,
        pixdim: Sequence[float] | float,
        is_label: bool = False,
        padding_mode: str = "border",
        dtype: Any = np.float32,
        **kwargs: Any,
    ) -> None:
        super().__init__(pixdim=pixdim, mode="nearest" if is_label else "bilinear", padding_mode=padding_mode,
                         dtype=dtype, **kwargs)


class ResampleToSpacingd(Spacingd):
    """:class:`monai.transforms.Spacingd` with tomography defaults: ``label_keys`` resample with nearest
    neighbour, all other keys linearly; float32. Inverts with ``Invertd``.

    Example
    -------
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> aff = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    >>> d = {"image": MetaTensor(torch.rand(1, 4, 4, 4), affine=aff),
    ...      "label": MetaTensor(torch.ones(1, 4, 4, 4), affine=aff)}
    >>> out = ResampleToSpacingd(("image", "label"), pixdim=1.0, label_keys="label")(d)
    >>> tuple(out["label"].shape), bool((out["label"] == 1).all())
    ((1, 7, 7, 7), True)
    """

    def __init__(
        self,
        keys: KeysCollection,
        pixdim: Sequence[float] | float,
        label_keys: KeysCollection = (),
        padding_mode: str = "border",
        dtype: Any = np.float32,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        keys_t = ensure_tuple(keys)
        labels = set(ensure_tuple(label_keys))
        unknown = labels - set(keys_t)
        if unknown:
            raise ConfigError(f"ResampleToSpacingd label_keys {sorted(map(str, unknown))} are not among keys {keys_t}")
        modes = tuple("nearest" if k in labels else "bilinear" for k in keys_t)
        super().__init__(keys_t, pixdim=pixdim, mode=modes, padding_mode=padding_mode, dtype=dtype,
                         allow_missing_keys=allow_missing_keys, **kwargs)


# ------------------------------------------------------------------------------------------------
# 3D -> 2D slice sampling

#: anatomical plane -> world axis (RAS or LPS, either way x = left-right, y = anterior-posterior,
#: z = inferior-superior) that is normal to it
PLANES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}


def plane_axis(affine: NdarrayOrTensor | None, plane: str | int) -> int:
    """Spatial array axis (0, 1 or 2) normal to an anatomical ``plane`` of a volume with this ``affine``.

    ``plane`` is ``"axial"``, ``"coronal"``, ``"sagittal"`` or an array axis. The axis is the one
    whose voxel direction is closest to the plane's normal (nibabel's ``io_orientation``), so it
    is right for any orientation MONAI loads (RAS, LPS, permuted, mildly oblique).

    Example
    -------
    >>> import numpy as np
    >>> plane_axis(np.diag([1.0, 1.0, 1.0, 1.0]), "axial")
    2
    >>> plane_axis(np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]]), "axial")
    0
    """
    if isinstance(plane, (int, np.integer)):
        if not 0 <= int(plane) <= 2:
            raise ConfigError(f"slice axis must be 0, 1 or 2 (spatial axes), got {plane}")
        return int(plane)
    name = str(plane).lower()
    if name not in PLANES:
        raise ConfigError(f"unknown plane {plane!r}; use one of {', '.join(PLANES)} or a spatial axis 0-2")
    if affine is None:
        return PLANES[name]
    aff = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise InvalidImageError(
            f"slice sampling needs a 3D volume with a 4x4 affine, got an affine of shape {aff.shape}"
        )
    ornt = nib.orientations.io_orientation(aff)
    for voxel_axis, (world_axis, _) in enumerate(ornt):
        if int(world_axis) == PLANES[name]:
            return voxel_axis
    raise InvalidImageError(f"cannot find the {name} axis of a degenerate affine {aff.tolist()}")


def slices_with_label(label: NdarrayOrTensor, axis: int) -> list[int]:
    """Indices along spatial ``axis`` of the slices of a channel-first ``label`` that hold any non-zero voxel.

    Example
    -------
    >>> import torch
    >>> lab = torch.zeros(1, 4, 4, 6); lab[0, 1, 2, 3] = 1; lab[0, 0, 0, 5] = 2
    >>> slices_with_label(lab, axis=2)
    [3, 5]
    """
    lab = torch.as_tensor(label.as_tensor() if isinstance(label, MetaTensor) else label)
    dims = [d for d in range(lab.ndim) if d != axis + 1]
    return torch.nonzero((lab != 0).amax(dim=dims)).flatten().tolist()


def _slice_affine(affine: np.ndarray, axis: int, index: int) -> np.ndarray:
    """3x3 affine of slice ``index`` along ``axis``: in-plane axes kept, rows of the world axes they map to."""
    in_plane = [a for a in range(3) if a != axis]
    ornt = nib.orientations.io_orientation(affine)
    rows = [int(ornt[a][0]) for a in in_plane]
    origin = affine[:3, 3] + affine[:3, axis] * index
    out = np.eye(3)
    out[:2, :2] = affine[np.ix_(rows, in_plane)]
    out[:2, 2] = origin[rows]
    return out


class _SliceSampler(InvertibleTransform):
    """Shared machinery of :class:`SampleSlices` and :class:`RandSampleSlices` (extraction, labels, inverse)."""

    _SELECT = ("all", "label")
    _EMPTY = ("raise", "all", "skip")
    _PAD = ("edge", "zeros")

    def _init_common(self, axis: str | int, neighbours: int, select: str, margin: int, empty: str,
                     pad_mode: str) -> None:
        plane_axis(None, axis)  # validate early
        self.axis = axis
        self.neighbours = check_int(neighbours, "neighbours", low=0)
        self.select = check_choice(select, self._SELECT, "select")
        self.margin = check_int(margin, "margin", low=0)
        self.empty = check_choice(empty, self._EMPTY, "empty")
        self.pad_mode = check_choice(pad_mode, self._PAD, "pad_mode")

    def resolve_axis(self, img: torch.Tensor) -> int:
        check_spatial_dims(img, 3, "slice sampling")
        return plane_axis(img.affine if isinstance(img, MetaTensor) else None, self.axis)

    def candidates(self, img: torch.Tensor, axis: int, label: NdarrayOrTensor | None) -> tuple[list[int], list[int]]:
        """(slices to draw from, slices holding label voxels); honours ``select``, ``margin`` and ``empty``."""
        n = int(img.shape[axis + 1])
        if label is None:
            if self.select == "label":
                raise ConfigError("select='label' needs a label (label= for the array form, label_key for dict form)")
            return list(range(n)), []
        lab = to_tensor(label)
        check_same_spatial(img, lab, "slice sampling", "label")
        positive = slices_with_label(lab, axis)
        if self.select == "all":
            return list(range(n)), positive
        chosen = sorted({j for i in positive for j in range(i - self.margin, i + self.margin + 1) if 0 <= j < n})
        if not chosen:
            msg = ("slice sampling with select='label': the label has no non-zero voxel"
                   f"{source_of(lab) or source_of(img)}")
            if self.empty == "raise":
                raise LabelMismatchError(msg + "; pass empty='all' or empty='skip' to continue on such cases")
            logger.warning("%s; using %s", msg, "all slices" if self.empty == "all" else "no slice")
            chosen = list(range(n)) if self.empty == "all" else []
        return chosen, positive

    def extract(self, img: torch.Tensor, axis: int, index: int, neighbours: int, plane: str) -> torch.Tensor:
        """Slice ``index`` along ``axis`` with ``neighbours`` slices each side stacked as channels."""
        data = img.as_tensor() if isinstance(img, MetaTensor) else img
        n = data.shape[axis + 1]
        offsets = list(range(index - neighbours, index + neighbours + 1))
        ids = torch.tensor([min(max(i, 0), n - 1) for i in offsets], device=data.device)
        stack = data.index_select(axis + 1, ids).movedim(axis + 1, 0)  # (2k+1, C, a, b)
        if self.pad_mode == "zeros":
            outside = torch.tensor([not 0 <= i < n for i in offsets], device=data.device)
            stack = stack * (~outside).view(-1, *([1] * (stack.ndim - 1))).to(stack.dtype)
        out = stack.reshape(-1, *stack.shape[2:]).contiguous()
        if not (isinstance(img, MetaTensor) and get_track_meta()):
            return out
        affine = np.asarray(img.affine.detach().cpu(), dtype=np.float64)
        item = MetaTensor(out, meta=deepcopy(img.meta), applied_operations=deepcopy(img.applied_operations))
        item.affine = torch.as_tensor(_slice_affine(affine, axis, index), dtype=torch.float64)
        item.meta["slice_index"] = int(index)
        item.meta["slice_axis"] = int(axis)
        item.meta["slice_plane"] = plane
        self.push_transform(
            item,
            orig_size=tuple(int(s) for s in img.shape[1:]),
            extra_info={
                "slice_index": int(index),
                "axis": int(axis),
                "neighbours": int(neighbours),
                "volume_affine": torch.as_tensor(affine),
            },
        )
        return item

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Put a 2D item (image or prediction, any channel count) back at its slice of a zero volume."""
        transform = self.pop_transform(data)
        extra = transform[TraceKeys.EXTRA_INFO]
        orig = [int(s) for s in transform[TraceKeys.ORIG_SIZE]]
        axis, index = int(extra["axis"]), int(extra["slice_index"])
        plane_shape = [s for a, s in enumerate(orig) if a != axis]
        if list(data.shape[1:]) != plane_shape:
            raise InvalidImageError(
                f"cannot put a slice of shape {tuple(data.shape[1:])} back into a volume of shape {tuple(orig)} "
                f"along axis {axis}; invert the transforms applied after slice sampling first"
            )
        raw = data.as_tensor() if isinstance(data, MetaTensor) else data
        vol = torch.zeros((raw.shape[0], *orig), dtype=raw.dtype, device=raw.device)
        vol.select(axis + 1, index).copy_(raw)
        out = MetaTensor(vol, meta=data.meta, applied_operations=data.applied_operations)
        out.affine = torch.as_tensor(extra["volume_affine"], dtype=torch.float64)
        for key in ("slice_index", "slice_axis", "slice_plane"):
            out.meta.pop(key, None)
        return out

    def plane_name(self, axis: int) -> str:
        return str(self.axis) if isinstance(self.axis, str) else f"axis{axis}"


class SampleSlices(_SliceSampler):
    """Cut a channel-first 3D volume ``(C, X, Y, Z)`` into 2D items ``(C * (2k + 1), a, b)``.

    Parameters
    ----------
    axis : ``"axial"``, ``"coronal"``, ``"sagittal"`` (found from the affine, any orientation) or a
        spatial array axis 0-2.
    neighbours : ``k`` slices on each side stacked as channels (2.5D); 0 gives plain 2D slices.
        Channel order is neighbour-major: ``[slice i-k (all C), ..., slice i+k (all C)]``.
    select : ``"all"`` slices in order, or ``"label"``: the slices holding a non-zero label voxel.
    margin : with ``select="label"``, also take this many slices either side of labelled ones.
    empty : with ``select="label"`` and an empty label: ``"raise"`` (:class:`LabelMismatchError`),
        ``"all"`` (all slices, logged) or ``"skip"`` (no item, logged).
    pad_mode : neighbours beyond the volume: ``"edge"`` repeats the border slice, ``"zeros"``.

    Each item is a MetaTensor whose metadata holds ``slice_index``, ``slice_axis`` and
    ``slice_plane``, whose affine is the 3x3 in-plane affine of that slice (so 2D MONAI
    transforms see the right pixel spacing), and whose ``applied_operations`` let ``Invertd``
    put a 2D prediction back at its place in the volume (zeros elsewhere).

    Example
    -------
    >>> import torch
    >>> vol = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 2, 2, 4)
    >>> items = SampleSlices(axis="axial", neighbours=1)(vol)
    >>> len(items), tuple(items[0].shape), items[0][:, 0, 0].tolist(), items[0].meta["slice_index"]
    (4, (3, 2, 2), [0.0, 0.0, 1.0], 0)
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        axis: str | int = "axial",
        neighbours: int = 0,
        select: str = "all",
        margin: int = 0,
        empty: str = "raise",
        pad_mode: str = "edge",
    ) -> None:
        self._init_common(axis, neighbours, select, margin, empty, pad_mode)

    def __call__(self, img: NdarrayOrTensor, label: NdarrayOrTensor | None = None) -> list[torch.Tensor]:
        img_t = to_tensor(img)
        axis = self.resolve_axis(img_t)
        indices, _ = self.candidates(img_t, axis, label)
        plane = self.plane_name(axis)
        return [self.extract(img_t, axis, i, self.neighbours, plane) for i in indices]


class RandSampleSlices(_SliceSampler, RandomizableTransform):
    """Draw ``num_samples`` random 2D (or 2.5D) slices from a 3D volume; see :class:`SampleSlices`.

    Parameters
    ----------
    num_samples : items per call (a fixed count, so batches collate); drawn without replacement
        when there are enough candidates, else with replacement.
    select : ``"all"`` (uniform over slices) or ``"label"`` (uniform over labelled slices, plus ``margin``).
    pos_fraction : with a label and ``select="all"``: each draw comes from a labelled slice with
        this probability and from an unlabelled one otherwise (as ``RandCropByPosNegLabel``);
        ``None`` draws uniformly.
    axis, neighbours, margin, empty, pad_mode : as :class:`SampleSlices`.

    Honours ``set_random_state``: the same seed draws the same slices.

    Example
    -------
    >>> import torch
    >>> t = RandSampleSlices(num_samples=2).set_random_state(seed=0)
    >>> [item.meta["slice_index"] for item in t(torch.rand(1, 4, 4, 10))]
    [2, 8]
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        num_samples: int = 4,
        axis: str | int = "axial",
        neighbours: int = 0,
        select: str = "all",
        pos_fraction: float | None = None,
        margin: int = 0,
        empty: str = "raise",
        pad_mode: str = "edge",
    ) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        self._init_common(axis, neighbours, select, margin, empty, pad_mode)
        self.num_samples = check_int(num_samples, "num_samples", low=1)
        self.pos_fraction = None if pos_fraction is None else check_probability(pos_fraction, "pos_fraction")
        self._indices: list[int] = []

    def randomize(self, data: tuple[list[int], list[int]]) -> None:
        candidates, positive = data
        super().randomize(None)
        if not candidates:
            self._indices = []
            return
        if self.pos_fraction is not None and positive and self.select == "all":
            pos_set = set(positive)
            negative = [i for i in candidates if i not in pos_set]
            self._indices = []
            for _ in range(self.num_samples):
                pool = positive if (not negative or self.R.rand() < self.pos_fraction) else negative
                self._indices.append(int(pool[self.R.randint(len(pool))]))
            return
        replace = len(candidates) < self.num_samples
        self._indices = [int(i) for i in self.R.choice(candidates, self.num_samples, replace=replace)]

    def __call__(
        self, img: NdarrayOrTensor, label: NdarrayOrTensor | None = None, randomize: bool = True
    ) -> list[torch.Tensor]:
        img_t = to_tensor(img)
        axis = self.resolve_axis(img_t)
        if randomize:
            self.randomize(self.candidates(img_t, axis, label))
        plane = self.plane_name(axis)
        return [self.extract(img_t, axis, i, self.neighbours, plane) for i in self._indices]


class _SampleSlicesDictBase(MapTransform, InvertibleTransform, MultiSampleTrait):
    """Dictionary plumbing shared by :class:`SampleSlicesd` and :class:`RandSampleSlicesd`."""

    sampler: _SliceSampler

    def _setup(self, label_key: str | None, neighbours: int | Sequence[int]) -> None:
        self.label_key = label_key
        self.neighbours = tuple(int(k) for k in ensure_tuple_rep(neighbours, len(self.keys)))

    def _indices(self, d: dict, img: torch.Tensor) -> tuple[int, list[int]]:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        present = [k for k in self.key_iterator(d)]
        if not present:
            return [d]
        img = to_tensor(d[present[0]])
        axis, indices = self._indices(d, img)
        shape = tuple(img.shape[1:])
        for key in present[1:]:
            if tuple(d[key].shape[1:]) != shape:
                raise LabelMismatchError(
                    f"slice sampling: '{key}' has spatial shape {tuple(d[key].shape[1:])}, '{present[0]}' has "
                    f"{shape}{source_of(img)}"
                )
        plane = self.sampler.plane_name(axis)
        others = [k for k in d if k not in present]
        out = []
        for index in indices:
            item = {k: deepcopy(d[k]) for k in others}
            for key, k in self.key_iterator(d, self.neighbours):
                item[key] = self.sampler.extract(to_tensor(d[key]), axis, index, k, plane)
            out.append(item)
        return out

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.sampler.inverse(d[key])
        return d


class SampleSlicesd(_SampleSlicesDictBase):
    """Dictionary form of :class:`SampleSlices`: one item per selected slice, same slice for every key.

    Parameters
    ----------
    keys : keys to slice (image and label maps alike).
    label_key : key of the label that ``select="label"`` looks at (it need not be in ``keys``).
    neighbours : 2.5D neighbours per key, e.g. ``(1, 0)`` for ``("image", "label")``: 3-channel
        image, 1-channel label.
    axis, select, margin, empty, pad_mode : as :class:`SampleSlices`.

    Returns a list of dictionaries (as ``RandSpatialCropSamplesd`` does); other entries are copied
    into every item.

    Example
    -------
    >>> import torch
    >>> lab = torch.zeros(1, 4, 4, 8); lab[0, 1, 1, 2:4] = 1
    >>> items = SampleSlicesd(("image", "label"), label_key="label", select="label", neighbours=(1, 0))(
    ...     {"image": torch.rand(1, 4, 4, 8), "label": lab})
    >>> [(it["image"].shape[0], it["label"].meta["slice_index"]) for it in items]
    [(3, 2), (3, 3)]
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str | None = None,
        axis: str | int = "axial",
        neighbours: int | Sequence[int] = 0,
        select: str = "all",
        margin: int = 0,
        empty: str = "raise",
        pad_mode: str = "edge",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self._setup(label_key, neighbours)
        self.sampler = SampleSlices(axis, 0, select, margin, empty, pad_mode)

    def _indices(self, d: dict, img: torch.Tensor) -> tuple[int, list[int]]:
        axis = self.sampler.resolve_axis(img)
        label = d.get(self.label_key) if self.label_key is not None else None
        indices, _ = self.sampler.candidates(img, axis, label)
        return axis, indices


class RandSampleSlicesd(_SampleSlicesDictBase, RandomizableTransform):
    """Dictionary form of :class:`RandSampleSlices`: ``num_samples`` items, the same slices for every key.

    Example
    -------
    >>> import torch
    >>> lab = torch.zeros(1, 4, 4, 8); lab[0, :, :, 5] = 1
    >>> t = RandSampleSlicesd(("image", "label"), label_key="label", num_samples=3, select="label")
    >>> [it["image"].meta["slice_index"] for it in t({"image": torch.rand(1, 4, 4, 8), "label": lab})]
    [5, 5, 5]
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str | None = None,
        num_samples: int = 4,
        axis: str | int = "axial",
        neighbours: int | Sequence[int] = 0,
        select: str = "all",
        pos_fraction: float | None = None,
        margin: int = 0,
        empty: str = "raise",
        pad_mode: str = "edge",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self._setup(label_key, neighbours)
        self.sampler = RandSampleSlices(num_samples, axis, 0, select, pos_fraction, margin, empty, pad_mode)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.sampler.set_random_state(seed, state)
        return self

    def _indices(self, d: dict, img: torch.Tensor) -> tuple[int, list[int]]:
        axis = self.sampler.resolve_axis(img)
        label = d.get(self.label_key) if self.label_key is not None else None
        self.sampler.randomize(self.sampler.candidates(img, axis, label))
        return axis, list(self.sampler._indices)


CTWindowD = CTWindowDict = CTWindowd
MRPercentileNormalizeD = MRPercentileNormalizeDict = MRPercentileNormalized
ResampleToSpacingD = ResampleToSpacingDict = ResampleToSpacingd
SampleSlicesD = SampleSlicesDict = SampleSlicesd
RandSampleSlicesD = RandSampleSlicesDict = RandSampleSlicesd
