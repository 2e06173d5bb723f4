"""One call per modality for a training or inference pipeline that feeds medfound's 2D models.

:func:`get_preset` returns a :class:`monai.transforms.Compose` of dictionary transforms whose
image output is what the UMedPT encoder takes: float32, 3 channels, values in [0, 1], spatial
size ``spatial_size`` (microscopy inference keeps the native resolution, padded to a multiple of
32, for tiled inference with MONAI's ``SlidingWindowInferer``). Label keys follow
the image through every spatial step with nearest-neighbour interpolation.

Modalities and what the pipeline does (train adds the random augmentations in brackets):

- ``ct``: HU through three windows as channels (lung, soft tissue, bone); 2D slices, or 3D volumes
  cut into axial slices with ``volume=True`` (train: random slices, half of them labelled);
  letterbox resize [small affine, gamma, noise].
- ``mr``: robust percentile normalisation; 2D, or volumes as 2.5D axial slices (neighbours as the
  3 channels) with ``volume=True``; letterbox resize [affine, gamma, bias-like scaling, noise].

  CT/MR geometry is never guessed: without ``volume=True`` an item must be one slice, a 2D image
  or a volume of one slice (a single DICOM file; its slice axis is dropped). A volume of several
  slices is refused with :class:`~medfound.errors.InvalidImageError` naming its file and shape,
  because resizing it would letterbox all three axes into a cube (48 slices of 512 x 512 become
  a 128 x 128 x 128 block of 12 slices and padding, for ``spatial_size=128``).
- ``xray``: the file's window/level (or robust percentiles), MONOCHROME1 inverted; letterbox
  resize [affine, gamma, noise; no flip, laterality matters].
- ``microscopy``: per-channel percentiles (1, 99.8); train: random crops of ``spatial_size``
  [flips, 90-degree rotations, intensity scaling, noise]; infer: full image padded to /32.
- ``fundus``: disc/cup masks decoded (0 background, 1 rim, 2 cup), crop to the field of view,
  letterbox resize, optional CLAHE [flips, rotation, gamma, brightness].
- ``endoscopy``: masks binarised; letterbox resize [flips, 90-degree rotations, affine, gamma, brightness].

``label_type``: ``"segmentation"`` (label keys are label maps), ``"detection"`` (the one label key
is an instance mask, turned into ``box``/``label``/``centroid``/``count`` at the end, after all
spatial steps, so boxes always match the final image), or ``"none"``/``"classification"``
(only the image is a picture; other entries pass through untouched).

Loading: with ``load=True`` the pipeline starts with ``LoadImaged``. ``reader="auto"`` uses
medfound's readers (``medfound.io``: ``RadiographReader`` for X-ray DICOM, ``PhotoReader`` for
fundus and endoscopy, ``MicroscopyReader`` for TIFF, ``DicomSeriesReader`` for CT/MR), named by
dotted path so that MONAI imports them when the pipeline is built (``medfound.transforms`` does
not import ``medfound.io``: ``io`` builds on ``transforms``); any reader name, dotted path or
instance can be given, ``None`` lets MONAI choose by file suffix.
Readers return pictures as ``(C, X, Y)`` (MONAI's layout); the pipeline then swaps them to
``(C, rows, columns)`` as stored (``rows_first=True``), so the project's box convention
(``[x_min, y_min, x_max, y_max]``, x along the last axis) holds for the tensors the models see.
CT/MR files keep their layout (NIfTI voxel order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    DivisiblePadd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    RandRotated,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropd,
    SpatialPadd,
    SqueezeDim,
)

from medfound.errors import ConfigError, InvalidImageError
from medfound.transforms._utils import source_of, spatial_tuple
from medfound.transforms.common import BinarizeMaskd, ResizeWithPadd, SwapSpatialAxesd, ToEncoderInputd
from medfound.transforms.fundus import DecodeDiscCupd, FieldOfViewCropd
from medfound.transforms.intensity import CLAHEd
from medfound.transforms.microscopy import ChannelPercentileNormalized, InstanceMaskToBoxesd
from medfound.transforms.tomography import (
    CTWindowd,
    MRPercentileNormalized,
    RandSampleSlicesd,
    ResampleToSpacingd,
    SampleSlicesd,
)
from medfound.transforms.xray import XRayWindowd
from medfound.utils import check_choice

__all__ = ["MODALITIES", "LABEL_TYPES", "get_preset", "medfound_reader"]

MODALITIES = ("ct", "mr", "xray", "microscopy", "fundus", "endoscopy")
#: modalities stored as 2D pictures (PNG/JPEG/TIFF/DICOM radiographs), read by MONAI as (C, X, Y)
_PICTURES = ("xray", "microscopy", "fundus", "endoscopy")
LABEL_TYPES = ("segmentation", "detection", "classification", "none")

#: the medfound.io reader that loads each modality's files, as a dotted path MONAI's LoadImage resolves
_IO_READERS = {"xray": "RadiographReader", "microscopy": "MicroscopyReader", "fundus": "PhotoReader",
               "endoscopy": "PhotoReader", "ct": "DicomSeriesReader", "mr": "DicomSeriesReader"}


def medfound_reader(modality: str) -> str | None:
    """Dotted path of medfound's reader for ``modality`` (``None`` for a modality without one).

    Example
    -------
    >>> medfound_reader("xray")
    'medfound.io.RadiographReader'
    """
    name = _IO_READERS.get(modality)
    return None if name is None else f"medfound.io.{name}"


def _loader(modality: str, keys: Sequence[str], reader: Any, allow_missing: bool) -> LoadImaged:
    if reader == "auto":
        reader = medfound_reader(modality)
    # dtype=None keeps the stored type: uint8 photographs and masks are scaled by their type's range later
    return LoadImaged(keys, reader=reader, image_only=True, ensure_channel_first=True, dtype=None,
                      allow_missing_keys=allow_missing)


class _OneSliced(MapTransform):
    """CT/MR without ``volume=True``: pass 2D images, drop the slice axis of a one-slice volume,
    refuse a volume of several slices (:class:`~medfound.errors.InvalidImageError` naming the file,
    its shape and what resizing it would have made)."""

    def __init__(self, keys: KeysCollection, modality: str, spatial_size: int | Sequence[int],
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.modality, self.spatial_size = modality, spatial_size
        self.squeeze = SqueezeDim(dim=3, update_meta=True)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            shape = tuple(int(s) for s in img.shape)
            if len(shape) == 4 and shape[3] == 1:
                d[key] = self.squeeze(img)
            elif len(shape) != 3:
                d[key] = self._refuse(key, img, shape)
        return d

    def _refuse(self, key, img, shape: tuple[int, ...]):
        name = source_of(img)[len(" (file: "):-1] or f"item {key!r}"
        what = f"the {self.modality!r} preset without volume=True makes 2D images (C, H, W)"
        if len(shape) != 4:
            raise InvalidImageError(f"{name}: {what}; got shape {shape} (key {key!r})")
        try:
            target = spatial_tuple(self.spatial_size, 3, "spatial_size")
        except ValueError:
            would = ""
        else:  # as ResizeWithPad: one scale for all axes, then padding
            scale = min(t / s for t, s in zip(target, shape[1:]))
            kept = max(1, min(target[2], round(shape[3] * scale)))
            would = (f": resizing it would letterbox all three axes into a {'x'.join(map(str, target))} block "
                     f"({shape[3]} slices -> {kept}, padded to {target[2]})")
        raise InvalidImageError(
            f"{name}: a volume of shape {shape} ({shape[3]} slices along the last axis), and {what}{would}. "
            f"Pass volume=True to cut it into axial 2D slices, or give one slice (key {key!r})"
        )


def _spatial_modes(
    image_key: str, label_keys: Sequence[str], image_mode: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    keys = (image_key, *label_keys)
    return keys, (image_mode,) + ("nearest",) * len(label_keys)


def get_preset(
    modality: str,
    mode: str = "train",
    spatial_size: int | Sequence[int] = 256,
    keys: Sequence[str] | str = ("image", "label"),
    label_type: str | None = None,
    load: bool = True,
    reader: Any = "auto",
    volume: bool = False,
    num_samples: int = 4,
    pixdim: Sequence[float] | None = None,
    windows: Sequence[Any] = ("lung", "soft_tissue", "bone"),
    fov_crop: bool = True,
    clahe: bool = False,
    prob: float = 0.5,
    rows_first: bool = True,
) -> Compose:
    """A training or inference pipeline for one modality, for medfound's 2D models.

    Parameters
    ----------
    modality : one of :data:`MODALITIES` (``"ct"``, ``"mr"``, ``"xray"``, ``"microscopy"``,
        ``"fundus"``, ``"endoscopy"``).
    mode : ``"train"`` (with random augmentation) or ``"infer"`` (deterministic; label keys optional).
    spatial_size : output size (int: square). Full-size default 256 (UMedPT's 2D input).
    keys : the image key first, then label keys.
    label_type : see the module docstring; default ``"segmentation"`` when label keys are given.
    load : start with ``LoadImaged`` (set ``False`` when items already hold arrays).
    reader : ``"auto"``, a reader name or dotted path, or ``None`` for MONAI's default choice.
    volume : CT/MR: items are 3D volumes to cut into 2D axial slices (train: ``num_samples``
        random slices per volume, half with label if there is one; infer: every slice, each
        item with its ``slice_index``).
    num_samples : slices per volume in training.
    pixdim : CT/MR volumes: resample to this spacing first (e.g. ``[0.8, 0.8, -1]``); ``None`` keeps it.
    windows : CT windows, one channel each (3 for the encoder).
    fov_crop : fundus: crop to the field of view first.
    clahe : fundus: apply CLAHE to the colour image.
    prob : probability of each random augmentation in training.
    rows_first : with ``load=True``, turn pictures (X-ray, microscopy, fundus, endoscopy) from the
        readers' ``(C, X, Y)`` into ``(C, rows, columns)`` as stored (``SwapSpatialAxesd``, inverted
        by ``Invertd``), so boxes ``[x_min, y_min, x_max, y_max]`` in file pixels and the tensor agree.
        Arrays passed with ``load=False`` are taken as they are.

    Example
    -------
    >>> import torch
    >>> t = get_preset("xray", mode="infer", spatial_size=64, keys=("image",), load=False)
    >>> out = t({"image": torch.rand(1, 100, 80)})
    >>> tuple(out["image"].shape), out["image"].dtype
    ((3, 64, 64), torch.float32)
    """
    check_choice(modality, MODALITIES, "modality")
    check_choice(mode, ("train", "infer"), "mode")
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    if not keys:
        raise ConfigError("keys must name at least the image key")
    image_key, label_keys = keys[0], keys[1:]
    if label_type is None:
        label_type = "segmentation" if label_keys else "none"
    check_choice(label_type, LABEL_TYPES, "label_type")
    if label_type in ("none", "classification"):
        label_keys = ()  # other entries (class indices) pass through untouched
    if label_type == "detection" and len(label_keys) != 1:
        raise ConfigError("label_type='detection' needs exactly one label key: the instance mask")
    if volume and modality not in ("ct", "mr"):
        raise ConfigError(f"volume=True applies to 'ct' and 'mr', not {modality!r}")
    train = mode == "train"
    allow_missing = not train  # inference may run without labels
    image_keys = (image_key,)
    spatial_keys, spatial_modes = _spatial_modes(image_key, label_keys, "area")
    steps: list[MapTransform | Any] = []
    if load:
        steps.append(_loader(modality, spatial_keys, reader, allow_missing))
        if modality in _PICTURES and rows_first:
            # readers return pictures as (C, X, Y); the project's boxes and 2D models use (C, rows, columns)
            steps.append(SwapSpatialAxesd(spatial_keys, allow_missing_keys=allow_missing))

    # --- modality-specific intensity and geometry, up to a 2D image of any size
    if modality in ("ct", "mr"):
        if not volume:
            steps.append(_OneSliced(spatial_keys, modality, spatial_size, allow_missing_keys=allow_missing))
        if volume and pixdim is not None:
            steps.append(ResampleToSpacingd(spatial_keys, pixdim=pixdim, label_keys=label_keys,
                                            allow_missing_keys=allow_missing))
        if modality == "ct":
            steps.append(CTWindowd(image_keys, window=list(windows)))
        else:
            steps.append(MRPercentileNormalized(image_keys, lower=0.5, upper=99.5))
        if volume:
            neighbours = (0 if modality == "ct" else 1,) + (0,) * len(label_keys)
            label_key = label_keys[0] if label_keys else None
            if train:
                steps.append(RandSampleSlicesd(spatial_keys, label_key=label_key, num_samples=num_samples,
                                               neighbours=neighbours, pos_fraction=0.5 if label_key else None))
            else:
                steps.append(SampleSlicesd(spatial_keys, neighbours=neighbours, allow_missing_keys=allow_missing))
    elif modality == "xray":
        steps.append(XRayWindowd(image_keys, window="file", invert="auto"))
    elif modality == "microscopy":
        steps.append(ChannelPercentileNormalized(image_keys, lower=1.0, upper=99.8))
    elif modality == "fundus":
        steps.append(ToEncoderInputd(image_keys))  # uint8 -> [0, 1] before anything averages pixels
        if label_type == "segmentation":
            steps.append(DecodeDiscCupd(label_keys, output="index", allow_missing_keys=allow_missing))
        if fov_crop:
            steps.append(FieldOfViewCropd(spatial_keys, source_key=image_key, allow_missing_keys=allow_missing))
        if clahe:
            steps.append(CLAHEd(image_keys))
    elif modality == "endoscopy":
        steps.append(ToEncoderInputd(image_keys))
        if label_type == "segmentation":
            steps.append(BinarizeMaskd(label_keys, allow_missing_keys=allow_missing))

    # --- size
    if modality == "microscopy":
        if train:
            steps.append(SpatialPadd(spatial_keys, spatial_size=spatial_size, allow_missing_keys=allow_missing))
            steps.append(RandSpatialCropd(spatial_keys, roi_size=spatial_size, random_size=False,
                                          allow_missing_keys=allow_missing))
        else:
            steps.append(DivisiblePadd(spatial_keys, k=32, allow_missing_keys=allow_missing))
    else:
        steps.append(ResizeWithPadd(spatial_keys, spatial_size=spatial_size, mode=spatial_modes,
                                    allow_missing_keys=allow_missing))

    # --- augmentation (training only)
    if train:
        steps.extend(_augmentations(modality, image_keys, spatial_keys, spatial_modes, label_type, prob))

    steps.append(ToEncoderInputd(image_keys))
    if label_type == "detection":
        steps.append(InstanceMaskToBoxesd(label_keys[0], allow_missing_keys=allow_missing))
    steps.append(EnsureTyped(spatial_keys, allow_missing_keys=True))
    return Compose(steps)


def _augmentations(modality: str, image_keys: tuple[str, ...], spatial_keys: tuple[str, ...],
                   spatial_modes: tuple[str, ...], label_type: str, prob: float) -> list[Any]:
    """Random augmentations per modality (spatial ones move labels with nearest neighbour)."""
    aug: list[Any] = []
    interp = tuple("bilinear" if m != "nearest" else "nearest" for m in spatial_modes)
    if modality in ("ct", "mr", "xray"):
        aug.append(RandAffined(spatial_keys, prob=prob, rotate_range=0.17, scale_range=0.1, translate_range=8,
                               mode=interp, padding_mode="zeros"))
        aug.append(RandAdjustContrastd(image_keys, prob=prob, gamma=(0.7, 1.5)))
        if modality == "mr":
            aug.append(RandScaleIntensityd(image_keys, factors=0.15, prob=prob))
        aug.append(RandGaussianNoised(image_keys, prob=prob, std=0.02))
    elif modality == "microscopy":
        aug.append(RandFlipd(spatial_keys, prob=prob, spatial_axis=0))
        aug.append(RandFlipd(spatial_keys, prob=prob, spatial_axis=1))
        aug.append(RandRotate90d(spatial_keys, prob=prob, max_k=3))
        aug.append(RandScaleIntensityd(image_keys, factors=0.2, prob=prob))
        aug.append(RandGaussianNoised(image_keys, prob=prob, std=0.02))
    elif modality == "fundus":
        aug.append(RandFlipd(spatial_keys, prob=prob, spatial_axis=1))  # left and right eyes mirror each other
        aug.append(RandRotated(spatial_keys, range_x=0.26, prob=prob, mode=interp, padding_mode="zeros"))
        aug.append(RandAdjustContrastd(image_keys, prob=prob, gamma=(0.7, 1.5)))
        aug.append(RandScaleIntensityd(image_keys, factors=0.2, prob=prob))
        aug.append(RandShiftIntensityd(image_keys, offsets=0.05, prob=prob))
    elif modality == "endoscopy":
        aug.append(RandFlipd(spatial_keys, prob=prob, spatial_axis=0))
        aug.append(RandFlipd(spatial_keys, prob=prob, spatial_axis=1))
        aug.append(RandRotate90d(spatial_keys, prob=prob, max_k=3))
        aug.append(RandAffined(spatial_keys, prob=prob, rotate_range=0.26, scale_range=0.15, mode=interp,
                               padding_mode="zeros"))
        aug.append(RandAdjustContrastd(image_keys, prob=prob, gamma=(0.7, 1.5)))
        aug.append(RandScaleIntensityd(image_keys, factors=0.2, prob=prob))
    return aug
