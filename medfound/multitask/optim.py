"""Learning-rate schedule and the config entries of optimisers and schedules.

The trainer takes optimisers and schedules as ready objects or as factories that a MONAI bundle
config builds with ``"_mode_": "callable"`` (``{"_target_": "torch.optim.AdamW", "_mode_": "callable",
"lr": 1e-4}`` gives ``functools.partial(torch.optim.AdamW, lr=1e-4)``).
:func:`optimizer_config` and :func:`scheduler_config` turn the short options of a pre-training
config (``{"name": "AdamW", "lr": 1e-4}``, ``"cosine"``) into those entries, checking them.
:class:`WarmupCosineLR` is the schedule: linear warm-up from 0, then cosine from 1 down to
``min_factor`` (or constant), over the run's shared optimiser steps.

Example
-------
>>> import torch
>>> from monai.bundle import ConfigParser
>>> entry = optimizer_config({"name": "SGD", "lr": 0.1}, lr_factor=10)
>>> entry
{'_target_': 'torch.optim.SGD', '_mode_': 'callable', 'lr': 1.0}
>>> make = ConfigParser({"opt": entry}).get_parsed_content("opt")
>>> opt = make([torch.nn.Parameter(torch.zeros(1))])
>>> sched = WarmupCosineLR(opt, total_steps=10, warmup_steps=2)
>>> [round(f, 3) for f in (sched.lr_lambdas[0](0), sched.lr_lambdas[0](2), sched.lr_lambdas[0](10))]
[0.0, 1.0, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pydoc import locate
from typing import Any

import torch

from medfound.errors import ConfigError
from medfound.utils import check_choice, check_float, check_int, check_mapping

__all__ = ["DEFAULT_OPTIMIZER", "SCHEDULES", "WarmupCosine", "WarmupCosineLR", "optimizer_config", "scheduler_config"]

#: the shared optimiser when a config names none
DEFAULT_OPTIMIZER: dict[str, Any] = {"name": "AdamW", "lr": 1e-4, "weight_decay": 0.05}
#: schedule names of :func:`scheduler_config`
SCHEDULES = ("constant", "cosine")


class WarmupCosine:
    """Learning-rate factor per step: linear warm-up, then cosine to ``min_factor`` (picklable, plain state)."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, min_factor: float = 0.0, cosine: bool = True) -> None:
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, int(warmup_steps))
        self.min_factor = float(min_factor)
        self.cosine = bool(cosine)

    def __call__(self, step: int) -> float:
        if self.warmup_steps and step < self.warmup_steps:
            return step / self.warmup_steps
        if not self.cosine:
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


class WarmupCosineLR(torch.optim.lr_scheduler.LambdaLR):
    """``LambdaLR`` with :class:`WarmupCosine`: linear warm-up over ``warmup_steps``, then cosine
    from the base rate down to ``min_factor`` times it at ``total_steps`` (``cosine=False``: constant).

    Its state (step count, and the factor's settings) is plain values, so checkpoints load with
    ``weights_only=True``; a resumed run keeps the schedule it was started with.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        min_factor: float = 0.0,
        cosine: bool = True,
        last_epoch: int = -1,
    ) -> None:
        check_int(total_steps, "scheduler total_steps", low=1)
        check_int(warmup_steps, "scheduler warmup_steps", low=0)
        check_float(min_factor, "scheduler min_factor", low=0.0, high=1.0)
        super().__init__(optimizer, WarmupCosine(total_steps, warmup_steps, min_factor, cosine), last_epoch)


def _optimizer_class(target: Any, what: str) -> type:
    cls = getattr(torch.optim, str(target), None) if "." not in str(target) else locate(str(target))
    if cls is None or not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"{what} {target!r} is not a torch.optim.Optimizer class")
    return cls


def optimizer_config(
    options: Mapping[str, Any] | None, lr_factor: float = 1.0, what: str = "optimizer"
) -> dict[str, Any]:
    """The bundle entry (``"_mode_": "callable"``) of an optimiser from ``{"name" or "_target_": ..., **kwargs}``.

    ``name`` is a ``torch.optim`` class name, ``_target_`` a dotted path; the learning rate is
    multiplied by ``lr_factor`` (heads). ``None`` gives :data:`DEFAULT_OPTIMIZER`. Raises
    :class:`~medfound.errors.ConfigError` naming ``what`` for an unknown class or a bad ``lr``.
    """
    options = dict(check_mapping(DEFAULT_OPTIMIZER if options is None else options, what))
    options.pop("_mode_", None)
    target = options.pop("_target_", None) or options.pop("name", None)
    if target is None:
        raise ConfigError(f"{what} needs 'name' (a torch.optim class) or '_target_', got {options}")
    cls = _optimizer_class(target, f"{what}.name")
    lr_factor = check_float(lr_factor, f"{what} lr factor", low=0.0, low_open=True)
    if "lr" in options:
        options["lr"] = check_float(options["lr"], f"{what}.lr", low=0.0) * lr_factor
    return {"_target_": f"{cls.__module__}.{cls.__name__}" if "." in str(target) else f"torch.optim.{cls.__name__}",
            "_mode_": "callable", **options}


def scheduler_config(options: str | Mapping[str, Any] | None, total_steps: int | str,
                     what: str = "scheduler") -> dict[str, Any] | None:
    """The bundle entry (``"_mode_": "callable"``) of :class:`WarmupCosineLR` from ``"constant"`` / ``"cosine"`` /
    ``{"name", "warmup_steps", "min_factor"}``; ``None`` for a constant rate without warm-up.

    ``total_steps`` is the run's number of shared optimiser steps (a number, or a ``$`` expression
    the bundle config evaluates).

    Example
    -------
    >>> scheduler_config({"name": "cosine", "warmup_steps": 3}, 100)["warmup_steps"]
    3
    >>> scheduler_config("constant", 100) is None
    True
    """
    options = {"name": "constant" if options is None else options} if not isinstance(options, Mapping) else options
    options = dict(check_mapping(options, what, known=("name", "warmup_steps", "min_factor")))
    name = check_choice(options.get("name", "constant"), SCHEDULES, f"{what}.name")
    warmup = check_int(options.get("warmup_steps", 0), f"{what}.warmup_steps", low=0)
    min_factor = check_float(options.get("min_factor", 0.0), f"{what}.min_factor", low=0.0, high=1.0)
    if name == "constant" and warmup == 0:
        return None
    return {
        "_target_": "medfound.multitask.optim.WarmupCosineLR",
        "_mode_": "callable",
        "total_steps": total_steps,
        "warmup_steps": warmup,
        "min_factor": min_factor,
        "cosine": name == "cosine",
    }
