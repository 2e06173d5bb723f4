"""Stop a run at the first non-finite loss, naming the batch's items, before anything saves the damage.

:class:`StopOnNonFiniteLoss` checks every iteration's loss; on NaN or inf it raises
:class:`~medfound.errors.NonFiniteLossError` naming the iteration, the task (when the trainer's
output carries one, as the multi-task trainer's does), the loss values and the files of the
batch (every MetaTensor's ``filename_or_obj``, by its place in the batch: for DAC the
labelled and the unlabelled items of the step).

Why not ignite's ``TerminateOnNan``: it calls ``engine.terminate()``, after which ignite still
fires ``COMPLETED`` (and ``EPOCH_COMPLETED``), so the checkpoint handlers write the NaN weights
over the last good ``last.pt`` and as the final model, and the run exits normally. Raising
instead skips every later handler of the iteration and every completion event: attached
before the checkpoint saver, it leaves ``last.pt`` as the last good state, and a resumed run
continues from there.

Example
-------
>>> import torch
>>> from ignite.engine import Engine
>>> from monai.data import MetaTensor
>>> batch = {"image": MetaTensor(torch.zeros(2, 1), meta={"filename_or_obj": ["a.png", "b.png"]})}
>>> engine = Engine(lambda e, b: {"loss": float("nan")})
>>> StopOnNonFiniteLoss().attach(engine)
>>> try:
...     engine.run([batch], max_epochs=1)
... except FloatingPointError as err:
...     print(str(err)[:70])
non-finite loss at iteration 1 (loss nan); the batch held image: a.png
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from medfound.errors import NonFiniteLossError

__all__ = ["StopOnNonFiniteLoss", "batch_sources"]


def batch_sources(batch: Any, prefix: str = "") -> dict[str, list[str]]:
    """The file names a (collated) batch holds, by their place in it: ``{"labeled/image": [...], ...}``.

    Names come from MetaTensors' ``filename_or_obj`` (a list after collation).

    Example
    -------
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> b = {"labeled": {"image": MetaTensor(torch.zeros(1), meta={"filename_or_obj": ["x.png"]})}, "n": 3}
    >>> batch_sources(b)
    {'labeled/image': ['x.png']}
    """
    out: dict[str, list[str]] = {}
    if isinstance(batch, Mapping):
        for key, value in batch.items():
            if key == "filename_or_obj" and isinstance(value, (list, tuple)):  # names a collate function kept
                out["batch" if not prefix or prefix.isdigit() else prefix] = [str(n) for n in value]
                continue
            out.update(batch_sources(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(batch, (list, tuple)):
        for i, value in enumerate(batch):
            out.update(batch_sources(value, f"{prefix}/{i}" if prefix else str(i)))
    elif isinstance(batch, torch.Tensor):
        names = (getattr(batch, "meta", None) or {}).get("filename_or_obj")
        if names is not None:
            out[prefix or "batch"] = [str(n) for n in (names if isinstance(names, (list, tuple)) else [names])]
    return out


def _first(output: Any) -> Any:
    """MONAI's decollated output (a list of per-sample dicts, the loss replicated): its first dict."""
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], Mapping):
        return output[0]
    return output


def _loss_values(output: Any) -> dict[str, float]:
    """The numbers of a trainer's output (the loss and its terms, for a dict), or the output itself."""
    output = _first(output)
    if isinstance(output, Mapping):
        values = {k: v for k, v in output.items()
                  if isinstance(v, (numbers.Number, torch.Tensor)) and not isinstance(v, bool)}
        return {str(k): float(torch.as_tensor(v).detach().float().sum()) for k, v in values.items()
                if torch.as_tensor(v).numel() >= 1}
    if isinstance(output, (numbers.Number, torch.Tensor)):
        return {"loss": float(torch.as_tensor(output).detach().float().sum())}
    return {}


class StopOnNonFiniteLoss:
    """Raise :class:`~medfound.errors.NonFiniteLossError` when an iteration's loss is NaN or infinite.

    Parameters
    ----------
    output_transform : ``engine.state.output -> {name: value}`` of the values to check; default:
        every number of a dict output (the loss and its terms), or the output itself.
    batch_transform : ``engine.state.batch -> {place: [file names]}`` (default :func:`batch_sources`).
    checkpoint : the run's resumable checkpoint, named in the message (it holds the last good state).
    task_key : key of the output naming the task of the iteration (multi-task training).
    max_names : file names listed per place in the batch.

    Attach it before the checkpoint saver (ignite runs handlers of an event in the order they
    were attached).
    """

    def __init__(self, output_transform: Callable[[Any], Mapping[str, float]] | None = None,
                 batch_transform: Callable[[Any], Mapping[str, Sequence[str]]] | None = None,
                 checkpoint: str | os.PathLike | None = None, task_key: str = "task", max_names: int = 16) -> None:
        self.output_transform = output_transform or _loss_values
        self.batch_transform = batch_transform or batch_sources
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.task_key = task_key
        self.max_names = int(max_names)

    def attach(self, engine: Engine) -> None:
        """Check after every iteration of ``engine``."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        output = engine.state.output
        values = dict(self.output_transform(output))
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if not bad:
            return
        first = _first(output)
        task = first.get(self.task_key) if isinstance(first, Mapping) else None
        where = f"iteration {engine.state.iteration}" + (f" (task {task!r})" if task is not None else "")
        shown = ", ".join(f"{k} {v}" for k, v in bad.items())
        sources = self.batch_transform(engine.state.batch) or {}
        held = "; ".join(f"{place}: " + ", ".join(list(names)[: self.max_names])
                         + (f" (+{len(names) - self.max_names} more)" if len(names) > self.max_names else "")
                         for place, names in sources.items())
        msg = f"non-finite loss at {where} ({shown}); the batch held {held or 'no named files'}"
        msg += "; training stopped before this step was saved"
        if self.checkpoint is not None:
            msg += (f": {self.checkpoint} keeps the last good state" if self.checkpoint.is_file()
                    else " (no checkpoint written yet)")
        raise NonFiniteLossError(msg)
