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
Pixel coordinates are those of the network input: when inputs are padded (UMedPT pads
sides to multiples of 32), pad at the bottom/right, or shift the boxes by the padding,
and pass the unpadded sizes as ``image_size`` so decoded boxes are clipped to the image.
An object narrower than about one stride of its level may get no positive location (the
FCOS rules); centre sampling (1.5 strides) keeps small objects reachable on the finest level.

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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from torch import nn

from medfound.errors import ConfigError, LabelMismatchError, ShapeError

__all__ = [
    "DEFAULT_STRIDES",
    "DEFAULT_SIZE_RANGES",
    "Scale",
    "FCOSHead",
    "fcos_locations",
    "FCOSTargetAssigner",
    "sigmoid_focal_loss",
    "ltrb_iou",
    "box_iou",
    "nms",
    "batched_nms",
    "FCOSLoss",
    "FCOSPostprocessor",
]

#: strides of the FPN levels P3-P7 that FCOS predicts on
DEFAULT_STRIDES: tuple[int, ...] = (8, 16, 32, 64, 128)
#: FCOS object-size range per level: a location is positive on a level when the largest of
#: its (l, t, r, b) targets lies in (low, high]; ``None`` means no upper bound
DEFAULT_SIZE_RANGES: tuple[tuple[float, float | None], ...] = (
    (0, 64), (64, 128), (128, 256), (256, 512), (512, None),
)


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


# ---------------------------------------------------------------------------------------------
# locations and target assignment


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
    strides = _check_strides(strides, len(feature_sizes))
    out = []
    for (h, w), s in zip(feature_sizes, strides):
        ys = (torch.arange(int(h), device=device, dtype=dtype) + 0.5) * s
        xs = (torch.arange(int(w), device=device, dtype=dtype) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        out.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))
    return out


def _check_size_ranges(size_ranges: Sequence[Sequence[float | None]], num_levels: int) -> list[tuple[float, float]]:
    """Validate JSON-friendly ranges (``None``, ``"inf"`` or ``-1`` as no upper bound); use ``num_levels``."""
    ranges = []
    for r in size_ranges:
        if len(r) != 2:
            raise ConfigError(f"FCOS size_ranges entries must be [low, high], got {r!r}")
        low, high = r
        high = math.inf if high is None or high == "inf" or (isinstance(high, (int, float)) and high < 0) else high
        low, high = float(low), float(high)
        if not 0 <= low < high:
            raise ConfigError(f"FCOS size range must satisfy 0 <= low < high, got {r!r}")
        ranges.append((low, high))
    if len(ranges) < num_levels:
        raise ConfigError(f"FCOS needs a size range per level: got {len(ranges)} for {num_levels} levels")
    ranges = ranges[:num_levels]
    # objects larger than every range would never be learnt: the last level used takes them
    ranges[-1] = (ranges[-1][0], math.inf)
    return ranges


