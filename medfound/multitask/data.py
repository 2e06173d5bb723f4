"""Task data: default transforms, per-sample seeded datasets, batch samplers, collation.

Design points that make multi-task runs reproducible and resumable:

- :class:`TaskDataset` takes keys ``(index, seed)`` and seeds the random transforms with
  ``seed`` before each sample (MONAI ``Randomizable.set_random_state``), so a sample's
  augmentation depends only on (run seed, task, epoch, index): not on worker processes,
  prefetching or where a run was resumed.
- :class:`TaskBatchSampler` draws an epoch's permutation from (seed, task, epoch) and can
  start in the middle of an epoch; under ``torch.distributed`` it gives each rank its slice
  of every global batch, so ``world_size`` ranks with batch ``b`` see exactly what one
  process with batch ``world_size * b`` sees.
- Unreadable or broken samples are skipped and reported (``skip_bad=True``): the next index
  is used instead, and the problem is logged and kept in :attr:`TaskDataset.bad_cases`.

:func:`default_transforms` builds a small MONAI pipeline when a task gives none: load
(pictures as ``(C, rows, columns)``, as stored, so boxes ``[x_min, y_min, x_max, y_max]``
with x along the columns fit), intensity to [0, 1] (CT: a fixed HU window; others:
percentiles), optional resize, light intensity augmentation in training. Modality
pipelines of :mod:`medfound.transforms` plug in through the task's ``transforms``.

Example
-------
>>> from medfound.multitask.data import TaskBatchSampler
>>> s = TaskBatchSampler(num_items=10, batch_size=4, seed=0, task_index=0)
>>> len(s), [len(b) for b in s]
(2, [4, 4])
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser
from monai.data import PILReader
from monai.transforms import (
    Compose,
    EnsureTyped,
    LoadImaged,
    RandGaussianNoised,
    Randomizable,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Resized,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    apply_transform,
)
from torch.utils.data import Dataset, Sampler

from medfound.errors import ConfigError, DatasetLayoutError, ImageReadError, MedfoundError
from medfound.multitask.tasks import TaskSpec

__all__ = [
    "PICTURE_SUFFIXES",
    "default_transforms",
    "task_transforms",
    "preset_transforms",
    "TaskDataset",
    "TaskBatchSampler",
    "sample_seed",
    "collate_task_batch",
    "prepare_task_batch",
    "padded_size",
]

logger = logging.getLogger(__name__)

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

    Steps: ``LoadImaged`` (image, and the label map of segmentation tasks; PNG/JPEG/TIFF
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
    steps: list[Any] = [LoadImaged(keys, reader=reader, image_only=True, ensure_channel_first=True)]
    intensity = dict(spec.intensity or {})
    if not intensity and (spec.modality or "").upper() == "CT":
        intensity = {"a_min": DEFAULT_CT_WINDOW[0], "a_max": DEFAULT_CT_WINDOW[1]}
    if "a_min" in intensity or "a_max" in intensity:
        if not ("a_min" in intensity and "a_max" in intensity) or float(intensity["a_max"]) <= float(
            intensity["a_min"]
        ):
            raise ConfigError(f"task {spec.name!r}: intensity needs a_min < a_max, got {intensity}")
        steps.append(
            ScaleIntensityRanged("image", float(intensity["a_min"]), float(intensity["a_max"]), 0.0, 1.0, clip=True)
        )
    else:
        lower, upper = float(intensity.get("lower", 0.5)), float(intensity.get("upper", 99.5))
        if not 0 <= lower < upper <= 100:
            raise ConfigError(
                f"task {spec.name!r}: intensity percentiles need 0 <= lower < upper <= 100, got {intensity}"
            )
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
    from medfound.transforms import get_preset

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


def sample_seed(seed: int, task_index: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample: a function of (run seed, task, epoch, index) only."""
    return int(
        np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(task_index), int(epoch), int(index)]).generate_state(1)[0]
    )


def _describe(item: Mapping[str, Any]) -> str:
    image = item.get("image")
    return str(image[0] if isinstance(image, (list, tuple)) and image else image)


