"""Per-task metrics (accumulate batch by batch, compute at the end) and their ignite face.

- classification: ``accuracy``, ``f1_macro`` (mean F1 over the classes present in the
  labels or the predictions, as scikit-learn), ``auc_macro`` (one-vs-rest ROC AUC,
  MONAI's ``compute_roc_auc``, mean over classes that have positives and negatives), and
  per class ``f1/<name>``, ``auc/<name>``;
- multi-label: per label ``auc/<name>``, ``f1/<name>`` and ``accuracy/<name>`` (threshold 0.5
  on the probability), their means ``auc_macro``, ``f1_macro``, ``accuracy``; target entries
  of -1 (unknown) are left out;
- segmentation: per image and class Dice and IoU (MONAI's ``compute_dice`` /
  ``compute_iou`` on one-hot maps of the arg-max prediction, pixels labelled -1 left out,
  classes absent from an image's ground truth left out of that image), averaged over
  images: ``dice/<name>``, ``iou/<name>``, and ``dice_mean`` / ``iou_mean`` over the
  foreground classes (all classes when there is no class 0 named background);
- detection: :class:`medfound.evaluation.detection.DetectionMAP` (``map``, ``map_50``,
  ``map_75``, ``mar``, ``voc_ap50``, per class).

Each task has one **primary** metric (``score``) that model selection and the aggregate
over tasks use: ``f1_macro`` (classification), ``auc_macro`` (multi-label), ``dice_mean``
(segmentation), ``map_50`` (detection), unless the task config names another.

:class:`MultiTaskMetric` is an ignite ``Metric`` over all tasks for MONAI evaluators: its
output is flat (``"<task>/<metric>"`` keys, ``"<task>/score"`` and the balanced
``"mean_score"``: the unweighted mean over tasks of their primary metric).

Example
-------
>>> import torch
>>> m = ClassificationMetric(class_names=["a", "b"])
>>> m.update(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1, 1]))
>>> r = m.compute()
>>> round(r["accuracy"], 4), round(r["f1_macro"], 4), r["auc_macro"]
(0.6667, 0.6667, 1.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from ignite.metrics import Metric
from monai.metrics import compute_dice, compute_iou, compute_roc_auc

from medfound.errors import ConfigError, ShapeError
from medfound.evaluation.detection import DetectionMAP
from medfound.evaluation.statistics import nanmean
from medfound.multitask.outputs import collate_outputs
from medfound.utils import check_choice, check_int, check_probability

__all__ = [
    "PRIMARY_METRICS",
    "TaskMetric",
    "ClassificationMetric",
    "MultiLabelMetric",
    "SegmentationMetric",
    "DetectionMetric",
    "build_task_metric",
    "MultiTaskMetric",
]

#: the default primary metric of each task kind
PRIMARY_METRICS = {
    "classification": "f1_macro",
    "multilabel": "auc_macro",
    "segmentation": "dice_mean",
    "detection": "map_50",
}


def _plain(t: Any) -> Any:
    return t.as_tensor() if hasattr(t, "as_tensor") else t


def _auc(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """ROC AUC of one binary problem (MONAI), NaN when only one class is present."""
    positives = positives.float()
    if positives.numel() == 0 or bool(positives.min() == positives.max()):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(compute_roc_auc(scores.float(), positives, average="macro"))


def _f1(tp: float, fp: float, fn: float) -> float:
    denom = 2 * tp + fp + fn
    return math.nan if denom == 0 else 2 * tp / denom


class TaskMetric:
    """Base class: ``reset``, ``update(pred, target)``, ``compute() -> dict`` with a ``score`` entry."""

    def __init__(self, class_names: Sequence[str], primary: str | None = None, kind: str = "") -> None:
        self.class_names = [str(c) for c in class_names]
        self.primary = primary or PRIMARY_METRICS[kind]
        self.reset()

    def reset(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def update(self, pred: Any, target: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _values(self) -> dict[str, float]:  # pragma: no cover - overridden
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        """The metrics of everything added since ``reset``; ``score`` is the primary metric."""
        values = self._values()
        if self.primary not in values:
            raise ConfigError(f"primary metric {self.primary!r} is not one of {sorted(values)}")
        values["score"] = values[self.primary]
        return values


class ClassificationMetric(TaskMetric):
    """Single-label classification: ``update(logits (B, C), labels (B,))``; labels -1 are left out."""

    def __init__(self, class_names: Sequence[str], primary: str | None = None) -> None:
        super().__init__(class_names, primary, "classification")

    def reset(self) -> None:
        self._probs: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = _plain(pred).detach().float().cpu(), _plain(target).detach().reshape(-1).long().cpu()
        if pred.ndim != 2 or pred.shape[1] != len(self.class_names) or pred.shape[0] != target.numel():
            raise ShapeError(
                f"classification metric: logits {tuple(pred.shape)} for {target.numel()} labels and "
                f"{len(self.class_names)} classes"
            )
        keep = target >= 0
        self._probs.append(torch.softmax(pred[keep], dim=1))
        self._labels.append(target[keep])

    def _values(self) -> dict[str, float]:
        c = len(self.class_names)
        probs = torch.cat(self._probs) if self._probs else torch.zeros(0, c)
        labels = torch.cat(self._labels) if self._labels else torch.zeros(0, dtype=torch.long)
        out: dict[str, float] = {"num_samples": float(labels.numel())}
        if labels.numel() == 0:
            return {**out, "accuracy": math.nan, "f1_macro": math.nan, "auc_macro": math.nan}
        predicted = probs.argmax(1)
        out["accuracy"] = float((predicted == labels).float().mean())
        f1s, aucs = [], []
        for k, name in enumerate(self.class_names):
            tp = float(((predicted == k) & (labels == k)).sum())
            fp = float(((predicted == k) & (labels != k)).sum())
            fn = float(((predicted != k) & (labels == k)).sum())
            f1s.append(_f1(tp, fp, fn))
            aucs.append(_auc(probs[:, k], labels == k))
            out[f"f1/{name}"], out[f"auc/{name}"] = f1s[-1], aucs[-1]
        out["f1_macro"], out["auc_macro"] = nanmean(f1s), nanmean(aucs)
        return out


class MultiLabelMetric(TaskMetric):
    """Multi-label classification: ``update(logits (B, K), targets (B, K) of 0/1/-1)``."""

    def __init__(self, class_names: Sequence[str], primary: str | None = None, threshold: float = 0.5) -> None:
        self.threshold = check_probability(threshold, "multi-label metric threshold")
        super().__init__(class_names, primary, "multilabel")

    def reset(self) -> None:
        self._probs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = _plain(pred).detach().float().cpu()
        k = len(self.class_names)
        if pred.ndim != 2 or pred.shape[1] != k:
            raise ShapeError(f"multi-label metric: logits must be (B, {k}), got {tuple(pred.shape)}")
        self._probs.append(torch.sigmoid(pred))
        self._targets.append(_plain(target).detach().float().cpu().reshape(pred.shape))

    def _values(self) -> dict[str, float]:
        k = len(self.class_names)
        probs = torch.cat(self._probs) if self._probs else torch.zeros(0, k)
        targets = torch.cat(self._targets) if self._targets else torch.zeros(0, k)
        out: dict[str, float] = {"num_samples": float(len(targets))}
        aucs, f1s, accs = [], [], []
        for j, name in enumerate(self.class_names):
            known = targets[:, j] >= 0
            p, t = probs[known, j], targets[known, j] > 0.5
            hit = p >= self.threshold
            tp, fp, fn = float((hit & t).sum()), float((hit & ~t).sum()), float((~hit & t).sum())
            aucs.append(_auc(p, t))
            f1s.append(_f1(tp, fp, fn))
            accs.append(float((hit == t).float().mean()) if t.numel() else math.nan)
            out[f"auc/{name}"], out[f"f1/{name}"], out[f"accuracy/{name}"] = aucs[-1], f1s[-1], accs[-1]
        out["auc_macro"], out["f1_macro"], out["accuracy"] = nanmean(aucs), nanmean(f1s), nanmean(accs)
        return out


class SegmentationMetric(TaskMetric):
    """Semantic segmentation: ``update(logits (B, C, H, W), labels (B, H, W) or (B, 1, H, W))``.

    ``ignore_index`` pixels (-1) are left out of both prediction and ground truth.
    """

    def __init__(self, class_names: Sequence[str], primary: str | None = None, ignore_index: int = -1) -> None:
        self.ignore_index = check_int(ignore_index, "segmentation metric ignore_index")
        super().__init__(class_names, primary, "segmentation")

    def reset(self) -> None:
        self._dice: list[torch.Tensor] = []
        self._iou: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = _plain(pred).detach(), _plain(target).detach()
        c = len(self.class_names)
        if pred.ndim != 4 or pred.shape[1] != c:
            raise ShapeError(f"segmentation metric: logits must be (B, {c}, H, W), got {tuple(pred.shape)}")
        if target.ndim == 4:
            target = target[:, 0]
        if tuple(target.shape) != (pred.shape[0], *pred.shape[2:]):
            raise ShapeError(
                f"segmentation metric: labels {tuple(target.shape)} do not match logits {tuple(pred.shape)}"
            )
        target = target.long()
        valid = (target != self.ignore_index).unsqueeze(1)
        safe = torch.where(target == self.ignore_index, torch.zeros_like(target), target)
        y = F.one_hot(safe, c).movedim(-1, 1) * valid
        y_pred = F.one_hot(pred.argmax(1), c).movedim(-1, 1) * valid
        self._dice.append(compute_dice(y_pred, y, include_background=True, ignore_empty=True).float().cpu())
        self._iou.append(compute_iou(y_pred, y, include_background=True, ignore_empty=True).float().cpu())

    def _values(self) -> dict[str, float]:
        c = len(self.class_names)
        dice = torch.cat(self._dice) if self._dice else torch.full((0, c), math.nan)
        iou = torch.cat(self._iou) if self._iou else torch.full((0, c), math.nan)
        out: dict[str, float] = {"num_samples": float(len(dice))}
        dice_c = [nanmean(dice[:, k].tolist()) for k in range(c)]
        iou_c = [nanmean(iou[:, k].tolist()) for k in range(c)]
        for k, name in enumerate(self.class_names):
            out[f"dice/{name}"], out[f"iou/{name}"] = dice_c[k], iou_c[k]
        fg = slice(1, None) if c > 1 and self.class_names[0].lower() in ("background", "bg", "0") else slice(0, None)
        out["dice_mean"], out["iou_mean"] = nanmean(dice_c[fg]), nanmean(iou_c[fg])
        return out


class DetectionMetric(TaskMetric):
    """Object detection: ``update(detections, targets)``, one dict per image each (see DetectionMAP)."""

    def __init__(self, class_names: Sequence[str], primary: str | None = None) -> None:
        self._map = DetectionMAP(num_classes=len(class_names), class_names=[str(c) for c in class_names])
        super().__init__(class_names, primary, "detection")

    def reset(self) -> None:
        self._map.reset()
        self._count = 0

    def update(self, pred: Sequence[Mapping[str, Any]], target: Sequence[Mapping[str, Any]]) -> None:
        self._map.update(pred, target)
        self._count += len(target)

    def _values(self) -> dict[str, float]:
        return {"num_samples": float(self._count), **self._map.compute()}


def build_task_metric(kind: str, class_names: Sequence[str], primary: str | None = None, **kwargs: Any) -> TaskMetric:
    """The metric accumulator of a task kind.

    Example
    -------
    >>> type(build_task_metric("segmentation", ["background", "lesion"])).__name__
    'SegmentationMetric'
    """
    classes = {
        "classification": ClassificationMetric,
        "multilabel": MultiLabelMetric,
        "segmentation": SegmentationMetric,
        "detection": DetectionMetric,
    }
    check_choice(kind, tuple(classes), "task kind")
    try:
        return classes[kind](class_names, primary, **kwargs)
    except TypeError as err:
        raise ConfigError(f"bad {kind} metric option: {err}") from None


def _as_tuple(output: Any) -> tuple[Any]:
    return (output,)


class MultiTaskMetric(Metric):
    """All tasks' metrics as one ignite metric; attach it under ``"mean_score"``.

    ``update(output)`` takes the evaluator's per-iteration output, a dict with ``"task"``,
    ``"pred"`` and ``"label"`` (what the task's :class:`TaskMetric` takes). ``compute()``
    returns a flat dict: ``"<task>/<metric>"`` for every metric of every task that has
    data, ``"<task>/score"``, and ``"mean_score"``, the unweighted mean of the tasks' scores
    (each task counts once whatever its size: the balanced aggregate). Its results are put
    into ``engine.state.metrics`` flat (``metrics_result_mode="flatten"``), so MONAI's
    ``StatsHandler`` and ``TensorBoardStatsHandler`` log each number.

    Parameters
    ----------
    metrics : task name -> :class:`TaskMetric`.
    """

    def __init__(self, metrics: Mapping[str, TaskMetric], device: str | torch.device = "cpu") -> None:
        self.task_metrics = dict(metrics)
        if not self.task_metrics:
            raise ConfigError("MultiTaskMetric needs at least one task")
        # ignite unpacks dict outputs into (y_pred, y): hand it a 1-tuple so update gets the whole dict
        super().__init__(output_transform=_as_tuple, device=device, skip_unrolling=True)
        self._metrics_result_mode = "flatten"

    def reset(self) -> None:
        for m in self.task_metrics.values():
            m.reset()
        self._seen: set[str] = set()

    def update(self, output: Mapping[str, Any] | tuple[Mapping[str, Any]]) -> None:
        if isinstance(output, tuple):
            output = output[0]
        if not isinstance(output, Mapping):  # a decollated trainer output: one dict per sample
            output = collate_outputs(output)
        task = output["task"]
        if task not in self.task_metrics:
            raise ConfigError(f"no metric for task {task!r}; tasks: {sorted(self.task_metrics)}")
        self.task_metrics[task].update(output["pred"], output["label"])
        self._seen.add(task)

    def compute(self) -> dict[str, float]:
        result: dict[str, float] = {}
        scores = []
        for name, metric in self.task_metrics.items():
            if name not in self._seen:
                continue
            for key, value in metric.compute().items():
                result[f"{name}/{key}"] = float(value)
            scores.append(result[f"{name}/score"])
        result["mean_score"] = nanmean(scores)
        return result
