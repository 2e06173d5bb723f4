"""FCOS training loss: sigmoid focal classification, centerness-weighted (G)IoU box regression, centerness BCE.

Training-side counterpart of :mod:`medfound.networks.fcos` (the head and decoding). Targets
come from :class:`~medfound.multitask.fcos_targets.FCOSTargetAssigner`; the focal loss is
MONAI's ``sigmoid_focal_loss``, the IoU/GIoU of the ``(l, t, r, b)`` distances
:func:`medfound.utils.boxes.ltrb_iou`. :class:`~medfound.multitask.losses.NormalizedDetectionLoss`
scales the parts so an untrained head scores about 1 in multi-task training.

Example
-------
>>> import torch
>>> loss_fn = FCOSLoss(num_classes=1, strides=[8], size_ranges=[[0, None]], center_sampling_radius=None)
>>> outputs = {"cls_logits": [torch.zeros(1, 1, 4, 4)], "box_regression": [torch.full((1, 4, 4, 4), 8.0)],
...            "centerness": [torch.zeros(1, 1, 4, 4)]}
>>> losses = loss_fn(outputs, [{"boxes": [[0, 0, 16, 16]], "labels": [0]}], image_size=(32, 32))
>>> round(losses["loss_centerness"].item(), 4)  # BCE of a 0 logit, whatever the target: ln 2
0.6931
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.losses.focal_loss import sigmoid_focal_loss
from torch import nn

from medfound.errors import ShapeError
from medfound.multitask.fcos_targets import DEFAULT_SIZE_RANGES, FCOSTargetAssigner
from medfound.networks.fcos import DEFAULT_STRIDES, head_output_levels
from medfound.utils.boxes import ltrb_iou
from medfound.utils.checks import check_choice, check_float, check_int

__all__ = ["FCOSLoss"]


def _flatten_outputs(outputs: Mapping[str, Sequence[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-level head outputs -> ``(B, L, K)``, ``(B, L, 4)``, ``(B, L)`` in location order."""
    cls_levels, box_levels, ctr_levels = head_output_levels(outputs)
    cls = torch.cat([t.flatten(2).transpose(1, 2) for t in cls_levels], dim=1)
    box = torch.cat([t.flatten(2).transpose(1, 2) for t in box_levels], dim=1)
    ctr = torch.cat([t.flatten(1) for t in ctr_levels], dim=1)
    if box.shape[-1] != 4 or box.shape[:2] != cls.shape[:2] or ctr.shape != cls.shape[:2]:
        raise ShapeError("FCOS outputs disagree: box_regression must be (B, 4, H, W) and centerness (B, 1, H, W)")
    return cls, box, ctr


