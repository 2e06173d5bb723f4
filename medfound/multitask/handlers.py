"""Handlers of multi-task pre-training: the run's history of losses and metrics, and a last validation.

MONAI's and ignite's handlers do the rest (``ValidationHandler``, ``StatsHandler``,
``TensorBoardStatsHandler``, ``ProgressBar``; checkpoints: :mod:`medfound.handlers`).
These two are what they lack:

- :class:`TrainingHistory` keeps each task's mean training loss every ``log_every``
  iterations and the metrics of every validation, writes them as ``history.json``, and has
  ``state_dict()`` / ``load_state_dict()``: put it in the checkpoint's ``save_dict`` and a
  resumed run's ``history.json`` holds the whole history, not only the part after the resume;
- :class:`FinalValidation` runs the validator when training completes unless it has just run
  (``ValidationHandler`` validates every N epochs; a run whose length is not a whole number of
  N epochs would end unvalidated).

Example
-------
>>> history = TrainingHistory(log_every=2)
>>> for it, (task, loss) in enumerate([("a", 1.0), ("b", 0.5), ("a", 0.8)], start=1):
...     history.add_loss(it, task, loss)
>>> history.loss
[{'iteration': 2, 'a': 1.0, 'b': 0.5}]
>>> history.load_state_dict(history.state_dict()); history.running
{'a': [0.8]}
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from medfound.utils import atomic_write_json, check_int
from medfound.utils.devices import rank

__all__ = ["TrainingHistory", "FinalValidation"]

logger = logging.getLogger(__name__)


def _first(output: Any) -> Mapping[str, Any]:
    """The trainer's output for one sample (it is decollated: one dict per sample)."""
    return output[0] if isinstance(output, (list, tuple)) else output


class TrainingHistory:
    """Per-task mean training losses every ``log_every`` iterations and every validation's metrics.

    Parameters
    ----------
    path : where :meth:`write` puts ``{"loss": [...], "validation": [...]}`` (JSON, atomically;
        rank 0 only); ``None``: nowhere. Written at every epoch end and when training completes.
    log_every : iterations per loss record (each task's mean loss over them).
    evaluator : the validator whose every run is recorded (``epoch`` and ``iteration`` of the
        trainer, and the evaluator's metrics); a repeated validation at the same iteration
        replaces the earlier record.

    ``attach(trainer)`` registers it; :attr:`loss` and :attr:`validation` are the records.
    """

    def __init__(self, path: str | os.PathLike | None = None, log_every: int = 50, evaluator: Engine | None = None):
        self.path = None if path is None else Path(path)
        self.log_every = check_int(log_every, "log_every", low=1)
        self.evaluator = evaluator
        self.loss: list[dict[str, Any]] = []
        self.validation: list[dict[str, Any]] = []
        self.running: dict[str, list[float]] = {}
        self._trainer: Engine | None = None

    def attach(self, engine: Engine) -> None:
        """Record ``engine``'s losses (and the evaluator's runs, with ``engine``'s position)."""
        self._trainer = engine
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)
        engine.add_event_handler(Events.COMPLETED, self._completed)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.EPOCH_COMPLETED, self._validated)

    # -- records -------------------------------------------------------------------------------
    def add_loss(self, iteration: int, task: str, loss: float) -> None:
        """Add one iteration's loss; every ``log_every`` iterations the means become a record."""
        self.running.setdefault(task, []).append(float(loss))
        if iteration % self.log_every == 0:
            self.flush(iteration)

    def flush(self, iteration: int) -> None:
        """Turn the losses gathered since the last record into a record at ``iteration``."""
        if self.running:
            self.loss.append({"iteration": int(iteration), **{n: sum(v) / len(v) for n, v in self.running.items()}})
            self.running = {}

    def add_validation(self, epoch: int, iteration: int, metrics: Mapping[str, Any]) -> None:
        """Record a validation's metrics (replacing a record of the same iteration)."""
        record = {"epoch": int(epoch), "iteration": int(iteration), **{k: float(v) for k, v in metrics.items()}}
        self.validation = [r for r in self.validation if r["iteration"] != record["iteration"]] + [record]

    # -- events --------------------------------------------------------------------------------
    def _iteration_completed(self, engine: Engine) -> None:
        out = _first(engine.state.output)
        self.add_loss(engine.state.iteration, out["task"], float(out["loss"]))

    def _validated(self, evaluator: Engine) -> None:
        trainer = self._trainer
        self.add_validation(trainer.state.epoch, trainer.state.iteration, evaluator.state.metrics)

    def _completed(self, engine: Engine) -> None:
        self.flush(engine.state.iteration)
        self.write()

    # -- state and file ------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """``{"loss": [...], "validation": [...]}`` (what ``history.json`` holds)."""
        return {"loss": [dict(r) for r in self.loss], "validation": [dict(r) for r in self.validation]}

    def write(self, engine: Engine | None = None) -> Path | None:
        """Write :meth:`as_dict` to ``path`` (rank 0); returns the path."""
        if self.path is None or rank() != 0:
            return self.path
        return atomic_write_json(self.path, self.as_dict())

    def state_dict(self) -> dict[str, Any]:
        """The records and the losses not yet recorded (plain values: safe for ``weights_only`` loading)."""
        return {**self.as_dict(), "running": {n: list(v) for n, v in self.running.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`."""
        self.loss = [dict(r) for r in state.get("loss", [])]
        self.validation = [dict(r) for r in state.get("validation", [])]
        self.running = {str(n): [float(x) for x in v] for n, v in (state.get("running") or {}).items()}


class FinalValidation:
    """Run ``validator`` when the trainer completes, unless it ran at the trainer's last iteration.

    Parameters
    ----------
    validator : an evaluator (its ``run(global_epoch)`` is called, as ``ValidationHandler`` does).
    """

    def __init__(self, validator: Engine) -> None:
        self.validator = validator
        self._validated_at: int | None = None
        self._trainer: Engine | None = None

    def attach(self, engine: Engine) -> None:
        """Register with the trainer ``engine``."""
        self._trainer = engine
        self.validator.add_event_handler(Events.COMPLETED, self._record)
        engine.add_event_handler(Events.COMPLETED, self)

    def _record(self, validator: Engine) -> None:
        self._validated_at = self._trainer.state.iteration

    def __call__(self, engine: Engine) -> None:
        if self._validated_at != engine.state.iteration:
            self.validator.run(max(1, engine.state.epoch))
