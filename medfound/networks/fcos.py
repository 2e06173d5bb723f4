"""FCOS: fully convolutional one-stage, anchor-free object detection (Tian et al., ICCV 2019).

Pure torch (no torchvision ops). The pieces:

- :class:`FCOSHead`: the per-task prediction convolutions on top of shared class/box
  towers (class logits, ``(left, top, right, bottom)`` distances in input pixels with a
  learnable scale per level, centerness);
- :class:`FCOSTargetAssigner`: which feature-map location learns which box (cell centres,
  size range per level, centre sampling, smallest-area tie break);
- :class:`FCOSLoss`: sigmoid focal loss + centerness-weighted (G)IoU loss + centerness BCE;
- :class:`FCOSPostprocessor`: scores, thresholds, top-k, class-wise NMS, clipping;
- :func:`nms` / :func:`batched_nms`: exact greedy non-maximum suppression in block-wise
  tensor operations (no per-box Python loop, so it stays on the GPU).

Box convention (the project's): ``[x_min, y_min, x_max, y_max]`` in pixels, x along the
width (last) axis, y along the height axis, max exclusive (``x_max - x_min`` is the width).

Example
-------
>>> import torch
>>> from medfound.networks.fcos import FCOSHead
>>> head = FCOSHead(in_channels=32, num_classes=3)
>>> feats = [torch.randn(2, 32, 64 // 2**i, 64 // 2**i) for i in range(5)]
>>> out = head(feats, feats)
>>> [tuple(t.shape) for t in out["cls_logits"][:2]], tuple(out["box_regression"][0].shape)
([(2, 3, 64, 64), (2, 3, 32, 32)], (2, 4, 64, 64))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from medfound.errors import ConfigError, ShapeError

__all__ = ["DEFAULT_STRIDES", "Scale", "FCOSHead"]

#: strides of the FPN levels P3-P7 that FCOS predicts on
DEFAULT_STRIDES: tuple[int, ...] = (8, 16, 32, 64, 128)


class Scale(nn.Module):
    """A learnable scalar that multiplies its input (one per pyramid level in FCOS)."""

    def __init__(self, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _check_strides(strides: Sequence[int], num_levels: int) -> tuple[int, ...]:
    strides = tuple(int(s) for s in strides)
    if len(strides) < num_levels:
        raise ConfigError(f"FCOS needs a stride per level: got {len(strides)} strides for {num_levels} levels")
    if any(s <= 0 for s in strides):
        raise ConfigError(f"FCOS strides must be positive, got {strides}")
    return strides[:num_levels]


class FCOSHead(nn.Module):
    """Per-task FCOS prediction layers on top of shared classification and regression towers.

    Three 3x3 convolutions shared over the pyramid levels: class logits on the
    classification tower's output; box distances and centerness on the regression
    tower's output (centerness on the regression branch, as in the improved FCOS).
    Box distances are ``relu(scale_l * conv(x)) * stride_l`` (``box_activation="relu"``,
    the improved FCOS) or ``exp(scale_l * conv(x)) * stride_l`` (``"exp"``), so they are in
    input pixels and non-negative, with one learnable ``scale_l`` per level.

    Parameters
    ----------
    in_channels : channels of every tower output (the same for all levels).
    num_classes : number of object classes (no background class; sigmoid per class).
    num_levels : number of pyramid levels the head is called with.
    prior_prob : initial foreground probability; the class bias starts at
        ``-log((1 - prior_prob) / prior_prob)`` so the focal loss is stable at the start.
    strides : stride of each level in input pixels (the first ``num_levels`` are used).
    box_activation : ``"relu"`` (default) or ``"exp"``.

    Example
    -------
    >>> import torch
    >>> head = FCOSHead(16, num_classes=1, num_levels=2, strides=[8, 16])
    >>> out = head([torch.zeros(1, 16, 4, 4), torch.zeros(1, 16, 2, 2)], [torch.zeros(1, 16, 4, 4), torch.zeros(1, 16, 2, 2)])
    >>> round(torch.sigmoid(out["cls_logits"][0]).mean().item(), 4)
    0.01
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_levels: int = 5,
        prior_prob: float = 0.01,
        strides: Sequence[int] = DEFAULT_STRIDES,
        box_activation: str = "relu",
    ) -> None:
        super().__init__()
        if int(in_channels) < 1 or int(num_classes) < 1 or int(num_levels) < 1:
            raise ConfigError(
                f"FCOSHead needs in_channels, num_classes and num_levels >= 1, got "
                f"{in_channels}, {num_classes}, {num_levels}"
            )
        if not 0.0 < float(prior_prob) < 1.0:
            raise ConfigError(f"FCOSHead prior_prob must be in (0, 1), got {prior_prob}")
        if box_activation not in ("relu", "exp"):
            raise ConfigError(f"FCOSHead box_activation must be 'relu' or 'exp', got {box_activation!r}")
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.num_levels = int(num_levels)
        self.strides = _check_strides(strides, self.num_levels)
        self.box_activation = box_activation

        self.cls_logits = nn.Conv2d(self.in_channels, self.num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(self.in_channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(self.in_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(self.num_levels))
        for conv in (self.cls_logits, self.bbox_pred, self.centerness):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1.0 - prior_prob) / prior_prob))

    def _check(self, name: str, feats: Sequence[torch.Tensor]) -> None:
        if len(feats) != self.num_levels:
            raise ShapeError(f"FCOSHead expects {self.num_levels} {name} levels, got {len(feats)}")
        for i, f in enumerate(feats):
            if f.ndim != 4 or f.shape[1] != self.in_channels:
                raise ShapeError(
                    f"FCOSHead {name}[{i}] must be (B, {self.in_channels}, H, W), got {tuple(f.shape)}"
                )

    def forward(
        self, cls_feats: Sequence[torch.Tensor], reg_feats: Sequence[torch.Tensor]
    ) -> dict[str, list[torch.Tensor]]:
        """Predict on every level.

        Parameters
        ----------
        cls_feats, reg_feats : per level ``(B, in_channels, H_i, W_i)``, the classification and
            regression towers' outputs (the same tensors may be passed twice).

        Returns
        -------
        dict
            ``"cls_logits"``: list of ``(B, K, H_i, W_i)``; ``"box_regression"``: list of
            ``(B, 4, H_i, W_i)`` (left, top, right, bottom in input pixels, >= 0);
            ``"centerness"``: list of ``(B, 1, H_i, W_i)`` logits.
        """
        self._check("cls_feats", cls_feats)
        self._check("reg_feats", reg_feats)
        cls_out, box_out, ctr_out = [], [], []
        for level, (fc, fr) in enumerate(zip(cls_feats, reg_feats)):
            if fc.shape[0] != fr.shape[0] or fc.shape[-2:] != fr.shape[-2:]:
                raise ShapeError(
                    f"FCOSHead level {level}: cls_feats {tuple(fc.shape)} and reg_feats {tuple(fr.shape)} differ"
                )
            cls_out.append(self.cls_logits(fc))
            reg = self.scales[level](self.bbox_pred(fr))
            if self.box_activation == "relu":
                reg = torch.relu(reg)
            else:  # clamp so exp cannot overflow in half precision
                reg = torch.exp(reg.clamp(max=8.0))
            box_out.append(reg * self.strides[level])
            ctr_out.append(self.centerness(fr))
        return {"cls_logits": cls_out, "box_regression": box_out, "centerness": ctr_out}
