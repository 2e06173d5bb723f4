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
of tasks (with ``offload_heads`` even the heads on the device are one at a time).

Following MONAI, the trainer receives ready objects: the network, the task loader
(:class:`~medfound.multitask.sampling.CyclicTaskLoader`), the tasks
(:class:`~medfound.multitask.tasks.TaskSpec`: kind, weight, head, loss), the optimisers and
schedules (ready, or factories that it calls with the parameters / the optimiser: a bundle
config builds them with ``"_mode_": "callable"``), and handlers. Checkpointing and exact resume are
:class:`medfound.handlers.AtomicCheckpointSaver` / :class:`~medfound.handlers.CheckpointResume`
with ``save_dict={"trainer": trainer}``: the trainer's ``state_dict()`` holds everything a
resumed run needs (network, every optimiser, schedule and the AMP scaler, the loader's
position, the RNG states, gradients accumulated in an unfinished window). Validation
(``ValidationHandler`` with a :class:`~medfound.multitask.evaluator.MultiTaskEvaluator`),
logging (``StatsHandler`` with ``output_transform=from_engine(["loss"], first=True)``),
``TensorBoardStatsHandler`` and ignite's ``ProgressBar`` attach as usual.
:func:`medfound.multitask.training_config.training_config` composes all of it as a MONAI
bundle config.

Example
-------
>>> import functools, torch
>>> from medfound.networks.umedpt import UMedPT
>>> from medfound.multitask import CyclicTaskLoader, load_tasks
>>> net = UMedPT(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
...              squeezer_channels=16, seg_hidden_channels=16, det_channels=16)
>>> tasks = load_tasks([{"name": "a", "kind": "classification", "class_names": ["x", "y"],
...                      "training": [{"image": torch.rand(1, 32, 32), "label": i % 2} for i in range(4)],
...                      "transforms": {"train": lambda d: d}}])
>>> loader = CyclicTaskLoader.from_tasks(tasks, batch_size=2)
>>> trainer = MultiTaskTrainer("cpu", net, loader, tasks, functools.partial(torch.optim.AdamW, lr=1e-4),
...                            max_iterations=2)
>>> trainer.run()
>>> trainer.state.iteration, trainer.shared_steps
(2, 2)
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from ignite.engine import EventEnum, Events
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from monai.inferers import Inferer, SimpleInferer
from torch import nn

from medfound.errors import ConfigError, WeightsError
from medfound.multitask.batches import padded_size, prepare_task_batch
from medfound.multitask.distributed import all_reduce_gradients, broadcast_module
from medfound.multitask.heads import ensure_heads, move_head, split_parameters
from medfound.multitask.outputs import decollate_output, detach_output
from medfound.multitask.sampling import CyclicTaskLoader
from medfound.multitask.tasks import TaskSpec, per_task
from medfound.utils import capture_rng_state, check_bool, check_float, check_int, resolve_device, restore_rng_state
from medfound.utils.devices import broadcast_buffers, rank, world_size

