"""FCOS: fully convolutional one-stage, anchor-free object detection (Tian et al., ICCV 2019), the network side.

Pure torch (no torchvision ops). What runs at inference lives here:

- :mod:`~medfound.networks.fcos.head`: :class:`FCOSHead`, the per-task prediction convolutions on
  top of shared class/box towers (class logits, ``(left, top, right, bottom)`` distances in input
  pixels with a learnable scale per level, centerness), and :func:`fcos_locations`, the cell
  centres it predicts for;
- :mod:`~medfound.networks.fcos.decoding`: :class:`FCOSPostprocessor`, scores, thresholds, top-k,
  clipping and class-wise NMS.

Training (target assignment, focal + IoU + centerness losses) lives with the training code:
:mod:`medfound.multitask.fcos_targets` and :mod:`medfound.multitask.fcos_loss`. Box operations
(IoU, NMS, clipping) are in :mod:`medfound.utils.boxes`, shared with the detection metrics.

Box convention (the project's): ``[x_min, y_min, x_max, y_max]`` in pixels, x along the
width (last) axis, y along the height axis, max exclusive (``x_max - x_min`` is the width).
An object narrower than about one stride of its level may get no positive location (the
FCOS rules); centre sampling (1.5 strides) keeps small objects reachable on the finest level.

Example
-------
>>> import torch
>>> from medfound.networks.fcos import FCOSHead, FCOSPostprocessor
>>> head = FCOSHead(in_channels=32, num_classes=3)
>>> feats = [torch.randn(2, 32, 64 // 2**i, 64 // 2**i) for i in range(5)]
>>> detections = FCOSPostprocessor()(head(feats, feats), image_size=(64, 64))
>>> len(detections), sorted(detections[0])
(2, ['boxes', 'labels', 'scores'])
"""

from medfound.networks.fcos.decoding import FCOSPostprocessor, per_image_sizes
from medfound.networks.fcos.head import (
    DEFAULT_STRIDES,
    FCOSHead,
    Scale,
    check_strides,
    fcos_locations,
    head_output_levels,
)

__all__ = [
    "DEFAULT_STRIDES",
    "Scale",
    "FCOSHead",
    "fcos_locations",
    "check_strides",
    "head_output_levels",
    "FCOSPostprocessor",
    "per_image_sizes",
]
