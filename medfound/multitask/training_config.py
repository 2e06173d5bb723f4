"""The bundle config of a multi-task training run: one source of truth for its defaults.

:func:`training_config` turns the short options of a run (the ``trainer`` and ``validation``
sections of a pre-training config, see :mod:`medfound.multitask.pretrain`) into a MONAI bundle
config: a dict with a ``_target_`` for every object, which ``monai.bundle.ConfigParser`` (or
``monai.bundle.run``) instantiates. :func:`medfound.multitask.pretrain.pretrain`,
the fine-tuning runs of the transfer protocol and the ``umedpt_foundation`` bundle all build
their trainers this way, so the defaults (:data:`TRAINER_DEFAULTS`, :data:`VALIDATION_DEFAULTS`)
live here only.

The config's ids::

    imports, seed, device,                       # torch.manual_seed(seed) runs first (initialize)
    network, tasks,                              # UMedPT, load_tasks(...)
    train_loader,                                # CyclicTaskLoader.from_tasks
    max_epochs, max_iterations, epoch_length, window, run_plan,   # plan_run(...): the run's length
    optimizer, head_optimizer,                   # "_mode_": "callable" optimisers (called with the parameters)
    lr_scheduler,                                # "_mode_": "callable" WarmupCosineLR or null (heads too)
    train_handlers, trainer,                     # MultiTaskTrainer
    val_loader, val_handlers, evaluator,         # BalancedValidationLoader, MultiTaskEvaluator (with validation)
    final_validation,                            # FinalValidation (with validation)
    history, checkpoint_resume, checkpoint_saver,  # with output_dir: TrainingHistory, CheckpointResume,
                                                 # AtomicCheckpointSaver (last.pt, model.pt, encoder.pt)
    progress_bar,                                # ignite ProgressBar (with progress_bar)
    initialize, run                              # what monai.bundle.run executes, in this order

Files of a run with ``output_dir``: ``last.pt`` (the checkpoint: every ``checkpoint_every``
iterations, every epoch end and at the end; resumed from when it exists), ``model.pt`` (the
network's state dict), ``encoder.pt`` (the encoder's, torchvision Swin V2 names; UMedPT only),
``history.json`` (:class:`~medfound.multitask.handlers.TrainingHistory`), ``tensorboard/``
(with ``tensorboard``).

Example
-------
>>> cfg = training_config(tasks="tasks.json", network={"variant": "tiny"}, trainer={"max_iterations": 100})
>>> cfg["trainer"]["_target_"], cfg["optimizer"]["_target_"], cfg["max_iterations"]
('medfound.multitask.MultiTaskTrainer', 'torch.optim.AdamW', 100)
>>> check_trainer_options({"bach_size": 4})
Traceback (most recent call last):
...
medfound.errors.ConfigError: unknown key(s) ['bach_size'] in trainer; known: [...]
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from medfound.errors import ConfigError
from medfound.multitask.optim import DEFAULT_OPTIMIZER, optimizer_config, scheduler_config
from medfound.networks.umedpt import UMedPT
from medfound.utils import check_bool, check_choice, check_float, check_int, check_mapping, check_module

__all__ = [
    "TRAINER_DEFAULTS",
    "VALIDATION_DEFAULTS",
    "NETWORK_TARGET",
    "check_trainer_options",
    "check_validation_options",
    "network_config",
    "training_config",
]

#: the ``trainer`` options and their defaults (``max_epochs`` 1 when neither run length is given)
TRAINER_DEFAULTS: dict[str, Any] = {
    "max_epochs": None,
    "max_iterations": None,
    "epoch_length": None,
    "batch_size": 8,
    "window": None,
    "optimizer": DEFAULT_OPTIMIZER,
    "head_optimizer": None,
    "head_lr_factor": 1.0,
    "scheduler": "constant",
    "grad_clip": 1.0,
    "head_grad_clip": None,
    "amp": False,
    "offload_heads": False,
    "frozen_shared": False,
    "task_order": "fixed",
    "num_workers": 0,
    "skip_bad": True,
    "checkpoint_every": None,
}
#: the ``validation`` options and their defaults (``interval``: epochs between validations, null: only at the end)
VALIDATION_DEFAULTS: dict[str, Any] = {
    "interval": 1,
    "max_batches_per_task": None,
    "batch_size": None,
    "num_workers": 0,
    "detection_postprocessing": None,
}
#: the network a config without ``_target_`` builds
NETWORK_TARGET = "medfound.networks.UMedPT"


def check_trainer_options(options: Mapping[str, Any] | None, where: str = "trainer") -> dict[str, Any]:
    """The ``trainer`` options with defaults filled in; a bad key or value raises
    :class:`~medfound.errors.ConfigError` naming it (``trainer.batch_size must be an integer >= 1, got 0``)."""
    given = check_mapping(options or {}, where, known=TRAINER_DEFAULTS)
    out = {**TRAINER_DEFAULTS, **given}
    if out["max_epochs"] is None and out["max_iterations"] is None:
        out["max_epochs"] = 1
    if out["max_epochs"] is not None and out["max_iterations"] is not None:
        raise ConfigError(f"give one of {where}.max_epochs and {where}.max_iterations, not both")
    for key in ("max_epochs", "max_iterations", "epoch_length", "window", "checkpoint_every"):
        out[key] = check_int(out[key], f"{where}.{key}", low=1, allow_none=True)
    out["batch_size"] = check_int(out["batch_size"], f"{where}.batch_size", low=1)
    out["num_workers"] = check_int(out["num_workers"], f"{where}.num_workers", low=0)
    out["head_lr_factor"] = check_float(out["head_lr_factor"], f"{where}.head_lr_factor", low=0.0, low_open=True)
    for key in ("grad_clip", "head_grad_clip"):
        out[key] = check_float(out[key], f"{where}.{key}", low=0.0, allow_none=True)
    for key in ("amp", "offload_heads", "frozen_shared", "skip_bad"):
        out[key] = check_bool(out[key], f"{where}.{key}")
    out["task_order"] = check_choice(out["task_order"], ("fixed", "shuffle"), f"{where}.task_order")
    optimizer_config(out["optimizer"], what=f"{where}.optimizer")  # checked now, built later
    if out["head_optimizer"] is not None:
        optimizer_config(out["head_optimizer"], what=f"{where}.head_optimizer")
    scheduler_config(out["scheduler"], 1, what=f"{where}.scheduler")
    return out


def check_validation_options(options: Mapping[str, Any] | None, where: str = "validation") -> dict[str, Any] | None:
    """The ``validation`` options with defaults filled in (``None`` stays ``None``: no validation)."""
    if options is None:
        return None
    out = {**VALIDATION_DEFAULTS, **check_mapping(options, where, known=VALIDATION_DEFAULTS)}
    for key in ("interval", "max_batches_per_task", "batch_size"):
        out[key] = check_int(out[key], f"{where}.{key}", low=1, allow_none=True)
    out["num_workers"] = check_int(out["num_workers"], f"{where}.num_workers", low=0)
    if out["detection_postprocessing"] is not None:
        out["detection_postprocessing"] = check_mapping(
            out["detection_postprocessing"], f"{where}.detection_postprocessing")
    return out


def _umedpt_parameters() -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(UMedPT).parameters)


#: UMedPT arguments that are counts or sizes (checked >= 1 before the network is built)
_POSITIVE_INTS = ("pixel_embedding_channels", "det_channels", "det_num_convs", "embed_dim", "seg_hidden_channels",
                  "size_divisor", "squeezer_channels")


def network_config(network: Mapping[str, Any] | nn.Module | None, where: str = "network") -> Any:
    """The bundle entry of the network: UMedPT arguments become ``{"_target_": NETWORK_TARGET, ...}``
    (unknown arguments and bad sizes raise :class:`~medfound.errors.ConfigError` naming them); a
    ``_target_`` dict or a ready module is kept as it is."""
    if isinstance(network, nn.Module):
        return network
    network = check_mapping(network or {}, where)
    if "_target_" in network:
        return dict(network)
    known = [k for k in _umedpt_parameters() if k != "self"]
    check_mapping(network, where, known=known)
    for key in _POSITIVE_INTS:
        if key in network:
            check_int(network[key], f"{where}.{key}", low=1, allow_none=key == "squeezer_channels")
    for key in ("depths", "num_heads"):
        if network.get(key) is not None:
            values = network[key]
            if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != 4:
                raise ConfigError(f"{where}.{key} must be a list of 4 integers, got {values!r}")
            for i, v in enumerate(values):
                check_int(v, f"{where}.{key}[{i}]", low=1)
    window = network.get("window_size")
    for i, v in enumerate(window if isinstance(window, (list, tuple)) else [] if window is None else [window]):
        check_int(v, f"{where}.window_size" + (f"[{i}]" if isinstance(window, (list, tuple)) else ""), low=1)
    for key in ("stochastic_depth_prob", "head_dropout"):
        if network.get(key) is not None:
            check_float(network[key], f"{where}.{key}", low=0.0, high=1.0, high_open=True)
    return {"_target_": NETWORK_TARGET, **network}


def _task_source(tasks: Any) -> Any:
    return os.fspath(tasks) if isinstance(tasks, os.PathLike) else tasks


def training_config(
    *,
    tasks: Any,
    network: Mapping[str, Any] | nn.Module | None = None,
    trainer: Mapping[str, Any] | None = None,
    validation: Mapping[str, Any] | None = None,
    device: Any = "auto",
    seed: int = 0,
    roles: Sequence[str] | str | None = None,
    task_names: Sequence[str] | None = None,
    output_dir: str | os.PathLike | None = None,
    log_every: int = 50,
    tensorboard: bool = False,
    progress_bar: bool = False,
    stats: bool = True,
) -> dict[str, Any]:
    """The bundle config of a multi-task training run (see the module docstring for its ids).

    Parameters
    ----------
    tasks : a task file (JSON/YAML), a ``{"tasks": [...]}`` dict, or a list of task dicts /
        :class:`~medfound.multitask.tasks.TaskSpec` (``load_tasks``' ``source``).
    network : UMedPT arguments, a ``_target_`` dict, or a ready module (the config then holds
        it; such a config cannot be written as JSON).
    trainer : the ``trainer`` options (:data:`TRAINER_DEFAULTS`).
    validation : the ``validation`` options (:data:`VALIDATION_DEFAULTS`); ``None``: no
        evaluator. Validation runs every ``interval`` epochs and once more at the end.
    device : ``"auto"``, ``"cpu"``, ``"cuda"``, ... (resolved when the config is instantiated).
    seed : seeds torch before the network is built, and the loader (task order, data order,
        augmentation).
    roles, task_names : which tasks of ``tasks`` to train (``load_tasks``).
    output_dir : the run's folder: ``last.pt`` (resumed from), ``model.pt``, ``encoder.pt``,
        ``history.json``, ``tensorboard/``; ``None``: nothing is written.
    log_every : iterations between loss log lines (``StatsHandler``) and history records.
    tensorboard : TensorBoard logs of the losses and validation metrics (needs ``output_dir``).
    progress_bar : ignite's ``ProgressBar`` (with the time left) on the trainer.
    stats : ``StatsHandler`` log lines (``medfound.multitask.train`` / ``.validation`` loggers) of
        the losses and the validation metrics.
    """
    opts = check_trainer_options(trainer)
    val = check_validation_options(validation)
    seed = check_int(seed, "seed", low=0)
    log_every = check_int(log_every, "log_every", low=1)
    tensorboard, progress_bar = check_bool(tensorboard, "tensorboard"), check_bool(progress_bar, "progress_bar")
    stats = check_bool(stats, "stats")
    if tensorboard and output_dir is None:
        raise ConfigError("tensorboard logs need an output folder")
    if tensorboard:
        check_module("torch.utils.tensorboard", "tensorboard", package="tensorboard")
    if progress_bar:
        check_module("tqdm", "progress_bar")
    out = None if output_dir is None else os.path.abspath(os.fspath(output_dir))
    loss_out = "$monai.handlers.from_engine(['loss'], first=True)"
    cfg: dict[str, Any] = {
        "imports": ["$from medfound.multitask import plan_run"],
        "seed": seed,
        "device": {"_target_": "medfound.utils.resolve_device", "device": device},
        "network": network_config(network),
        "tasks": {"_target_": "medfound.multitask.load_tasks", "source": _task_source(tasks), "roles": roles,
                  "names": None if task_names is None else list(task_names)},
        "train_loader": {
            "_target_": "medfound.multitask.CyclicTaskLoader.from_tasks",
            "tasks": "@tasks",
            "batch_size": opts["batch_size"],
            "seed": "@seed",
            "order": opts["task_order"],
            "num_workers": opts["num_workers"],
            "pin_memory": "$@device.type == 'cuda'",
            "skip_bad": opts["skip_bad"],
        },
        "max_epochs": opts["max_epochs"],
        "max_iterations": opts["max_iterations"],
        "epoch_length": opts["epoch_length"],
        "window": opts["window"],
        "run_plan": "$plan_run(@train_loader, @max_epochs, @max_iterations, @epoch_length, @window)",
        "optimizer": optimizer_config(opts["optimizer"], what="trainer.optimizer"),
        "head_optimizer": optimizer_config(opts["head_optimizer"] or opts["optimizer"], opts["head_lr_factor"],
                                           what="trainer.head_optimizer"),
        "lr_scheduler": scheduler_config(opts["scheduler"], "$@run_plan.shared_steps", what="trainer.scheduler"),
        "train_handlers": [],
        "trainer": {
            "_target_": "medfound.multitask.MultiTaskTrainer",
            "device": "@device",
            "network": "@network",
            "train_loader": "@train_loader",
            "tasks": "@tasks",
            "optimizer": "@optimizer",
            "max_epochs": "@max_epochs",
            "max_iterations": "@max_iterations",
            "epoch_length": "@epoch_length",
            "window": "@window",
            "head_optimizer": "@head_optimizer",
            "lr_scheduler": "@lr_scheduler",
            "head_lr_scheduler": "@lr_scheduler",  # the heads follow the shared schedule
            "grad_clip": opts["grad_clip"],
            "head_grad_clip": opts["head_grad_clip"],
            "amp": opts["amp"],
            "offload_heads": opts["offload_heads"],
            "frozen_shared": opts["frozen_shared"],
            "train_handlers": "@train_handlers",
        },
    }
    if stats:
        cfg["train_handlers"].append(
            {"_target_": "StatsHandler", "name": "medfound.multitask.train", "tag_name": "loss",
             "output_transform": loss_out, "iteration_log": f"$lambda engine, iteration: iteration % {log_every} == 0",
             "epoch_log": False})
    initialize = ["$torch.manual_seed(@seed)"]  # before the network (and any head) is built
    if val is not None:
        cfg["val_loader"] = {
            "_target_": "medfound.multitask.BalancedValidationLoader.from_tasks",
            "tasks": "@tasks",
            "batch_size": val["batch_size"] or opts["batch_size"],
            "max_batches_per_task": val["max_batches_per_task"],
            "num_workers": val["num_workers"],
            "skip_bad": opts["skip_bad"],
        }
        cfg["val_handlers"] = [
            {"_target_": "StatsHandler", "name": "medfound.multitask.validation", "output_transform": "$lambda x: None",
             "iteration_log": False},
        ] if stats else []
        cfg["evaluator"] = {
            "_target_": "medfound.multitask.MultiTaskEvaluator",
            "device": "@device",
            "network": "@network",
            "val_loader": "@val_loader",
            "tasks": "@tasks",
            "offload_heads": opts["offload_heads"],
            "amp": opts["amp"],
            "detection_postprocessing": val["detection_postprocessing"],
            "val_handlers": "@val_handlers",
        }
        if val["interval"] is not None:
            cfg["train_handlers"].insert(
                0, {"_target_": "ValidationHandler", "interval": val["interval"], "validator": "@evaluator",
                    "epoch_level": True})
        cfg["final_validation"] = {"_target_": "medfound.multitask.FinalValidation", "validator": "@evaluator"}
        initialize.append("$@final_validation.attach(@trainer)")
    if tensorboard:
        cfg["train_handlers"].append(
            {"_target_": "TensorBoardStatsHandler", "log_dir": "$@output_dir + '/tensorboard'",
             "output_transform": loss_out, "iteration_log": True, "epoch_log": False})
        if val is not None:
            cfg["val_handlers"].append(
                {"_target_": "TensorBoardStatsHandler", "log_dir": "$@output_dir + '/tensorboard'",
                 "output_transform": "$lambda x: None", "iteration_log": False})
    if out is not None:
        cfg["output_dir"] = out
        cfg["history"] = {"_target_": "medfound.multitask.TrainingHistory", "path": "$@output_dir + '/history.json'",
                          "log_every": log_every, "evaluator": "@evaluator" if val is not None else None}
        state = {"trainer": "@trainer", "history": "@history"}
        final_files = {"model.pt": "@network"}
        if not isinstance(network, nn.Module) and cfg["network"]["_target_"] == NETWORK_TARGET:
            final_files["encoder.pt"] = "$@network.shared['encoder']"
        cfg["checkpoint_resume"] = {"_target_": "medfound.handlers.CheckpointResume",
                                    "path": "$@output_dir + '/last.pt'", "load_dict": state}
        cfg["checkpoint_saver"] = {"_target_": "medfound.handlers.AtomicCheckpointSaver",
                                   "save_dir": "@output_dir", "save_dict": state,
                                   "save_interval": opts["checkpoint_every"], "epoch_level": True,
                                   "final_files": final_files}
        # order matters: resume at STARTED before anything runs; at COMPLETED the last validation,
        # then the history, then the checkpoint (which holds the history)
        initialize += ["$@checkpoint_resume.attach(@trainer)", "$@history.attach(@trainer)",
                       "$@checkpoint_saver.attach(@trainer)"]
    if progress_bar:
        cfg["progress_bar"] = {"_target_": "ignite.handlers.ProgressBar", "persist": False}
        initialize.append(f"$@progress_bar.attach(@trainer, output_transform={loss_out[1:]})")
    # first of all: a NaN/inf loss stops the run, naming the task and the batch's files, before any
    # handler (or the checkpoint saver, attached after the trainer's own handlers) sees the step
    cfg["train_handlers"].insert(0, {
        "_target_": "medfound.handlers.StopOnNonFiniteLoss",
        "output_transform": "$lambda out: {k: float(v) for k, v in out[0].items() if str(k).startswith('loss')}",
        "checkpoint": None if out is None else "$@output_dir + '/last.pt'"})
    cfg["initialize"] = initialize
    cfg["run"] = ["$@trainer.run()"]
    return cfg