__all__ = ["MultiTaskEvents", "MultiTaskTrainer", "RunPlan", "plan_run", "task_loss"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "medfound.multitask.trainer/1"

#: a ready optimiser, or a factory called with a list of parameters (``functools.partial``; ``"_mode_": "callable"``)
OptimizerArg = torch.optim.Optimizer | Callable[[list[nn.Parameter]], torch.optim.Optimizer]


class MultiTaskEvents(EventEnum):
    """Events of the multi-task trainer (besides MONAI's ``IterationEvents``)."""

    #: shared gradients of the window are complete (and averaged over processes), before unscale/clip/step
    SHARED_STEP_STARTED = "shared_step_started"
    #: the shared optimiser and the schedules have stepped
    SHARED_STEP_COMPLETED = "shared_step_completed"
    #: a head's optimiser has stepped
    HEAD_STEP_COMPLETED = "head_step_completed"
    #: with ``offload_heads``: a head and its optimiser state have moved;
    #: ``engine.state.head_move`` is ``(task, device)`` (before its forward: to the training
    #: device, after its step: back to ``offload_device``)
    HEAD_MOVED = "head_moved"


class RunPlan(NamedTuple):
    """The length of a run: iterations per epoch, epochs, iterations, the window and the shared steps."""

    epoch_length: int
    max_epochs: int
    iterations: int
    window: int
    shared_steps: int


def plan_run(
    loader: CyclicTaskLoader,
    max_epochs: int | None = None,
    max_iterations: int | None = None,
    epoch_length: int | None = None,
    window: int | None = None,
) -> RunPlan:
    """The run length of a trainer on ``loader`` (give exactly one of ``max_epochs``, ``max_iterations``).

    ``window`` defaults to the number of tasks; ``epoch_length`` to
    :meth:`CyclicTaskLoader.epoch_length` (every task's largest epoch once, in whole windows: not
    tied to the run's length, so a resumed run may be longer and its epochs stay the same).
    ``shared_steps`` is what a schedule's ``total_steps`` should be; a bundle config computes it
    with ``"imports": ["$from medfound.multitask import plan_run"]`` and
    ``"$plan_run(@train_loader, @max_epochs, @max_iterations, @epoch_length, @window).shared_steps"``.

    Example
    -------
    >>> import torch
    >>> data = {n: [{"image": torch.zeros(1, 2, 2), "label": 0}] * 4 for n in ("a", "b", "c")}
    >>> loader = CyclicTaskLoader(data, batch_sizes=2, kinds=dict.fromkeys(data, "classification"))
    >>> plan_run(loader, max_iterations=10)
    RunPlan(epoch_length=6, max_epochs=2, iterations=10, window=3, shared_steps=4)
    """
    if (max_epochs is None) == (max_iterations is None):
        raise ConfigError(f"give exactly one of max_epochs and max_iterations, got {max_epochs} and {max_iterations}")
    window = check_int(len(loader.names) if window is None else window, "window", low=1)
    if epoch_length is None:
        epoch_length = loader.epoch_length(window)
    epoch_length = check_int(epoch_length, "epoch_length", low=1)
    if max_iterations is not None:
        iterations = check_int(max_iterations, "max_iterations", low=1)
        max_epochs = math.ceil(iterations / epoch_length)
    else:
        max_epochs = check_int(max_epochs, "max_epochs", low=1)
        iterations = max_epochs * epoch_length
    return RunPlan(epoch_length, int(max_epochs), iterations, window, math.ceil(iterations / window))


def task_loss(
    kind: str, loss_fn: nn.Module, pred: Any, target: Any, images: torch.Tensor, size_divisor: int = 32
) -> torch.Tensor:
    """The task's normalised loss; detection gets the padded input size for its target assignment."""
    if kind == "detection":
        return loss_fn(pred, target, image_size=padded_size(images.shape[-2], images.shape[-1], size_divisor))
    return loss_fn(pred, target)


def _params_of(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for g in optimizer.param_groups for p in g["params"]}


def _make_optimizer(arg: Any, params: list[nn.Parameter], what: str) -> torch.optim.Optimizer:
    if isinstance(arg, torch.optim.Optimizer):
        if _params_of(arg) != {id(p) for p in params}:
            raise ConfigError(f"{what} does not hold exactly the parameters it is for; give a factory instead")
        return arg
    if not callable(arg):
        raise ConfigError(
            f"{what} must be an optimiser or a factory of one ('_mode_': 'callable'), got {type(arg).__name__}"
        )
    optimizer = arg(list(params))
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"{what} factory returned a {type(optimizer).__name__}, not a torch.optim.Optimizer")
    return optimizer


def _make_scheduler(arg: Any, optimizer: torch.optim.Optimizer, what: str) -> Any:
    if arg is None:
        return None
    if hasattr(arg, "step") and hasattr(arg, "state_dict") and hasattr(arg, "optimizer"):
        if arg.optimizer is not optimizer:
            raise ConfigError(f"{what} schedules another optimiser; give a factory instead")
        return arg
    if not callable(arg):
        raise ConfigError(
            f"{what} must be a scheduler or a factory of one ('_mode_': 'callable'), got {type(arg).__name__}"
        )
    return arg(optimizer)


