"""Atomic ``last.pt`` checkpoints and exact resume, as ignite handlers for any medfound trainer.

- :class:`AtomicCheckpointSaver` writes ``save_dir/last.pt`` (``{name: obj.state_dict()}``
  for everything in ``save_dict``, the format MONAI's ``CheckpointLoader`` reads) every
  ``save_interval`` iterations, at every epoch end (after validation, so model-selection
  state is in it) and when the run completes; then the ``final_files`` (the deployable
  weights). Writes go through :func:`medfound.utils.atomic_torch_save`: a run killed at any
  moment leaves the previous complete checkpoint, and the temporary a killed write left
  behind is removed when the saver is attached to the next run. Under ``torchrun`` only
  rank 0 writes.
- :class:`CheckpointResume` loads that file at ``Events.STARTED`` when it exists and hands
  each entry to its object's ``load_state_dict``; the run's own ``max_epochs`` is kept (so a
  resumed run may be made longer). A torn, foreign or unsafe file raises
  :class:`~medfound.errors.WeightsError` naming it, before any training step.

Example
-------
>>> import tempfile, torch
>>> from ignite.engine import Engine
>>> folder = tempfile.mkdtemp()
>>> def make_trainer(net):  # each step adds 1 to the weights
...     return Engine(lambda engine, batch: net.weight.data.add_(1.0))
>>> net = torch.nn.Linear(2, 2)
>>> trainer = make_trainer(net)
>>> AtomicCheckpointSaver(folder, {"trainer": trainer, "network": net}, save_interval=2).attach(trainer)
>>> _ = trainer.run(range(3), max_epochs=1)
>>> net2 = torch.nn.Linear(2, 2)  # a new process: other initial weights
>>> again = make_trainer(net2)
>>> resume = CheckpointResume(folder + "/last.pt", {"trainer": again, "network": net2})
>>> resume.attach(again)
>>> _ = again.run(range(3), max_epochs=2)  # continues at iteration 3
>>> resume.resumed, again.state.iteration, round(float(net2.weight.data[0, 0] - net.weight.data[0, 0]), 4)
(True, 6, 3.0)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from medfound.errors import WeightsError
from medfound.utils import atomic_torch_save, load_torch_file, remove_stale_temporaries
from medfound.utils.devices import rank

__all__ = ["AtomicCheckpointSaver", "CheckpointResume", "LAST_CHECKPOINT"]

logger = logging.getLogger(__name__)

#: the resumable checkpoint's file name
LAST_CHECKPOINT = "last.pt"


def _plain_state(obj: Any) -> Any:
    """``obj.state_dict()`` for modules, optimisers, engines and handlers; a callable is called."""
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    if callable(obj):
        return obj()
    raise TypeError(f"cannot save {type(obj).__name__}: it has no state_dict() and is not callable")


class AtomicCheckpointSaver:
    """Write ``save_dir/filename`` atomically with the state dicts of ``save_dict``.

    Parameters
    ----------
    save_dir : the run's output folder.
    save_dict : ``name -> object with state_dict()`` (trainer, network, optimiser, scheduler,
        scaler, handlers with state).
    save_interval : iterations between checkpoints within an epoch (``None``: epoch ends only).
    filename : the checkpoint's name.
    epoch_level : also save at every epoch end (after the handlers attached before this one,
        e.g. validation).
    final_files : ``file name -> object with state_dict() or a callable returning what to save``,
        written once at ``Events.COMPLETED`` (e.g. ``{"model.pt": network}``).
    rank0_only : write on rank 0 only under ``torch.distributed`` (every rank holds the same state).
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        save_interval: int | None = None,
        filename: str = LAST_CHECKPOINT,
        epoch_level: bool = True,
        final_files: Mapping[str, Any] | None = None,
        rank0_only: bool = True,
    ) -> None:
        if save_interval is not None and int(save_interval) < 1:
            from medfound.errors import ConfigError

            raise ConfigError(f"save_interval must be an integer >= 1 or null, got {save_interval!r}")
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.save_interval = None if save_interval is None else int(save_interval)
        self.filename = filename
        self.epoch_level = bool(epoch_level)
        self.final_files = dict(final_files or {})
        self.rank0_only = bool(rank0_only)

    @property
    def path(self) -> Path:
        """Where the checkpoint goes."""
        return self.save_dir / self.filename

    def _writes(self) -> bool:
        return not self.rank0_only or rank() == 0

    def attach(self, engine: Engine) -> None:
        """Register with ``engine``; removes temporaries a killed write left in ``save_dir``."""
        if self._writes():
            for p in remove_stale_temporaries(self.save_dir):
                logger.warning("removed %s, left by an interrupted write", p)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._maybe_save)
        if self.epoch_level:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)
        engine.add_event_handler(Events.COMPLETED, self._final)

    def _maybe_save(self, engine: Engine) -> None:
        if self.save_interval is None:
            return
        it, length = engine.state.iteration, engine.state.epoch_length
        # epoch ends are saved at EPOCH_COMPLETED, after validation has updated the selection state
        if it % self.save_interval == 0 and not (self.epoch_level and length and it % length == 0):
            self.save(engine)

    def save(self, engine: Engine | None = None) -> Path:
        """Write the checkpoint now (on the writing rank); returns its path."""
        if self._writes():
            atomic_torch_save({name: _plain_state(obj) for name, obj in self.save_dict.items()}, self.path)
        return self.path

    def _final(self, engine: Engine) -> None:
        self.save(engine)
        if self._writes():
            for name, obj in self.final_files.items():
                atomic_torch_save(_plain_state(obj), self.save_dir / name)