class FCOSLoss(nn.Module):
    """FCOS training loss: focal classification, (G)IoU box regression, centerness BCE.

    - ``loss_cls``: sigmoid focal loss summed over all locations and classes, divided by
      the number of positive locations in the batch (at least 1);
    - ``loss_box``: ``1 - GIoU`` (``box_loss="giou"``), ``1 - IoU`` (``"iou"``) or
      ``-ln IoU`` (``"log_iou"``, the FCOS paper's) over positives, weighted by their
      centerness targets and divided by the sum of those targets;
    - ``loss_centerness``: BCE between the centerness logits and targets at positives,
      divided by the number of positives;
    - ``loss``: the weighted sum.

    Computation is in float32 whatever the outputs' dtype (safe under autocast).

    Parameters
    ----------
    num_classes : number of classes K.
    strides, size_ranges, center_sampling_radius : target assignment (see
        :class:`~medfound.multitask.fcos_targets.FCOSTargetAssigner`).
    focal_alpha, focal_gamma : focal loss parameters (``alpha`` weighs positives, ``1 - alpha``
        negatives; a negative ``alpha`` switches the weighting off).
    box_loss : ``"giou"``, ``"iou"`` or ``"log_iou"``.
    cls_weight, box_weight, centerness_weight : weights in ``loss``.

    Example
    -------
    >>> import torch
    >>> loss_fn = FCOSLoss(num_classes=1, strides=[8], size_ranges=[[0, None]])
    >>> outputs = {"cls_logits": [torch.zeros(1, 1, 4, 4)], "box_regression": [torch.full((1, 4, 4, 4), 4.0)],
    ...            "centerness": [torch.zeros(1, 1, 4, 4)]}
    >>> losses = loss_fn(outputs, [{"boxes": [[0, 0, 16, 16]], "labels": [0]}], image_size=(32, 32))
    >>> sorted(losses)
    ['loss', 'loss_box', 'loss_centerness', 'loss_cls']
    """

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[int] = DEFAULT_STRIDES,
        size_ranges: Sequence[Sequence[float | None]] = DEFAULT_SIZE_RANGES,
        center_sampling_radius: float | None = 1.5,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_loss: str = "giou",
        cls_weight: float = 1.0,
        box_weight: float = 1.0,
        centerness_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = check_int(num_classes, "FCOSLoss num_classes", low=1)
        self.box_loss = check_choice(box_loss, ("giou", "iou", "log_iou"), "FCOSLoss box_loss")
        self.assigner = FCOSTargetAssigner(strides, size_ranges, center_sampling_radius)
        self.focal_alpha = check_float(focal_alpha, "FCOSLoss focal_alpha")
        self.focal_gamma = check_float(focal_gamma, "FCOSLoss focal_gamma", low=0.0)
        self.cls_weight = check_float(cls_weight, "FCOSLoss cls_weight")
        self.box_weight = check_float(box_weight, "FCOSLoss box_weight")
        self.centerness_weight = check_float(centerness_weight, "FCOSLoss centerness_weight")

    def forward(
        self,
        outputs: Mapping[str, Sequence[torch.Tensor]],
        targets: Sequence[Mapping[str, Any]],
        image_size: Any,
    ) -> dict[str, torch.Tensor]:
        """Compute the losses.

        Parameters
        ----------
        outputs : :class:`~medfound.networks.fcos.FCOSHead`'s output.
        targets : one dict per image, ``{"boxes": (N, 4) [x_min, y_min, x_max, y_max] pixels,
            "labels": (N,) long}`` (``"box"``/``"label"``, the datalist keys, also work);
            ``N`` may be 0.
        image_size : ``(H, W)`` of the (padded) input, or one per image; boxes are clipped to it.

        Returns
        -------
        dict of scalar tensors ``loss_cls``, ``loss_box``, ``loss_centerness``, ``loss``.
        """
        cls, box, ctr = _flatten_outputs(outputs)
        batch = cls.shape[0]
        if len(targets) != batch:
            raise ShapeError(f"FCOSLoss got {len(targets)} targets for a batch of {batch} images")
        if cls.shape[-1] != self.num_classes:
            raise ShapeError(f"FCOSLoss expects {self.num_classes} classes, the outputs have {cls.shape[-1]}")
        feature_sizes = [tuple(t.shape[-2:]) for t in outputs["cls_logits"]]  # checked by _flatten_outputs
        t = self.assigner(feature_sizes, targets, image_size, self.num_classes, device=cls.device)
        cls, box, ctr = cls.float(), box.float(), ctr.float()

        labels = t["labels"]
        positive = labels >= 0
        num_pos = positive.sum()
        cls_target = torch.zeros_like(cls)
        cls_target[positive, labels[positive]] = 1.0
        # MONAI's focal loss; its alpha=None is the "no class weighting" that a negative alpha means here
        alpha = self.focal_alpha if self.focal_alpha >= 0 else None
        loss_cls = sigmoid_focal_loss(cls, cls_target, gamma=self.focal_gamma, alpha=alpha).sum()
        loss_cls = loss_cls / num_pos.clamp_min(1).float()

        if bool(num_pos > 0):
            ctr_t = t["centerness"][positive]
            iou, giou = ltrb_iou(box[positive], t["box_targets"][positive])
            if self.box_loss == "giou":
                per_box = 1.0 - giou
            elif self.box_loss == "iou":
                per_box = 1.0 - iou
            else:
                per_box = -torch.log(iou.clamp_min(1e-6))
            loss_box = (per_box * ctr_t).sum() / ctr_t.sum().clamp_min(1e-6)
            loss_ctr = F.binary_cross_entropy_with_logits(ctr[positive], ctr_t, reduction="sum") / num_pos.float()
        else:  # keep the graph connected (unused-parameter checks in DDP) with zero-valued losses
            loss_box = box.sum() * 0.0
            loss_ctr = ctr.sum() * 0.0
        loss = self.cls_weight * loss_cls + self.box_weight * loss_box + self.centerness_weight * loss_ctr
        return {"loss_cls": loss_cls, "loss_box": loss_box, "loss_centerness": loss_ctr, "loss": loss}
