"""Training-only heads of DAC: feature projection (predictor) and the two auxiliary 1x1 heads.

None of these is part of the deployed model: inference is one plain segmentation network.

Example
-------
>>> import torch
>>> from medfound.dac.heads import MixedRegionHead, ProjectionHead, RotationHead
>>> f = torch.randn(2, 16, 8, 8)
>>> ProjectionHead(16, 8)(f).shape, MixedRegionHead(16)(f).shape, RotationHead(16)(f).shape
(torch.Size([2, 16, 8, 8]), torch.Size([2, 1, 8, 8]), torch.Size([2, 4, 8, 8]))
"""

from __future__ import annotations

from torch import nn

__all__ = ["ProjectionHead", "MixedRegionHead", "RotationHead"]


class ProjectionHead(nn.Sequential):
    """Two-layer 1x1 projection ``C -> hidden -> out`` (BN + ReLU between), as a BYOL/SimSiam predictor.

    It maps a sub-model's features to the other sub-model's feature space, so the two
    models are pulled together without being forced to identical representations.

    Parameters
    ----------
    in_channels : channels of the supervised feature layer.
    hidden_channels : bottleneck width.
    out_channels : output channels (default: ``in_channels``, the target's channels).
    """

    def __init__(self, in_channels: int, hidden_channels: int = 128, out_channels: int | None = None) -> None:
        out = in_channels if out_channels is None else out_channels
        super().__init__(
            nn.Conv2d(in_channels, hidden_channels, 1, bias=False),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, out, 1),
        )


def _zero(conv: nn.Conv2d) -> None:
    # a zero head sends no gradient into the trunk until it has learnt something itself
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)


class MixedRegionHead(nn.Conv2d):
    """Linear (1x1) head of sub-model A: one logit per pixel, "this pixel was pasted by CutMix".

    ``zero_init``: weights and bias start at zero (otherwise PyTorch's default initialisation).
    """

    def __init__(self, in_channels: int, zero_init: bool = False) -> None:
        super().__init__(in_channels, 1, kernel_size=1)
        if zero_init:
            _zero(self)


class RotationHead(nn.Conv2d):
    """Linear (1x1) head of sub-model B: four logits per pixel, the quarter turns of the rotated region.

    ``zero_init``: weights and bias start at zero (otherwise PyTorch's default initialisation).
    """

    def __init__(self, in_channels: int, zero_init: bool = False) -> None:
        super().__init__(in_channels, 4, kernel_size=1)
        if zero_init:
            _zero(self)
