"""Pseudo-label quality per domain, for finding out why co-training helps or not.

When unlabelled items carry labels (as in the synthetic demo data, or any benchmark used
for a study), the trainer scores each sub-model's weak-view pseudo labels against them:
Dice per region and the share of pixels above the confidence threshold, per domain. The
labels are never used by the losses. :class:`PseudoLabelMonitor` sums the counts over an
epoch, logs them and appends one JSON line per epoch to a file.

Example
-------
>>> import torch
>>> from medfound.dac.diagnostics import pseudo_label_counts
>>> pred = torch.tensor([[[0, 1], [1, 1]]]); true = torch.tensor([[[0, 1], [0, 1]]])
>>> c = pseudo_label_counts(pred, true, torch.ones(1, 2, 2), {"fg": [1]}, ["D2"], "a")
>>> c[("D2", "a", "fg")]["inter"], c[("D2", "a", "fg")]["sum"]
(2.0, 5.0)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from medfound.handlers.curves import scalar_items
from medfound.transforms.regions import ClassesToRegions

__all__ = ["pseudo_label_counts", "PseudoLabelMonitor", "TrainingLog"]

logger = logging.getLogger(__name__)


def pseudo_label_counts(
    pred: torch.Tensor,
    true: torch.Tensor,
    valid: torch.Tensor,
    regions: Mapping[str, Sequence[int]],
    domains: Sequence[str],
    model: str,
) -> dict[tuple[str, str, str], dict[str, float]]:
    """Counts for Dice per ``(domain, model, region)``: ``inter``, ``sum`` (|P| + |T|), ``confident``, ``pixels``."""
    if true.dim() == pred.dim() + 1:
        true = true[:, 0]
    true = true.long().to(pred.device)
    counts: dict[tuple[str, str, str], dict[str, float]] = {}
    if not regions:
        return counts
    to_regions = ClassesToRegions(regions, dtype=torch.bool)
    pred_regions, true_regions = to_regions(pred.long()[None]), to_regions(true[None])  # (R, B, H, W)
    for r, name in enumerate(to_regions.regions):
        p, t = pred_regions[r], true_regions[r]
        inter = (p & t).flatten(1).sum(1).float()
        total = (p.flatten(1).sum(1) + t.flatten(1).sum(1)).float()
        conf = valid.flatten(1).sum(1).float()
        for i, domain in enumerate(domains):
            zero = dict.fromkeys(("inter", "sum", "confident", "pixels"), 0.0)
            c = counts.setdefault((str(domain), model, name), zero)
            c["inter"] += float(inter[i])
            c["sum"] += float(total[i])
            c["confident"] += float(conf[i])
            c["pixels"] += float(valid[i].numel())
    return counts


def _append_json_line(path: Path | None, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``path`` (a log: a killed run loses at most its last line)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


class PseudoLabelMonitor:
    """Accumulate ``engine.state.output["pseudo_counts"]`` over each epoch; log and write JSON lines.

    Parameters
    ----------
    path : JSON-lines file (one record per epoch); ``None`` only logs.

    The epoch's running counts are part of :meth:`state_dict`, so a checkpoint taken in the
    middle of an epoch resumes them.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.counts: dict[str, dict[str, float]] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def update(self, engine: Engine) -> None:
        output = engine.state.output or {}
        for key, c in (output.get("pseudo_counts") or {}).items():
            acc = self.counts.setdefault("|".join(key), {"inter": 0.0, "sum": 0.0, "confident": 0.0, "pixels": 0.0})
            for k, v in c.items():
                acc[k] += v

    def summary(self) -> dict[str, dict[str, float]]:
        """``"domain|model|region"`` -> Dice of the pseudo labels and share of confident pixels."""
        return {
            key: {"dice": (2 * c["inter"] / c["sum"]) if c["sum"] > 0 else 1.0,
                  "confident_fraction": c["confident"] / max(c["pixels"], 1.0)}
            for key, c in sorted(self.counts.items())
        }

    def write(self, engine: Engine) -> None:
        if not self.counts:
            return
        record: dict[str, Any] = {"epoch": int(engine.state.epoch), "iteration": int(engine.state.iteration),
                                  "pseudo_labels": self.summary()}
        logger.info("pseudo-label quality (epoch %d): %s", engine.state.epoch,
                    ", ".join(f"{k}: dice {v['dice']:.3f} conf {v['confident_fraction']:.2f}"
                              for k, v in record["pseudo_labels"].items()))
        _append_json_line(self.path, record)
        self.counts = {}

    def state_dict(self) -> dict[str, Any]:
        return {"counts": {k: dict(v) for k, v in self.counts.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.counts = {k: dict(v) for k, v in state.get("counts", {}).items()}


class TrainingLog:
    """Mean of every scalar loss term over each epoch, plus validation metrics, as JSON lines.

    Attach to the trainer **after** the validation handler so an epoch's record carries the
    validation result (``evaluator`` metrics are read at ``EPOCH_COMPLETED``).
    """

    def __init__(self, path: str | Path | None, evaluator: Engine | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.evaluator = evaluator
        self.sums: dict[str, float] = {}
        self.count = 0
        self.records: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def update(self, engine: Engine) -> None:
        for k, v in scalar_items(engine.state.output).items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def write(self, engine: Engine) -> None:
        record: dict[str, Any] = {"epoch": int(engine.state.epoch), "iteration": int(engine.state.iteration)}
        record.update({k: v / max(self.count, 1) for k, v in sorted(self.sums.items())})
        if self.evaluator is not None and getattr(self.evaluator.state, "metrics", None):
            record.update(scalar_items(self.evaluator.state.metrics))
        record["lr"] = float(engine.optimizer.param_groups[0]["lr"]) if hasattr(engine, "optimizer") else None
        self.records.append(record)
        logger.info("epoch %d: %s", record["epoch"],
                    ", ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))
        _append_json_line(self.path, record)
        self.sums, self.count = {}, 0

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sums, self.count = dict(state.get("sums", {})), int(state.get("count", 0))
