"""FCOS decoding (inference): scores, thresholds, top-k, boxes, clipping, class-wise NMS.

Box convention (the project's, :mod:`medfound.utils.boxes`): ``[x_min, y_min, x_max, y_max]``
in pixels, x along the width (last) axis, max exclusive. Pixel coordinates are those of the
network input: when inputs are padded (UMedPT pads sides to multiples of 32), pad at the
bottom/right and pass the unpadded sizes as ``image_size`` so decoded boxes are clipped to
the image.

Example
-------
>>> import torch
>>> out = {"cls_logits": [torch.full((2, 1, 2, 2), -20.0)], "box_regression": [torch.ones(2, 4, 2, 2)],
...        "centerness": [torch.zeros(2, 1, 2, 2)]}
>>> [len(d["boxes"]) for d in FCOSPostprocessor(strides=[8])(out, image_size=[(16, 16), (12, 16)])]
[0, 0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from medfound.errors import ConfigError, ShapeError
from medfound.networks.fcos.head import DEFAULT_STRIDES, check_strides, fcos_locations, head_output_levels
from medfound.utils.boxes import batched_nms, clip_boxes
from medfound.utils.checks import check_float, check_int

__all__ = ["FCOSPostprocessor", "per_image_sizes"]


def per_image_sizes(image_size: Any, batch: int) -> list[tuple[int, int]]:
    """``(H, W)`` for all images, or one ``(H, W)`` per image -> one ``(H, W)`` per image.

    Example
    -------
    >>> per_image_sizes((32, 48), 2)
    [(32, 48), (32, 48)]
    """
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
        self.strides = check_strides(strides, len(strides))
        self.score_thresh = check_float(score_thresh, "score_thresh", low=0.0, high=1.0, high_open=True)
        self.pre_nms_top_n = check_int(pre_nms_top_n, "pre_nms_top_n", low=1)
        self.nms_thresh = check_float(nms_thresh, "nms_thresh", low=0.0, high=1.0, low_open=True)
        self.max_detections = check_int(max_detections, "max_detections", low=1)
        self.min_size = check_float(min_size, "min_size")

    @torch.no_grad()
    def forward(self, outputs: Mapping[str, Sequence[torch.Tensor]], image_size: Any) -> list[dict[str, torch.Tensor]]:
        """Decode a batch.

        Parameters
        ----------
        outputs : :class:`~medfound.networks.fcos.FCOSHead`'s output.
        image_size : ``(H, W)`` or one per image (e.g. the sizes before padding): boxes are clipped to it.

        Returns
        -------
        one dict per image: ``"boxes"`` ``(N, 4)`` float xyxy pixels, ``"scores"`` ``(N,)``,
        ``"labels"`` ``(N,)`` long, by decreasing score.
        """
        cls_levels, box_levels, ctr_levels = head_output_levels(outputs)
        num_levels = len(cls_levels)
        strides = check_strides(self.strides, num_levels)
        batch, num_classes = cls_levels[0].shape[:2]
        device = cls_levels[0].device
        sizes = per_image_sizes(image_size, batch)
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
            boxes = clip_boxes(boxes, *sizes[b])
            big = ((boxes[:, 2] - boxes[:, 0]) > self.min_size) & ((boxes[:, 3] - boxes[:, 1]) > self.min_size)
            boxes, scores, labels = boxes[big], scores[big], labels[big]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.max_detections]
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return results
