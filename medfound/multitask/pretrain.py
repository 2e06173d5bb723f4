"""Multi-task pre-training from one config file: the API behind ``medfound pretrain CONFIG``.

The config (JSON or YAML) has these sections, all but ``tasks`` optional (defaults shown)::

    {
      "tasks": "tasks.json",                 # task file (relative to this config) or inline list
      "roles": ["pretrain"],                 # which tasks to train on
      "task_names": null,                    # or these tasks, in this order
      "device": "auto",
      "seed": 0,                             # network initialisation, task and data order, augmentation
      "network": {},                         # UMedPT arguments (default: Swin V2 tiny as published),
                                             # or {"_target_": ..., ...}
      "trainer": {"max_epochs": 1, "batch_size": 8, "optimizer": {"name": "AdamW", "lr": 1e-4,
                  "weight_decay": 0.05}, "scheduler": "constant", ...},   # TRAINER_DEFAULTS
      "validation": {"interval": 1, "max_batches_per_task": null},      # every N epochs and at the end; null: none
      "log_every": 50,
      "tensorboard": false,
      "progress_bar": true,
      "output_dir": "umedpt_pretrain"
    }

The ``trainer`` and ``validation`` options are those of
:mod:`medfound.multitask.training_config` (:data:`~medfound.multitask.training_config.TRAINER_DEFAULTS`);
a misspelt key or a bad value stops the run before anything is built, with one line naming it.
:func:`pretrain` composes the run as a MONAI bundle config (:func:`pretrain_config`, ``_target_``
for every object), writes it as ``train.json`` into the output folder and instantiates it with
``monai.bundle.ConfigParser``: the run can be repeated with MONAI's runner,
``monai.bundle.run(run_id="run", init_id="initialize", config_file="OUTPUT_DIR/train.json")``.

Written to ``output_dir``: ``train.json`` (the bundle config, with the seed), ``network.json``
(the UMedPT arguments and the task heads, so the transfer protocol can rebuild the model),
``last.pt`` (the checkpoint: a second call continues from it, possibly with a longer run),
``model.pt`` (the UMedPT state dict, shared blocks and heads), ``encoder.pt`` (the encoder
alone, torchvision Swin V2 format), ``history.json`` (losses and validation metrics of the
whole run, also across resumes), ``tensorboard/`` (with ``"tensorboard": true``).
Progress goes to the ``medfound.multitask.pretrain`` logger (Python ``logging``); MONAI's
``StatsHandler`` prints the losses and validation metrics (loggers ``medfound.multitask.train``
and ``medfound.multitask.validation``, on stdout by MONAI's default).

Example
-------
>>> try:
...     pretrain({"tasks": "tasks.json", "trainer": {"bach_size": 4}}, output_dir="unused")
... except Exception as err:
...     print(type(err).__name__, str(err).split(";")[0])
ConfigError unknown key(s) ['bach_size'] in trainer
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from medfound.errors import ConfigError
from medfound.multitask.tasks import load_tasks
from medfound.multitask.training_config import network_config, training_config
from medfound.utils import (
    atomic_write_json,
    check_bool,
    check_int,
    check_mapping,
    parsed_content,
    read_config_file,
    resolve_device,
)

__all__ = ["PRETRAIN_DEFAULTS", "pretrain_config", "pretrain"]

logger = logging.getLogger(__name__)

#: the top-level keys of a pre-training config and their defaults (``tasks`` has none)
PRETRAIN_DEFAULTS: dict[str, Any] = {
    "tasks": None,
    "roles": ["pretrain"],
    "task_names": None,
    "device": "auto",
    "seed": 0,
    "network": {},
    "trainer": {},
    "validation": {"interval": 1},
    "log_every": 50,
    "tensorboard": False,
    "progress_bar": True,
    "output_dir": "umedpt_pretrain",
}
_RUN_LENGTH = ("max_epochs", "max_iterations")


def _read(config: Any) -> tuple[dict[str, Any], Path | None]:
    base = None
    if isinstance(config, (str, os.PathLike)):
        base = Path(config).resolve().parent
        config = read_config_file(config, expect=dict, what="pre-training config")
    given = check_mapping(config, "pre-training config")
    unknown = sorted(set(map(str, given)) - set(PRETRAIN_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown pre-training config keys {unknown}; known: {sorted(PRETRAIN_DEFAULTS)}")
    return {**copy.deepcopy(PRETRAIN_DEFAULTS), **given}, base


def _names(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{what} must be a name or a non-empty list of names, got {value!r}")
    return list(values)


def pretrain_config(
    config: str | os.PathLike | Mapping[str, Any],
    output_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """The bundle config (:func:`~medfound.multitask.training_config.training_config`) of a
    pre-training config; arguments as :func:`pretrain`. Checks every value first: a bad one
    raises :class:`~medfound.errors.ConfigError` naming its key."""
    cfg, base = _read(config)
    tasks = cfg["tasks"]
    if not tasks:
        raise ConfigError("the pre-training config names no tasks")
    if isinstance(tasks, (str, os.PathLike)) and base is not None and not os.path.isabs(os.fspath(tasks)):
        tasks = str(base / tasks)
    trainer = dict(check_mapping(cfg["trainer"], "trainer"))
    overrides = dict(check_mapping(overrides or {}, "overrides"))
    if any(k in overrides for k in _RUN_LENGTH):  # a run length given on the command line replaces the config's
        for key in _RUN_LENGTH:
            trainer.pop(key, None)
    trainer.update(overrides)
    device = device if device is not None else cfg["device"]
    resolve_device(device, what="device")  # fails now, naming the option, rather than once the data are read
    output = Path(output_dir if output_dir is not None else cfg["output_dir"])
    return training_config(
        tasks=tasks,
        network=network_config(cfg["network"]),
        trainer=trainer,
        validation=cfg["validation"],
        device=device,
        seed=check_int(cfg["seed"], "seed", low=0),
        roles=_names(cfg["roles"], "roles"),
        task_names=_names(cfg["task_names"], "task_names"),
        output_dir=output,
        log_every=check_int(cfg["log_every"], "log_every", low=1),
        tensorboard=check_bool(cfg["tensorboard"], "tensorboard"),
        progress_bar=check_bool(cfg["progress_bar"], "progress_bar"),
    )


def _not_json(value: Any) -> str:
    return f"<{type(value).__name__}: not JSON>"


def pretrain(
    config: str | os.PathLike | Mapping[str, Any],
    output_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Pre-train a UMedPT on the config's tasks; returns a summary (paths, steps, seed, last metrics).

    Parameters
    ----------
    config : the config dict or its JSON/YAML file (see the module docstring).
    output_dir : overrides ``config["output_dir"]``.
    overrides : merged into the ``trainer`` section (e.g. ``{"max_iterations": 10}``; a run
        length here replaces the config's).
    device : overrides ``config["device"]``.
    """
    bundle = pretrain_config(config, output_dir, overrides, device)
    out = Path(bundle["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "train.json", bundle, default=_not_json)
    specs = load_tasks(bundle["tasks"]["source"], roles=bundle["tasks"]["roles"], names=bundle["tasks"]["names"])
    network = bundle["network"]
    atomic_write_json(out / "network.json", {
        "umedpt": {k: v for k, v in network.items() if k not in ("_target_", "tasks")},
        "tasks": [s.head_config() for s in specs],
    }, default=_not_json)
    started = time.time()
    parser = ConfigParser(bundle)
    parsed_content(parser, "initialize")  # a medfound error from a component: itself, not MONAI's wrapper
    trainer, history = parsed_content(parser, "trainer"), parsed_content(parser, "history")
    logger.info(
        "pre-training on %d tasks (%s) on %s: %d iterations, window %d, epoch length %d, seed %d; output in %s",
        len(trainer.task_names), ", ".join(trainer.task_names), trainer.state.device, trainer.total_iterations,
        trainer.window, trainer.plan.epoch_length, bundle["seed"], out,
    )
    parsed_content(parser, "run")
    summary = {
        "output_dir": str(out.resolve()),
        "model": str((out / "model.pt").resolve()),
        "config": str((out / "train.json").resolve()),
        "seed": bundle["seed"],
        "iterations": trainer.state.iteration,
        "shared_steps": trainer.shared_steps,
        "tasks": trainer.task_names,
        "seconds": round(time.time() - started, 1),
        "last_validation": history.validation[-1] if history.validation else None,
    }
    logger.info("pre-training done in %s s; weights in %s", summary["seconds"], out / "model.pt")
    return summary
