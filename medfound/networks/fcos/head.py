"""The FCOS head: class logits, box distances and centerness per pyramid level, and its output grid.

- :class:`FCOSHead`: the per-task prediction convolutions on top of shared class/box towers;
- :func:`fcos_locations`: the input-pixel centre of every cell the head predicts for;
- :func:`check_strides`, :func:`head_output_levels`: the checks every consumer of the head's
  output (decoding here, target assignment and losses in :mod:`medfound.multitask`) shares.

Example
-------
>>> import torch
>>> head = FCOSHead(in_channels=32, num_classes=3)
>>> feats = [torch.randn(2, 32, 64 // 2**i, 64 // 2**i) for i in range(5)]
>>> out = head(feats, feats)
>>> [tuple(t.shape) for t in out["cls_logits"][:2]], tuple(out["box_regression"][0].shape)
([(2, 3, 64, 64), (2, 3, 32, 32)], (2, 4, 64, 64))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from monai.data import MetaTensor
from torch import nn

from medfound.errors import ConfigError, ShapeError
from medfound.utils.checks import check_choice, check_float, check_int

__all__ = ["DEFAULT_STRIDES", "Scale", "FCOSHead", "fcos_locations", "check_strides", "head_output_levels"]

#: strides of the FPN levels P3-P7 that FCOS predicts on
DEFAULT_STRIDES: tuple[int, ...] = (8, 16, 32, 64, 128)


class Scale(nn.Module):
    """A learnable scalar that multiplies its input (one per pyramid level in FCOS)."""

    def __init__(self, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def check_strides(strides: Sequence[int], num_levels: int) -> tuple[int, ...]:
    """The first ``num_levels`` strides, each a positive integer; an error if fewer are given.

    Example
    -------
    >>> check_strides([8, 16, 32], 2)
    (8, 16)
    """
    strides = tuple(check_int(s, f"FCOS strides[{i}]", low=1) for i, s in enumerate(strides))
    if len(strides) < num_levels:
        raise ConfigError(f"FCOS needs a stride per level: got {len(strides)} strides for {num_levels} levels")
    return strides[:num_levels]


class FCOSHead(nn.Module):
    """Per-task FCOS prediction layers on top of shared classification and regression towers.

    Three 3x3 convolutions shared over the pyramid levels: class logits on the
    classification tower's output; box distances and centerness on the regression
    tower's output (centerness on the regression branch, as in the improved FCOS).
    Box distances are ``exp(scale_l * conv(x)) * stride_l`` (``box_activation="exp"``, the
    default, as the FCOS paper) or ``relu(scale_l * conv(x)) * stride_l`` (``"relu"``, as the
    improved FCOS), so they are in input pixels and non-negative, with one learnable
    ``scale_l`` per level. ``exp`` starts every box at one stride per side and learns at
    once; with ``relu`` the boxes start near zero size, where the IoU loss has almost no
    gradient (in small test configurations the box loss stayed at 1 for ~30 steps).

    Parameters
    ----------
    in_channels : channels of every tower output (the same for all levels).
    num_classes : number of object classes (no background class; sigmoid per class).
    num_levels : number of pyramid levels the head is called with.
    prior_prob : initial foreground probability; the class bias starts at
        ``-log((1 - prior_prob) / prior_prob)`` so the focal loss is stable at the start.
    strides : stride of each level in input pixels (the first ``num_levels`` are used).
    box_activation : ``"exp"`` (default) or ``"relu"``.

    Example
    -------
    >>> import torch
    >>> head = FCOSHead(16, num_classes=1, num_levels=2, strides=[8, 16])
    >>> feats = [torch.zeros(1, 16, 4, 4), torch.zeros(1, 16, 2, 2)]
    >>> out = head(feats, feats)
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
        box_activation: str = "exp",
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "FCOSHead in_channels", low=1)
        self.num_classes = check_int(num_classes, "FCOSHead num_classes", low=1)
        self.num_levels = check_int(num_levels, "FCOSHead num_levels", low=1)
        prior_prob = check_float(prior_prob, "FCOSHead prior_prob", low=0.0, high=1.0, low_open=True, high_open=True)
        self.box_activation = check_choice(box_activation, ("exp", "relu"), "FCOSHead box_activation")
        self.strides = check_strides(strides, self.num_levels)

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
            ``(B, 4, H_i, W_i)`` (left, top, right, bottom in input pixels, >= 0, float32
            also under autocast);
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
            # pixel distances reach thousands: keep them in float32 even under autocast
            reg = self.scales[level](self.bbox_pred(fr).float())
            if self.box_activation == "relu":
                reg = torch.relu(reg)
            else:  # bounded so exp cannot overflow (e^8 * 128 px is far beyond any image)
                reg = torch.exp(reg.clamp(max=8.0))
            box_out.append(reg * self.strides[level])
            ctr_out.append(self.centerness(fr))
        return {"cls_logits": cls_out, "box_regression": box_out, "centerness": ctr_out}


def fcos_locations(
    feature_sizes: Sequence[Sequence[int]],
    strides: Sequence[int] = DEFAULT_STRIDES,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """Input-pixel coordinates of every feature-map cell centre, per level.

    Cell ``(i, j)`` of a level with stride ``s`` sits at ``x = (j + 0.5) * s``,
    ``y = (i + 0.5) * s``; cells are listed row-major (the order of ``t.flatten(-2)``).

    Parameters
    ----------
    feature_sizes : ``(H_i, W_i)`` per level.
    strides : stride per level (the first ``len(feature_sizes)`` are used).

    Returns
    -------
    list of ``(H_i * W_i, 2)`` tensors of ``(x, y)``.

    Example
    -------
    >>> fcos_locations([(1, 2)], strides=[8])[0].tolist()
    [[4.0, 4.0], [12.0, 4.0]]
    """
    strides = check_strides(strides, len(feature_sizes))
    out = []
    for (h, w), s in zip(feature_sizes, strides):
        ys = (torch.arange(int(h), device=device, dtype=dtype) + 0.5) * s
        xs = (torch.arange(int(w), device=device, dtype=dtype) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        out.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))
    return out


def head_output_levels(outputs: Mapping[str, Sequence[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """:class:`FCOSHead`'s three per-level lists as plain tensors, checked for presence and level count.

    MetaTensors (from MONAI transforms or engines) become plain tensors: decoding and the
    losses need no metadata tracking.

    Returns
    -------
    ``[cls_logits, box_regression, centerness]``, each a list over levels.

    Example
    -------
    >>> import torch
    >>> out = {k: [torch.zeros(1, c, 2, 2)] for k, c in (("cls_logits", 3), ("box_regression", 4),
    ...                                                   ("centerness", 1))}
    >>> [len(levels) for levels in head_output_levels(out)]
    [1, 1, 1]
    """
    levels = []
    for key in ("cls_logits", "box_regression", "centerness"):
        if key not in outputs:
            raise ShapeError(f"FCOS outputs need {key!r}, got keys {sorted(outputs)}")
        levels.append([t.as_tensor() if isinstance(t, MetaTensor) else t for t in outputs[key]])
    if not len(levels[0]) == len(levels[1]) == len(levels[2]) > 0:
        raise ShapeError("FCOS outputs must have the same (non-zero) number of levels for every key")
    return levels