class TaskDataset(Dataset):
    """A task's items with its transform, seeded per sample, skipping bad cases.

    Parameters
    ----------
    items : datalist items (dicts).
    transform : callable on one item; random MONAI transforms in it are re-seeded per sample.
    name : task name (for messages).
    skip_bad : on an error while loading or transforming, log it, keep it in
        :attr:`bad_cases` and return the next item that works (``False``: raise an
        :class:`~medfound.errors.ImageReadError` naming the file).

    ``dataset[(index, seed)]`` seeds then transforms; ``dataset[index]`` transforms unseeded.
    """

    def __init__(
        self, items: Sequence[Mapping[str, Any]], transform: Callable, name: str = "task", skip_bad: bool = True
    ) -> None:
        self.items = [dict(i) for i in items]
        self.transform = transform
        self.name = name
        self.skip_bad = bool(skip_bad)
        self.bad_cases: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, index: int, seed: int | None) -> Any:
        if seed is not None and isinstance(self.transform, Randomizable):
            self.transform.set_random_state(seed=seed)
        return apply_transform(self.transform, dict(self.items[index]))

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        index, seed = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), None)
        n = len(self.items)
        for attempt in range(n):
            i = (index + attempt) % n
            if i in self.bad_cases:
                continue
            try:
                return self._load(i, seed)
            except Exception as err:  # any failure of a sample: unreadable file, bad label, transform error
                cause = err
                while cause.__cause__ is not None and not isinstance(cause, MedfoundError):
                    cause = cause.__cause__
                message = (
                    f"task {self.name!r}: sample {i} ({_describe(self.items[i])}) failed: "
                    f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
                )
                if not self.skip_bad:
                    raise ImageReadError(message) from err
                self.bad_cases[i] = message
                logger.warning("%s; skipped", message)
        raise DatasetLayoutError(f"task {self.name!r}: no sample could be read ({len(self.bad_cases)} bad cases)")


class TaskBatchSampler(Sampler):
    """Batches of ``(index, seed)`` keys for one task, one epoch, resumable mid-epoch.

    Parameters
    ----------
    num_items : size of the task's dataset.
    batch_size : per-rank batch size (reduced to what the data allows).
    seed, task_index : the run's seed and the task's position: they fix the permutations.
    epoch : which epoch's permutation.
    start_batch : first batch to yield (to resume inside an epoch).
    shuffle : permute (training) or keep the order (validation).
    drop_last : leave out the last incomplete global batch (training).
    rank, world_size : this process's slice of each global batch.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int = 0,
        task_index: int = 0,
        epoch: int = 0,
        start_batch: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_items < world_size:
            raise DatasetLayoutError(f"{num_items} samples cannot be split over {world_size} processes")
        self.num_items, self.seed, self.task_index, self.epoch = int(num_items), int(seed), int(task_index), int(epoch)
        self.world_size, self.rank = int(world_size), int(rank)
        self.batch_size = max(1, min(int(batch_size), self.num_items // self.world_size))
        self.start_batch, self.shuffle, self.drop_last = int(start_batch), bool(shuffle), bool(drop_last)

    def __len__(self) -> int:
        global_batch = self.batch_size * self.world_size
        if self.drop_last:
            return self.num_items // global_batch
        return math.ceil(self.num_items / global_batch)

    def order(self) -> np.ndarray:
        """The epoch's order of indices."""
        if not self.shuffle:
            return np.arange(self.num_items)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.task_index, self.epoch])
        return rng.permutation(self.num_items)

    def __iter__(self):
        order = self.order()
        g = self.batch_size * self.world_size
        for b in range(self.start_batch, len(self)):
            chunk = order[b * g : (b + 1) * g]
            mine = chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            if len(mine) == 0:  # an incomplete last global batch may leave a rank empty
                mine = chunk[-1:]
            yield [(int(i), sample_seed(self.seed, self.task_index, self.epoch, int(i))) for i in mine]


