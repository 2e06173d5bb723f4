"""The gradient-accumulating multi-task trainer (an ignite ``Engine``, MONAI ``Trainer`` style).

One iteration = one batch of one task:

1. the task's head (and its optimiser state) comes to the device if heads are offloaded;
2. forward (autocast on CUDA with ``amp``), the task's normalised loss times its weight;
3. ``backward()`` at once, so the task's graph is freed before the next task runs; the
   shared blocks' gradients accumulate over the window;
4. the head's gradients are (averaged over processes,) unscaled, clipped, and its own
   optimiser steps; the head goes back to the CPU if offloaded;
5. at the end of a window of ``window`` iterations (default: the number of tasks) the shared
   gradients are averaged over processes, unscaled, clipped, and the shared optimiser steps
   once; then every schedule steps.

Peak memory is thus one task's activations plus the shared gradients, whatever the number
of tasks (with ``offload_heads`` even the heads on the device are one at a time). The
trainer is a ``monai.engines.Trainer``: MONAI handlers attach as usual (``StatsHandler``
with ``output_transform=from_engine(["loss"], first=True)``, ``TensorBoardStatsHandler``,
``CheckpointSaver(save_dict={"trainer": trainer})``, ``CheckpointLoader``,
``ValidationHandler`` with a :class:`~medfound.multitask.evaluator.MultiTaskEvaluator`),
and so does ignite's ``ProgressBar``. Its ``state_dict()`` holds everything a resumed run
needs: the network (shared blocks and heads), every optimiser, schedule and the AMP
scaler, the task loader's position, the RNG states, and gradients accumulated in an
unfinished window; ``checkpoint_dir`` makes it save atomically and resume by itself.

Every argument is a plain value or an object a MONAI bundle config builds, e.g.::

    "trainer": {"_target_": "medfound.multitask.MultiTaskTrainer", "device": "$torch.device('cuda')",
                "network": "@network", "tasks": "/data/tasks.json", "roles": ["pretrain"],
                "max_iterations": 100000, "batch_size": 32, "optimizer": {"name": "AdamW", "lr": 1e-4},
                "offload_heads": true, "amp": true, "checkpoint_dir": "$@bundle_root + '/models'"}

Example
-------
>>> import torch
>>> from medfound.networks.umedpt import UMedPT
>>> net = UMedPT(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
...              squeezer_channels=16, seg_hidden_channels=16, det_channels=16)
>>> tasks = [{"name": "a", "kind": "classification", "class_names": ["x", "y"],
...           "training": [{"image": torch.rand(1, 32, 32), "label": i % 2} for i in range(4)],
...           "transforms": {"train": lambda d: d}}]
>>> trainer = MultiTaskTrainer("cpu", net, tasks, max_iterations=2, batch_size=2)
>>> trainer.run()
>>> trainer.state.iteration, trainer.shared_steps
(2, 2)
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import EventEnum, Events
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from torch import nn

from medfound.errors import ConfigError, WeightsError
from medfound.multitask.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from medfound.multitask.data import TaskDataset, prepare_task_batch, task_transforms
from medfound.multitask.distributed import all_reduce_gradients, broadcast_module, rank, world_size
from medfound.multitask.optim import build_optimizer, build_scheduler
from medfound.multitask.sampling import CyclicTaskLoader
from medfound.multitask.steps import (
    decollate_output,
    detach_output,
    ensure_heads,
    move_head,
    split_parameters,
    task_loss,
)
from medfound.multitask.tasks import TaskSpec, load_tasks

__all__ = ["MultiTaskEvents", "MultiTaskTrainer", "build_task_datasets", "resolve_tasks"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "medfound.multitask.trainer/1"


class MultiTaskEvents(EventEnum):
    """Events of the multi-task trainer (besides MONAI's ``IterationEvents``)."""

    #: shared gradients of the window are complete (and averaged over processes), before unscale/clip/step
    SHARED_STEP_STARTED = "shared_step_started"
    #: the shared optimiser and the schedules have stepped
    SHARED_STEP_COMPLETED = "shared_step_completed"
    #: a head's optimiser has stepped
    HEAD_STEP_COMPLETED = "head_step_completed"


def resolve_tasks(
    tasks: Any, roles: Sequence[str] | str | None = None, names: Sequence[str] | None = None
) -> list[TaskSpec]:
    """Task specs from a path, a config dict, or a list of dicts / specs."""
    if (
        isinstance(tasks, Sequence)
        and not isinstance(tasks, (str, bytes))
        and tasks
        and all(isinstance(t, TaskSpec) for t in tasks)
        and roles is None
        and names is None
    ):
        return list(tasks)
    return load_tasks(tasks, roles=roles, names=names)


def build_task_datasets(specs: Sequence[TaskSpec], split: str, skip_bad: bool = True) -> dict[str, TaskDataset]:
    """One :class:`~medfound.multitask.data.TaskDataset` per task for ``"train"`` or ``"val"``."""
    out = {}
    for spec in specs:
        items = spec.load_split(split)
        example = items[0]["image"] if items and isinstance(items[0].get("image"), (str, os.PathLike)) else None
        out[spec.name] = TaskDataset(items, task_transforms(spec, split == "train", example), spec.name, skip_bad)
    return out


def _as_device(device: Any) -> torch.device:
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = device if isinstance(device, torch.device) else torch.device(device)
    if device.type == "cuda" and device.index is None and world_size() > 1:
        device = torch.device("cuda", int(idist.get_local_rank()))  # one GPU per process under torchrun
    return device


class MultiTaskTrainer(Trainer):
    """Multi-task trainer: one task per iteration, gradient accumulation in the shared blocks.

    Parameters
    ----------
    device : ``"cuda"``, ``"cpu"``, a ``torch.device``, or ``"auto"``.
    network : a UMedPT-like model (``heads`` ModuleDict, ``forward(x, task=...)``); heads
        missing for a task are added with ``network.add_task`` (the task's ``head`` options).
    tasks : a task file (JSON/YAML), a config dict, or a list of task dicts /
        :class:`~medfound.multitask.tasks.TaskSpec`.
    roles, task_names : keep the tasks with these roles / names (e.g. ``["pretrain"]``).
    max_epochs, max_iterations : length of the run (one of them); an epoch is
        ``epoch_length`` iterations.
    epoch_length : iterations per epoch; default: number of tasks x the largest task's
        batches per epoch (rounded up to a whole window).
    batch_size : per-process batch size of tasks that do not set their own.
    window : task-iterations per shared optimiser step (default: number of tasks).
    optimizer : shared optimiser config (``{"name": "AdamW", "lr": 1e-4, "weight_decay": 0.05}``).
    head_optimizer : head optimiser config (default: the shared one).
    head_lr_factor : head learning rate = head optimiser's ``lr`` times this.
    scheduler : ``"constant"``, ``"cosine"`` or ``{"name", "warmup_steps", "min_factor"}``,
        over shared steps; heads follow the same schedule.
    grad_clip, head_grad_clip : max gradient norm of the shared blocks / of each head
        (``None`` or 0: no clipping; ``head_grad_clip=None`` takes ``grad_clip``, 0 turns it off).
    amp : mixed precision (autocast + gradient scaling) when the device is CUDA; ignored on CPU.
    offload_heads : keep heads and their optimiser state on the CPU except while their task runs.
    frozen_shared : train the heads only: shared parameters get no gradients and the shared
        modules stay in eval mode (no dropout or stochastic depth), e.g. for frozen-encoder transfer.
    task_order : ``"fixed"`` or ``"shuffle"`` (a new task order per cycle).
    seed : fixes task order, data order and augmentation.
    num_workers : DataLoader workers per task.
    train_loader : a ready :class:`~medfound.multitask.sampling.CyclicTaskLoader` (else built from the tasks).
    skip_bad : skip (and report) samples that fail to load instead of stopping.
    checkpoint_dir : write ``last.pt`` there every ``checkpoint_every`` iterations (default:
        every epoch; rounded up to whole windows) and at the end, atomically, plus the
        network's weights as ``model.pt`` at the end; with ``resume`` a run that finds
        ``last.pt`` continues from it.
    train_handlers, key_train_metric, additional_metrics, amp_kwargs : as MONAI's ``Trainer``.
    """

    def __init__(
        self,
        device: str | torch.device,
        network: nn.Module,
        tasks: Any,
        max_epochs: int | None = None,
        max_iterations: int | None = None,
        epoch_length: int | None = None,
        roles: Sequence[str] | str | None = None,
        task_names: Sequence[str] | None = None,
        batch_size: int = 8,
        window: int | None = None,
        optimizer: Mapping[str, Any] | None = None,
        head_optimizer: Mapping[str, Any] | None = None,
        head_lr_factor: float = 1.0,
        scheduler: str | Mapping[str, Any] | None = None,
        grad_clip: float | None = 1.0,
        head_grad_clip: float | None = None,
        amp: bool = False,
        offload_heads: bool = False,
        frozen_shared: bool = False,
        task_order: str = "fixed",
        seed: int = 0,
        num_workers: int = 0,
        train_loader: CyclicTaskLoader | None = None,
        skip_bad: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: bool = True,
        train_handlers: Sequence | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        non_blocking: bool = False,
        amp_kwargs: dict | None = None,
    ) -> None:
        device = _as_device(device)
        self.specs = {s.name: s for s in resolve_tasks(tasks, roles, task_names)}
        self.task_names = list(self.specs)
        if (max_epochs is None) == (max_iterations is None):
            raise ConfigError("give exactly one of max_epochs and max_iterations")
        self.world_size, self.rank = world_size(), rank()
        self.offload_heads = bool(offload_heads)
        self.offload_device = torch.device("cpu")

        # network: heads for every task, on the right devices, equal on every process
        ensure_heads(network, list(self.specs.values()))
        network.to(device)
        if self.offload_heads:
            for name in self.task_names:
                move_head(network, name, self.offload_device)
        broadcast_module(network)
        self.network = network
        self.size_divisor = int(getattr(network, "size_divisor", 32))
        self.shared_params, head_params = split_parameters(network)
        self.frozen_shared = bool(frozen_shared)
        if self.frozen_shared:
            for p in self.shared_params:
                p.requires_grad_(False)
        self.loss_functions = {n: s.build_loss().to(device) for n, s in self.specs.items()}

        # data
        if train_loader is None:
            datasets = build_task_datasets(list(self.specs.values()), "train", skip_bad)
            train_loader = CyclicTaskLoader(
                datasets,
                {n: s.batch_size or batch_size for n, s in self.specs.items()},
                kinds={n: s.kind for n, s in self.specs.items()},
                seed=seed,
                order=task_order,
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
                rank=self.rank,
                world_size=self.world_size,
            )
        elif list(train_loader.names) != self.task_names:
            raise ConfigError(f"train_loader tasks {train_loader.names} differ from the trainer's {self.task_names}")
        self.train_loader = train_loader
        self.window = int(window) if window is not None else len(self.task_names)
        if self.window < 1:
            raise ConfigError(f"window must be >= 1, got {window}")
        if epoch_length is None:
            most = max(train_loader.batches_per_epoch(n) for n in self.task_names)
            epoch_length = len(self.task_names) * max(1, most)
            epoch_length = self.window * math.ceil(epoch_length / self.window)  # not tied to the run length: a
            # resumed run may be longer, and its epochs must stay the same
        epoch_length = int(epoch_length)
        if max_iterations is not None:
            self.total_iterations = int(max_iterations)
            max_epochs = math.ceil(self.total_iterations / epoch_length)
        else:
            self.total_iterations = int(max_epochs) * epoch_length
        if self.total_iterations < 1:
            raise ConfigError("the run has no iterations")

        # optimisers and schedules
        total_steps = math.ceil(self.total_iterations / self.window)
        self.shared_optimizer = build_optimizer(optimizer, self.shared_params)
        head_cfg = head_optimizer if head_optimizer is not None else optimizer
        self.head_optimizers = {
            n: build_optimizer(head_cfg, head_params[n], lr_factor=head_lr_factor) for n in self.task_names
        }
        self.shared_scheduler = build_scheduler(scheduler, self.shared_optimizer, total_steps)
        self.head_schedulers = {n: build_scheduler(scheduler, o, total_steps) for n, o in self.head_optimizers.items()}
        self.grad_clip = None if grad_clip is None or float(grad_clip) <= 0 else float(grad_clip)
        if head_grad_clip is None:
            self.head_grad_clip = self.grad_clip
        else:
            self.head_grad_clip = None if float(head_grad_clip) <= 0 else float(head_grad_clip)
        self.amp_enabled = bool(amp) and device.type == "cuda"
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.amp_enabled)
        self.shared_steps = 0
        self.head_steps = dict.fromkeys(self.task_names, 0)

        super().__init__(
            device=device,
            max_epochs=int(max_epochs),
            data_loader=train_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            handlers=None,
            amp=self.amp_enabled,
            event_names=[MultiTaskEvents],
            decollate=False,
            amp_kwargs=amp_kwargs,
        )
        if max_iterations is not None and self.total_iterations % epoch_length:
            self.add_event_handler(Events.ITERATION_COMPLETED, self._stop_at_max_iterations)

        # checkpoints
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self.resume = bool(resume)
        if self.checkpoint_dir is not None:
            every = int(checkpoint_every) if checkpoint_every else epoch_length
            self.checkpoint_every = self.window * math.ceil(every / self.window)
            self.add_event_handler(Events.ITERATION_COMPLETED(every=self.checkpoint_every), self._save_last)
            self.add_event_handler(Events.COMPLETED, self._save_final)
        if train_handlers is not None:
            self._register_handlers(train_handlers)

    # -- run -----------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> str | None:
        """``checkpoint_dir/last.pt`` (``None`` without ``checkpoint_dir``)."""
        return None if self.checkpoint_dir is None else os.path.join(self.checkpoint_dir, "last.pt")

    def run(self) -> None:  # type: ignore[override]
        """Train; with ``checkpoint_dir`` and ``resume``, continue from ``last.pt`` when it exists."""
        path = self.checkpoint_path
        if self.resume and path is not None and os.path.isfile(path) and self.state.iteration == 0:
            self.load_state_dict(load_checkpoint(path))
            logger.info("resuming from %s at iteration %d", path, self.state.iteration)
        if self.state.iteration >= self.total_iterations:
            logger.info("nothing to do: %d of %d iterations done", self.state.iteration, self.total_iterations)
            return
        # the scaler lives in the trainer (its state is checkpointed), not re-created per run as MONAI's Trainer does
        self.scaler = self.grad_scaler
        super(Trainer, self).run()

    def _stop_at_max_iterations(self, engine: MultiTaskTrainer) -> None:
        if engine.state.iteration >= self.total_iterations:
            engine.terminate()

    # -- one iteration -------------------------------------------------------------------------
    def _activate(self, name: str) -> None:
        if self.offload_heads:
            move_head(self.network, name, self.state.device, self.head_optimizers[name])

    def _deactivate(self, name: str) -> None:
        if self.offload_heads:
            move_head(self.network, name, self.offload_device, self.head_optimizers[name])

    def _iteration(self, engine: MultiTaskTrainer, batchdata: tuple[str, Any]) -> dict[str, Any]:
        if batchdata is None or len(batchdata) != 2:
            raise ConfigError("the multi-task trainer expects (task_name, batch) items from its loader")
        name, batch = batchdata
        spec = self.specs[name]
        position = (engine.state.iteration - 1) % self.window
        if position == 0:
            for p in self.shared_params:
                p.grad = None
        self._activate(name)
        images, target = prepare_task_batch(spec.kind, batch, engine.state.device, engine.non_blocking)
        engine.state.output = {"task": name, "image": images, "label": target}
        self.network.train()
        if self.frozen_shared:
            for child_name, child in self.network.named_children():
                if child_name != "heads":
                    child.eval()
        with torch.autocast(engine.state.device.type, enabled=self.amp_enabled, **engine.amp_kwargs):
            pred = self.network(images, task=name)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            loss = task_loss(spec.kind, self.loss_functions[name], pred, target, images, self.size_divisor)
        engine.state.output["pred"] = pred
        engine.state.output["loss"] = loss.detach()
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        self.grad_scaler.scale(loss.float() * spec.weight).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        self._step_head(name)
        if position == self.window - 1 or engine.state.iteration >= self.total_iterations:
            self._step_shared()
        self._deactivate(name)
        engine.state.output["pred"] = detach_output(pred)
        engine.state.output[f"loss/{name}"] = float(loss.detach())
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        # MONAI's convention: a decollated list (one dict per sample, the loss replicated), so
        # output_transform=from_engine(["loss"], first=True) and the default x[0] work as with SupervisedTrainer
        engine.state.output = decollate_output(engine.state.output, images.shape[0], ("image", "pred", "label"))
        return engine.state.output

    def _step_head(self, name: str) -> None:
        params = [p for p in self.network.heads[name].parameters() if p.grad is not None]
        all_reduce_gradients(params)
        finite = True
        if self.amp_enabled:  # the heads step mid-window: unscale by hand, the shared step uses the scaler's unscale_
            inv = 1.0 / self.grad_scaler.get_scale()
            for p in params:
                p.grad.mul_(inv)
            finite = all(bool(torch.isfinite(p.grad).all()) for p in params)
        if finite:
            if self.head_grad_clip is not None and params:
                torch.nn.utils.clip_grad_norm_(params, self.head_grad_clip)
            self.head_optimizers[name].step()
            self.head_steps[name] += 1
        self.head_optimizers[name].zero_grad(set_to_none=True)
        self.fire_event(MultiTaskEvents.HEAD_STEP_COMPLETED)

    def _step_shared(self) -> None:
        params = [p for p in self.shared_params if p.grad is not None]
        all_reduce_gradients(params)
        self.fire_event(MultiTaskEvents.SHARED_STEP_STARTED)
        if self.amp_enabled:
            self.grad_scaler.unscale_(self.shared_optimizer)
        if self.grad_clip is not None and params:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.grad_scaler.step(self.shared_optimizer)
        self.grad_scaler.update()
        self.shared_optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # heads of tasks that have not run yet never stepped: that is fine
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()`")
            self.shared_scheduler.step()
            for sched in self.head_schedulers.values():
                sched.step()
        self.shared_steps += 1
        self.fire_event(MultiTaskEvents.SHARED_STEP_COMPLETED)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Everything a resumed run needs (weights-only safe: tensors and plain values)."""
        engine = dict(super().state_dict())
        accumulated = {}
        if self.state.iteration % self.window:  # mid-window: keep the gradients gathered so far
            accumulated = {
                str(i): p.grad.detach().cpu() for i, p in enumerate(self.shared_params) if p.grad is not None
            }
        return {
            "format": CHECKPOINT_FORMAT,
            "engine": engine,
            "tasks": list(self.task_names),
            "network": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "shared_optimizer": self.shared_optimizer.state_dict(),
            "head_optimizers": {n: o.state_dict() for n, o in self.head_optimizers.items()},
            "shared_scheduler": self.shared_scheduler.state_dict(),
            "head_schedulers": {n: s.state_dict() for n, s in self.head_schedulers.items()},
            "grad_scaler": self.grad_scaler.state_dict(),
            "loader": self.train_loader.state_dict(),
            "rng": capture_rng_state(),
            "counters": {"shared_steps": self.shared_steps, "head_steps": dict(self.head_steps)},
            "accumulated_grads": accumulated,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Restore a :meth:`state_dict`; the run's length stays as this trainer was built."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise WeightsError(f"not a multi-task trainer checkpoint (format {state.get('format')!r})")
        if list(state["tasks"]) != self.task_names:
            raise WeightsError(f"checkpoint tasks {state['tasks']} differ from this run's {self.task_names}")
        max_epochs, epoch_length = self.state.max_epochs, self.state.epoch_length
        engine = {k: v for k, v in state["engine"].items() if v is not None}
        if engine.get("epoch_length") != epoch_length:
            raise WeightsError(
                f"checkpoint epoch_length {engine.get('epoch_length')} differs from this run's {epoch_length}"
            )
        super().load_state_dict(engine)
        self.state.max_epochs = max_epochs
        self.state.max_iters = None
        try:
            self.network.load_state_dict(state["network"])
        except RuntimeError as err:
            raise WeightsError(f"checkpoint network does not fit: {err}") from None
        self.shared_optimizer.load_state_dict(state["shared_optimizer"])
        for n in self.task_names:
            self.head_optimizers[n].load_state_dict(state["head_optimizers"][n])
            self.head_schedulers[n].load_state_dict(state["head_schedulers"][n])
            if self.offload_heads:  # optimiser state loads onto the parameters' device: keep it off the GPU
                move_head(self.network, n, self.offload_device, self.head_optimizers[n])
        self.shared_scheduler.load_state_dict(state["shared_scheduler"])
        if state.get("grad_scaler"):
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        self.train_loader.load_state_dict(state["loader"])
        self.shared_steps = int(state["counters"]["shared_steps"])
        self.head_steps = {n: int(state["counters"]["head_steps"][n]) for n in self.task_names}
        for p in self.shared_params:
            p.grad = None
        for i, g in state.get("accumulated_grads", {}).items():
            self.shared_params[int(i)].grad = g.to(self.shared_params[int(i)].device)
        restore_rng_state(state["rng"])

    # -- checkpoint handlers -------------------------------------------------------------------
    def _save_last(self, engine: MultiTaskTrainer | None = None) -> None:
        if self.rank == 0 and self.checkpoint_path is not None:
            save_checkpoint(self.state_dict(), self.checkpoint_path)

    def _save_final(self, engine: MultiTaskTrainer | None = None) -> None:
        if self.rank == 0 and self.checkpoint_dir is not None:
            self._save_last()
            save_checkpoint(
                {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
                os.path.join(self.checkpoint_dir, "model.pt"),
            )