class CheckpointResume:
    """Load a checkpoint written by :class:`AtomicCheckpointSaver` when the run starts.

    Parameters
    ----------
    path : the checkpoint (nothing happens when it does not exist).
    load_dict : ``name -> object with load_state_dict()``; every name must be in the file
        (``strict``) and nothing is loaded unless all are.
    map_location : passed to ``torch.load``.
    strict : also passed to modules' ``load_state_dict``.
    on_loaded : called with the loaded dict after loading (e.g. to log or check extras).

    ``resumed`` tells whether a checkpoint was loaded.
    """

    def __init__(self, path: str | os.PathLike, load_dict: Mapping[str, Any], map_location: Any = "cpu",
                 strict: bool = True, on_loaded: Callable[[dict], None] | None = None) -> None:
        self.path = Path(path)
        self.load_dict = dict(load_dict)
        self.map_location = map_location
        self.strict = bool(strict)
        self.on_loaded = on_loaded
        self.resumed = False

    def attach(self, engine: Engine) -> None:
        """Load at ``Events.STARTED`` of ``engine`` (before any iteration)."""
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> bool:
        if self.resumed or not self.path.is_file():
            return False
        state = load_torch_file(self.path, self.map_location, what="checkpoint")
        if not isinstance(state, Mapping):
            raise WeightsError(f"checkpoint {self.path} holds a {type(state).__name__}, not a checkpoint dict")
        missing = sorted(set(self.load_dict) - set(state))
        if missing and self.strict:
            raise WeightsError(f"checkpoint {self.path} lacks {missing} (has {sorted(state)}): not this run's file")
        for name, obj in self.load_dict.items():
            if name not in state:
                continue
            try:
                if isinstance(obj, Engine):
                    max_epochs = obj.state.max_epochs  # this run's length wins over the saved one
                    obj.load_state_dict(state[name])
                    if max_epochs is not None:
                        obj.state.max_epochs = max_epochs
                elif hasattr(obj, "parameters") and hasattr(obj, "load_state_dict"):  # nn.Module
                    obj.load_state_dict(state[name], strict=self.strict)
                else:
                    obj.load_state_dict(state[name])
            except WeightsError:
                raise
            except Exception as err:  # noqa: BLE001 - shape mismatch, missing keys, wrong types
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise WeightsError(f"checkpoint {self.path}: entry {name!r} does not fit this run: {first}") from None
        self.resumed = True
        if engine is not None:
            logger.info("resumed from %s at iteration %d", self.path, engine.state.iteration)
        if self.on_loaded is not None:
            self.on_loaded(state)
        return True