def padded_size(height: int, width: int, divisor: int) -> tuple[int, int]:
    """``(height, width)`` rounded up to multiples of ``divisor``."""
    return -(-int(height) // divisor) * divisor, -(-int(width) // divisor) * divisor


def _plain(t: Any) -> torch.Tensor:
    t = torch.as_tensor(t)
    return t.as_tensor() if hasattr(t, "as_tensor") else t


def _stack_padded(tensors: Sequence[torch.Tensor], value: float) -> torch.Tensor:
    """Stack ``(C, H, W)`` tensors, padding at the bottom/right to the largest size (boxes stay valid)."""
    h = max(t.shape[-2] for t in tensors)
    w = max(t.shape[-1] for t in tensors)
    return torch.stack([F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]), value=value) for t in tensors])


def collate_task_batch(kind: str) -> Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]]:
    """The collate function of a task kind.

    Returns ``{"image": (B, C, H, W) float, "image_size": (B, 2) sizes before padding,
    "label": ...}`` with ``label`` ``(B,)`` long (classification), ``(B, K)`` float
    (multi-label), ``(B, 1, H, W)`` long padded with -1 (segmentation), or for detection
    ``"box"`` / ``"label"`` lists of ``(N_i, 4)`` float / ``(N_i,)`` long tensors. Images of
    different sizes are padded at the bottom/right with zeros.
    """

    def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        images = [_plain(s["image"]).float() for s in samples]
        for s, img in zip(samples, images):
            if img.ndim != 3:
                raise ConfigError(
                    f"task images must be (C, H, W) after the transforms, got {tuple(img.shape)} for {_describe(s)}"
                )
        batch: dict[str, Any] = {
            "image": _stack_padded(images, 0.0),
            "image_size": torch.tensor([list(i.shape[-2:]) for i in images], dtype=torch.long),
        }
        if kind == "classification":
            batch["label"] = torch.tensor([int(_plain(s["label"]).reshape(-1)[0]) for s in samples], dtype=torch.long)
        elif kind == "multilabel":
            batch["label"] = torch.stack([_plain(s["label"]).reshape(-1).float() for s in samples])
        elif kind == "segmentation":
            labels = [_plain(s["label"]) for s in samples]
            labels = [lab if lab.ndim == 3 else lab.reshape(1, *lab.shape[-2:]) for lab in labels]
            for s, lab, img in zip(samples, labels, images):
                if lab.shape[-2:] != img.shape[-2:]:
                    raise ConfigError(
                        f"label map {tuple(lab.shape)} does not match image {tuple(img.shape)} for {_describe(s)}"
                    )
            labels = [lab.round().long() if lab.is_floating_point() else lab.long() for lab in labels]
            batch["label"] = _stack_padded(labels, -1)
        else:
            batch["box"] = [_plain(s["box"]).reshape(-1, 4).float() for s in samples]
            batch["label"] = [_plain(s["label"]).reshape(-1).long() for s in samples]
        return batch

    return collate


def prepare_task_batch(
    kind: str, batch: Mapping[str, Any], device: torch.device | str, non_blocking: bool = False
) -> tuple[torch.Tensor, Any]:
    """Move a collated batch to ``device``: ``(images with 3 channels, target)``.

    Single-channel images are repeated to 3 channels (what the UMedPT encoder takes).
    Targets: classification ``(B,)``; multi-label ``(B, K)``; segmentation ``(B, H, W)``;
    detection a list of ``{"boxes", "labels"}``.
    """
    images = _plain(batch["image"]).to(device, non_blocking=non_blocking)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    elif images.shape[1] != 3:
        raise ConfigError(f"images must have 1 or 3 channels, got {images.shape[1]}")
    if kind == "detection":
        target: Any = [
            {"boxes": b.to(device, non_blocking=non_blocking), "labels": lab.to(device, non_blocking=non_blocking)}
            for b, lab in zip(batch["box"], batch["label"])
        ]
    else:
        target = _plain(batch["label"]).to(device, non_blocking=non_blocking)
        if kind == "segmentation" and target.ndim == 4:
            target = target[:, 0]
    return images, target
