"""FCOS decoding and NMS: brute-force and MONAI parity, hand-made outputs, assign -> decode round trip."""

from __future__ import annotations

import math

import pytest
import torch

from medfound.errors import ConfigError, ShapeError
from medfound.networks.fcos import (
    FCOSPostprocessor,
    FCOSTargetAssigner,
    _greedy_nms,
    batched_nms,
    box_iou,
    nms,
)


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
    from monai.data.box_utils import box_iou as monai_box_iou

    a, _, _ = _random_boxes(60, 0)
    b, _, _ = _random_boxes(40, 1)
    assert torch.allclose(box_iou(a, b), monai_box_iou(a, b), atol=1e-6)
    assert box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 0, 3, 2]])).item() == pytest.approx(1 / 3)
    assert box_iou(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0  # empty boxes: no NaN


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force_and_monai(thr):
    from monai.data.box_utils import batched_nms as monai_batched_nms
    from monai.data.box_utils import non_max_suppression

    boxes, scores, labels = _random_boxes(300, seed=int(thr * 10))
    keep = nms(boxes, scores, thr)
    assert keep.tolist() == _brute_force_nms(boxes, scores, None, thr)
    assert keep.tolist() == non_max_suppression(boxes, scores, thr).tolist()
    assert 20 < len(keep) < 300  # the case suppresses some boxes and keeps others
    keep_c = batched_nms(boxes, scores, labels, thr)
    assert keep_c.tolist() == _brute_force_nms(boxes, scores, labels, thr)
    assert sorted(keep_c.tolist()) == sorted(monai_batched_nms(boxes, scores, labels, thr).tolist())
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


def _outputs(levels, num_classes=3, batch=1, background=-12.0):
    """Head-like outputs: class logits at ``background``, boxes 1 px, centerness logit 0."""
    return {
        "cls_logits": [torch.full((batch, num_classes, h, w), background) for h, w in levels],
        "box_regression": [torch.ones(batch, 4, h, w) for h, w in levels],
        "centerness": [torch.zeros(batch, 1, h, w) for h, w in levels],
    }


def test_decode_hand_made_output_gives_known_box_exactly():
    post = FCOSPostprocessor(strides=[8, 16])
    out = _outputs([(4, 6), (2, 3)])
    # level 1 (stride 16), cell (row 1, col 2): location x = 40, y = 24
    out["cls_logits"][1][0, 2, 1, 2] = 10.0
    out["box_regression"][1][0, :, 1, 2] = torch.tensor([10.0, 4.0, 6.0, 12.0])
    out["centerness"][1][0, 0, 1, 2] = 2.0
    det = post(out, image_size=(32, 48))[0]
    assert det["boxes"].tolist() == [[30.0, 20.0, 46.0, 32.0]]  # y_max 36 clipped to the image height 32
    assert det["labels"].tolist() == [2]
    expected_score = math.sqrt(torch.sigmoid(torch.tensor(10.0)).item() * torch.sigmoid(torch.tensor(2.0)).item())
    assert det["scores"].item() == pytest.approx(expected_score, rel=1e-6)
    det = post(out, image_size=(64, 64))[0]
    assert det["boxes"].tolist() == [[30.0, 20.0, 46.0, 36.0]]


def test_decode_nms_threshold_topk_and_max_detections():
    out = _outputs([(4, 4)], num_classes=2, batch=2)
    # image 0: two neighbouring cells predict the same box [4, 4, 20, 20] (class 0), a third cell
    # predicts it for class 1, a fourth a far box with a low score
    cells = {(1, 1): (0, 5.0), (1, 2): (0, 4.0), (2, 1): (1, 3.0), (3, 3): (0, -2.0)}
    for (r, c), (k, logit) in cells.items():
        x, y = (c + 0.5) * 8, (r + 0.5) * 8
        out["cls_logits"][0][0, k, r, c] = logit
        out["box_regression"][0][0, :, r, c] = torch.tensor([x - 4, y - 4, 20 - x, 20 - y]) if (r, c) != (3, 3) \
            else torch.tensor([2.0, 2.0, 2.0, 2.0])
    post = FCOSPostprocessor(strides=[8], score_thresh=0.05, nms_thresh=0.5)
    det = post(out, image_size=(32, 32))
    assert len(det) == 2 and det[1]["boxes"].shape == (0, 4)  # image 1: nothing above the threshold
    d = det[0]
    assert d["labels"].tolist() == [0, 1, 0]  # the duplicate of class 0 is suppressed, class 1 kept
    assert d["boxes"][:2].tolist() == [[4, 4, 20, 20], [4, 4, 20, 20]]
    assert d["boxes"][2].tolist() == [26, 26, 30, 30]
    assert torch.all(d["scores"][:-1] >= d["scores"][1:])
    assert len(FCOSPostprocessor(strides=[8], max_detections=2)(out, (32, 32))[0]["boxes"]) == 2
    high = FCOSPostprocessor(strides=[8], score_thresh=0.4)(out, (32, 32))[0]
    assert high["labels"].tolist() == [0, 1]  # sqrt(sigmoid(-2) * 0.5) ~ 0.24 is dropped
    top1 = FCOSPostprocessor(strides=[8], pre_nms_top_n=1)(out, (32, 32))[0]
    assert top1["labels"].tolist() == [0] and top1["scores"].item() == pytest.approx(
        math.sqrt(torch.sigmoid(torch.tensor(5.0)).item() * 0.5)
    )
    no_nms = FCOSPostprocessor(strides=[8], nms_thresh=1.0)(out, (32, 32))[0]
    assert len(no_nms["boxes"]) == 4


def test_assign_then_decode_round_trip_recovers_boxes():
    """Outputs built from the assigned targets decode back to exactly the ground-truth boxes."""
    strides = [8, 16, 32]
    sizes = [(12, 16), (6, 8), (3, 4)]  # a 96x128 image
    gt = {"boxes": torch.tensor([[10.0, 12, 40, 30], [50, 20, 120, 90], [60, 60, 70, 74], [0, 0, 96, 96]]),
          "labels": torch.tensor([0, 1, 1, 2])}
    assigner = FCOSTargetAssigner(strides=strides, size_ranges=[[0, 32], [32, 64], [64, None]])
    t = assigner(sizes, [gt], image_size=(96, 128))
    assert set(t["matched"][0][t["matched"][0] >= 0].tolist()) == {0, 1, 2, 3}  # every box has positives
    out = {"cls_logits": [], "box_regression": [], "centerness": []}
    start = 0
    for h, w in sizes:
        sl = slice(start, start + h * w)
        labels = t["labels"][0, sl]
        cls = torch.full((3, h * w), -20.0)
        cls[labels[labels >= 0], torch.nonzero(labels >= 0).flatten()] = 20.0
        ctr = torch.logit(t["centerness"][0, sl].clamp(1e-4, 1 - 1e-4))
        out["cls_logits"].append(cls.view(1, 3, h, w))
        out["box_regression"].append(t["box_targets"][0, sl].t().reshape(1, 4, h, w))
        out["centerness"].append(ctr.view(1, 1, h, w))
        start += h * w
    det = FCOSPostprocessor(strides=strides, nms_thresh=0.6)(out, image_size=(96, 128))[0]
    order = torch.argsort(det["labels"] * 1000 + det["boxes"][:, 0])
    assert det["boxes"][order].tolist() == gt["boxes"].tolist()
    assert det["labels"][order].tolist() == gt["labels"].tolist()
    # the best-centred location wins each NMS cluster: its score is the highest centerness
    assert det["scores"].max().item() > 0.9


def test_postprocessor_errors():
    with pytest.raises(ConfigError):
        FCOSPostprocessor(score_thresh=1.5)
    with pytest.raises(ConfigError):
        FCOSPostprocessor(nms_thresh=0)
    with pytest.raises(ConfigError):
        FCOSPostprocessor(max_detections=0)
    out = _outputs([(2, 2)])
    with pytest.raises(ShapeError, match="one \\(H, W\\) per image"):
        FCOSPostprocessor(strides=[8])(out, image_size=[(16, 16), (16, 16)])
    out["centerness"] = out["centerness"] * 2
    with pytest.raises(ShapeError, match="number of levels"):
        FCOSPostprocessor(strides=[8])(out, image_size=(16, 16))
