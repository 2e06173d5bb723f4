"""Fine-tuning runs of the transfer protocol (and the frozen-encoder heads of segmentation and
detection probes): one run on a subset, composed with
:func:`~medfound.multitask.training_config.training_config` like every multi-task training run.

A new head on a copy of the encoder's model, everything trained with the multi-task trainer
(augmentation, AdamW, the head at ``head_lr_factor`` times the encoder's learning rate) for
``epochs`` passes over the subset (at least ``min_iterations``, at most ``max_iterations``
iterations); ``frozen``: the shared blocks stay fixed (eval mode) and only the head learns.
The result is scored on the task's validation split (the held-out test data; there is no model
selection, the final weights count).

Example
-------
>>> finetune_iterations(n_train=10, batch_size=4, options={**DEFAULT_FINETUNE, "epochs": 3})
25
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.bundle import ConfigParser
from torch import nn

from medfound.multitask.tasks import TaskSpec
from medfound.multitask.training_config import training_config
from medfound.multitask.transfer.linear_probe import linear_probe_head
from medfound.utils import check_bool, check_choice, check_float, check_int, check_mapping

__all__ = ["DEFAULT_FINETUNE", "HEAD_INITS", "check_finetune_options", "finetune_iterations", "subset_spec",
           "finetune_config", "train_and_score"]

#: fine-tuning options of the protocol and their defaults
DEFAULT_FINETUNE: dict[str, Any] = {
    "epochs": 20,
    "min_iterations": 25,
    "max_iterations": 5000,
    "batch_size": 16,
    "optimizer": {"name": "AdamW", "lr": 1e-4, "weight_decay": 0.05},
    "head_lr_factor": 10.0,
    "scheduler": "cosine",
    "grad_clip": 1.0,
    "amp": True,
    "head_init": "linear_probe",
}
#: how fine-tuned classification / multi-label heads start: from the subset's linear probe (LP-FT) or at random
HEAD_INITS = ("linear_probe", "random")


def check_finetune_options(options: Mapping[str, Any] | None, where: str = "finetune") -> dict[str, Any]:
    """The fine-tuning options with defaults filled in; a bad key or value raises
    :class:`~medfound.errors.ConfigError` naming it."""
    out = {**DEFAULT_FINETUNE, **check_mapping(options or {}, where, known=DEFAULT_FINETUNE)}
    for key in ("epochs", "min_iterations", "max_iterations", "batch_size"):
        out[key] = check_int(out[key], f"{where}.{key}", low=1)
    out["head_lr_factor"] = check_float(out["head_lr_factor"], f"{where}.head_lr_factor", low=0.0, low_open=True)
    out["grad_clip"] = check_float(out["grad_clip"], f"{where}.grad_clip", low=0.0, allow_none=True)
    out["amp"] = check_bool(out["amp"], f"{where}.amp")
    out["head_init"] = check_choice(out["head_init"], HEAD_INITS, f"{where}.head_init")
    return out


def finetune_iterations(n_train: int, batch_size: int, options: Mapping[str, Any]) -> int:
    """Iterations of one run: ``epochs`` passes over ``n_train`` items, within ``[min_iterations, max_iterations]``."""
    per_epoch = math.ceil(n_train / min(batch_size, n_train))
    return int(min(options["max_iterations"], max(options["min_iterations"], options["epochs"] * per_epoch)))


def subset_spec(
    spec: TaskSpec, train_items: Sequence[Mapping[str, Any]], test_items: Sequence[Mapping[str, Any]]
) -> TaskSpec:
    """``spec`` with inline training (the subset) and validation (the test data) items."""
    sub = copy.copy(spec)
    sub.datalist = None
    sub.training = [dict(i) for i in train_items]
    sub.validation = [dict(i) for i in test_items]
    return sub


def finetune_config(
    model: nn.Module,
    spec: TaskSpec,
    options: Mapping[str, Any],
    seed: int,
    device: Any,
    frozen: bool = False,
) -> dict[str, Any]:
    """The bundle config of one run on ``spec`` (a :func:`subset_spec`): its trainer and evaluator."""
    batch_size = int(spec.batch_size or options["batch_size"])
    iterations = finetune_iterations(len(spec.training), batch_size, options)
    trainer = {
        "max_iterations": iterations,
        "batch_size": batch_size,
        "optimizer": options["optimizer"],
        "head_lr_factor": options["head_lr_factor"],
        "scheduler": options["scheduler"],
        "grad_clip": options["grad_clip"],
        "frozen_shared": bool(frozen),
        "amp": options["amp"],
    }
    return training_config(tasks=[spec], network=model, trainer=trainer,
                           validation={"interval": None, "batch_size": batch_size}, device=device, seed=seed,
                           stats=False)


def train_and_score(
    model: nn.Module,
    spec: TaskSpec,
    train_items: Sequence[Mapping[str, Any]],
    test_items: Sequence[Mapping[str, Any]],
    options: Mapping[str, Any],
    seed: int,
    device: Any,
    frozen: bool = False,
    probe: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Train ``model`` on ``train_items`` (fine-tuning, or its head alone with ``frozen``), starting the
    head from ``probe`` when given (LP-FT), and return the task's metrics on ``test_items``."""
    sub = subset_spec(spec, train_items, test_items)
    if probe is not None:
        linear_probe_head(model, sub, probe)
    parser = ConfigParser(finetune_config(model, sub, options, seed, device, frozen))
    parser.get_parsed_content("initialize")
    parser.get_parsed_content("run")  # the evaluator runs once training completes
    prefix = f"{spec.name}/"
    metrics = parser.get_parsed_content("evaluator").state.metrics
    return {k[len(prefix) :]: float(v) for k, v in metrics.items() if k.startswith(prefix)}
