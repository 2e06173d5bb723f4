"""Detection metrics: VOC-style AP@0.5 and COCO-style mAP@[0.5:0.95], per class and mean.

Inputs are lists with one entry per image: predictions ``{"boxes": (D, 4), "scores": (D,),
"labels": (D,)}`` and ground truths ``{"boxes": (G, 4), "labels": (G,)}`` (``"box"`` /
``"label"``, the datalist keys, also work), as torch tensors, NumPy arrays or lists.
Boxes are ``[x_min, y_min, x_max, y_max]`` in pixels, max exclusive (the project's
convention, :mod:`medfound.utils.boxes`, whose float64 :func:`~medfound.utils.boxes.box_iou`
the matching uses, as pycocotools computes IoU in double precision).

What is computed, per class over all images:

- **COCO** (as pycocotools and MONAI's ``COCOMetric``): per image the
  ``max_detections`` best detections of the class; greedy matching by decreasing score,
  each detection to the still unmatched ground truth of highest IoU with
  ``IoU >= threshold``; precision envelope sampled at the 101 recall points 0, 0.01, ..., 1;
  AP averaged over IoU thresholds 0.50:0.05:0.95 (``map``), and at 0.50 / 0.75
  (``map_50`` / ``map_75``); ``mar`` is the final recall averaged over the thresholds.
- **VOC** (as the PASCAL VOC 2010+ devkit): every detection, matched to the ground truth
  of highest IoU; a true positive if that IoU exceeds 0.5 and that ground truth was not
  matched before; AP is the area under the precision envelope (all points) (``voc_ap50``).

Classes without ground truth have no AP (NaN) and do not enter the means (as pycocotools;
note that MONAI's ``COCOMetric`` averages a -1 into its mean for such classes).

Example
-------
>>> gt = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
>>> pred = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "scores": [0.9, 0.8], "labels": [0, 0]}]
>>> m = mean_average_precision(pred, gt)
>>> m["map"], m["voc_ap50"]
(1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from ignite.metrics import Metric

from medfound.errors import ConfigError, LabelMismatchError, ShapeError
from medfound.evaluation.statistics import nanmean
from medfound.utils.boxes import box_iou
from medfound.utils.checks import check_float, check_int

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "coco_average_precision",
    "voc_average_precision",
    "mean_average_precision",
    "DetectionMAP",
    "IgniteDetectionMAP",
]

#: IoU thresholds of COCO's mAP: 0.50, 0.55, ..., 0.95
COCO_IOU_THRESHOLDS: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, 10).tolist())
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _to_numpy(value: Any, dtype: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor (possibly on a GPU)
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _read(entry: Mapping[str, Any], index: int, what: str, with_scores: bool) -> tuple[np.ndarray, ...]:
    boxes = entry.get("boxes", entry.get("box"))
    labels = entry.get("labels", entry.get("label"))
    if boxes is None or labels is None:
        raise LabelMismatchError(f"{what} {index} needs 'boxes' and 'labels', has keys {sorted(entry)}")
    boxes = _to_numpy(boxes, np.float64)
    boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
    labels = _to_numpy(labels, np.int64).reshape(-1)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise LabelMismatchError(f"{what} {index}: boxes must be (N, 4), got {boxes.shape}")
    if labels.shape[0] != boxes.shape[0]:
        raise LabelMismatchError(f"{what} {index}: {boxes.shape[0]} boxes but {labels.shape[0]} labels")
    if not np.isfinite(boxes).all() or (boxes[:, 2:] < boxes[:, :2]).any():
        raise LabelMismatchError(f"{what} {index}: boxes must be finite [x_min, y_min, x_max, y_max] with max >= min")
    if (labels < 0).any():
        raise LabelMismatchError(f"{what} {index}: labels must be >= 0, got {np.unique(labels).tolist()}")
    if not with_scores:
        return boxes, labels
    if "scores" not in entry:
        raise LabelMismatchError(f"{what} {index} needs 'scores', has keys {sorted(entry)}")
    scores = _to_numpy(entry["scores"], np.float64).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise LabelMismatchError(f"{what} {index}: {boxes.shape[0]} boxes but {scores.shape[0]} scores")
    return boxes, labels, scores


def _match_coco(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Greedy COCO matching of score-sorted detections (rows) to ground truths (columns).

    Returns ``(T, D)`` booleans: detection d is a true positive at threshold t. A detection
    takes the unmatched ground truth of highest IoU >= t; on equal IoU the later one (as
    pycocotools' loop does).
    """
    num_t, (num_d, num_g) = len(thresholds), iou.shape
    tp = np.zeros((num_t, num_d), bool)
    gt_taken = np.zeros((num_t, num_g), bool)
    if num_g == 0:
        return tp
    rows = np.arange(num_t)
    for d in range(num_d):
        ok = ~gt_taken & (iou[d][None, :] >= thresholds[:, None])  # (T, G)
        masked = np.where(ok, iou[d][None, :], -1.0)
        best = num_g - 1 - np.argmax(masked[:, ::-1], axis=1)
        hit = ok.any(axis=1)
        tp[hit, d] = True
        gt_taken[rows[hit], best[hit]] = True
    return tp


