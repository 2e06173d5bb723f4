"""Optimisers and learning-rate schedules from plain config values.

``build_optimizer({"name": "AdamW", "lr": 1e-4, "weight_decay": 0.05}, params)`` takes any
``torch.optim`` class by name (or a dotted path under ``"_target_"``); the schedule is a
``LambdaLR`` over optimiser steps: ``"constant"``, or ``{"name": "cosine", "warmup_steps":
W, "min_factor": m}`` (linear warm-up from 0, then cosine from 1 down to ``m``).

Example
-------
>>> import torch
>>> p = [torch.nn.Parameter(torch.zeros(1))]
>>> opt = build_optimizer({"name": "SGD", "lr": 0.1}, p)
>>> sched = build_scheduler({"name": "cosine", "warmup_steps": 2}, opt, total_steps=10)
>>> [round(f, 3) for f in (sched.lr_lambdas[0](0), sched.lr_lambdas[0](2), sched.lr_lambdas[0](10))]
[0.0, 1.0, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pydoc import locate
from typing import Any

import torch

from medfound.errors import ConfigError

__all__ = ["DEFAULT_OPTIMIZER", "build_optimizer", "build_scheduler", "WarmupCosine"]

DEFAULT_OPTIMIZER: dict[str, Any] = {"name": "AdamW", "lr": 1e-4, "weight_decay": 0.05}


def build_optimizer(
    config: Mapping[str, Any] | None, params: Iterable[torch.nn.Parameter], lr_factor: float = 1.0
) -> torch.optim.Optimizer:
    """An optimiser for ``params`` from ``{"name" or "_target_": ..., **kwargs}``; ``lr`` times ``lr_factor``."""
    config = dict(DEFAULT_OPTIMIZER if config is None else config)
    target = config.pop("_target_", None) or config.pop("name", None)
    if target is None:
        raise ConfigError(f"optimizer config needs 'name' (a torch.optim class) or '_target_': {config}")
    cls = getattr(torch.optim, str(target), None) if "." not in str(target) else locate(str(target))
    if cls is None or not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"optimizer {target!r} is not a torch.optim.Optimizer class")
    if "lr" in config:
        config["lr"] = float(config["lr"]) * float(lr_factor)
    try:
        return cls(list(params), **config)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"cannot build optimizer {target}: {err}") from None


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


def build_scheduler(
    config: str | Mapping[str, Any] | None, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` from ``"constant"`` / ``"cosine"`` / ``{"name", "warmup_steps", "min_factor"}``."""
    if config is None:
        config = "constant"
    if isinstance(config, str):
        config = {"name": config}
    config = dict(config)
    name = config.pop("name", "constant")
    if name not in ("constant", "cosine"):
        raise ConfigError(f"scheduler name must be 'constant' or 'cosine', got {name!r}")
    unknown = set(config) - {"warmup_steps", "min_factor"}
    if unknown:
        raise ConfigError(f"unknown scheduler options {sorted(unknown)}")
    fn = WarmupCosine(
        total_steps, config.get("warmup_steps", 0), config.get("min_factor", 0.0), cosine=name == "cosine"
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
