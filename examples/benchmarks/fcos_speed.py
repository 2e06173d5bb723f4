"""Speed of medfound's FCOS NMS and detection mAP against MONAI's implementations, same inputs, same run.

Compares
- ``medfound.utils.boxes.nms`` / ``batched_nms`` (block-wise tensor NMS) with
  ``monai.data.box_utils.non_max_suppression`` / ``batched_nms`` (one Python iteration and
  one IoU call per kept box), on random boxes of the size FCOS decoding feeds NMS;
- ``medfound.evaluation.detection.mean_average_precision`` with MONAI's
  ``matching_batch`` + ``COCOMetric`` on random detections of many images;
- ``medfound.utils.boxes.box_iou`` with ``monai.data.box_utils.box_iou`` as the IoU of MONAI's mAP;
and checks that both give the same kept boxes / the same mAP.

Usage::

    python examples/benchmarks/fcos_speed.py [--device cpu|cuda] [--repeats 5] [--threads N] [--json out.json]

Prints a table; ``--json`` writes a flat JSON object of numbers including
``nms_speedup_vs_monai`` (MONAI's time / medfound's, class-wise NMS on the largest case),
``map_speedup_vs_monai`` and ``box_iou_speedup_vs_monai_in_map`` (MONAI's mAP pipeline with
its own ``box_iou`` / with medfound's ``medfound.utils.boxes.box_iou``).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import numpy as np
import torch


def _boxes(n: int, seed: int, device: str, num_classes: int = 3):
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n // 10 + 1, 2, generator=g) * 800  # clustered, as detections around objects are
    xy = centre[torch.randint(0, len(centre), (n,), generator=g)] + torch.randn(n, 2, generator=g) * 12
    wh = torch.rand(n, 2, generator=g) * 60 + 20
    boxes = torch.cat([xy, xy + wh], 1).to(device)
    return boxes, torch.rand(n, generator=g).to(device), torch.randint(0, num_classes, (n,), generator=g).to(device)


def _time(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def _detections(num_images: int, seed: int = 0, num_classes: int = 3):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(num_images):
        g = int(rng.integers(1, 10))
        xy = rng.uniform(0, 400, (g, 2))
        gb = np.concatenate([xy, xy + rng.uniform(8, 80, (g, 2))], 1)
        gl = rng.integers(0, num_classes, g)
        d = 60
        idx = rng.integers(0, g, d)
        pb = gb[idx] + rng.normal(0, 6, (d, 4))
        pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2] + 1)
        pl = np.where(rng.random(d) < 0.8, gl[idx], rng.integers(0, num_classes, d))
        preds.append({"boxes": pb, "scores": rng.random(d), "labels": pl})
        gts.append({"boxes": gb, "labels": gl})
    return preds, gts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from monai.apps.detection.metrics.coco import COCOMetric
    from monai.apps.detection.metrics.matching import matching_batch
    from monai.data import box_utils

    from medfound.evaluation.detection import mean_average_precision
    from medfound.utils.boxes import batched_nms, box_iou, nms

    results: dict[str, float] = {}
    rows = []
    for n in args.sizes:
        boxes, scores, labels = _boxes(n, n, args.device)
        ours = nms(boxes, scores, 0.5)
        ref = box_utils.non_max_suppression(boxes, scores, 0.5)
        if ours.tolist() != ref.tolist():
            raise SystemExit(f"NMS results differ for n={n}")
        ours_c = batched_nms(boxes, scores, labels, 0.5)
        ref_c = box_utils.batched_nms(boxes, scores, labels, 0.5)
        if sorted(ours_c.tolist()) != sorted(ref_c.tolist()):
            raise SystemExit(f"class-wise NMS results differ for n={n}")
        t_ours = _time(partial(nms, boxes, scores, 0.5), args.repeats, args.device)
        t_ref = _time(partial(box_utils.non_max_suppression, boxes, scores, 0.5), args.repeats, args.device)
        t_ours_c = _time(partial(batched_nms, boxes, scores, labels, 0.5), args.repeats, args.device)
        t_ref_c = _time(partial(box_utils.batched_nms, boxes, scores, labels, 0.5), args.repeats, args.device)
        rows.append((f"nms, {n} boxes ({len(ours)} kept)", t_ours, t_ref))
        rows.append((f"class-wise nms, {n} boxes ({len(ours_c)} kept)", t_ours_c, t_ref_c))
        results.update({f"nms_{n}_medfound_s": t_ours, f"nms_{n}_monai_s": t_ref,
                        f"batched_nms_{n}_medfound_s": t_ours_c, f"batched_nms_{n}_monai_s": t_ref_c})
    largest = max(args.sizes)
    results["nms_speedup_vs_monai"] = results[f"batched_nms_{largest}_monai_s"] / results[
        f"batched_nms_{largest}_medfound_s"]

    preds, gts = _detections(args.images)
    names = ["c0", "c1", "c2"]
    coco = COCOMetric(classes=names, iou_list=(0.5, 0.75), iou_range=(0.5, 0.95, 0.05), max_detection=(100,),
                      verbose=False)

    def monai_map(iou_fn=box_iou) -> float:
        matches = matching_batch(
            iou_fn=iou_fn, iou_thresholds=coco.iou_thresholds,
            pred_boxes=[p["boxes"] for p in preds], pred_classes=[p["labels"] for p in preds],
            pred_scores=[p["scores"] for p in preds],
            gt_boxes=[g["boxes"] for g in gts], gt_classes=[g["labels"] for g in gts],
        )
        return coco(matches)[0]["mAP_IoU_0.50_0.95_0.05_MaxDet_100"]

    def ours_map() -> float:
        return mean_average_precision(preds, gts, class_names=names)["map"]

    diff = abs(ours_map() - monai_map())
    t_map = _time(ours_map, max(1, args.repeats // 2), "cpu")
    t_map_ref = _time(monai_map, max(1, args.repeats // 2), "cpu")
    rows.append((f"COCO mAP, {args.images} images x 60 detections", t_map, t_map_ref))
    # the IoU alone: MONAI's matching and COCOMetric with medfound's box_iou, then with MONAI's own
    t_iou_ref = _time(partial(monai_map, box_utils.box_iou), max(1, args.repeats // 2), "cpu")
    rows.append(("  MONAI's mAP with box_iou: medfound's | MONAI's", t_map_ref, t_iou_ref))
    results.update({"map_medfound_s": t_map, "map_monai_s": t_map_ref, "map_speedup_vs_monai": t_map_ref / t_map,
                    "map_abs_diff": diff, "map_monai_own_box_iou_s": t_iou_ref,
                    "box_iou_speedup_vs_monai_in_map": t_iou_ref / t_map_ref})

    print(f"device: {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'case':48s} {'medfound (ms)':>14s} {'MONAI (ms)':>12s} {'speed-up':>9s}")
    for name, t_o, t_r in rows:
        print(f"{name:48s} {t_o * 1e3:14.2f} {t_r * 1e3:12.2f} {t_r / t_o:8.1f}x")
    print(f"mAP |medfound - MONAI| = {diff:.2e} (MONAI counts recall in float32)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
