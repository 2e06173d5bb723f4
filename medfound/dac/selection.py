"""Model selection on the source validation part: keep the deployable network of the best validation score.

:class:`BestModelSaver` is a trainer handler that follows the validation evaluator's key
metric (mean region Dice on the held-out part of the **labelled source domain**, never the
test domain) and writes the deployable network (``best_model.pt``, a plain state dict that
loads into a freshly built network with ``strict=True``) and ``best_model.json`` (metric,
value, iteration, method, network) whenever it improves, atomically
(:mod:`medfound.utils.files`). Its state (best value, iteration, history) belongs in the
run's checkpoint, so a resumed run keeps selecting against the same best.

Example
-------
>>> import functools, tempfile, torch
>>> from ignite.engine import Engine, Events
>>> from medfound.dac.model import DACModel
>>> from medfound.networks.deeplabv3plus import DeepLabV3Plus
>>> model = DACModel(functools.partial(DeepLabV3Plus, num_classes=2, backbone="resnet18", base_channels=8,
...                                    decoder_channels=16), method="supervised")
>>> scores = iter([0.5, 0.4, 0.7])
>>> evaluator = Engine(lambda e, b: None)
>>> @evaluator.on(Events.EPOCH_COMPLETED)
... def score(engine):
...     engine.state.metrics["val_mean_dice"] = next(scores)
>>> trainer = Engine(lambda e, b: evaluator.run([0]))
>>> best = BestModelSaver(evaluator, model, tempfile.mkdtemp(), metric_name="val_mean_dice")
>>> best.attach(trainer)
>>> _ = trainer.run(range(3), max_epochs=1)
>>> best.best_metric, best.best_iteration, (best.save_dir / "best_model.pt").is_file()
(0.7, 3, True)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from medfound.dac.model import DACModel
from medfound.utils import atomic_torch_save, atomic_write_json

__all__ = ["BestModelSaver", "BEST_MODEL"]

logger = logging.getLogger(__name__)

#: file name of the selected deployable network (its description: ``best_model.json``)
BEST_MODEL = "best_model.pt"


class BestModelSaver:
    """Save the deployable network when the evaluator's key metric improves (model selection).

    Parameters
    ----------
    evaluator : the validation engine (run by MONAI's ``ValidationHandler``).
    network : the :class:`DACModel` being trained.
    save_dir : output folder (``best_model.pt`` and ``best_model.json`` go there).
    metric_name : key of ``evaluator.state.metrics`` (default: the evaluator's key metric).
    filename : model file name.

    Attach it to the trainer: it then follows ``evaluator`` and records the trainer's
    iteration of each validation.
    """

    def __init__(self, evaluator: Engine, network: DACModel, save_dir: str | os.PathLike,
                 metric_name: str | None = None, filename: str = BEST_MODEL) -> None:
        self.evaluator = evaluator
        self.network = network
        self.save_dir = Path(save_dir)
        self.metric_name = metric_name
        self.filename = filename
        self.trainer: Engine | None = None
        self.best_metric = float("-inf")
        self.best_iteration = -1
        self.history: list[dict[str, float]] = []

    def attach(self, engine: Engine) -> None:
        """Follow the evaluator's results during ``engine``'s run (``engine``: the trainer)."""
        self.trainer = engine
        self.evaluator.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, evaluator: Engine) -> None:
        name = self.metric_name or getattr(evaluator.state, "key_metric_name", None)
        if name is None or name not in evaluator.state.metrics:
            raise KeyError(f"metric {name!r} not computed by the evaluator (have {sorted(evaluator.state.metrics)})")
        value = float(evaluator.state.metrics[name])
        iteration = int(self.trainer.state.iteration) if self.trainer is not None else len(self.history)
        self.history.append({"iteration": iteration, name: value})
        if value > self.best_metric:  # NaN never wins
            self.best_metric, self.best_iteration = value, iteration
            atomic_torch_save(self.network.deployable_state_dict(), self.save_dir / self.filename)
            atomic_write_json(self.save_dir / f"{Path(self.filename).stem}.json", {
                "metric": name, "value": value, "iteration": iteration, "method": self.network.method,
                "network": self.network.network_spec(), "selected_on": "validation (labelled source domain)"},
                default=str)
            logger.info("new best %s = %.4f at iteration %d -> %s", name, value, iteration, self.filename)

    def state_dict(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_iteration": self.best_iteration,
                "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_metric = float(state["best_metric"])
        self.best_iteration = int(state["best_iteration"])
        self.history = [dict(h) for h in state.get("history", [])]
