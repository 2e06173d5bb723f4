"""Box operations (medfound.utils.boxes): known values, brute-force references and parity with MONAI's box_utils."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import box_utils

from medfound.evaluation.detection import COCO_IOU_THRESHOLDS, mean_average_precision
from medfound.utils.boxes import _greedy_nms, batched_nms, box_iou, clip_boxes, ltrb_iou, nms


def _random_boxes(n, seed, side=200.0, max_size=60.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * side
    wh = torch.rand(n, 2, generator=g) * max_size + 2
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g), torch.randint(0, 3, (n,), generator=g)


def _brute_force_nms(boxes, scores, labels, thr):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))  # sorted() is stable
    iou = box_iou(boxes, boxes)
    keep = []
    for i in order:
        if all(not (iou[i, k] > thr and (labels is None or labels[i] == labels[k])) for k in keep):
            keep.append(i)
    return keep


def test_box_iou_matches_monai():
    a, _, _ = _random_boxes(60, 0)
    b, _, _ = _random_boxes(40, 1)
    assert torch.allclose(box_iou(a, b), box_utils.box_iou(a, b), atol=1e-6)
    assert box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 0, 3, 2]])).item() == pytest.approx(1 / 3)
    assert box_iou(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0  # empty boxes: no NaN


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force_and_monai(thr):
    boxes, scores, labels = _random_boxes(300, seed=int(thr * 10))
    keep = nms(boxes, scores, thr)
    assert keep.tolist() == _brute_force_nms(boxes, scores, None, thr)
    assert keep.tolist() == box_utils.non_max_suppression(boxes, scores, thr).tolist()
    assert 20 < len(keep) < 300  # the case suppresses some boxes and keeps others
    keep_c = batched_nms(boxes, scores, labels, thr)
    assert keep_c.tolist() == _brute_force_nms(boxes, scores, labels, thr)
    assert sorted(keep_c.tolist()) == sorted(box_utils.batched_nms(boxes, scores, labels, thr).tolist())
    assert len(keep_c) > len(keep)  # boxes of other classes no longer suppress each other


def test_nms_blocks_and_long_suppression_chains():
    # a chain where each box overlaps only its neighbours (IoU 0.6): greedy keeps every other box,
    # and the result depends on every earlier decision (worst case for the fixed-point iteration)
    n = 40
    x = torch.arange(n, dtype=torch.float32) * 2.5
    chain = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], 1)
    scores = torch.linspace(1, 0.1, n)
    expected = _brute_force_nms(chain, scores, None, 0.5)
    assert expected == list(range(0, n, 2))
    for block in (1, 3, 7, 512):
        assert _greedy_nms(chain, scores, None, 0.5, block=block).tolist() == expected
    boxes, scores, labels = _random_boxes(250, seed=5)
    for block in (16, 100):
        assert _greedy_nms(boxes, scores, labels, 0.4, block=block).tolist() == _brute_force_nms(
            boxes, scores, labels, 0.4
        )


def test_nms_ties_and_empty():
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 3)
    assert nms(boxes, torch.tensor([0.5, 0.5, 0.5]), 0.5).tolist() == [0]  # stable: the first wins
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


def test_box_iou_numpy_is_float64_and_matches_monai():
    a, _, _ = _random_boxes(60, 2)
    b, _, _ = _random_boxes(40, 3)
    ours = box_iou(a.double().numpy(), b.double().numpy())
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float64 and ours.shape == (60, 40)
    assert np.allclose(ours, box_utils.box_iou(a.double().numpy(), b.double().numpy()), atol=1e-6)
    assert np.allclose(ours, box_iou(a.double(), b.double()).numpy(), rtol=0, atol=1e-15)  # one formula
    assert box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2]]).tolist() == [[1 / 3]]  # lists work too
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


@pytest.mark.parametrize("height", [6.5, 7.0, 9.0, 9.5])
def test_exact_iou_at_a_coco_threshold_is_a_match(height):
    """Why own IoU: an IoU of exactly 0.65/0.7/0.9/0.95 meets that COCO threshold (as in pycocotools,
    which computes in float64); MONAI's box_iou computes in float32 and falls just below it."""
    gt, det = np.array([[0.0, 0, 10, 10]]), np.array([[0.0, 0, 10, height]])
    iou = height / 10
    threshold = min(t for t in COCO_IOU_THRESHOLDS if abs(t - iou) < 1e-9)
    assert box_iou(det, gt)[0, 0] >= threshold
    assert box_utils.box_iou(det, gt)[0, 0] < threshold  # the float32 rounding the own code avoids
    m = mean_average_precision([{"boxes": det, "scores": [0.9], "labels": [0]}], [{"boxes": gt, "labels": [0]}])
    passed = sum(t <= iou + 1e-9 for t in COCO_IOU_THRESHOLDS)
    assert m["map"] == pytest.approx(passed / len(COCO_IOU_THRESHOLDS))


