"""Task datasets: a task's items with its transforms, seeded per sample, skipping bad cases.

:class:`TaskDataset` takes keys ``(index, seed)`` and seeds the random transforms with ``seed``
before each sample (MONAI ``Randomizable.set_random_state``), so a sample's augmentation
depends only on the seed its sampler derives (run seed, task, epoch, index): not on worker
processes, prefetching or where a run was resumed. Unreadable or broken samples are skipped
and reported (``skip_bad=True``): the next index is used instead, and the problem is logged
and kept in :attr:`TaskDataset.bad_cases`.

Example
-------
>>> import torch
>>> ds = TaskDataset([{"image": torch.zeros(1, 2, 2), "label": 0}], transform=lambda d: d, name="a")
>>> len(ds), ds[0]["label"]
(1, 0)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monai.transforms import Randomizable, apply_transform
from torch.utils.data import Dataset

from medfound.errors import DatasetLayoutError, ImageReadError, MedfoundError
from medfound.multitask.batches import check_task_sample, describe_item
from medfound.multitask.task_transforms import task_transforms
from medfound.multitask.tasks import TaskSpec
from medfound.utils import check_choice

__all__ = ["TaskDataset", "build_task_datasets"]

logger = logging.getLogger(__name__)


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
    kind : the task's kind; given, every sample is checked before it can join a batch
        (:func:`~medfound.multitask.batches.check_task_sample`: 2D, 1 or 3 channels, finite
        values, label map of the image's size), so a bad one is skipped like an unreadable one.

    ``dataset[(index, seed)]`` seeds then transforms; ``dataset[index]`` transforms unseeded.
    """

    def __init__(
        self, items: Sequence[Mapping[str, Any]], transform: Callable, name: str = "task", skip_bad: bool = True,
        kind: str | None = None,
    ) -> None:
        self.items = [dict(i) for i in items]
        self.kind = kind
        self.transform = transform
        self.name = name
        self.skip_bad = bool(skip_bad)
        self.bad_cases: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, index: int, seed: int | None) -> Any:
        if seed is not None and isinstance(self.transform, Randomizable):
            self.transform.set_random_state(seed=seed)
        sample = apply_transform(self.transform, dict(self.items[index]))
        if self.kind is not None and isinstance(sample, Mapping):  # before collation, so the item can be skipped
            check_task_sample(self.kind, sample, describe_item(self.items[index]))
        return sample

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
                    f"task {self.name!r}: sample {i} ({describe_item(self.items[i])}) failed: "
                    f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
                )
                if not self.skip_bad:
                    raise ImageReadError(message) from err
                self.bad_cases[i] = message
                logger.warning("%s; skipped", message)
        raise DatasetLayoutError(f"task {self.name!r}: no sample could be read ({len(self.bad_cases)} bad cases)")


def build_task_datasets(specs: Sequence[TaskSpec], split: str, skip_bad: bool = True) -> dict[str, TaskDataset]:
    """One :class:`TaskDataset` per task for ``"train"`` or ``"val"``, with the task's transforms.

    Example
    -------
    >>> import torch
    >>> from medfound.multitask.tasks import load_tasks
    >>> specs = load_tasks([{"name": "a", "kind": "classification", "class_names": ["x", "y"],
    ...                      "training": [{"image": torch.zeros(1, 2, 2), "label": 1}],
    ...                      "transforms": {"train": lambda d: d}}])
    >>> build_task_datasets(specs, "train")["a"][0]["label"]
    1
    """
    check_choice(split, ("train", "val"), "split")
    out = {}
    for spec in specs:
        items = spec.load_split(split)
        example = items[0]["image"] if items and isinstance(items[0].get("image"), (str, os.PathLike)) else None
        out[spec.name] = TaskDataset(items, task_transforms(spec, split == "train", example), spec.name, skip_bad,
                                     spec.kind)
    return out
