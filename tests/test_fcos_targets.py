"""FCOS target assignment and losses: hand-computed cases, a brute-force reference, formula parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medfound.errors import ConfigError, LabelMismatchError, ShapeError
from medfound.multitask.fcos_loss import FCOSLoss
from medfound.multitask.fcos_targets import FCOSTargetAssigner
from medfound.networks.fcos import fcos_locations
from medfound.utils.boxes import ltrb_iou


def _grid_index(row, col, width, offset=0):
    return offset + row * width + col


# ---------------------------------------------------------------------------------------------
# locations and assignment, hand-made


def test_locations_are_cell_centres_row_major():
    locs = fcos_locations([(2, 3), (1, 2)], strides=[8, 16])
    assert locs[0].tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert locs[1].tolist() == [[8, 8], [24, 8]]


def test_small_box_positive_on_first_level_only():
    # strides 8/16 on a 32x32 image: level 0 is 4x4 (centres 4, 12, 20, 28), level 1 is 2x2 (8, 24)
    assigner = FCOSTargetAssigner(strides=[8, 16], size_ranges=[[0, 16], [16, None]], center_sampling_radius=None)
    t = assigner([(4, 4), (2, 2)], [{"boxes": [[2, 2, 14, 10]], "labels": [1]}], image_size=(32, 32))
    labels = t["labels"][0]
    positives = torch.nonzero(labels >= 0).flatten().tolist()
    # inside (2, 14) x (2, 10): x in {4, 12}, y = 4 -> level-0 cells (0, 0) and (0, 1)
    assert positives == [0, 1]
    assert labels[positives].tolist() == [1, 1]
    assert t["box_targets"][0, 0].tolist() == [2, 2, 10, 6]
    assert t["box_targets"][0, 1].tolist() == [10, 2, 2, 6]
    expected_ctr = math.sqrt(2 / 10 * 2 / 6)
    assert t["centerness"][0, 0].item() == pytest.approx(expected_ctr, rel=1e-6)
    assert t["centerness"][0, 1].item() == pytest.approx(expected_ctr, rel=1e-6)
    # level-1 cell (8, 8) is inside the box but its largest distance (6) is below 16
    assert labels[16:].tolist() == [-1] * 4
    assert t["level"].tolist() == [0] * 16 + [1] * 4
    assert t["matched"][0, :2].tolist() == [0, 0]


def test_large_box_positive_on_second_level_only():
    assigner = FCOSTargetAssigner(strides=[8, 16], size_ranges=[[0, 16], [16, None]], center_sampling_radius=None)
    t = assigner([(4, 4), (2, 2)], [{"boxes": [[0, 0, 32, 32]], "labels": [0]}])
    labels = t["labels"][0]
    assert labels[:16].tolist() == [-1] * 16  # every level-0 cell has a distance > 16
    assert labels[16:].tolist() == [0] * 4
    assert t["box_targets"][0, 16].tolist() == [8, 8, 24, 24]
    assert t["box_targets"][0, 19].tolist() == [24, 24, 8, 8]
    assert torch.allclose(t["centerness"][0, 16:], torch.full((4,), 1 / 3))


def test_ambiguity_resolved_by_smallest_area():
    assigner = FCOSTargetAssigner(strides=[8], size_ranges=[[0, None]], center_sampling_radius=None)
    boxes = [[0, 0, 32, 32], [0, 0, 16, 16]]
    t = assigner([(4, 4)], [{"boxes": boxes, "labels": [0, 1]}])
    labels = t["labels"][0].view(4, 4)
    expected = torch.zeros(4, 4, dtype=torch.long)
    expected[:2, :2] = 1  # centres 4 and 12 lie inside the small box too
    assert torch.equal(labels, expected)
    assert t["matched"][0].view(4, 4)[:2, :2].eq(1).all() and t["matched"][0].view(4, 4)[2:, 2:].eq(0).all()
    # the small box's targets at cell (1, 1) = (12, 12)
    assert t["box_targets"][0, _grid_index(1, 1, 4)].tolist() == [12, 12, 4, 4]


def test_centre_sampling_restricts_positives_to_the_central_region():
    box = {"boxes": [[0, 0, 64, 16]], "labels": [0]}
    full = FCOSTargetAssigner(strides=[8], size_ranges=[[0, None]], center_sampling_radius=None)
    central = FCOSTargetAssigner(strides=[8], size_ranges=[[0, None]], center_sampling_radius=1.5)
    all_pos = torch.nonzero(full([(2, 8)], [box])["labels"][0] >= 0).flatten().tolist()
    assert all_pos == list(range(16))
    # centre (32, 8), radius 12: x in (20, 44) -> cells at x = 28, 36 (columns 3, 4); y clipped to the box
    pos = torch.nonzero(central([(2, 8)], [box])["labels"][0] >= 0).flatten().tolist()
    assert pos == [3, 4, 11, 12]
    # radius 0.5 stride: x in (28, 36) -> no cell centre lies strictly inside
    tiny = FCOSTargetAssigner(strides=[8], size_ranges=[[0, None]], center_sampling_radius=0.5)
    assert (tiny([(2, 8)], [box])["labels"] < 0).all()


def test_size_range_is_half_open_low_exclusive_high_inclusive():
    # cell (12, 12) of a box [0, 0, 28, 28]: largest distance exactly 16
    assigner = FCOSTargetAssigner(strides=[8, 16], size_ranges=[[0, 16], [16, None]], center_sampling_radius=None)
    t = assigner([(4, 4), (2, 2)], [{"boxes": [[0, 0, 28, 28]], "labels": [0]}])
    assert t["labels"][0, _grid_index(1, 1, 4)].item() == 0  # 16 in (0, 16]
    assert t["box_targets"][0, _grid_index(1, 1, 4)].tolist() == [12, 12, 16, 16]
    # level-1 cell (8, 8) of a box [0, 0, 24, 24]: largest distance exactly 16, not in (16, inf]
    t = assigner([(4, 4), (2, 2)], [{"boxes": [[0, 0, 24, 24]], "labels": [0]}])
    assert t["labels"][0, 16].item() == -1
    assert t["labels"][0, _grid_index(1, 1, 4)].item() == 0  # (12, 12): distances 12


def test_empty_images_clipping_and_datalist_keys():
    assigner = FCOSTargetAssigner(strides=[8], size_ranges=[[0, None]], center_sampling_radius=None)
    targets = [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
        {"box": [], "label": []},
        {"box": np.array([[-10.0, -10.0, 10.0, 10.0], [40, 40, 50, 50]]), "label": np.array([0, 0])},
    ]
    t = assigner([(4, 4)], targets, image_size=(32, 32))
    assert (t["labels"][:2] == -1).all() and (t["centerness"][:2] == 0).all() and (t["box_targets"][:2] == 0).all()
    # clipped to [0, 0, 10, 10]: only cell (4, 4) is inside; the second box lies outside and is dropped
    assert torch.nonzero(t["labels"][2] >= 0).flatten().tolist() == [0]
    assert t["box_targets"][2, 0].tolist() == [4, 4, 6, 6]


def _brute_force_assign(points, strides, ranges, radius, boxes, labels):
    """Literal per-location, per-box reading of the FCOS rules (the reference)."""
    out = []
    for (x, y), s, (lo, hi) in zip(points, strides, ranges):
        best, best_area = None, math.inf
        for g, (x0, y0, x1, y1) in enumerate(boxes):
            ltrb = (x - x0, y - y0, x1 - x, y1 - y)
            if min(ltrb) <= 0:
                continue
            if radius:
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                rx0, ry0 = max(cx - radius * s, x0), max(cy - radius * s, y0)
                rx1, ry1 = min(cx + radius * s, x1), min(cy + radius * s, y1)
                if not (rx0 < x < rx1 and ry0 < y < ry1):
                    continue
            if not lo < max(ltrb) <= hi:
                continue
            area = (x1 - x0) * (y1 - y0)
            if area < best_area:
                best, best_area = g, area
        if best is None:
            out.append((-1, None, 0.0))
        else:
            left, top, right, bottom = (x - boxes[best][0], y - boxes[best][1], boxes[best][2] - x, boxes[best][3] - y)
            ctr = math.sqrt(min(left, right) / max(left, right) * min(top, bottom) / max(top, bottom))
            out.append((labels[best], (left, top, right, bottom), ctr))
    return out


@pytest.mark.parametrize("radius", [None, 1.5])
def test_assignment_matches_brute_force_reference(radius):
    rng = np.random.default_rng(3)
    strides = [8, 16, 32, 64, 128]
    sizes = [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]  # a 128x160 image
    ranges = [(0, 64), (64, 128), (128, 256), (256, 512), (512, math.inf)]
    assigner = FCOSTargetAssigner(strides=strides, center_sampling_radius=radius)
    points = [p for lv in fcos_locations(sizes, strides) for p in lv.tolist()]
    loc_strides = [s for (h, w), s in zip(sizes, strides) for _ in range(h * w)]
    loc_ranges = [r for (h, w), r in zip(sizes, ranges) for _ in range(h * w)]
    targets = []
    for _ in range(3):
        n = int(rng.integers(1, 12))
        xy = rng.uniform(0, 150, (n, 2)).round(1)
        wh = rng.uniform(4, 140, (n, 2)).round(1)
        targets.append({"boxes": np.concatenate([xy, xy + wh], 1), "labels": rng.integers(0, 4, n)})
    t = assigner(sizes, targets)
    n_pos = 0
    for i, tg in enumerate(targets):
        boxes = [tuple(float(v) for v in torch.tensor(b, dtype=torch.float32).tolist()) for b in tg["boxes"]]
        ref = _brute_force_assign(points, loc_strides, loc_ranges, radius, boxes, tg["labels"].tolist())
        assert t["labels"][i].tolist() == [r[0] for r in ref]
        for j, (label, ltrb, ctr) in enumerate(ref):
            if label >= 0:
                n_pos += 1
                assert t["box_targets"][i, j].tolist() == pytest.approx(ltrb, abs=1e-4)
                assert t["centerness"][i, j].item() == pytest.approx(ctr, abs=1e-5)
    assert n_pos > 20  # the random case exercises positives on several levels


def test_assigner_errors():
    assigner = FCOSTargetAssigner(strides=[8], size_ranges=[[0, None]])
    with pytest.raises(LabelMismatchError, match="target 0: 1 boxes but 2 labels"):
        assigner([(2, 2)], [{"boxes": [[0, 0, 4, 4]], "labels": [0, 1]}])
    with pytest.raises(LabelMismatchError, match="max < min"):
        assigner([(2, 2)], [{"boxes": [[5, 0, 4, 4]], "labels": [0]}])
    with pytest.raises(LabelMismatchError, match=r"labels must be in \[0, 2\)"):
        assigner([(2, 2)], [{"boxes": [[0, 0, 4, 4]], "labels": [2]}], num_classes=2)
    with pytest.raises(LabelMismatchError, match="needs 'boxes' and 'labels'"):
        assigner([(2, 2)], [{"boxes": [[0, 0, 4, 4]]}])
    with pytest.raises(LabelMismatchError, match="NaN"):
        assigner([(2, 2)], [{"boxes": [[0, 0, float("nan"), 4]], "labels": [0]}])
    with pytest.raises(ConfigError):
        FCOSTargetAssigner(size_ranges=[[64, 0]])
    with pytest.raises(ConfigError):
        FCOSTargetAssigner(center_sampling_radius=-1)
    with pytest.raises(ConfigError, match="size range per level"):
        FCOSTargetAssigner(strides=[8, 16], size_ranges=[[0, None]])([(2, 2), (1, 1)], [{"box": [], "label": []}])


# ---------------------------------------------------------------------------------------------
# loss functions


def test_focal_classification_term_matches_the_formula():
    """loss_cls = sum of -alpha_t (1 - p_t)^gamma ln p_t over every location and class / positives."""
    g = torch.Generator().manual_seed(0)
    side, k = 4, 3
    logits = torch.randn(2, k, side, side, generator=g) * 4
    out = {"cls_logits": [logits], "box_regression": [torch.full((2, 4, side, side), 8.0)],
           "centerness": [torch.zeros(2, 1, side, side)]}
    targets = [{"boxes": [[0, 0, 16, 16]], "labels": [2]}, {"boxes": [[8, 8, 32, 24]], "labels": [0]}]
    loss_fn = FCOSLoss(k, strides=[8], size_ranges=[[0, None]], center_sampling_radius=None)
    labels = loss_fn.assigner([(side, side)], targets, (32, 32))["labels"]
    positive = labels >= 0
    onehot = torch.zeros(2, side * side, k, dtype=torch.float64)
    onehot[positive, labels[positive]] = 1
    p = torch.sigmoid(logits.double()).flatten(2).transpose(1, 2)
    direct = torch.where(onehot.bool(), -0.25 * (1 - p) ** 2 * torch.log(p), -0.75 * p**2 * torch.log(1 - p))
    assert 4 < positive.sum() < 2 * side * side  # both images have positives and negatives
    expected = direct.sum() / positive.sum()
    assert loss_fn(out, targets, (32, 32))["loss_cls"].item() == pytest.approx(expected.item(), rel=1e-5)
    # alpha < 0 switches the class weighting off; gamma = 0 gives plain BCE
    plain = FCOSLoss(k, strides=[8], size_ranges=[[0, None]], center_sampling_radius=None, focal_alpha=-1,
                     focal_gamma=0.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits.double().flatten(2).transpose(1, 2), onehot, reduction="sum") / positive.sum()
    assert plain(out, targets, (32, 32))["loss_cls"].item() == pytest.approx(bce.item(), rel=1e-5)


def _one_level_outputs(cls=0.0, box=8.0, ctr=0.0, side=4, k=1):
    return {
        "cls_logits": [torch.full((1, k, side, side), cls, requires_grad=True)],
        "box_regression": [torch.full((1, 4, side, side), box, requires_grad=True)],
        "centerness": [torch.full((1, 1, side, side), ctr, requires_grad=True)],
    }


def test_fcos_loss_hand_computed_values():
    # box [0, 0, 16, 16] on a 4x4 map (stride 8): 4 positives with targets (4,4,12,12) rotated,
    # centerness targets 1/3; predictions: p = 0.5 everywhere, boxes 8 px on every side
    loss_fn = FCOSLoss(num_classes=1, strides=[8], size_ranges=[[0, None]], center_sampling_radius=None)
    out = _one_level_outputs()
    losses = loss_fn(out, [{"boxes": [[0, 0, 16, 16]], "labels": [0]}], image_size=(32, 32))
    ln2 = math.log(2)
    expected_cls = (4 * 0.25 * 0.25 * ln2 + 12 * 0.75 * 0.25 * ln2) / 4
    expected_box = 1 - (144 / 368 - 32 / 400)
    assert losses["loss_cls"].item() == pytest.approx(expected_cls, rel=1e-5)
    assert losses["loss_box"].item() == pytest.approx(expected_box, rel=1e-5)
    assert losses["loss_centerness"].item() == pytest.approx(ln2, rel=1e-5)  # BCE(logit 0, any target)
    assert losses["loss"].item() == pytest.approx(expected_cls + expected_box + ln2, rel=1e-5)
    losses["loss"].backward()
    assert all(t[0].grad is not None and t[0].grad.abs().sum() > 0 for t in out.values())

    iou_loss = FCOSLoss(1, strides=[8], size_ranges=[[0, None]], center_sampling_radius=None, box_loss="log_iou",
                        cls_weight=2.0, box_weight=0.5, centerness_weight=0.0)
    losses = iou_loss(_one_level_outputs(), [{"boxes": [[0, 0, 16, 16]], "labels": [0]}], image_size=(32, 32))
    assert losses["loss_box"].item() == pytest.approx(-math.log(144 / 368), rel=1e-5)
    assert losses["loss"].item() == pytest.approx(2 * expected_cls + 0.5 * -math.log(144 / 368), rel=1e-5)


def test_fcos_loss_box_term_is_centerness_weighted():
    # two positives with different centerness targets and different IoUs
    loss_fn = FCOSLoss(num_classes=1, strides=[8], size_ranges=[[0, None]], center_sampling_radius=None,
                       box_loss="iou")
    out = _one_level_outputs(side=2)
    box = out["box_regression"][0].detach().clone()
    box[0, :, 0, 1] = torch.tensor([2.0, 2.0, 2.0, 2.0])  # second location predicts a small box
    out["box_regression"] = [box]
    target = [{"boxes": [[0, 0, 16, 8]], "labels": [0]}]  # positives (4, 4) and (12, 4)
    t = loss_fn.assigner([(2, 2)], target)
    assert torch.nonzero(t["labels"][0] >= 0).flatten().tolist() == [0, 1]
    w = t["centerness"][0, :2]
    iou, _ = ltrb_iou(box[0, :, 0, :2].t(), t["box_targets"][0, :2])
    expected = ((1 - iou) * w).sum() / w.sum()
    losses = loss_fn(out, target, image_size=(16, 16))
    assert losses["loss_box"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_fcos_loss_without_boxes_and_batch_normalisation():
    loss_fn = FCOSLoss(num_classes=2, strides=[8], size_ranges=[[0, None]])
    out = _one_level_outputs(cls=-1.0, k=2)
    losses = loss_fn(out, [{"boxes": [], "labels": []}], image_size=(32, 32))
    p = torch.sigmoid(torch.tensor(-1.0)).item()
    expected_cls = 32 * 0.75 * p**2 * -math.log(1 - p)  # 16 locations x 2 classes, all negative, / max(0, 1)
    assert losses["loss_cls"].item() == pytest.approx(expected_cls, rel=1e-5)
    assert losses["loss_box"].item() == 0 and losses["loss_centerness"].item() == 0
    losses["loss"].backward()  # zero-valued terms stay connected to the graph
    assert out["box_regression"][0].grad is not None
    # a batch: one image with a box, one without; positives counted over the batch
    out2 = {k: [torch.cat([v[0].detach()] * 2)] for k, v in _one_level_outputs(k=2).items()}
    both = loss_fn(out2, [{"boxes": [[0, 0, 16, 16]], "labels": [1]}, {"boxes": [], "labels": []}], (32, 32))
    single = loss_fn({k: [v[0][:1]] for k, v in out2.items()}, [{"boxes": [[0, 0, 16, 16]], "labels": [1]}], (32, 32))
    num_pos = int((loss_fn.assigner([(4, 4)], [{"boxes": [[0, 0, 16, 16]], "labels": [1]}])["labels"] >= 0).sum())
    extra = 32 * 0.75 * 0.25 * math.log(2) / num_pos  # the empty image's 32 negatives at p = 0.5
    assert both["loss_cls"].item() == pytest.approx(single["loss_cls"].item() + extra, rel=1e-5)
    assert both["loss_box"].item() == pytest.approx(single["loss_box"].item(), rel=1e-5)


def test_fcos_loss_errors_and_fp16_outputs():
    loss_fn = FCOSLoss(num_classes=1, strides=[8], size_ranges=[[0, None]])
    with pytest.raises(ShapeError, match="2 targets for a batch of 1"):
        loss_fn(_one_level_outputs(), [{"box": [], "label": []}] * 2, (32, 32))
    with pytest.raises(ShapeError, match="expects 1 classes"):
        loss_fn(_one_level_outputs(k=3), [{"box": [], "label": []}], (32, 32))
    with pytest.raises(ShapeError, match="centerness"):
        loss_fn({"cls_logits": [torch.zeros(1, 1, 2, 2)], "box_regression": [torch.zeros(1, 4, 2, 2)]},
                [{"box": [], "label": []}], (16, 16))
    with pytest.raises(ConfigError):
        FCOSLoss(1, box_loss="l1")
    half = {k: [v[0].detach().half()] for k, v in _one_level_outputs().items()}
    losses = loss_fn(half, [{"boxes": [[0, 0, 16, 16]], "labels": [0]}], (32, 32))
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])


def test_bundle_config_construction():
    from monai.bundle import ConfigParser

    cfg = {
        "loss": {"_target_": "medfound.multitask.fcos_loss.FCOSLoss", "num_classes": 2, "strides": [8, 16, 32, 64, 128],
                 "size_ranges": [[0, 64], [64, 128], [128, 256], [256, 512], [512, None]],
                 "center_sampling_radius": 1.5, "box_loss": "giou"},
        "post": {"_target_": "medfound.networks.fcos.FCOSPostprocessor", "score_thresh": 0.05,
                 "pre_nms_top_n": 1000, "nms_thresh": 0.6, "max_detections": 100},
        "assigner": {"_target_": "medfound.multitask.fcos_targets.FCOSTargetAssigner", "size_ranges": [[0, "inf"]],
                     "strides": [8]},
    }
    parser = ConfigParser(cfg)
    assert isinstance(parser.get_parsed_content("loss"), FCOSLoss)
    assert parser.get_parsed_content("post").nms_thresh == 0.6
    assigned = parser.get_parsed_content("assigner")([(1, 1)], [{"box": [[0, 0, 8, 8]], "label": [0]}])
    assert assigned["labels"].item() == 0


def test_metatensor_outputs_and_targets():
    from monai.data import MetaTensor

    loss_fn = FCOSLoss(num_classes=1, strides=[8], size_ranges=[[0, None]], center_sampling_radius=None)
    plain = _one_level_outputs()
    meta = {k: [MetaTensor(v[0].detach().clone()).requires_grad_()] for k, v in _one_level_outputs().items()}
    target = [{"boxes": MetaTensor(torch.tensor([[0.0, 0, 16, 16]])), "labels": MetaTensor(torch.tensor([0]))}]
    ref = loss_fn(plain, [{"boxes": [[0, 0, 16, 16]], "labels": [0]}], (32, 32))
    got = loss_fn(meta, target, (32, 32))
    assert not isinstance(got["loss"], MetaTensor)
    assert got["loss"].item() == pytest.approx(ref["loss"].item())
    got["loss"].backward()
    assert meta["box_regression"][0].grad is not None