def _match_voc(iou: np.ndarray, threshold: float) -> np.ndarray:
    """VOC devkit matching: the ground truth of highest IoU; TP if IoU > threshold and not yet taken."""
    num_d, num_g = iou.shape
    tp = np.zeros(num_d, bool)
    if num_g == 0:
        return tp
    taken = np.zeros(num_g, bool)
    best = np.argmax(iou, axis=1)
    for d in range(num_d):
        g = best[d]
        if iou[d, g] > threshold and not taken[g]:
            tp[d] = taken[g] = True
    return tp


def _precision_recall(tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    tp_sum = np.cumsum(tp, axis=-1, dtype=np.float64)
    fp_sum = np.cumsum(~tp, axis=-1, dtype=np.float64)
    recall = tp_sum / num_gt
    precision = tp_sum / (tp_sum + fp_sum)  # >= 1 detection at every rank: no division by zero
    return precision, recall


def coco_average_precision(tp: np.ndarray, num_gt: int) -> float:
    """COCO's 101-point interpolated AP of score-sorted true-positive flags.

    Example
    -------
    >>> round(coco_average_precision(np.array([True, False, True]), num_gt=2), 6)  # (51 * 1 + 50 * 2/3) / 101
    0.834983
    """
    if num_gt <= 0:
        return math.nan
    if tp.size == 0:
        return 0.0
    precision, recall = _precision_recall(np.asarray(tp, bool), num_gt)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, _RECALL_POINTS, side="left")
    sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


def voc_average_precision(tp: np.ndarray, num_gt: int) -> float:
    """VOC 2010+ AP: area under the precision envelope of score-sorted true-positive flags.

    Example
    -------
    >>> voc_average_precision(np.array([True, False, True]), num_gt=2)
    0.8333333333333333
    """
    if num_gt <= 0:
        return math.nan
    if tp.size == 0:
        return 0.0
    precision, recall = _precision_recall(np.asarray(tp, bool), num_gt)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))



