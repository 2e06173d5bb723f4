"""Multi-task pre-training from one config file: the API behind ``medfound pretrain CONFIG``.

The config (JSON or YAML; MONAI bundle syntax such as ``_target_``, ``@ref`` and ``$expr``
is understood) has these sections, all but ``tasks`` optional::

    {
      "tasks": "tasks.json",                 # task file (relative to this config) or inline list
      "roles": ["pretrain"],                 # which tasks to train on
      "device": "auto",
      "network": {"variant": "tiny"},        # UMedPT arguments, or {"_target_": ..., ...}
      "trainer": {"max_iterations": 20000, "batch_size": 16, "offload_heads": true, "amp": true,
                  "optimizer": {"name": "AdamW", "lr": 1e-4}, "scheduler": "cosine"},
      "validation": {"interval": 1, "max_batches_per_task": null},   # every N epochs and at the end; null: none
      "log_every": 50,
      "tensorboard": false,
      "output_dir": "runs/umedpt"
    }

Written to ``output_dir``: ``checkpoints/last.pt`` (resumable; a second call continues),
``model.pt`` (the UMedPT state dict, shared blocks and heads), ``encoder.pt`` (the encoder
alone, torchvision Swin V2 format), ``network.json`` (the UMedPT arguments, so the transfer
protocol can rebuild the model), ``history.json`` (losses and validation metrics).

Example
-------
>>> cfg = {"tasks": [], "network": {}}
>>> try:
...     pretrain(cfg, output_dir="unused")
... except Exception as err:
...     print(type(err).__name__)
ConfigError
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.handlers import TensorBoardStatsHandler, ValidationHandler, from_engine

from medfound.errors import ConfigError
from medfound.multitask.checkpoint import save_checkpoint
from medfound.multitask.evaluator import MultiTaskEvaluator
from medfound.multitask.tasks import read_config_file
from medfound.multitask.trainer import MultiTaskTrainer, _as_device

__all__ = ["pretrain", "build_network"]

logger = logging.getLogger(__name__)

_TOP_KEYS = {
    "tasks",
    "roles",
    "task_names",
    "device",
    "network",
    "trainer",
    "validation",
    "log_every",
    "tensorboard",
    "output_dir",
    "seed",
}


def build_network(config: Mapping[str, Any] | torch.nn.Module | None) -> torch.nn.Module:
    """A UMedPT from plain arguments, a ``_target_`` config, or a ready module."""
    if isinstance(config, torch.nn.Module):
        return config
    config = dict(config or {})
    if "_target_" in config:
        return ConfigParser({"network": config}).get_parsed_content("network", instantiate=True)
    from medfound.networks.umedpt import UMedPT

    try:
        return UMedPT(**config)
    except TypeError as err:
        raise ConfigError(f"bad network option: {err}") from None


def _resolve(config: Any) -> tuple[dict[str, Any], Path | None]:
    base = None
    if isinstance(config, (str, os.PathLike)):
        base = Path(config).resolve().parent
        config = read_config_file(config)
    if not isinstance(config, Mapping):
        raise ConfigError("a pre-training config must be a dict (or a JSON/YAML file holding one)")
    unknown = set(config) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown pre-training config keys {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    parser = ConfigParser(copy.deepcopy(dict(config)))
    # resolve @refs / $expressions, but leave _target_ dicts for build_network / the trainer
    resolved = {k: parser.get_parsed_content(k, instantiate=False) for k in config}
    return resolved, base


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def pretrain(
    config: str | os.PathLike | Mapping[str, Any],
    output_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Pre-train a UMedPT on the config's tasks; returns a summary (paths, steps, last metrics).

    Parameters
    ----------
    config : the config dict or its JSON/YAML file (see the module docstring).
    output_dir : overrides ``config["output_dir"]``.
    overrides : merged into the ``trainer`` section (e.g. ``{"max_iterations": 10}``).
    device : overrides ``config["device"]``.
    log : where progress lines go (default: the module logger).
    """
    emit = log or logger.info
    cfg, base = _resolve(config)
    tasks = cfg.get("tasks")
    if not tasks:
        raise ConfigError("the pre-training config names no tasks")
    if isinstance(tasks, str) and base is not None and not os.path.isabs(tasks):
        tasks = str(base / tasks)
    out = Path(output_dir or cfg.get("output_dir") or "umedpt_pretrain")
    out.mkdir(parents=True, exist_ok=True)
    device = _as_device(device or cfg.get("device", "auto"))
    if "seed" in cfg:
        torch.manual_seed(int(cfg["seed"]))
    network_cfg = cfg.get("network") or {}
    network = build_network(network_cfg)
    trainer_cfg = {**dict(cfg.get("trainer") or {}), **dict(overrides or {})}
    if "max_epochs" not in trainer_cfg and "max_iterations" not in trainer_cfg:
        trainer_cfg["max_epochs"] = 1
    trainer_cfg.setdefault("checkpoint_dir", str(out / "checkpoints"))
    trainer_cfg.setdefault("seed", int(cfg.get("seed", 0)))
    roles = cfg.get("roles", ["pretrain"])
    trainer = MultiTaskTrainer(device, network, tasks, roles=roles, task_names=cfg.get("task_names"), **trainer_cfg)
    emit(
        f"pre-training on {len(trainer.task_names)} tasks ({', '.join(trainer.task_names)}) on {device}: "
        f"{trainer.total_iterations} iterations, window {trainer.window}, epoch length {trainer.state.epoch_length}"
    )

    history: dict[str, Any] = {"loss": [], "validation": []}
    log_every = int(cfg.get("log_every", 50))
    running: dict[str, list[float]] = {}
    started = time.time()

    @trainer.on(Events.ITERATION_COMPLETED)
    def _log_loss(engine: MultiTaskTrainer) -> None:
        name, loss = engine.state.output[0]["task"], float(engine.state.output[0]["loss"])
        running.setdefault(name, []).append(loss)
        if engine.state.iteration % log_every == 0 or engine.state.iteration == trainer.total_iterations:
            means = {n: sum(v) / len(v) for n, v in running.items()}
            history["loss"].append({"iteration": engine.state.iteration, **means})
            emit(
                f"  iteration {engine.state.iteration}/{trainer.total_iterations} ({time.time() - started:.0f} s) "
                f"mean normalised loss {sum(means.values()) / len(means):.3f}"
            )
            running.clear()

    validation = cfg.get("validation", {"interval": 1})
    evaluator = None
    if validation is not None:
        validation = dict(validation)
        interval = int(validation.pop("interval", 1))
        evaluator = MultiTaskEvaluator(
            device,
            network,
            tasks,
            roles=roles,
            task_names=trainer.task_names,
            offload_heads=trainer.offload_heads,
            amp=trainer.amp_enabled,
            batch_size=int(trainer_cfg.get("batch_size", 8)),
            **validation,
        )

        @evaluator.on(Events.EPOCH_COMPLETED)
        def _log_metrics(engine: MultiTaskEvaluator) -> None:
            metrics = {k: float(v) for k, v in engine.state.metrics.items()}
            history["validation"].append(
                {"epoch": trainer.state.epoch, "iteration": trainer.state.iteration, **metrics}
            )
            scores = ", ".join(f"{n} {metrics.get(f'{n}/score', float('nan')):.3f}" for n in trainer.task_names)
            emit(f"  validation after epoch {trainer.state.epoch}: mean score {metrics['mean_score']:.3f} ({scores})")

        ValidationHandler(interval=interval, validator=evaluator, epoch_level=True).attach(trainer)

        @trainer.on(Events.COMPLETED)
        def _final_validation(engine: MultiTaskTrainer) -> None:
            done = history["validation"] and history["validation"][-1]["iteration"] == engine.state.iteration
            if not done:
                evaluator.run(max(1, engine.state.epoch))

    if cfg.get("tensorboard"):
        TensorBoardStatsHandler(
            log_dir=str(out / "tensorboard"),
            output_transform=from_engine(["loss"], first=True),
            iteration_log=True,
            epoch_log=False,
        ).attach(trainer)
        if evaluator is not None:
            TensorBoardStatsHandler(
                log_dir=str(out / "tensorboard"),
                output_transform=lambda x: None,
                global_epoch_transform=lambda _: trainer.state.epoch,
                iteration_log=False,
            ).attach(evaluator)

    trainer.run()
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    save_checkpoint(state, out / "model.pt")
    if hasattr(network, "shared") and "encoder" in network.shared:
        save_checkpoint(
            {k: v.detach().cpu() for k, v in network.shared["encoder"].state_dict().items()}, out / "encoder.pt"
        )
    network_json = {
        "umedpt": _plain(network_cfg),
        "tasks": [trainer.specs[n].head_config() for n in trainer.task_names],
    }
    (out / "network.json").write_text(json.dumps(network_json, indent=2) + "\n")
    (out / "history.json").write_text(json.dumps(_plain(history), indent=2) + "\n")
    summary = {
        "output_dir": str(out.resolve()),
        "model": str((out / "model.pt").resolve()),
        "iterations": trainer.state.iteration,
        "shared_steps": trainer.shared_steps,
        "tasks": trainer.task_names,
        "seconds": round(time.time() - started, 1),
        "last_validation": history["validation"][-1] if history["validation"] else None,
    }
    emit(f"pre-training done in {summary['seconds']} s; weights in {out / 'model.pt'}")
    return summary
