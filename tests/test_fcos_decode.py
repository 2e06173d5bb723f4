"""FCOS decoding: hand-made outputs with known detections, assign -> decode round trip, errors.

The NMS and box IoU it uses are tested in ``tests/test_utils_boxes.py``."""

from __future__ import annotations

import math

import pytest
import torch

from medfound.errors import ConfigError, ShapeError
from medfound.multitask.fcos_targets import FCOSTargetAssigner
from medfound.networks.fcos import FCOSPostprocessor


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


def _monai_reference_decode(out, strides, image_size, score_thresh, pre_nms_top_n, nms_thresh, max_det, min_size):
    """The documented decoding steps, written out plainly, with MONAI's clipping and class-wise NMS."""
    from monai.data import box_utils

    h, w = image_size
    boxes, scores, labels = [], [], []
    for cls_l, box_l, ctr_l, s in zip(out["cls_logits"], out["box_regression"], out["centerness"], strides):
        k, rows, cols = cls_l.shape[1:]
        for r in range(rows):
            for c in range(cols):
                x, y = (c + 0.5) * s, (r + 0.5) * s
                for j in range(k):
                    score = math.sqrt(torch.sigmoid(cls_l[0, j, r, c]).item() * torch.sigmoid(ctr_l[0, 0, r, c]).item())
                    left, top, right, bottom = box_l[0, :, r, c].tolist()
                    boxes.append([x - left, y - top, x + right, y + bottom])
                    scores.append(score)
                    labels.append(j)
        # per level: above the threshold, then the pre_nms_top_n best
        level = [i for i in range(len(scores) - k * rows * cols, len(scores)) if scores[i] > score_thresh]
        level = sorted(level, key=lambda i: -scores[i])[:pre_nms_top_n]
        drop = set(range(len(scores) - k * rows * cols, len(scores))) - set(level)
        boxes = [b for i, b in enumerate(boxes) if i not in drop]
        scores = [v for i, v in enumerate(scores) if i not in drop]
        labels = [v for i, v in enumerate(labels) if i not in drop]
    boxes, scores, labels = torch.tensor(boxes).reshape(-1, 4), torch.tensor(scores), torch.tensor(labels)
    boxes, _ = box_utils.clip_boxes_to_image(boxes, (w, h), remove_empty=False)  # MONAI's x is our width
    big = ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)
    boxes, scores, labels = boxes[big], scores[big], labels[big]
    keep = box_utils.batched_nms(boxes, scores, labels, nms_thresh)
    keep = keep[torch.argsort(scores[keep], descending=True, stable=True)][:max_det]
    return boxes[keep], scores[keep], labels[keep]


def test_decoding_matches_a_plain_monai_reference_on_random_outputs():
    g = torch.Generator().manual_seed(7)
    strides, sizes = [8, 16], [(6, 8), (3, 4)]  # a 48x64 input, decoded for a 44x60 image
    out = {"cls_logits": [torch.randn(1, 2, h, w, generator=g) * 3 - 1 for h, w in sizes],
           "box_regression": [torch.rand(1, 4, h, w, generator=g) * 30 for h, w in sizes],
           "centerness": [torch.randn(1, 1, h, w, generator=g) for h, w in sizes]}
    for opts in [(0.05, 1000, 0.6, 100, 0.0), (0.2, 10, 0.3, 8, 4.0)]:
        post = FCOSPostprocessor(strides=strides, score_thresh=opts[0], pre_nms_top_n=opts[1], nms_thresh=opts[2],
                                 max_detections=opts[3], min_size=opts[4])
        det = post(out, image_size=(44, 60))[0]
        boxes, scores, labels = _monai_reference_decode(out, strides, (44, 60), *opts)
        assert 5 < len(det["boxes"]) <= opts[3]  # NMS, thresholds and clipping all act on this case
        assert torch.allclose(det["boxes"], boxes, atol=1e-5)
        assert torch.allclose(det["scores"], scores, rtol=1e-6) and det["labels"].tolist() == labels.tolist()
        assert (det["boxes"][:, 2] <= 60).all() and (det["boxes"][:, 3] <= 44).all()


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