class DetectionMAP:
    """Accumulating detection metric: ``update`` per batch, ``compute`` at the end.

    Parameters
    ----------
    num_classes : number of classes; by default one more than the largest label seen.
    class_names : names for the per-class keys (default ``"0"``, ``"1"``, ...).
    iou_thresholds : COCO thresholds (default 0.50:0.05:0.95; 0.5 and 0.75 must be in it
        for ``map_50`` / ``map_75``).
    max_detections : COCO's per-image, per-class cap on detections.
    voc_iou_threshold : the VOC threshold (0.5).

    ``compute()`` returns a flat dict of floats: ``map``, ``map_50``, ``map_75``, ``mar``,
    ``voc_ap50``, and per class ``map/<name>``, ``map_50/<name>``, ``voc_ap50/<name>``,
    ``num_gt/<name>``.

    Example
    -------
    >>> metric = DetectionMAP(class_names=["nucleus"])
    >>> metric.update([{"boxes": [[0, 0, 4, 4]], "scores": [0.5], "labels": [0]}],
    ...               [{"boxes": [[0, 0, 4, 4], [8, 8, 12, 12]], "labels": [0, 0]}])
    >>> r = metric.compute()
    >>> r["voc_ap50"], r["num_gt/nucleus"]
    (0.5, 2.0)
    """

    def __init__(
        self,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        iou_thresholds: Sequence[float] | None = None,
        max_detections: int = 100,
        voc_iou_threshold: float = 0.5,
    ) -> None:
        num_classes = check_int(num_classes, "num_classes", low=1, allow_none=True)
        if class_names is not None and num_classes is not None and len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class_names for num_classes={num_classes}")
        self.num_classes = num_classes if num_classes is not None else (
            len(class_names) if class_names is not None else None
        )
        self.class_names = list(class_names) if class_names is not None else None
        if iou_thresholds is None:
            thresholds = COCO_IOU_THRESHOLDS
        else:
            thresholds = tuple(check_float(t, f"iou_thresholds[{i}]", low=0.0, high=1.0, low_open=True)
                               for i, t in enumerate(iou_thresholds))
            if not thresholds:
                raise ConfigError("iou_thresholds must hold at least one threshold in (0, 1], got none")
        self.iou_thresholds = np.asarray(thresholds, np.float64)
        self.max_detections = check_int(max_detections, "max_detections", low=1)
        self.voc_iou_threshold = check_float(voc_iou_threshold, "voc_iou_threshold", low=0.0, high=1.0)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        # per class: lists of per-image arrays (scores, COCO tp (T, D)), (scores, VOC tp) and a GT count
        self._coco: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._voc: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._num_gt: dict[int, int] = {}
        self._max_label = -1

    def update(self, predictions: Sequence[Mapping[str, Any]], ground_truths: Sequence[Mapping[str, Any]]) -> None:
        """Add a batch: one prediction dict and one ground-truth dict per image."""
        if len(predictions) != len(ground_truths):
            raise ShapeError(f"{len(predictions)} predictions for {len(ground_truths)} ground truths")
        for i, (pred, gt) in enumerate(zip(predictions, ground_truths)):
            p_boxes, p_labels, p_scores = _read(pred, i, "prediction", True)
            g_boxes, g_labels = _read(gt, i, "ground truth", False)
            labels_here = np.union1d(p_labels, g_labels)
            if labels_here.size:
                self._max_label = max(self._max_label, int(labels_here.max()))
                if self.num_classes is not None and self._max_label >= self.num_classes:
                    raise LabelMismatchError(
                        f"image {i}: label {self._max_label} is out of range for {self.num_classes} classes"
                    )
            for c in labels_here.tolist():
                pm, gm = p_labels == c, g_labels == c
                order = np.argsort(-p_scores[pm], kind="mergesort")
                boxes, scores = p_boxes[pm][order], p_scores[pm][order]
                iou = box_iou(boxes, g_boxes[gm])
                n_gt = int(gm.sum())
                self._num_gt[c] = self._num_gt.get(c, 0) + n_gt
                top = slice(0, self.max_detections)
                self._coco.setdefault(c, []).append((scores[top], _match_coco(iou[top], self.iou_thresholds)))
                self._voc.setdefault(c, []).append((scores, _match_voc(iou, self.voc_iou_threshold)))

    def state(self) -> dict[str, Any]:
        """What has been accumulated, as plain picklable data (to gather across processes)."""
        return {"coco": self._coco, "voc": self._voc, "num_gt": self._num_gt, "max_label": self._max_label}

    def merge(self, state: Mapping[str, Any]) -> None:
        """Add another metric's :meth:`state` (e.g. from another process) to this one."""
        for c, items in state["coco"].items():
            self._coco.setdefault(c, []).extend(items)
        for c, items in state["voc"].items():
            self._voc.setdefault(c, []).extend(items)
        for c, n in state["num_gt"].items():
            self._num_gt[c] = self._num_gt.get(c, 0) + n
        self._max_label = max(self._max_label, state["max_label"])

    def _names(self) -> list[str]:
        n = self.num_classes if self.num_classes is not None else self._max_label + 1
        return self.class_names if self.class_names is not None else [str(c) for c in range(n)]

    def compute(self) -> dict[str, float]:
        """The metrics over everything added since the last ``reset``."""
        names = self._names()
        thresholds = self.iou_thresholds
        at = {key: np.nonzero(np.isclose(thresholds, t))[0] for key, t in (("map_50", 0.5), ("map_75", 0.75))}
        per_class: dict[str, list[float]] = {k: [] for k in ("map", "map_50", "map_75", "mar", "voc_ap50")}
        result: dict[str, float] = {}
        for c, name in enumerate(names):
            num_gt = self._num_gt.get(c, 0)
            if num_gt == 0:
                aps = np.full(len(thresholds), math.nan)
                recalls = aps
                voc = math.nan
            else:
                scores = np.concatenate([s for s, _ in self._coco.get(c, [])] or [np.zeros(0)])
                tps = np.concatenate([t for _, t in self._coco.get(c, [])] or [np.zeros((len(thresholds), 0), bool)],
                                     axis=1)
                order = np.argsort(-scores, kind="mergesort")
                tps = tps[:, order]
                aps = np.array([coco_average_precision(tp, num_gt) for tp in tps])
                recalls = tps.sum(axis=1) / num_gt
                v_scores = np.concatenate([s for s, _ in self._voc.get(c, [])] or [np.zeros(0)])
                v_tp = np.concatenate([t for _, t in self._voc.get(c, [])] or [np.zeros(0, bool)])
                voc = voc_average_precision(v_tp[np.argsort(-v_scores, kind="mergesort")], num_gt)
            values = {
                "map": float(np.mean(aps)),
                "map_50": float(aps[at["map_50"][0]]) if at["map_50"].size else math.nan,
                "map_75": float(aps[at["map_75"][0]]) if at["map_75"].size else math.nan,
                "mar": float(np.mean(recalls)),
                "voc_ap50": voc,
            }
            for key, value in values.items():
                per_class[key].append(value)
            result[f"map/{name}"] = values["map"]
            result[f"map_50/{name}"] = values["map_50"]
            result[f"voc_ap50/{name}"] = values["voc_ap50"]
            result[f"num_gt/{name}"] = float(num_gt)
        means = {key: nanmean(vals) for key, vals in per_class.items()}
        return {**means, **result}

    aggregate = compute