def test_clip_boxes_is_monai_with_x_along_the_width():
    boxes, _, _ = _random_boxes(50, 4, side=120.0)
    boxes = boxes - 20
    clipped = clip_boxes(boxes, height=64, width=96)
    expected = torch.stack([boxes[:, 0].clamp(0, 96), boxes[:, 1].clamp(0, 64),
                            boxes[:, 2].clamp(0, 96), boxes[:, 3].clamp(0, 64)], 1)
    assert torch.equal(clipped, expected)  # bit-identical to the clamps it replaced
    assert torch.equal(clipped, box_utils.clip_boxes_to_image(boxes, (96, 64), remove_empty=False)[0])
    assert clipped.dtype == boxes.dtype and len(clipped) == 50  # boxes outside the image stay (empty)
    assert clip_boxes(torch.zeros(0, 4), 8, 8).shape == (0, 4)


def test_ltrb_iou_and_giou_known_values():
    iou, giou = ltrb_iou(torch.tensor([3.0, 4, 5, 6]), torch.tensor([3.0, 4, 5, 6]))
    assert iou.item() == pytest.approx(1.0) and giou.item() == pytest.approx(1.0)
    iou, giou = ltrb_iou(torch.tensor([1.0, 1, 1, 1]), torch.tensor([2.0, 2, 2, 2]))
    assert (iou.item(), giou.item()) == pytest.approx((0.25, 0.25))  # enclosure = the larger box
    # boxes on opposite sides of the point: they touch at one corner, enclosure 4 x 4
    iou, giou = ltrb_iou(torch.tensor([0.0, 0, 2, 2]), torch.tensor([2.0, 2, 0, 0]))
    assert (iou.item(), giou.item()) == pytest.approx((0.0, -0.5))
    # 16x16 around the point vs a 16x16 box shifted by 4: inter 12x12, union 368, enclosure 20x20
    iou, giou = ltrb_iou(torch.tensor([8.0, 8, 8, 8]), torch.tensor([4.0, 4, 12, 12]))
    assert (iou.item(), giou.item()) == pytest.approx((144 / 368, 144 / 368 - 32 / 400))


def test_ltrb_giou_matches_monai_box_pair_giou():
    g = torch.Generator().manual_seed(1)
    pred = torch.rand(200, 4, generator=g) * 30 + 0.5
    target = torch.rand(200, 4, generator=g) * 30 + 0.5
    iou, giou = ltrb_iou(pred, target)
    to_xyxy = lambda d: torch.stack([-d[:, 0], -d[:, 1], d[:, 2], d[:, 3]], 1)  # noqa: E731 (point at 0)
    assert torch.allclose(giou, box_utils.box_pair_giou(to_xyxy(pred), to_xyxy(target)), atol=1e-5)
    assert torch.allclose(iou, torch.diagonal(box_utils.box_iou(to_xyxy(pred), to_xyxy(target))), atol=1e-5)
