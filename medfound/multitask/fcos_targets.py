"""FCOS target assignment: which feature-map location learns which ground-truth box.

Training-side counterpart of :mod:`medfound.networks.fcos` (the head and decoding): the
rules of the FCOS paper (cell centres inside the box, a size range per pyramid level,
centre sampling, the smallest box wins a location claimed by several) as
:class:`FCOSTargetAssigner`, used by :class:`~medfound.multitask.fcos_loss.FCOSLoss`.

Boxes are ``[x_min, y_min, x_max, y_max]`` in input pixels (:mod:`medfound.utils.boxes`).
An object narrower than about one stride of its level may get no positive location;
centre sampling (1.5 strides) keeps small objects reachable on the finest level.

Example
-------
>>> assigner = FCOSTargetAssigner(strides=[8, 16], size_ranges=[[0, 16], [16, None]])
>>> t = assigner([(4, 4), (2, 2)], [{"boxes": [[2, 2, 14, 10]], "labels": [1]}], image_size=(32, 32))
>>> t["labels"][0, :2].tolist(), t["box_targets"][0, 0].tolist()
([1, 1], [2.0, 2.0, 10.0, 6.0])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medfound.errors import ConfigError, LabelMismatchError
from medfound.networks.fcos import DEFAULT_STRIDES, check_strides, fcos_locations, per_image_sizes
from medfound.utils.boxes import clip_boxes
from medfound.utils.checks import check_float

__all__ = ["DEFAULT_SIZE_RANGES", "FCOSTargetAssigner"]

#: FCOS object-size range per level: a location is positive on a level when the largest of
#: its (l, t, r, b) targets lies in (low, high]; ``None`` means no upper bound
DEFAULT_SIZE_RANGES: tuple[tuple[float, float | None], ...] = (
    (0, 64), (64, 128), (128, 256), (256, 512), (512, None),
)


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


def _as_tensor(value: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        value = value.as_tensor() if isinstance(value, MetaTensor) else value
        return value.detach().to(device=device, dtype=dtype)
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
            boxes = clip_boxes(boxes, *image_sizes[i])
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
        self.strides = check_strides(strides, len(strides))
        self.size_ranges = [tuple(r) for r in size_ranges]
        _check_size_ranges(self.size_ranges, 1)
        radius = check_float(center_sampling_radius, "center_sampling_radius", low=0.0, allow_none=True)
        self.center_sampling_radius = radius or 0.0

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
        strides = check_strides(self.strides, num_levels)
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

        sizes = per_image_sizes(image_size, len(targets)) if image_size is not None else None
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