def _image_sizes(image_size: Any, batch: int) -> list[tuple[int, int]]:
    """``(H, W)`` for all images, or one ``(H, W)`` per image -> one ``(H, W)`` per image."""
    if isinstance(image_size, torch.Tensor):
        image_size = image_size.tolist()
    if image_size is None:
        raise ConfigError("FCOS needs image_size as (H, W) or one (H, W) per image")
    sizes = list(image_size)
    if len(sizes) == 2 and all(isinstance(v, (int, float, np.integer, np.floating)) for v in sizes):
        return [(int(sizes[0]), int(sizes[1]))] * batch
    if len(sizes) != batch or any(len(s) != 2 for s in sizes):
        raise ShapeError(f"image_size must be (H, W) or one (H, W) per image ({batch} images), got {image_size!r}")
    return [(int(h), int(w)) for h, w in sizes]


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A MetaTensor (from MONAI transforms) as a plain tensor: no metadata tracking in the loss maths."""
    return t.as_tensor() if isinstance(t, MetaTensor) else t


def _as_tensor(value: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return _plain(value).detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(value), dtype=dtype, device=device)


def _prepare_targets(
    targets: Sequence[Mapping[str, Any]],
    num_classes: int | None,
    image_sizes: Sequence[tuple[int, int]] | None,
    device: torch.device,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Check, clip to the image and drop empty boxes; returns ``(boxes (G, 4), labels (G,))`` per image."""
    prepared = []
    for i, t in enumerate(targets):
        boxes = t.get("boxes", t.get("box"))
        labels = t.get("labels", t.get("label"))
        if boxes is None or labels is None:
            raise LabelMismatchError(
                f"detection target {i} needs 'boxes' and 'labels' (or 'box' and 'label'), has {sorted(t)}"
            )
        boxes = _as_tensor(boxes, torch.float32, device)
        if boxes.numel() == 0:  # [] or an empty array of any shape: no boxes
            boxes = boxes.reshape(0, 4)
        labels = _as_tensor(labels, torch.long, device).reshape(-1)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise LabelMismatchError(f"detection target {i}: boxes must be (N, 4), got {tuple(boxes.shape)}")
        if labels.shape[0] != boxes.shape[0]:
            raise LabelMismatchError(
                f"detection target {i}: {boxes.shape[0]} boxes but {labels.shape[0]} labels"
            )
        if not torch.isfinite(boxes).all():
            raise LabelMismatchError(f"detection target {i}: boxes contain NaN or infinite values")
        if (boxes[:, 2:] < boxes[:, :2]).any():
            bad = boxes[(boxes[:, 2:] < boxes[:, :2]).any(1)][0].tolist()
            raise LabelMismatchError(
                f"detection target {i}: box {bad} has max < min (expected [x_min, y_min, x_max, y_max])"
            )
        if num_classes is not None and labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise LabelMismatchError(
                f"detection target {i}: labels must be in [0, {num_classes}), got {labels.unique().tolist()}"
            )
        if image_sizes is not None:
            h, w = image_sizes[i]
            boxes = torch.stack(
                [boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)],
                dim=1,
            )
        nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        prepared.append((boxes[nonempty], labels[nonempty]))
    return prepared


