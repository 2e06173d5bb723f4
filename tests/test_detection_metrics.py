"""Detection mAP: known answers on hand-made cases and parity with MONAI's COCOMetric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medfound.errors import ConfigError, LabelMismatchError, ShapeError
from medfound.evaluation.detection import (
    COCO_IOU_THRESHOLDS,
    DetectionMAP,
    IgniteDetectionMAP,
    coco_average_precision,
    mean_average_precision,
    voc_average_precision,
)
from medfound.utils.boxes import box_iou

GT = [{"boxes": [[0, 0, 10, 10], [20, 20, 40, 30]], "labels": [0, 1]},
      {"boxes": [[5, 5, 25, 25]], "labels": [0]}]


def _pred(boxes, scores, labels):
    return {"boxes": boxes, "scores": scores, "labels": labels}


def test_perfect_predictions_score_one():
    preds = [_pred(g["boxes"], [0.9] * len(g["labels"]), g["labels"]) for g in GT]
    m = mean_average_precision(preds, GT, class_names=["a", "b"])
    for key in ("map", "map_50", "map_75", "mar", "voc_ap50", "map/a", "map/b", "voc_ap50/b"):
        assert m[key] == 1.0, key
    assert m["num_gt/a"] == 2 and m["num_gt/b"] == 1


def test_false_positive_at_top_score_halves_ap():
    gt = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    pred = [_pred([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])]
    m = mean_average_precision(pred, gt)
    # precision 1/2 at recall 1, and the envelope carries it to every recall point
    assert m["map"] == pytest.approx(0.5) and m["voc_ap50"] == pytest.approx(0.5)
    # the same false positive below the true positive costs nothing
    pred = [_pred([[50, 50, 60, 60], [0, 0, 10, 10]], [0.1, 0.8], [0, 0])]
    assert mean_average_precision(pred, gt)["map"] == 1.0


def test_missed_box():
    gt = [{"boxes": [[0, 0, 10, 10], [30, 30, 40, 40]], "labels": [0, 0]}]
    pred = [_pred([[0, 0, 10, 10]], [0.7], [0])]
    m = mean_average_precision(pred, gt)
    assert m["map"] == pytest.approx(51 / 101)  # recall points 0, 0.01, ..., 0.5 at precision 1
    assert m["voc_ap50"] == pytest.approx(0.5)
    assert m["mar"] == pytest.approx(0.5)
    assert mean_average_precision([_pred([], [], [])], gt)["map"] == 0.0  # no predictions at all


def test_localisation_quality_enters_coco_map_only():
    gt = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    pred = [_pred([[0, 0, 10, 6.2]], [0.9], [0])]  # IoU 0.62: a hit at 0.50, 0.55, 0.60 only
    m = mean_average_precision(pred, gt)
    assert m["map_50"] == 1.0 and m["map_75"] == 0.0 and m["voc_ap50"] == 1.0
    assert m["map"] == pytest.approx(0.3) and m["mar"] == pytest.approx(0.3)


def test_duplicates_and_voc_versus_coco_matching():
    # a duplicate of a matched box is a false positive (after the TP, so AP stays 1)
    gt = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    pred = [_pred([[0, 0, 10, 10], [0, 0, 10, 9]], [0.9, 0.8], [0, 0])]
    assert mean_average_precision(pred, gt)["voc_ap50"] == 1.0
    # two ground truths A, B; the second detection overlaps A best (taken) and B with IoU 0.6:
    # COCO moves on to B (a TP), VOC's devkit counts a false positive
    gt = [{"boxes": [[0, 0, 20, 10], [8, 0, 28, 10]], "labels": [0, 0]}]
    det2 = [3, 0, 23, 10]  # IoU 17/23 with A, 15/25 with B
    iou = box_iou(np.array([det2]), np.array(gt[0]["boxes"]))[0]
    assert iou[0] > iou[1] > 0.5
    pred = [_pred([[0, 0, 20, 10], det2], [0.9, 0.8], [0, 0])]
    m = mean_average_precision(pred, gt)
    assert m["map_50"] == 1.0
    assert m["voc_ap50"] == pytest.approx(0.5)


def test_classes_without_ground_truth_are_left_out_of_the_mean():
    gt = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    pred = [_pred([[0, 0, 10, 10], [30, 30, 40, 40]], [0.9, 0.95], [0, 2])]
    m = mean_average_precision(pred, gt, num_classes=3)
    assert m["map/0"] == 1.0 and math.isnan(m["map/1"]) and math.isnan(m["map/2"])
    assert m["map"] == 1.0  # the false positive of class 2 does not hurt class 0


def test_max_detections_and_accumulation_over_batches():
    gt = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    pred = [_pred([[50, 50, 60, 60], [70, 70, 80, 80], [0, 0, 10, 10]], [0.9, 0.8, 0.7], [0, 0, 0])]
    assert mean_average_precision(pred, gt, max_detections=2)["map"] == 0.0  # the TP is the 3rd best
    assert mean_average_precision(pred, gt)["map"] == pytest.approx(1 / 3)
    metric = DetectionMAP(num_classes=2)
    preds = [_pred(g["boxes"], [0.5] * len(g["labels"]), g["labels"]) for g in GT]
    for p, g in zip(preds, GT):
        metric.update([p], [g])
    assert metric.compute()["map"] == 1.0
    metric.update([_pred([[100, 100, 110, 110]], [0.99], [0])], [{"boxes": [], "labels": []}])
    assert metric.compute()["map/0"] == pytest.approx(2 / 3)  # FP first, then 2 TPs: P = 2/3 at R = 1
    metric.reset()
    assert math.isnan(metric.compute()["map"])


def test_ap_helpers_known_curves():
    tp = np.array([True, False, True, False, True])
    # VOC: precision envelope 1 up to R = 1/3, 2/3 up to 2/3, 3/5 up to 1
    assert voc_average_precision(tp, 3) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    expected = (34 * 1 + 33 * 2 / 3 + 34 * 3 / 5) / 101  # recall points <= 1/3, <= 2/3, <= 1
    assert coco_average_precision(tp, 3) == pytest.approx(expected)
    assert math.isnan(coco_average_precision(tp, 0)) and voc_average_precision(np.zeros(0, bool), 2) == 0


def _random_case(seed=0, num_images=30, num_classes=3):
    """A few hundred boxes: jittered ground truths, label flips, missed boxes and false positives.

    The per-class ground-truth counts are kept coprime with 10: MONAI's COCOMetric counts
    recall in float32 (pycocotools and medfound in float64), which only matters when a recall
    k / n falls exactly on one of the 101 recall points j / 100, impossible for such n (other
    than 0 and 1, which are exact in both).
    """
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(num_images):
        g = int(rng.integers(1, 9))
        xy = rng.uniform(0, 200, (g, 2))
        gb = np.concatenate([xy, xy + rng.uniform(6, 60, (g, 2))], 1)
        gl = rng.integers(0, num_classes, g)
        found = rng.random(g) < 0.8
        pb = gb[found] + rng.normal(0, 3, (found.sum(), 4))
        pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2] + 1)
        pl = gl[found].copy()
        flip = rng.random(len(pl)) < 0.1
        pl[flip] = rng.integers(0, num_classes, flip.sum())
        nfp = int(rng.integers(0, 6))
        fxy = rng.uniform(0, 200, (nfp, 2))
        pb = np.concatenate([pb, np.concatenate([fxy, fxy + rng.uniform(6, 60, (nfp, 2))], 1)])
        pl = np.concatenate([pl, rng.integers(0, num_classes, nfp)])
        preds.append(_pred(pb, rng.random(len(pb)), pl))
        gts.append({"boxes": gb, "labels": gl})
    counts = np.bincount(np.concatenate([g["labels"] for g in gts]), minlength=num_classes)
    for c in range(num_classes):  # drop ground truths of class c from the last images until coprime with 10
        i = len(gts) - 1
        while counts[c] % 2 == 0 or counts[c] % 5 == 0:
            keep = gts[i]["labels"] != c
            if keep.all():
                i -= 1
                continue
            drop = np.nonzero(~keep)[0][0]
            gts[i] = {k: np.delete(v, drop, axis=0) for k, v in gts[i].items()}
            counts[c] -= 1
    return preds, gts


@pytest.mark.parametrize("seed", [0, 1])
def test_parity_with_monai_coco_metric(seed):
    from monai.apps.detection.metrics.coco import COCOMetric
    from monai.apps.detection.metrics.matching import matching_batch

    preds, gts = _random_case(seed)
    assert sum(len(p["boxes"]) for p in preds) + sum(len(g["boxes"]) for g in gts) > 250
    names = ["c0", "c1", "c2"]
    ours = mean_average_precision(preds, gts, class_names=names)
    coco = COCOMetric(classes=names, iou_list=(0.5, 0.75), iou_range=(0.5, 0.95, 0.05), max_detection=(100,),
                      verbose=False)
    assert np.allclose(coco.iou_thresholds, COCO_IOU_THRESHOLDS)
    matches = matching_batch(
        iou_fn=box_iou, iou_thresholds=coco.iou_thresholds,
        pred_boxes=[p["boxes"] for p in preds], pred_classes=[p["labels"] for p in preds],
        pred_scores=[p["scores"] for p in preds],
        gt_boxes=[g["boxes"] for g in gts], gt_classes=[g["labels"] for g in gts], max_detections=100,
    )
    ref, _ = coco(matches)
    assert 0.05 < ours["map"] < 0.95  # a case with partial scores, not a trivial 0 or 1
    assert ours["map"] == pytest.approx(ref["mAP_IoU_0.50_0.95_0.05_MaxDet_100"], abs=1e-9)
    assert ours["map_50"] == pytest.approx(ref["AP_IoU_0.50_MaxDet_100"], abs=1e-9)
    assert ours["map_75"] == pytest.approx(ref["AP_IoU_0.75_MaxDet_100"], abs=1e-9)
    assert ours["mar"] == pytest.approx(ref["mAR_IoU_0.50_0.95_0.05_MaxDet_100"], abs=1e-6)  # float32 there
    for name in names:
        assert ours[f"map/{name}"] == pytest.approx(ref[f"{name}_mAP_IoU_0.50_0.95_0.05_MaxDet_100"], abs=1e-9)
        assert ours[f"map_50/{name}"] == pytest.approx(ref[f"{name}_AP_IoU_0.50_MaxDet_100"], abs=1e-9)
    # MONAI's own float32 IoU (box_utils.box_iou) gives the same matches on this case
    matches32 = matching_batch(
        iou_fn=__import__("monai.data.box_utils", fromlist=["box_iou"]).box_iou,
        iou_thresholds=coco.iou_thresholds,
        pred_boxes=[p["boxes"] for p in preds], pred_classes=[p["labels"] for p in preds],
        pred_scores=[p["scores"] for p in preds],
        gt_boxes=[g["boxes"] for g in gts], gt_classes=[g["labels"] for g in gts],
    )
    assert coco(matches32)[0]["mAP_IoU_0.50_0.95_0.05_MaxDet_100"] == pytest.approx(ours["map"], abs=1e-6)


def test_voc_ap_against_a_literal_devkit_loop():
    """VOC AP re-derived with the devkit's own loop structure (global sort, per-image matching)."""
    preds, gts = _random_case(2, num_images=15, num_classes=1)
    dets = [(s, i, b) for i, p in enumerate(preds) for b, s in zip(p["boxes"], p["scores"])]
    dets.sort(key=lambda d: -d[0])
    taken = [np.zeros(len(g["boxes"]), bool) for g in gts]
    tp = []
    for _, i, b in dets:
        iou = box_iou(b[None], gts[i]["boxes"])[0] if len(gts[i]["boxes"]) else np.zeros(0)
        j = int(np.argmax(iou)) if iou.size else -1
        hit = j >= 0 and iou[j] > 0.5 and not taken[i][j]
        if hit:
            taken[i][j] = True
        tp.append(hit)
    tp = np.array(tp)
    n_gt = sum(len(g["boxes"]) for g in gts)
    rec, prec = np.cumsum(tp) / n_gt, np.cumsum(tp) / np.arange(1, len(tp) + 1)
    mrec, mpre = np.r_[0, rec, 1], np.r_[0, prec, 0]
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = max(mpre[k], mpre[k + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    expected = float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
    assert mean_average_precision(preds, gts)["voc_ap50"] == pytest.approx(expected, abs=1e-12)
    assert 0.2 < expected < 0.95


def test_inputs_as_tensors_and_errors():
    preds = [{k: torch.as_tensor(v) for k, v in _pred([[0, 0, 10, 10]], [0.9], [0]).items()}]
    gts = [{"box": torch.tensor([[0.0, 0, 10, 10]]), "label": torch.tensor([0])}]  # datalist keys
    assert mean_average_precision(preds, gts)["map"] == 1.0
    with pytest.raises(ShapeError):
        mean_average_precision(preds, gts * 2)
    with pytest.raises(LabelMismatchError, match="needs 'scores'"):
        mean_average_precision([{"boxes": [[0, 0, 1, 1]], "labels": [0]}], gts)
    with pytest.raises(LabelMismatchError, match="ground truth 0: 1 boxes but 2 labels"):
        mean_average_precision(preds, [{"boxes": [[0, 0, 1, 1]], "labels": [0, 0]}])
    with pytest.raises(LabelMismatchError, match="max >= min"):
        mean_average_precision(preds, [{"boxes": [[2, 0, 1, 1]], "labels": [0]}])
    with pytest.raises(LabelMismatchError, match="out of range for 1 classes"):
        mean_average_precision(preds, [{"boxes": [[0, 0, 1, 1]], "labels": [1]}], num_classes=1)
    with pytest.raises(ConfigError):
        DetectionMAP(num_classes=2, class_names=["a"])
    with pytest.raises(ConfigError):
        DetectionMAP(iou_thresholds=[0.0])


def test_ignite_metric_in_an_engine_and_bundle_config():
    from ignite.engine import Engine
    from monai.bundle import ConfigParser

    batches = [([_pred(g["boxes"], [0.8] * len(g["labels"]), g["labels"])], [g]) for g in GT]
    engine = Engine(lambda e, batch: batch)
    metric = ConfigParser({"m": {"_target_": "medfound.evaluation.detection.IgniteDetectionMAP",
                                 "class_names": ["a", "b"], "max_detections": 100}}).get_parsed_content("m")
    metric.attach(engine, "det")
    state = engine.run(batches, max_epochs=1)
    assert state.metrics["map"] == 1.0 and state.metrics["voc_ap50/b"] == 1.0
    assert isinstance(metric, IgniteDetectionMAP)


def _distributed_worker(rank, world, init_file, queue):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    preds, gts = _random_case(0, num_images=12)
    metric = IgniteDetectionMAP(num_classes=3)
    metric.reset()
    for i in range(rank, len(gts), world):  # each rank sees half of the images
        metric.update(([preds[i]], [gts[i]]))
    queue.put((rank, metric.compute()["map"]))
    dist.destroy_process_group()


@pytest.mark.slow
def test_ignite_metric_gathers_across_processes(tmp_path):
    import torch.multiprocessing as mp

    preds, gts = _random_case(0, num_images=12)
    expected = mean_average_precision(preds, gts, num_classes=3)["map"]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_distributed_worker, args=(r, 2, str(tmp_path / "init"), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results[0] == pytest.approx(expected, abs=1e-12) and results[1] == pytest.approx(expected, abs=1e-12)
