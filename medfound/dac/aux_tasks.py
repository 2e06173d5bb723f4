"""The asymmetric auxiliary tasks of DAC: the views that carry their labels, and the losses.

- **Task A, mixed-region localisation**: sub-model A sees a CutMix image and its 1x1 head
  predicts, per pixel, whether the pixel was pasted from another image. Target: the CutMix
  mask. Loss (:class:`MixedRegionLoss`): binary cross-entropy, logits upsampled (bilinear)
  to the input size.
- **Task B, region rotation**: sub-model B sees an image in which a random square region was
  rotated by ``k`` x 90 degrees; its 1x1 head gives four logits per pixel, averaged over the
  region (area-weighted at the head's resolution), and cross-entropy against ``k``
  (:class:`RotationLoss`).

:func:`make_mixed_region_task` and :func:`make_rotation_task` build the views and their
labels; :class:`~medfound.dac.trainer.DACTrainer` calls exactly these in every step (the
CutMix view is also the strong view of the pseudo-label terms). Label generation uses
:mod:`medfound.transforms.mixing` with a ``numpy.random.RandomState``, so a training step is
reproducible from its seed on any device.

Example
-------
>>> import numpy as np, torch
>>> from medfound.dac.aux_tasks import make_rotation_task
>>> task = make_rotation_task(torch.rand(2, 3, 64, 64), np.random.RandomState(0), align=16)
>>> task.images.shape, task.region_mask.shape, task.ks.shape
(torch.Size([2, 3, 64, 64]), torch.Size([2, 1, 64, 64]), torch.Size([2]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medfound.errors import LabelMismatchError
from medfound.transforms.mixing import (
    CUTMIX_AREA_RANGE,
    CUTMIX_ASPECT_RATIO_RANGE,
    CUTMIX_NUM_BOXES,
    CUTMIX_PROB,
    REGION_SIDE_RANGE,
    cutmix,
    cutmix_masks,
    rotate_regions,
    sample_square_regions,
    square_region_masks,
)

__all__ = [
    "ROTATION_ALIGN",
    "MixedRegionTask",
    "RotationTask",
    "make_mixed_region_task",
    "make_rotation_task",
    "MixedRegionLoss",
    "RotationLoss",
    "pool_rotation_logits",
    "rotation_accuracy",
    "mixed_region_iou",
]

#: corners and side of the rotated region are multiples of 16 px, the output stride of the
#: default DeepLabV3+, so the region maps exactly onto every feature layer (decoder: stride 4)
ROTATION_ALIGN = 16


@dataclass
class MixedRegionTask:
    """A CutMix batch and its targets: ``images`` ``(B, C, H, W)``, ``mask`` ``(B, 1, H, W)``
    (1 = pasted from sample ``i - 1``)."""

    images: torch.Tensor
    mask: torch.Tensor


@dataclass
class RotationTask:
    """A batch with one rotated square region per image and its targets.

    ``boxes`` int64 ``(B, 3)`` ``(y0, x0, side)``; ``ks`` long ``(B,)`` quarter turns;
    ``region_mask`` ``(B, 1, H, W)``.
    """

    images: torch.Tensor
    boxes: np.ndarray
    ks: torch.Tensor
    region_mask: torch.Tensor


def make_mixed_region_task(
    images: torch.Tensor,
    rng: np.random.RandomState,
    num_boxes: int = CUTMIX_NUM_BOXES,
    area_range: Sequence[float] = CUTMIX_AREA_RANGE,
    aspect_ratio_range: Sequence[float] = CUTMIX_ASPECT_RATIO_RANGE,
    prob: float = CUTMIX_PROB,
) -> MixedRegionTask:
    """CutMix within the batch (sample ``i`` receives boxes of sample ``i - 1``) and the pasted-region mask."""
    if images.dim() != 4:
        raise LabelMismatchError(f"expected a batch (B, C, H, W), got shape {tuple(images.shape)}")
    mask = cutmix_masks(
        rng, images.shape[0], images.shape[-2:], num_boxes, area_range, aspect_ratio_range, prob, device=images.device
    )
    return MixedRegionTask(cutmix(images, mask), mask)


def make_rotation_task(
    images: torch.Tensor,
    rng: np.random.RandomState,
    side_range: Sequence[float] = REGION_SIDE_RANGE,
    align: int = ROTATION_ALIGN,
) -> RotationTask:
    """Rotate one random square region per image by ``k`` in {0, 1, 2, 3} quarter turns."""
    if images.dim() != 4:
        raise LabelMismatchError(f"expected a batch (B, C, H, W), got shape {tuple(images.shape)}")
    boxes, ks = sample_square_regions(rng, images.shape[0], images.shape[-2:], side_range, align)
    return RotationTask(
        images=rotate_regions(images, boxes, ks),
        boxes=boxes,
        ks=torch.as_tensor(ks, dtype=torch.long, device=images.device),
        region_mask=square_region_masks(boxes, images.shape[-2:], device=images.device),
    )


def pool_rotation_logits(logits: torch.Tensor, region_mask: torch.Tensor) -> torch.Tensor:
    """Average the per-pixel rotation logits ``(B, 4, h, w)`` over each region -> ``(B, 4)``.

    The region mask is area-downsampled to the logits' resolution, so pixels partly inside
    the region count by their share.
    """
    weights = region_mask.float()
    if weights.shape[-2:] != logits.shape[-2:]:
        weights = F.interpolate(weights, size=logits.shape[-2:], mode="area")
    total = weights.sum(dim=(2, 3)).clamp_min(1e-6)
    return (logits.float() * weights).sum(dim=(2, 3)) / total


def rotation_accuracy(logits: torch.Tensor, region_mask: torch.Tensor, ks: torch.Tensor) -> float:
    """Fraction of images whose region-pooled rotation logits pick the applied quarter turns (chance 0.25).

    Example
    -------
    >>> import torch
    >>> logits = torch.zeros(2, 4, 4, 4); logits[0, 1] = 1.0; logits[1, 3] = 1.0
    >>> rotation_accuracy(logits, torch.ones(2, 1, 4, 4), torch.tensor([1, 2]))
    0.5
    """
    with torch.no_grad():
        pred = pool_rotation_logits(logits, region_mask).argmax(1)
        return float((pred == ks.long().to(pred.device)).float().mean())


def mixed_region_iou(logits: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """IoU of the predicted mixed region (logit > 0, upsampled to the mask) over the batch.

    Returns ``{"aux_mask_iou": ..., "aux_mask_iou_const": ...}``; the second is the IoU of the
    best constant predictor (every pixel "mixed": the mixed fraction of the batch), the level
    a head that has learnt nothing about the images reaches.

    Example
    -------
    >>> import torch
    >>> mask = torch.zeros(1, 1, 8, 8); mask[..., :4] = 1
    >>> mixed_region_iou(2 * mask - 1, mask), mixed_region_iou(torch.ones(1, 1, 8, 8), mask)["aux_mask_iou"]
    ({'aux_mask_iou': 1.0, 'aux_mask_iou_const': 0.5}, 0.5)
    """
    with torch.no_grad():
        if logits.shape[-2:] != mask.shape[-2:]:
            logits = F.interpolate(logits.float(), size=mask.shape[-2:], mode="bilinear", align_corners=False)
        pred, truth = logits > 0, mask > 0.5
        union = (pred | truth).sum().clamp_min(1)
        return {"aux_mask_iou": float((pred & truth).sum() / union),
                "aux_mask_iou_const": float(truth.float().mean())}


class MixedRegionLoss(nn.Module):
    """Binary cross-entropy of the mixed-region logits ``(B, 1, h, w)`` against the mask ``(B, 1, H, W)``.

    Example
    -------
    >>> import torch
    >>> mask = torch.zeros(1, 1, 8, 8); mask[..., :4] = 1
    >>> float(MixedRegionLoss()(20 * (2 * mask - 1), mask)) < 1e-6
    True
    """

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if logits.shape[0] != mask.shape[0] or logits.shape[1] != 1:
            raise LabelMismatchError(f"mixed-region logits {tuple(logits.shape)} do not fit mask {tuple(mask.shape)}")
        if logits.shape[-2:] != mask.shape[-2:]:
            logits = F.interpolate(logits.float(), size=mask.shape[-2:], mode="bilinear", align_corners=False)
        return F.binary_cross_entropy_with_logits(logits.float(), mask.float())


class RotationLoss(nn.Module):
    """Cross-entropy of the region-pooled rotation logits ``(B, 4, h, w)`` against the quarter turns ``ks``.

    Example
    -------
    >>> import torch
    >>> logits = torch.zeros(1, 4, 4, 4); logits[:, 2, :2, :2] = 50.0  # class 2 inside the region only
    >>> region = torch.zeros(1, 1, 4, 4); region[..., :2, :2] = 1
    >>> float(RotationLoss()(logits, region, torch.tensor([2]))) < 1e-6
    True
    """

    def forward(self, logits: torch.Tensor, region_mask: torch.Tensor, ks: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != 4:
            raise LabelMismatchError(f"rotation logits need 4 channels, got {tuple(logits.shape)}")
        return F.cross_entropy(pool_rotation_logits(logits, region_mask), ks.long().to(logits.device))
