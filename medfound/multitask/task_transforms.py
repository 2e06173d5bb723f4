"""The transforms of a task: its own (callables or bundle-style ``_target_`` lists), a modality preset, or a default.

:func:`default_transforms` builds a small MONAI pipeline when a task gives none: load
(pictures as ``(C, rows, columns)``, as stored, so boxes ``[x_min, y_min, x_max, y_max]``
with x along the columns fit), intensity to [0, 1] (CT: a fixed HU window; others:
percentiles), optional resize, light intensity augmentation in training. Modality
pipelines of :mod:`medfound.transforms` plug in through the task's ``preset``.

Example
-------
>>> from medfound.multitask.tasks import TaskSpec
>>> spec = TaskSpec.from_dict({"name": "a", "kind": "classification", "class_names": ["x", "y"],
...                            "training": [], "modality": "CT"})
>>> [type(t).__name__ for t in default_transforms(spec, train=False).transforms]
['SafeLoadImaged', 'ScaleIntensityRanged', 'EnsureTyped']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.data import PILReader
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Resized,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
)

from medfound.errors import ConfigError
from medfound.io import SafeLoadImaged
from medfound.multitask.tasks import TaskSpec
from medfound.transforms import get_preset
from medfound.utils import check_mapping, check_pair

__all__ = ["PICTURE_SUFFIXES", "DEFAULT_CT_WINDOW", "default_transforms", "task_transforms", "preset_transforms"]

#: files read with PIL as stored (rows first); others go to MONAI's default readers
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: HU window of CT images when a task gives no ``intensity``
DEFAULT_CT_WINDOW = (-1000.0, 1000.0)


def _suffix(path: Any) -> str:
    name = str(path[0] if isinstance(path, (list, tuple)) else path).lower()
    for s in PICTURE_SUFFIXES:
        if name.endswith(s):
            return s
    return ""


def default_transforms(spec: TaskSpec, train: bool, example_path: str | None = None) -> Compose:
    """A MONAI pipeline for a task that gives no ``transforms`` of its own.

    Steps: ``SafeLoadImaged`` (MONAI's ``LoadImaged`` with size checks and errors naming the file;
    image, and the label map of segmentation tasks; PNG/JPEG/TIFF
    through ``PILReader(reverse_indexing=False)``, so arrays are ``(C, rows, columns)``);
    intensity to [0, 1]: ``ScaleIntensityRanged`` with the task's ``intensity``
    ``{"a_min", "a_max"}`` (CT default: -1000..1000 HU), else
    ``ScaleIntensityRangePercentilesd`` with ``{"lower", "upper"}`` (default 0.5, 99.5) per
    channel; ``Resized`` to ``spatial_size`` (area for images, nearest for label maps; not
    for detection, whose boxes would not follow); in training with ``augment``: random
    intensity scaling, shift and Gaussian noise (nothing that moves pixels, so boxes and
    laterality stay right). Single-channel images stay single-channel: the trainer repeats
    them to the encoder's 3 channels.
    """
    keys = ["image", "label"] if spec.kind == "segmentation" else ["image"]
    reader: Any = spec.reader
    if reader is None and example_path is not None and _suffix(example_path):
        reader = PILReader(reverse_indexing=False)
    # medfound's LoadImaged: a file's declared size is checked before decoding, errors name the file
    # (strict only for the task's own reader: PILReader, chosen here from the first item, may fall back
    # to MONAI's readers for items of other formats, as LoadImaged does)
    steps: list[Any] = [SafeLoadImaged(keys, reader=reader, image_only=True, ensure_channel_first=True,
                                       strict=spec.reader is not None)]
    where = f"task {spec.name!r}: intensity"
    intensity = check_mapping(spec.intensity or {}, where, known=("a_min", "a_max", "lower", "upper"))
    if not intensity and (spec.modality or "").upper() == "CT":
        intensity = {"a_min": DEFAULT_CT_WINDOW[0], "a_max": DEFAULT_CT_WINDOW[1]}
    if "a_min" in intensity or "a_max" in intensity:
        a_min, a_max = check_pair((intensity.get("a_min"), intensity.get("a_max")), f"{where} (a_min, a_max)")
        if a_max == a_min:
            raise ConfigError(f"{where} needs a_min < a_max, got {intensity}")
        steps.append(ScaleIntensityRanged("image", a_min, a_max, 0.0, 1.0, clip=True))
    else:
        pair = (intensity.get("lower", 0.5), intensity.get("upper", 99.5))
        lower, upper = check_pair(pair, f"{where} percentiles (lower, upper)", low=0, high=100)
        if lower == upper:
            raise ConfigError(f"{where} percentiles need lower < upper, got {intensity}")
        steps.append(ScaleIntensityRangePercentilesd("image", lower, upper, 0.0, 1.0, clip=True, channel_wise=True))
    if spec.spatial_size is not None:
        if spec.kind == "detection":
            raise ConfigError(
                f"task {spec.name!r}: detection images keep their stored size (boxes would not follow a resize); "
                "drop spatial_size or give 'transforms' that resize images and boxes together"
            )
        modes = ["area", "nearest"][: len(keys)]
        steps.append(Resized(keys, spatial_size=spec.spatial_size, mode=modes))
    if train and spec.augment:
        steps += [
            RandScaleIntensityd("image", factors=0.1, prob=0.5),
            RandShiftIntensityd("image", offsets=0.05, prob=0.5),
            RandGaussianNoised("image", prob=0.2, std=0.02),
        ]
    steps.append(EnsureTyped("image", dtype=torch.float32, track_meta=True))
    return Compose(steps)


def task_transforms(spec: TaskSpec, train: bool, example_path: str | None = None) -> Callable:
    """The task's ``transforms["train"|"val"]`` (a callable or bundle-style ``_target_`` dicts), else the default."""
    split = "train" if train else "val"
    given = (spec.transforms or {}).get(split)
    if given is None and spec.preset is not None:
        return preset_transforms(spec, train)
    if given is None:
        return default_transforms(spec, train, example_path)
    if callable(given):
        return given
    if isinstance(given, Sequence) and not isinstance(given, (str, bytes)):
        parser = ConfigParser({"transforms": list(given)})
        try:
            steps = parser.get_parsed_content("transforms", instantiate=True)
        except Exception as err:
            raise ConfigError(f"task {spec.name!r}: cannot build its {split} transforms: {err}") from None
        return Compose(steps)
    raise ConfigError(f"task {spec.name!r}: transforms[{split!r}] must be a list of transform configs or a callable")