class MultiTaskTrainer(Trainer):
    """Multi-task trainer: one task per iteration, gradient accumulation in the shared blocks.

    Parameters
    ----------
    device : ``"cuda"``, ``"cpu"``, a ``torch.device``, or ``"auto"`` (:func:`medfound.utils.resolve_device`).
    network : a UMedPT-like model (``heads`` ModuleDict, ``forward(x, task=...)``); heads
        missing for a task are added with ``network.add_task`` (the task's ``head`` options).
    train_loader : the :class:`~medfound.multitask.sampling.CyclicTaskLoader` of the tasks'
        training data (e.g. ``CyclicTaskLoader.from_tasks``).
    tasks : the :class:`~medfound.multitask.tasks.TaskSpec` of every task of the loader, in its
        order (:func:`~medfound.multitask.tasks.load_tasks`): kind, weight, head and loss.
    optimizer : the shared blocks' optimiser, ready (over exactly the shared parameters) or a
        factory called with them (``functools.partial(torch.optim.AdamW, lr=1e-4)``, a
        ``"_mode_": "callable"`` config entry).
    max_epochs, max_iterations, epoch_length, window : the run's length (give one of
        ``max_epochs``, ``max_iterations``) and the task-iterations per shared optimiser step
        (default: the number of tasks); see :func:`plan_run`.
    head_optimizer : a factory called with each head's parameters, or ``{task: ready optimiser}``;
        default: ``optimizer`` when it is a factory.
    lr_scheduler : the shared optimiser's schedule, ready or a factory called with the optimiser
        (e.g. :class:`~medfound.multitask.optim.WarmupCosineLR` with ``"_mode_": "callable"``); it
        steps once per shared step. ``None``: constant.
    head_lr_scheduler : each head's schedule (a factory called with the head's optimiser, or
        ``{task: ready scheduler}``), stepped with the shared one; ``None``: constant.
    loss_functions : ``{task: loss}``; default: each task's ``build_loss()``.
    grad_clip, head_grad_clip : max gradient norm of the shared blocks / of each head
        (``None`` or 0: no clipping; ``head_grad_clip=None`` takes ``grad_clip``, 0 turns it off).
    amp : mixed precision (autocast + gradient scaling) when the device is CUDA; ignored on CPU.
    offload_heads : keep heads and their optimiser state on the CPU except while their task runs.
    offload_device : where offloaded heads wait (``"cpu"``). Every move of a head fires
        ``MultiTaskEvents.HEAD_MOVED``.
    frozen_shared : train the heads only: shared parameters get no gradients and the shared
        modules stay in eval mode (no dropout or stochastic depth), e.g. for frozen-encoder transfer.
    inferer : how the network is called, ``inferer(images, network, task=name)`` (MONAI's
        ``SimpleInferer`` by default, i.e. ``network(images, task=name)``).
    train_handlers, key_train_metric, additional_metrics, non_blocking, amp_kwargs : as MONAI's ``Trainer``.
    """

    def __init__(
        self,
        device: str | torch.device,
        network: nn.Module,
        train_loader: CyclicTaskLoader,
        tasks: Sequence[TaskSpec],
        optimizer: OptimizerArg,
        max_epochs: int | None = None,
        max_iterations: int | None = None,
        epoch_length: int | None = None,
        window: int | None = None,
        head_optimizer: OptimizerArg | Mapping[str, torch.optim.Optimizer] | None = None,
        lr_scheduler: Any = None,
        head_lr_scheduler: Any = None,
        loss_functions: Mapping[str, nn.Module] | None = None,
        grad_clip: float | None = 1.0,
        head_grad_clip: float | None = None,
        amp: bool = False,
        offload_heads: bool = False,
        offload_device: str | torch.device = "cpu",
        frozen_shared: bool = False,
        train_handlers: Sequence | None = None,
        inferer: Inferer | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        non_blocking: bool = False,
        amp_kwargs: dict | None = None,
    ) -> None:
        device = resolve_device(device)
        if not isinstance(train_loader, CyclicTaskLoader):
            raise ConfigError(f"train_loader must be a CyclicTaskLoader, got {type(train_loader).__name__}")
        specs = list(tasks.values()) if isinstance(tasks, Mapping) else list(tasks)
        if not all(isinstance(s, TaskSpec) for s in specs):
            raise ConfigError("tasks must be TaskSpec objects (medfound.multitask.load_tasks)")
        self.specs = {s.name: s for s in specs}
        self.task_names = list(self.specs)
        if list(train_loader.names) != self.task_names:
            raise ConfigError(f"train_loader tasks {train_loader.names} differ from the trainer's {self.task_names}")
        self.train_loader = train_loader
        self.plan = plan_run(train_loader, max_epochs, max_iterations, epoch_length, window)
        self.window, self.total_iterations = self.plan.window, self.plan.iterations
        self.world_size, self.rank = world_size(), rank()
        self.offload_heads = check_bool(offload_heads, "offload_heads")
        self.offload_device = torch.device(offload_device)

        # network: heads for every task, on the right devices, equal on every process
        ensure_heads(network, specs)
        network.to(device)
        if self.offload_heads:
            for name in self.task_names:
                move_head(network, name, self.offload_device)
        broadcast_module(network)
        self.network = network
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.size_divisor = int(getattr(network, "size_divisor", 32))
        self.shared_params, head_params = split_parameters(network)
        self.frozen_shared = check_bool(frozen_shared, "frozen_shared")
        if self.frozen_shared:
            for p in self.shared_params:
                p.requires_grad_(False)
        losses = loss_functions if loss_functions is not None else {n: s.build_loss() for n, s in self.specs.items()}
        losses = per_task(losses, self.task_names, "loss_functions")
        self.loss_functions = {n: loss.to(device) for n, loss in losses.items()}

        # optimisers and schedules
        self.shared_optimizer = _make_optimizer(optimizer, self.shared_params, "optimizer")
        if head_optimizer is None:
            if isinstance(optimizer, torch.optim.Optimizer):
                raise ConfigError("give head_optimizer when optimizer is a ready optimiser (it has the shared blocks)")
            head_optimizer = optimizer
        self.head_optimizers = {
            n: _make_optimizer(arg, head_params[n], f"head_optimizer of task {n!r}")
            for n, arg in per_task(head_optimizer, self.task_names, "head_optimizer").items()
        }
        self.shared_scheduler = _make_scheduler(lr_scheduler, self.shared_optimizer, "lr_scheduler")
        self.head_schedulers = {}
        if head_lr_scheduler is not None:
            self.head_schedulers = {
                n: _make_scheduler(arg, self.head_optimizers[n], f"head_lr_scheduler of task {n!r}")
                for n, arg in per_task(head_lr_scheduler, self.task_names, "head_lr_scheduler").items()
            }
        self.grad_clip = _clip_norm(grad_clip, "grad_clip")
        self.head_grad_clip = self.grad_clip if head_grad_clip is None else _clip_norm(head_grad_clip, "head_grad_clip")
        self.amp_enabled = check_bool(amp, "amp") and device.type == "cuda"
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.amp_enabled)
        self.shared_steps = 0
        self.head_steps = dict.fromkeys(self.task_names, 0)

        super().__init__(
            device=device,
            max_epochs=self.plan.max_epochs,
            data_loader=train_loader,
            epoch_length=self.plan.epoch_length,
            non_blocking=non_blocking,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            handlers=None,
            amp=self.amp_enabled,
            event_names=[MultiTaskEvents],
            decollate=False,
            amp_kwargs=amp_kwargs,
        )
        if self.total_iterations % self.plan.epoch_length:
            self.add_event_handler(Events.ITERATION_COMPLETED, self._stop_when_done)
        if train_handlers is not None:
            self._register_handlers(train_handlers)

    # -- run -----------------------------------------------------------------------------------
    def run(self) -> None:  # type: ignore[override]
        """Train up to ``total_iterations``; a run resumed (``CheckpointResume``) at its end does nothing."""
        # checked after every STARTED handler attached so far, CheckpointResume included
        if self.has_event_handler(self._skip_when_done, Events.STARTED):
            self.remove_event_handler(self._skip_when_done, Events.STARTED)
        self.add_event_handler(Events.STARTED, self._skip_when_done)
        # the scaler lives in the trainer (its state is checkpointed), not re-created per run as MONAI's Trainer does
        self.scaler = self.grad_scaler
        super(Trainer, self).run()

    def _skip_when_done(self, engine: MultiTaskTrainer) -> None:
        if engine.state.iteration >= self.total_iterations:
            logger.info("nothing to do: %d of %d iterations done", engine.state.iteration, self.total_iterations)
            engine.terminate()

    def _stop_when_done(self, engine: MultiTaskTrainer) -> None:
        if engine.state.iteration >= self.total_iterations:
            engine.terminate()

    # -- one iteration -------------------------------------------------------------------------
    def _activate(self, name: str) -> None:
        if self.offload_heads:
            self._move_head(name, self.state.device)

    def _deactivate(self, name: str) -> None:
        if self.offload_heads:
            self._move_head(name, self.offload_device)

    def _move_head(self, name: str, device: torch.device) -> None:
        move_head(self.network, name, device, self.head_optimizers[name])
        self.state.head_move = (name, device)
        self.fire_event(MultiTaskEvents.HEAD_MOVED)

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
            pred = self.inferer(images, self.network, task=name)
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
        broadcast_buffers(self.network.heads[name])  # e.g. a batch-standardising head's running statistics
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
            if self.shared_scheduler is not None:
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
            "shared_scheduler": None if self.shared_scheduler is None else self.shared_scheduler.state_dict(),
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
        if (state.get("shared_scheduler") is None) != (self.shared_scheduler is None) or set(
            state.get("head_schedulers") or {}
        ) != set(self.head_schedulers):
            raise WeightsError("checkpoint schedules differ from this run's (one has a schedule the other lacks)")
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
            if n in self.head_schedulers:
                self.head_schedulers[n].load_state_dict(state["head_schedulers"][n])
            if self.offload_heads:  # optimiser state loads onto the parameters' device: keep it off the GPU
                move_head(self.network, n, self.offload_device, self.head_optimizers[n])
        if self.shared_scheduler is not None:
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


def _clip_norm(value: Any, what: str) -> float | None:
    value = check_float(value, what, low=0.0, allow_none=True)
    return None if value is None or value == 0 else value
