"""Per-task metrics against hand-computed values and MONAI; the balanced multi-task aggregate."""

from __future__ import annotations

import math

import pytest
import torch
from monai.metrics import DiceMetric, MeanIoU

from medfound.errors import ConfigError, ShapeError
from medfound.multitask.metrics import (
    ClassificationMetric,
    DetectionMetric,
    MultiLabelMetric,
    MultiTaskMetric,
    SegmentationMetric,
    build_task_metric,
)


def test_classification_metrics_by_hand():
    m = ClassificationMetric(["a", "b", "c"])
    # predictions (arg-max): a, b, b, c, a ; labels: a, b, c, c, b
    logits = torch.tensor([[3.0, 0, 0], [0, 2.0, 0], [0, 1.0, 0.5], [0, 0, 4.0], [1.0, 0.9, 0]])
    m.update(logits[:3], torch.tensor([0, 1, 2]))
    m.update(logits[3:], torch.tensor([2, 1]))
    r = m.compute()
    assert r["accuracy"] == pytest.approx(3 / 5)
    # F1 per class: a tp1 fp1 fn0 -> 2/3; b tp1 fp1 fn1 -> 1/2; c tp1 fp0 fn1 -> 2/3
    assert r["f1/a"] == pytest.approx(2 / 3) and r["f1/b"] == pytest.approx(0.5) and r["f1/c"] == pytest.approx(2 / 3)
    assert r["f1_macro"] == pytest.approx((2 / 3 + 0.5 + 2 / 3) / 3)
    # AUC of class a, one-vs-rest: p(a) for the positive (sample 0) is the highest -> 1.0
    assert r["auc/a"] == pytest.approx(1.0)
    probs = torch.softmax(logits, 1)[:, 2]
    pos, neg = probs[[2, 3]], probs[[0, 1, 4]]
    pairs = [(float(p > q) + 0.5 * float(p == q)) for p in pos for q in neg]
    assert r["auc/c"] == pytest.approx(sum(pairs) / len(pairs))
    assert r["score"] == r["f1_macro"]


def test_classification_ignores_missing_labels_and_checks_shapes():
    m = ClassificationMetric(["a", "b"])
    m.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, -1]))
    assert m.compute()["num_samples"] == 1.0
    with pytest.raises(ShapeError):
        m.update(torch.zeros(2, 3), torch.tensor([0, 1]))


def test_binary_auc_against_pairwise_count():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(30, 2, generator=g)
    labels = torch.randint(0, 2, (30,), generator=g)
    m = ClassificationMetric(["neg", "pos"], primary="auc_macro")
    m.update(logits, labels)
    p = torch.softmax(logits, 1)[:, 1]
    pos, neg = p[labels == 1], p[labels == 0]
    auc = ((pos[:, None] > neg[None]).float().mean()).item()
    r = m.compute()
    assert r["auc/pos"] == pytest.approx(auc, abs=1e-6) and r["score"] == pytest.approx(auc, abs=1e-6)


def test_multilabel_metrics_skip_unknown_entries():
    m = MultiLabelMetric(["x", "y"])
    logits = torch.tensor([[2.0, -1.0], [-2.0, 1.0], [1.0, 3.0], [-1.0, -3.0]])
    target = torch.tensor([[1, 0], [0, -1], [0, 1], [0, 0]])
    m.update(logits, target)
    r = m.compute()
    # x: preds 1,0,1,0 vs 1,0,0,0 -> accuracy 3/4, F1 = 2/(2+1+0); AUC: positive 2.0 above all negatives -> 1
    assert r["accuracy/x"] == pytest.approx(0.75) and r["f1/x"] == pytest.approx(2 / 3) and r["auc/x"] == 1.0
    # y: sample 1 unknown; preds 0,1,0 vs 0,1,0 -> accuracy 1, F1 1, AUC 1
    assert r["accuracy/y"] == 1.0 and r["f1/y"] == 1.0 and r["auc/y"] == 1.0
    assert r["auc_macro"] == 1.0 and r["accuracy"] == pytest.approx(0.875)


def test_segmentation_metrics_match_monai_and_ignore_pixels():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 3, 10, 10, generator=g)
    labels = torch.randint(0, 3, (3, 10, 10), generator=g)
    labels[2][labels[2] == 2] = 1  # class 2 absent in image 2: left out of its mean
    m = SegmentationMetric(["background", "b", "c"])
    m.update(logits, labels)
    r = m.compute()
    pred = torch.nn.functional.one_hot(logits.argmax(1), 3).movedim(-1, 1)
    y = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1)
    dice = DiceMetric(include_background=True, reduction="mean_batch", ignore_empty=True)
    dice(pred, y)
    iou = MeanIoU(include_background=True, reduction="mean_batch", ignore_empty=True)
    iou(pred, y)
    for k, name in enumerate(["background", "b", "c"]):
        assert r[f"dice/{name}"] == pytest.approx(dice.aggregate()[k].item(), abs=1e-6)
        assert r[f"iou/{name}"] == pytest.approx(iou.aggregate()[k].item(), abs=1e-6)
    assert r["dice_mean"] == pytest.approx((r["dice/b"] + r["dice/c"]) / 2)  # foreground classes only

    # by hand, with ignored pixels: 1 image, 2x2, labels [[1, -1], [0, 1]], prediction all 1
    m2 = SegmentationMetric(["background", "lesion"])
    m2.update(torch.tensor([[[[0.0, 0], [0, 0]], [[1.0, 1], [1, 1]]]]), torch.tensor([[[1, -1], [0, 1]]]))
    r2 = m2.compute()
    assert r2["dice/lesion"] == pytest.approx(2 * 2 / (3 + 2)) and r2["iou/lesion"] == pytest.approx(2 / 3)
    assert r2["dice/background"] == 0.0


def test_detection_metric_wraps_map():
    m = DetectionMetric(["nucleus"])
    m.update(
        [{"boxes": [[0, 0, 4, 4]], "scores": [0.9], "labels": [0]}],
        [{"boxes": [[0, 0, 4, 4], [8, 8, 12, 12]], "labels": [0, 0]}],
    )
    r = m.compute()
    assert r["voc_ap50"] == pytest.approx(0.5) and r["score"] == r["map_50"] and r["num_samples"] == 1.0


def test_multitask_metric_is_the_unweighted_mean_over_tasks():
    big, small = (
        ClassificationMetric(["a", "b"], primary="accuracy"),
        ClassificationMetric(["a", "b"], primary="accuracy"),
    )
    metric = MultiTaskMetric({"big": big, "small": small, "unused": ClassificationMetric(["a", "b"])})
    metric.reset()
    metric.update({"task": "big", "pred": torch.tensor([[1.0, 0]] * 9 + [[0, 1.0]]), "label": torch.zeros(10).long()})
    metric.update(({"task": "small", "pred": torch.tensor([[0, 1.0]]), "label": torch.tensor([0])},))
    r = metric.compute()
    assert r["big/score"] == pytest.approx(0.9) and r["small/score"] == 0.0
    assert r["mean_score"] == pytest.approx(0.45)  # not the pooled 9/11
    assert not any(k.startswith("unused/") for k in r)
    with pytest.raises(ConfigError):
        metric.update({"task": "nope", "pred": None, "label": None})


def test_primary_metric_must_exist():
    with pytest.raises(ConfigError, match="primary metric"):
        m = build_task_metric("classification", ["a", "b"], primary="dice_mean")
        m.update(torch.zeros(1, 2), torch.tensor([0]))
        m.compute()
    assert math.isnan(build_task_metric("segmentation", ["bg", "x"]).compute()["dice_mean"])
