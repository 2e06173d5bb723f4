"""DAC under torch DDP, launched by ``torchrun`` (one process per GPU, or per CPU slot with gloo).

What synchronises what:

- **Gradients.** Everything of a DAC step that carries gradients, both sub-models'
  ``forward_features`` on ``[labelled; strong view]`` and the training heads (projectors,
  mixed-region head, rotation head), is one module call,
  :class:`medfound.dac.trainer.TrainingForward`, and that module is what
  :func:`wrap_training_forward` hands to ``torch.nn.parallel.DistributedDataParallel``. DDP
  then averages every parameter's gradient (A, B and the heads) in buckets while the
  backward pass runs. Wrapping the :class:`~medfound.dac.model.DACModel` itself would not do:
  the step calls ``model_a.forward_features`` and the heads directly, past ``DDP.forward``,
  and DDP's reducer only acts on a backward that follows a call of its own ``forward``.
  The weak view (pseudo labels, feature targets) runs without gradients and needs no
  synchronisation. The alternative, one explicit flat all-reduce of all gradients after
  the backward pass (what :mod:`medfound.multitask.distributed` does, because a multi-task
  step uses a different subset of parameters per task), cannot overlap communication with
  the backward pass; ``examples/benchmarks/dac_ddp.py`` measures the two on the same step.
- **Buffers** (BatchNorm running statistics, which the weak and the strong views update on
  every rank from its own images): rank 0's are broadcast to all ranks after every
  optimiser step (:func:`broadcast_buffers`, one coalesced broadcast per dtype), DDP's own
  rule (``broadcast_buffers``, rank 0 wins) moved to the end of the iteration, so that every
  rank holds identical weights and buffers after each step, and so does every checkpoint.
  ``sync_batchnorm`` (:func:`convert_sync_batchnorm`) computes the batch statistics over the
  global batch instead (torch's ``SyncBatchNorm`` runs on GPUs only).
- **Data.** :class:`medfound.dac.data.CoTrainingLoader` gives rank ``r`` of ``W`` the
  ``r``-th slice of each global batch (``W`` x the per-rank batch size), drawn from the same
  seeded streams as a single process, so a resumed run continues with the same batches.
- **Random views.** Rank 0 draws the step's augmentation from ``(seed, "step", t)`` as a
  single process does; rank ``r > 0`` from ``(seed, "step", t, "rank", r)``, so ranks do not
  repeat each other's CutMix boxes and rotations.
- **Files and logs.** Only rank 0 writes (checkpoint saver ``rank0_only``; the bundle's
  ``multi_gpu_train.json`` disables the writing handlers elsewhere and
  :func:`quiet_other_ranks` lowers the other ranks' log level).

Example
-------
>>> import torch
>>> m = torch.nn.BatchNorm2d(2)
>>> broadcast_buffers(m)  # one process: nothing to do
>>> init_distributed.__name__, world_size()
('init_distributed', 1)
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from medfound.errors import ConfigError
from medfound.utils import resolve_device, world_size
from medfound.utils.devices import broadcast_buffers, rank  # broadcast_buffers: shared with the multi-task trainer

#: the arguments this torch's DistributedDataParallel takes
_DDP_ARGUMENTS = frozenset(inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters)

__all__ = [
    "init_distributed",
    "wrap_training_forward",
    "broadcast_buffers",
    "convert_sync_batchnorm",
    "quiet_other_ranks",
    "barrier",
]


def init_distributed(backend: str | None = None) -> bool:
    """Initialise the default process group from ``torchrun``'s environment, once.

    Parameters
    ----------
    backend : ``"nccl"``, ``"gloo"``, or ``None`` (NCCL when CUDA is available, gloo otherwise).

    Returns
    -------
    bool
        Whether the run is distributed (more than one process).
    """
    if not dist.is_available():
        raise ConfigError("torch.distributed is not available in this torch build")
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend=backend)
    return world_size() > 1


def barrier() -> None:
    """Wait for every process (no-op in one process)."""
    if world_size() > 1:
        dist.barrier()


def wrap_training_forward(module: nn.Module, device: torch.device | str,
                          ddp_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """``module`` in ``DistributedDataParallel`` when the run is distributed, else ``module``.

    Parameters
    ----------
    module : the step's gradient-carrying forward (:class:`medfound.dac.trainer.TrainingForward`).
    device : its device (``device_ids`` for CUDA).
    ddp_kwargs : further DDP arguments; defaults ``forward_sync_buffers=False``
        (``broadcast_buffers=False`` before torch 2.13: buffers are broadcast after each step
        instead, :func:`broadcast_buffers`) and
        ``gradient_as_bucket_view=True`` (no second copy of the gradients).
    """
    if world_size() == 1:
        return module
    device = resolve_device(device, what="DDP device")
    # torch >= 2.13 names the switch forward_sync_buffers (broadcast_buffers is deprecated there)
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in _DDP_ARGUMENTS else "broadcast_buffers"
    kwargs: dict[str, Any] = {no_sync: False, "gradient_as_bucket_view": True, **dict(ddp_kwargs or {})}
    if device.type == "cuda":
        kwargs.setdefault("device_ids", [device.index if device.index is not None else torch.cuda.current_device()])
    return nn.parallel.DistributedDataParallel(module, **kwargs)


def convert_sync_batchnorm(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Replace every BatchNorm of ``module`` by ``torch.nn.SyncBatchNorm`` (in place; same parameters).

    Batch statistics are then computed over the global batch of all ranks. torch runs
    ``SyncBatchNorm`` on GPUs only: on the CPU, in a distributed run, it is an error.
    """
    if not enabled:
        return module
    params = [p for p in module.parameters()]
    if world_size() > 1 and params and params[0].device.type == "cpu":
        raise ConfigError("sync_batchnorm needs CUDA devices (torch's SyncBatchNorm does not run on the CPU); "
                          "set sync_batchnorm to false")
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def quiet_other_ranks(level: int = logging.WARNING) -> None:
    """On ranks other than 0, log only ``level`` and above (rank 0 speaks for the run)."""
    if rank() > 0:
        for name in ("", "medfound", "monai", "ignite"):
            logging.getLogger(name).setLevel(level)
