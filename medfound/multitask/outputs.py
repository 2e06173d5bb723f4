"""Engine outputs of multi-task training: detaching, decollating (MONAI's convention) and back.

The trainer returns MONAI's decollated output (one dict per sample, the loss replicated), so
``monai.handlers.from_engine(["loss"], first=True)`` works as with ``SupervisedTrainer``;
metrics take the batched form again (:func:`collate_outputs`).

Example
-------
>>> import torch
>>> out = decollate_output({"task": "a", "loss": 0.5, "pred": torch.zeros(2, 3), "label": torch.tensor([0, 1])}, 2)
>>> len(out), out[1]["label"].item(), out[1]["loss"]
(2, 1, 0.5)
>>> collate_outputs(out)["pred"].shape
torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from medfound.errors import ConfigError

__all__ = ["detach_output", "to_cpu_targets", "decollate_output", "collate_outputs"]


def detach_output(pred: Any) -> Any:
    """Detach a task output (tensor, or the detection dict of per-level lists)."""
    if torch.is_tensor(pred):
        return pred.detach()
    if isinstance(pred, Mapping):
        return {k: detach_output(v) for k, v in pred.items()}
    if isinstance(pred, Sequence) and not isinstance(pred, str):
        return [detach_output(v) for v in pred]
    return pred


def to_cpu_targets(kind: str, target: Any) -> Any:
    """Targets on the CPU, in the form the task's metric takes."""
    if kind == "detection":
        return [{"boxes": t["boxes"].detach().cpu(), "labels": t["labels"].detach().cpu()} for t in target]
    return target.detach().cpu()


def _item(value: Any, i: int) -> Any:
    if torch.is_tensor(value) and value.ndim > 0:
        return value[i]
    if isinstance(value, Mapping):
        return {k: _item(v, i) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # detection: per-level lists of batched maps, or per-image targets
        if value and all(torch.is_tensor(v) and v.ndim == 4 for v in value):
            return [v[i] for v in value]
        return value[i]
    return value


def decollate_output(
    output: Mapping[str, Any], batch_size: int, per_sample: Sequence[str] = ("pred", "label")
) -> list[dict]:
    """MONAI's decollated output: one dict per sample; ``per_sample`` keys are split, others replicated."""
    return [{k: (_item(v, i) if k in per_sample else v) for k, v in output.items()} for i in range(batch_size)]


def collate_outputs(output: Any) -> Mapping[str, Any]:
    """The inverse for metrics: a decollated list back to one dict with batched ``pred`` / ``label``."""
    if isinstance(output, Mapping):
        return output
    items = list(output)
    if not items:
        raise ConfigError("empty engine output")
    first = dict(items[0])
    for key in ("pred", "label"):
        values = [it[key] for it in items]
        if all(torch.is_tensor(v) for v in values):
            first[key] = torch.stack(values)
        elif all(isinstance(v, Mapping) and {"boxes", "labels"} <= set(v) for v in values):
            first[key] = values  # detection targets / decoded detections: one dict per image
        else:
            raise ConfigError(
                f"cannot collate the engine's {key!r} for a metric (raw detection outputs: "
                "use the evaluator, which decodes them)"
            )
    return first