def mean_average_precision(
    predictions: Sequence[Mapping[str, Any]],
    ground_truths: Sequence[Mapping[str, Any]],
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    iou_thresholds: Sequence[float] | None = None,
    max_detections: int = 100,
) -> dict[str, float]:
    """One-shot :class:`DetectionMAP`: the metrics of ``predictions`` against ``ground_truths``."""
    metric = DetectionMAP(num_classes, class_names, iou_thresholds, max_detections)
    metric.update(predictions, ground_truths)
    return metric.compute()


class IgniteDetectionMAP(Metric):
    """:class:`DetectionMAP` as an ignite metric, for MONAI workflows (evaluators, handlers).

    ``output_transform`` must give ``(predictions, ground_truths)``: lists of per-image
    dicts as :class:`DetectionMAP.update` takes. ``compute`` returns the flat dict; with
    ``attach(engine, "det")`` every key lands in ``engine.state.metrics`` (``"map"``, ...).
    In a distributed run (``torch.distributed`` initialised) ``compute`` gathers what every
    process accumulated, so all ranks get the metric of the whole evaluation set.

    Example
    -------
    >>> m = IgniteDetectionMAP(class_names=["nucleus"])
    >>> pred, gt = {"boxes": [[0, 0, 4, 4]], "scores": [0.9], "labels": [0]}, {"boxes": [[0, 0, 4, 4]], "labels": [0]}
    >>> m.update(([pred], [gt]))
    >>> m.compute()["map"]
    1.0
    """

    def __init__(
        self,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        iou_thresholds: Sequence[float] | None = None,
        max_detections: int = 100,
        output_transform: Callable = lambda x: x,
        device: Any = "cpu",
    ) -> None:
        self._metric = DetectionMAP(num_classes, class_names, iou_thresholds, max_detections)
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self._metric.reset()

    def update(self, output: Sequence[Any]) -> None:
        predictions, ground_truths = output
        self._metric.update(predictions, ground_truths)

    def compute(self) -> dict[str, float]:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self._metric.compute()
        # every process holds its own images: gather all states, then compute on the union
        states: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(states, self._metric.state())
        merged = DetectionMAP(self._metric.num_classes, self._metric.class_names,
                              self._metric.iou_thresholds.tolist(), self._metric.max_detections,
                              self._metric.voc_iou_threshold)
        for state in states:
            merged.merge(state)
        return merged.compute()