_PRESET_LABEL_TYPES = {
    "classification": "classification",
    "multilabel": "classification",
    "segmentation": "segmentation",
}


def preset_transforms(spec: TaskSpec, train: bool) -> Callable:
    """The task's modality pipeline from :func:`medfound.transforms.get_preset` (``"preset"`` in its config).

    ``"preset": "ct"`` or ``{"modality": "ct", **get_preset options}``; ``spatial_size`` comes
    from the task (default 256). Detection tasks with box lists cannot use a preset (its spatial
    augmentation would not move the boxes): give them ``transforms`` or the default pipeline.
    """
    options = {"modality": spec.preset} if isinstance(spec.preset, str) else dict(spec.preset or {})
    if spec.kind not in _PRESET_LABEL_TYPES:
        raise ConfigError(
            f"task {spec.name!r}: presets do not move box lists; detection tasks need their own "
            "transforms or the default pipeline"
        )
    modality = options.pop("modality", None)
    if modality is None:
        raise ConfigError(f'task {spec.name!r}: preset needs a modality, e.g. "ct"')
    keys = ("image", "label") if spec.kind == "segmentation" else ("image",)
    options.setdefault("spatial_size", list(spec.spatial_size) if spec.spatial_size else 256)
    try:
        return get_preset(
            modality,
            mode="train" if train else "infer",
            keys=keys,
            label_type=_PRESET_LABEL_TYPES[spec.kind],
            **options,
        )
    except TypeError as err:
        raise ConfigError(f"task {spec.name!r}: bad preset option: {err}") from None
