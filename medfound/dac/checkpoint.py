"""Atomic checkpoints, exact resume and model selection for the DAC trainer (ignite handlers).

- :class:`AtomicCheckpointSaver` writes ``last.pt`` (the state dicts of everything in
  ``save_dict``, in the format MONAI's ``CheckpointLoader`` reads) to a temporary file and
  ``os.replace`` s it, every ``save_interval`` iterations and at the end of every epoch
  (after validation, so the selection state is in it) and of the run. A run killed at any
  moment leaves the previous complete checkpoint.
- :func:`attach_resume` loads ``last.pt`` at ``Events.STARTED`` with MONAI's
  ``CheckpointLoader`` when it exists; the trainer then continues at the saved iteration.
- :class:`BestModelSaver` follows the evaluator's key metric on the **source validation**
  part and writes the deployable network (``best_model.pt``, a plain state dict) when it
  improves; its state (best value, iteration) is part of the checkpoint.

Example
-------
>>> import tempfile, torch
>>> from medfound.dac.checkpoint import AtomicCheckpointSaver
>>> net = torch.nn.Linear(2, 2)
>>> saver = AtomicCheckpointSaver(tempfile.mkdtemp(), {"network": net})
>>> path = saver.save()
>>> sorted(torch.load(path, weights_only=True)["network"])
['bias', 'weight']
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

from medfound.dac.model import DACModel, atomic_torch_save

__all__ = ["AtomicCheckpointSaver", "BestModelSaver", "attach_resume", "LAST_CHECKPOINT", "BEST_MODEL", "LAST_MODEL"]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
BEST_MODEL = "best_model.pt"
LAST_MODEL = "model.pt"


class AtomicCheckpointSaver:
    """Write ``save_dir/filename`` atomically with the state dicts of ``save_dict``.

    Parameters
    ----------
    save_dir : output folder.
    save_dict : ``name -> object with state_dict()`` (trainer, network, optimiser, ...).
    save_interval : iterations between mid-epoch checkpoints (epoch ends are always saved).
    filename : checkpoint file name.
    final_model : optional ``(DACModel, filename)``: at the end of the run, also write the
        deployable network's state dict.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        save_interval: int = 200,
        filename: str = LAST_CHECKPOINT,
        final_model: tuple[DACModel, str] | None = None,
    ) -> None:
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.save_interval = int(save_interval)
        self.filename = filename
        self.final_model = final_model

    @property
    def path(self) -> Path:
        return self.save_dir / self.filename

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._maybe_save)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)
        engine.add_event_handler(Events.COMPLETED, self._final)

    def _maybe_save(self, engine: Engine) -> None:
        it, length = engine.state.iteration, engine.state.epoch_length
        # epoch ends are saved at EPOCH_COMPLETED, after validation has updated the selection state
        if it % self.save_interval == 0 and (not length or it % length != 0):
            self.save(engine)

    def save(self, engine: Engine | None = None) -> Path:
        """Write the checkpoint now."""
        state = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        return atomic_torch_save(state, self.path)

    def _final(self, engine: Engine) -> None:
        self.save(engine)
        if self.final_model is not None:
            model, name = self.final_model
            model.save_deployable(self.save_dir / name)


def attach_resume(engine: Engine, checkpoint: str | os.PathLike, load_dict: Mapping[str, Any],
                  map_location: Any = None) -> bool:
    """Attach MONAI's ``CheckpointLoader`` for ``checkpoint`` if it exists; returns whether it did."""
    path = Path(checkpoint)
    if not path.is_file():
        return False
    loader = CheckpointLoader(load_path=str(path), load_dict=dict(load_dict), map_location=map_location, strict=True)
    loader.attach(engine)
    logger.info("resuming from %s", path)
    return True


class BestModelSaver:
    """Save the deployable network when the evaluator's key metric improves (model selection).

    Parameters
    ----------
    network : the :class:`DACModel` being trained.
    save_dir : output folder (``best_model.pt`` and ``best_model.json`` go there).
    trainer : the trainer, to record the iteration of the best model.
    metric_name : key of ``evaluator.state.metrics`` (default: the evaluator's key metric).
    filename : model file name.
    """

    def __init__(self, network: DACModel, save_dir: str | os.PathLike, trainer: Engine | None = None,
                 metric_name: str | None = None, filename: str = BEST_MODEL) -> None:
        self.network = network
        self.save_dir = Path(save_dir)
        self.trainer = trainer
        self.metric_name = metric_name
        self.filename = filename
        self.best_metric = float("-inf")
        self.best_iteration = -1
        self.history: list[dict[str, float]] = []

    def attach(self, evaluator: Engine) -> None:
        evaluator.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, evaluator: Engine) -> None:
        name = self.metric_name or getattr(evaluator.state, "key_metric_name", None)
        if name is None or name not in evaluator.state.metrics:
            raise KeyError(f"metric {name!r} not computed by the evaluator (have {sorted(evaluator.state.metrics)})")
        value = float(evaluator.state.metrics[name])
        iteration = int(self.trainer.state.iteration) if self.trainer is not None else len(self.history)
        self.history.append({"iteration": iteration, name: value})
        if value > self.best_metric:  # NaN never wins
            self.best_metric, self.best_iteration = value, iteration
            self.network.save_deployable(self.save_dir / self.filename)
            info = {"metric": name, "value": value, "iteration": iteration, "method": self.network.method,
                    "network": self.network.network_spec(), "selected_on": "validation (labelled source domain)"}
            tmp = self.save_dir / f".{self.filename}.json.tmp"
            tmp.write_text(json.dumps(info, indent=2))
            os.replace(tmp, self.save_dir / f"{Path(self.filename).stem}.json")
            logger.info("new best %s = %.4f at iteration %d -> %s", name, value, iteration, self.filename)

    def state_dict(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_iteration": self.best_iteration,
                "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_metric = float(state["best_metric"])
        self.best_iteration = int(state["best_iteration"])
        self.history = [dict(h) for h in state.get("history", [])]