class FCOSTargetAssigner:
    """Assign ground-truth boxes to feature-map locations as FCOS does.

    A location (cell centre) is positive for a box when (1) it lies inside the box, and,
    with centre sampling, inside the box's central region of half-size
    ``center_sampling_radius * stride`` around the box centre (clipped to the box);
    (2) the largest of its ``(l, t, r, b)`` distances to the box sides lies in the level's
    size range ``(low, high]``. A location matching several boxes takes the one of smallest
    area. Images without boxes are allowed (every location is background).

    Parameters
    ----------
    strides : stride per level.
    size_ranges : ``[low, high]`` per level (``high`` ``None``/``"inf"``/``-1`` = unbounded);
        when fewer levels are used than ranges are given, the last level used has no upper bound.
    center_sampling_radius : in strides; ``0`` or ``None`` = any location inside the box.

    Example
    -------
    >>> assigner = FCOSTargetAssigner(strides=[8], size_ranges=[[0, None]], center_sampling_radius=None)
    >>> t = assigner([(2, 2)], [{"boxes": [[0, 0, 10, 10]], "labels": [0]}])
    >>> t["labels"].tolist(), t["box_targets"][0, 0].tolist()
    ([[0, -1, -1, -1]], [4.0, 4.0, 6.0, 6.0])
    """

    def __init__(
        self,
        strides: Sequence[int] = DEFAULT_STRIDES,
        size_ranges: Sequence[Sequence[float | None]] = DEFAULT_SIZE_RANGES,
        center_sampling_radius: float | None = 1.5,
    ) -> None:
        self.strides = _check_strides(strides, len(strides))
        self.size_ranges = [tuple(r) for r in size_ranges]
        _check_size_ranges(self.size_ranges, 1)
        if center_sampling_radius is not None and float(center_sampling_radius) < 0:
            raise ConfigError(f"center_sampling_radius must be >= 0 or None, got {center_sampling_radius}")
        self.center_sampling_radius = float(center_sampling_radius or 0.0)

    def __call__(
        self,
        feature_sizes: Sequence[Sequence[int]],
        targets: Sequence[Mapping[str, Any]],
        image_size: Any = None,
        num_classes: int | None = None,
        device: torch.device | str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Targets for every location of every image, levels concatenated in order.

        Parameters
        ----------
        feature_sizes : ``(H_i, W_i)`` per level.
        targets : per image ``{"boxes": (N, 4) xyxy pixels, "labels": (N,)}``.
        image_size : optional ``(H, W)`` or one per image: boxes are clipped to it.
        num_classes : optional, to check the labels.

        Returns
        -------
        dict
            ``"labels"`` ``(B, L)`` long, class index or -1 for background;
            ``"box_targets"`` ``(B, L, 4)`` ``(l, t, r, b)`` in pixels (0 at background);
            ``"centerness"`` ``(B, L)`` ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``
            (0 at background); ``"matched"`` ``(B, L)`` index of the assigned box in the
            image's (clipped, non-empty) boxes or -1; ``"level"`` ``(L,)`` level per location.
        """
        num_levels = len(feature_sizes)
        strides = _check_strides(self.strides, num_levels)
        ranges = _check_size_ranges(self.size_ranges, num_levels)
        device = torch.device(device) if device is not None else torch.device("cpu")
        locs = fcos_locations(feature_sizes, strides, device=device)
        counts = [len(p) for p in locs]
        points = torch.cat(locs)  # (L, 2)

        def per_loc(values: Sequence[float]) -> torch.Tensor:
            return torch.cat([torch.full((n,), float(v), device=device) for n, v in zip(counts, values)])

        loc_stride = per_loc(strides)
        low, high = per_loc([r[0] for r in ranges]), per_loc([r[1] for r in ranges])
        level = torch.cat([torch.full((n,), i, dtype=torch.long, device=device) for i, n in enumerate(counts)])

        sizes = _image_sizes(image_size, len(targets)) if image_size is not None else None
        prepared = _prepare_targets(targets, num_classes, sizes, device)
        n_loc = points.shape[0]
        labels_out, boxes_out, ctr_out, matched_out = [], [], [], []
        for boxes, labels in prepared:
            if boxes.shape[0] == 0:
                labels_out.append(torch.full((n_loc,), -1, dtype=torch.long, device=device))
                boxes_out.append(torch.zeros(n_loc, 4, device=device))
                ctr_out.append(torch.zeros(n_loc, device=device))
                matched_out.append(torch.full((n_loc,), -1, dtype=torch.long, device=device))
                continue
            x, y = points[:, 0, None], points[:, 1, None]  # (L, 1)
            x0, y0, x1, y1 = boxes.unbind(1)  # (G,)
            ltrb = torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=2)  # (L, G, 4)
            candidate = ltrb.min(dim=2).values > 0
            if self.center_sampling_radius > 0:
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                r = loc_stride[:, None] * self.center_sampling_radius  # (L, 1)
                cx0, cy0 = torch.maximum(cx - r, x0), torch.maximum(cy - r, y0)
                cx1, cy1 = torch.minimum(cx + r, x1), torch.minimum(cy + r, y1)
                central = torch.stack([x - cx0, y - cy0, cx1 - x, cy1 - y], dim=2).min(dim=2).values > 0
                candidate &= central
            max_dist = ltrb.max(dim=2).values
            candidate &= (max_dist > low[:, None]) & (max_dist <= high[:, None])
            area = ((x1 - x0) * (y1 - y0))[None, :].expand(n_loc, -1)
            area = torch.where(candidate, area, torch.full_like(area, math.inf))
            min_area, gt_idx = area.min(dim=1)  # ties: the first (lowest index) box
            positive = torch.isfinite(min_area)
            box_t = ltrb[torch.arange(n_loc, device=device), gt_idx]  # (L, 4)
            box_t = torch.where(positive[:, None], box_t, torch.zeros_like(box_t))
            lr, tb = box_t[:, [0, 2]], box_t[:, [1, 3]]
            ctr = torch.sqrt(
                (lr.min(1).values / lr.max(1).values.clamp_min(1e-12))
                * (tb.min(1).values / tb.max(1).values.clamp_min(1e-12))
            )
            labels_out.append(torch.where(positive, labels[gt_idx], torch.full_like(gt_idx, -1)))
            boxes_out.append(box_t)
            ctr_out.append(torch.where(positive, ctr, torch.zeros_like(ctr)))
            matched_out.append(torch.where(positive, gt_idx, torch.full_like(gt_idx, -1)))
        return {
            "labels": torch.stack(labels_out),
            "box_targets": torch.stack(boxes_out),
            "centerness": torch.stack(ctr_out),
            "matched": torch.stack(matched_out),
            "level": level,
        }


# ---------------------------------------------------------------------------------------------
# losses


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Element-wise sigmoid focal loss (Lin et al. 2017), ``-alpha_t (1 - p_t)^gamma log(p_t)``.

    Parameters
    ----------
    logits, targets : same shape; targets in [0, 1].
    alpha : weight of positives (``1 - alpha`` for negatives); a negative value disables it.
    gamma : focusing exponent.

    Example
    -------
    >>> round(sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([1.0])).item(), 6)  # 0.25 * 0.25 * ln 2
    0.043322
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def ltrb_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and GIoU of boxes given as ``(l, t, r, b)`` distances from the same point.

    Parameters
    ----------
    pred, target : ``(..., 4)`` non-negative distances.

    Returns
    -------
    ``(iou, giou)``, each ``(...)``.

    Example
    -------
    >>> iou, giou = ltrb_iou(torch.tensor([[1.0, 1, 1, 1]]), torch.tensor([[2.0, 2, 2, 2]]))
    >>> iou.item(), giou.item()
    (0.25, 0.25)
    """
    pl, pt, pr, pb = pred.unbind(-1)
    tl, tt, tr, tb = target.unbind(-1)
    area_p = (pl + pr) * (pt + pb)
    area_t = (tl + tr) * (tt + tb)
    inter = (torch.minimum(pl, tl) + torch.minimum(pr, tr)) * (torch.minimum(pt, tt) + torch.minimum(pb, tb))
    union = area_p + area_t - inter
    iou = inter / union.clamp_min(eps)
    enclose = (torch.maximum(pl, tl) + torch.maximum(pr, tr)) * (torch.maximum(pt, tt) + torch.maximum(pb, tb))
    giou = iou - (enclose - union) / enclose.clamp_min(eps)
    return iou, giou


def _output_levels(outputs: Mapping[str, Sequence[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """The head's three per-level lists as plain tensors, checked for presence and level count."""
    levels = []
    for key in ("cls_logits", "box_regression", "centerness"):
        if key not in outputs:
            raise ShapeError(f"FCOS outputs need {key!r}, got keys {sorted(outputs)}")
        levels.append([_plain(t) for t in outputs[key]])
    if not len(levels[0]) == len(levels[1]) == len(levels[2]) > 0:
        raise ShapeError("FCOS outputs must have the same (non-zero) number of levels for every key")
    return levels


def _flatten_outputs(outputs: Mapping[str, Sequence[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-level head outputs -> ``(B, L, K)``, ``(B, L, 4)``, ``(B, L)`` in location order."""
    cls_levels, box_levels, ctr_levels = _output_levels(outputs)
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
        :class:`FCOSTargetAssigner`).
    focal_alpha, focal_gamma : focal loss parameters.
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
        if int(num_classes) < 1:
            raise ConfigError(f"FCOSLoss num_classes must be >= 1, got {num_classes}")
        if box_loss not in ("giou", "iou", "log_iou"):
            raise ConfigError(f"FCOSLoss box_loss must be 'giou', 'iou' or 'log_iou', got {box_loss!r}")
        self.num_classes = int(num_classes)
        self.assigner = FCOSTargetAssigner(strides, size_ranges, center_sampling_radius)
        self.focal_alpha, self.focal_gamma = float(focal_alpha), float(focal_gamma)
        self.box_loss = box_loss
        self.cls_weight, self.box_weight, self.centerness_weight = float(cls_weight), float(box_weight), float(
            centerness_weight
        )

    def forward(
        self,
        outputs: Mapping[str, Sequence[torch.Tensor]],
        targets: Sequence[Mapping[str, Any]],
        image_size: Any,
    ) -> dict[str, torch.Tensor]:
        """Compute the losses.

        Parameters
        ----------
        outputs : :class:`FCOSHead`'s output.
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
        loss_cls = sigmoid_focal_loss(cls, cls_target, self.focal_alpha, self.focal_gamma).sum()
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


# ---------------------------------------------------------------------------------------------
# NMS and decoding


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``(N, M)`` of xyxy boxes (max exclusive); 0 where both boxes are empty.

    Example
    -------
    >>> box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 0, 3, 2]])).item()
    0.3333333432674408
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]).clamp_min(0) * (boxes1[:, 3] - boxes1[:, 1]).clamp_min(0)
    area2 = (boxes2[:, 2] - boxes2[:, 0]).clamp_min(0) * (boxes2[:, 3] - boxes2[:, 1]).clamp_min(0)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter / union.clamp_min(torch.finfo(torch.float32).tiny)


def _greedy_nms(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor | None, iou_threshold: float, block: int = 512
) -> torch.Tensor:
    """Exact greedy NMS without a per-box Python loop.

    Boxes are sorted by score and processed in blocks: boxes kept in earlier blocks
    suppress a block at once; inside a block the kept set is the unique fixed point of
    ``keep_j = not any(keep_i and overlap(i, j) for i < j)``, reached by iterating that
    rule (each pass fixes at least one more box, and it usually converges in a few).
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes[order].float()
    labels = labels[order] if labels is not None else None
    keep = torch.ones(n, dtype=torch.bool, device=boxes.device)
    for start in range(0, n, block):
        end = min(start + block, n)
        overlap = box_iou(boxes[:end], boxes[start:end]) > iou_threshold  # (end, block)
        if labels is not None:
            overlap &= labels[:end, None] == labels[None, start:end]
        base = torch.ones(end - start, dtype=torch.bool, device=boxes.device)
        if start > 0:
            base = ~(overlap[:start] & keep[:start, None]).any(0)
        within = torch.triu(overlap[start:end], diagonal=1)
        current = base
        while True:
            updated = base & ~(within & current[:, None]).any(0)
            if torch.equal(updated, current):
                break
            current = updated
        keep[start:end] = current
    return order[keep]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: drop a box whose IoU with a kept, higher-scored box exceeds the threshold.

    Parameters
    ----------
    boxes : ``(N, 4)`` xyxy.
    scores : ``(N,)``; ties are broken by position (stable sort), as MONAI does.
    iou_threshold : boxes overlapping more than this are suppressed.

    Returns
    -------
    indices of the kept boxes, by decreasing score.

    Example
    -------
    >>> b = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    >>> nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
    [0, 2]
    """
    return _greedy_nms(boxes, scores, None, float(iou_threshold))


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Class-wise NMS: boxes of different labels never suppress each other.

    Example
    -------
    >>> b = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10]])
    >>> batched_nms(b, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5).tolist()
    [0, 1]
    """
    return _greedy_nms(boxes, scores, labels, float(iou_threshold))


class FCOSPostprocessor(nn.Module):
    """Turn FCOS head outputs into detections.

    Per image and level: ``score = sqrt(sigmoid(cls) * sigmoid(centerness))`` for every
    location and class; keep scores above ``score_thresh``; keep the ``pre_nms_top_n``
    best per level; decode ``(l, t, r, b)`` around the location into
    ``[x - l, y - t, x + r, y + b]``; clip to the image; drop boxes not larger than
    ``min_size``; class-wise NMS at ``nms_thresh``; keep the ``max_detections`` best.

    Parameters
    ----------
    strides : stride per level.
    score_thresh, pre_nms_top_n, nms_thresh, max_detections, min_size : see above.

    Example
    -------
    >>> import torch
    >>> post = FCOSPostprocessor(strides=[8])
    >>> out = {"cls_logits": [torch.full((1, 1, 2, 2), -20.0)], "box_regression": [torch.ones(1, 4, 2, 2)],
    ...        "centerness": [torch.zeros(1, 1, 2, 2)]}
    >>> out["cls_logits"][0][0, 0, 1, 0] = 20.0  # one confident location at x = 4, y = 12
    >>> dets = post(out, image_size=(16, 16))
    >>> dets[0]["boxes"].tolist(), dets[0]["labels"].tolist()
    ([[3.0, 11.0, 5.0, 13.0]], [0])
    """

    def __init__(
        self,
        strides: Sequence[int] = DEFAULT_STRIDES,
        score_thresh: float = 0.05,
        pre_nms_top_n: int = 1000,
        nms_thresh: float = 0.6,
        max_detections: int = 100,
        min_size: float = 0.0,
    ) -> None:
        super().__init__()
        self.strides = _check_strides(strides, len(strides))
        if not 0 <= float(score_thresh) < 1:
            raise ConfigError(f"score_thresh must be in [0, 1), got {score_thresh}")
        if int(pre_nms_top_n) < 1 or int(max_detections) < 1:
            raise ConfigError(f"pre_nms_top_n and max_detections must be >= 1, got {pre_nms_top_n}, {max_detections}")
        if not 0 < float(nms_thresh) <= 1:
            raise ConfigError(f"nms_thresh must be in (0, 1], got {nms_thresh}")
        self.score_thresh = float(score_thresh)
        self.pre_nms_top_n = int(pre_nms_top_n)
        self.nms_thresh = float(nms_thresh)
        self.max_detections = int(max_detections)
        self.min_size = float(min_size)

    @torch.no_grad()
    def forward(self, outputs: Mapping[str, Sequence[torch.Tensor]], image_size: Any) -> list[dict[str, torch.Tensor]]:
        """Decode a batch.

        Parameters
        ----------
        outputs : :class:`FCOSHead`'s output.
        image_size : ``(H, W)`` or one per image (e.g. the sizes before padding): boxes are clipped to it.

        Returns
        -------
        one dict per image: ``"boxes"`` ``(N, 4)`` float xyxy pixels, ``"scores"`` ``(N,)``,
        ``"labels"`` ``(N,)`` long, by decreasing score.
        """
        cls_levels, box_levels, ctr_levels = _output_levels(outputs)
        num_levels = len(cls_levels)
        strides = _check_strides(self.strides, num_levels)
        batch, num_classes = cls_levels[0].shape[:2]
        device = cls_levels[0].device
        sizes = _image_sizes(image_size, batch)
        locs = fcos_locations([t.shape[-2:] for t in cls_levels], strides, device=device)
        results = []
        for b in range(batch):
            all_boxes, all_scores, all_labels = [], [], []
            for level in range(num_levels):
                cls = torch.sigmoid(cls_levels[level][b].float()).flatten(1).t()  # (HW, K)
                ctr = torch.sigmoid(ctr_levels[level][b].float()).flatten(1).t()  # (HW, 1)
                scores = torch.sqrt(cls * ctr).flatten()
                cand = torch.nonzero(scores > self.score_thresh).squeeze(1)
                if cand.numel() > self.pre_nms_top_n:
                    cand = cand[torch.topk(scores[cand], self.pre_nms_top_n).indices]
                loc_idx, label = cand // num_classes, cand % num_classes
                ltrb = box_levels[level][b].float().flatten(1).t()[loc_idx]  # (n, 4)
                xy = locs[level][loc_idx]
                all_boxes.append(torch.cat([xy - ltrb[:, :2], xy + ltrb[:, 2:]], dim=1))
                all_scores.append(scores[cand])
                all_labels.append(label)
            boxes, scores, labels = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
            h, w = sizes[b]
            boxes = torch.stack(
                [boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)],
                dim=1,
            )
            big = ((boxes[:, 2] - boxes[:, 0]) > self.min_size) & ((boxes[:, 3] - boxes[:, 1]) > self.min_size)
            boxes, scores, labels = boxes[big], scores[big], labels[big]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.max_detections]
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return results
