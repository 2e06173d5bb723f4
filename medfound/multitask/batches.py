"""Batches of one task: collation of samples (padding, per-kind labels) and preparation on the device.

Example
-------
>>> import torch
>>> batch = collate_task_batch("classification")([{"image": torch.zeros(1, 4, 6), "label": 1}] * 2)
>>> batch["image"].shape, batch["label"].tolist()
(torch.Size([2, 1, 4, 6]), [1, 1])
>>> images, target = prepare_task_batch("classification", batch, "cpu")
>>> images.shape  # single-channel images repeated to the encoder's 3 channels
torch.Size([2, 3, 4, 6])
>>> padded_size(33, 64, 32)
(64, 64)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medfound.errors import ConfigError, InvalidImageError, LabelMismatchError, NonFiniteImageError
from medfound.transforms.checks import CheckFinite

__all__ = ["collate_task_batch", "prepare_task_batch", "padded_size", "describe_item", "check_task_sample"]


def padded_size(height: int, width: int, divisor: int) -> tuple[int, int]:
    """``(height, width)`` rounded up to multiples of ``divisor``."""
    return -(-int(height) // divisor) * divisor, -(-int(width) // divisor) * divisor


def describe_item(item: Mapping[str, Any]) -> str:
    """The item's image path (its first one), for messages."""
    image = item.get("image")
    image = image[0] if isinstance(image, (list, tuple)) and image else image
    if isinstance(image, (torch.Tensor, np.ndarray)):  # an in-memory item: its shape, not its values
        return f"<in-memory image {tuple(image.shape)}>"
    return str(image)


def check_task_sample(kind: str, sample: Mapping[str, Any], source: str) -> None:
    """Check one transformed sample before it may join a batch, naming ``source`` (its file) on failure.

    What collation would otherwise find only for the whole batch (or never): the image must be
    ``(C, H, W)`` with 1 or 3 channels and finite values (a NaN pixel makes every loss of its
    batch NaN), a segmentation label map ``(H, W)`` or ``(1, H, W)`` of the image's size, a
    classification/multi-label target and detection boxes finite.
    :class:`~medfound.multitask.datasets.TaskDataset` runs it on every sample, so a bad one is
    skipped and reported (or named, with ``skip_bad=False``) instead of aborting the run.

    Example
    -------
    >>> import torch
    >>> check_task_sample("classification", {"image": torch.zeros(3, 4, 4), "label": 1}, "a.png")
    >>> try:
    ...     check_task_sample("classification", {"image": torch.zeros(1, 4, 4, 4), "label": 1}, "v.nii")
    ... except ValueError as err:
    ...     print(err)
    v.nii: image has shape (1, 4, 4, 4) after the transforms; tasks take 2D images (C, H, W)
    """
    image = _plain(sample["image"])
    if image.ndim != 3:
        raise InvalidImageError(
            f"{source}: image has shape {tuple(image.shape)} after the transforms; tasks take 2D images (C, H, W)"
        )
    if image.shape[0] not in (1, 3):
        raise InvalidImageError(f"{source}: image has {image.shape[0]} channels; tasks take 1 or 3")
    checks = {"image": image}
    if kind == "segmentation":
        label = _plain(sample["label"])
        one_channel = label.ndim == 2 or (label.ndim == 3 and label.shape[0] == 1)
        if not one_channel or label.shape[-2:] != image.shape[-2:]:
            raise LabelMismatchError(
                f"{source}: label map {tuple(label.shape)} does not match image {tuple(image.shape)}"
            )
        checks["label"] = label
    elif kind in ("classification", "multilabel"):
        checks["label"] = _plain(sample["label"])
    else:
        checks["box"] = _plain(sample["box"])
    for key, value in checks.items():
        if value.is_floating_point():
            try:
                CheckFinite()(value.as_subclass(torch.Tensor))
            except NonFiniteImageError as err:
                raise NonFiniteImageError(f"{source}: {key} holds {str(err).split(': ', 1)[-1]}") from None


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
                    f"task images must be (C, H, W) after the transforms, got {tuple(img.shape)} for {describe_item(s)}"
                )
        if len({img.shape[0] for img in images}) > 1:  # grey among colour: grey repeated, as the encoder gets it
            images = [img.expand(3, -1, -1) if img.shape[0] == 1 else img for img in images]
        batch: dict[str, Any] = {
            "image": _stack_padded(images, 0.0),
            "filename_or_obj": [describe_item(s) for s in samples],  # for messages (a non-finite loss names them)
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
                        f"label map {tuple(lab.shape)} does not match image {tuple(img.shape)} for {describe_item(s)}"
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
