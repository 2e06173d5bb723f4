"""Device resolution: ``"auto"`` / ``"cpu"`` / ``"cuda[:N]"`` to a ``torch.device``.

Under ``torchrun`` (``torch.distributed`` initialised through ``ignite.distributed``, or
``LOCAL_RANK`` set) a bare ``"cuda"`` or ``"auto"`` means this process's own GPU,
``cuda:<local rank>``, so one config serves one and many processes.

Example
-------
>>> resolve_device("cpu")
device(type='cpu')
>>> try:
...     resolve_device("tpu:7", what="train.device")
... except ValueError as err:
...     print(str(err).split(":")[0])
train.device 'tpu
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from medfound.errors import ConfigError

__all__ = ["resolve_device", "local_rank", "world_size", "rank", "broadcast_buffers"]


def world_size() -> int:
    """Number of processes of the run (1 without ``torch.distributed``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_world_size())
    return 1


def rank() -> int:
    """This process's global rank (0 without ``torch.distributed``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return 0


def local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK`` as ``torchrun`` sets it; 0 otherwise)."""
    try:
        import ignite.distributed as idist

        if idist.get_world_size() > 1:
            return int(idist.get_local_rank())
    except ImportError:  # pragma: no cover - ignite is a dependency
        pass
    return int(os.environ.get("LOCAL_RANK", 0))


def resolve_device(device: Any = "auto", what: str = "device") -> torch.device:
    """A ``torch.device`` from ``"auto"`` (CUDA when present), a name, or a device.

    Parameters
    ----------
    device : ``"auto"``, ``None`` (same as ``"auto"``), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    what : the option's name for error messages (e.g. ``"train.device"``).

    Raises
    ------
    ConfigError
        The name is not a device, or it asks for CUDA where there is none.
    """
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, torch.device):
        if not isinstance(device, str):
            raise ConfigError(f"{what} must be a device name such as 'cpu', 'cuda' or 'auto', got {device!r}")
        try:
            device = torch.device(device)
        except RuntimeError as err:
            raise ConfigError(f"{what} {device!r} is not a device: {err}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what} {str(device)!r} asks for CUDA, which is not available here")
        if device.index is None and (world_size() > 1 or "LOCAL_RANK" in os.environ):
            device = torch.device("cuda", local_rank())  # one GPU per process under torchrun
    elif device.type not in ("cpu", "mps", "meta"):
        raise ConfigError(f"{what} {str(device)!r} is not supported; use 'cpu', 'cuda', 'cuda:N' or 'auto'")
    return device


@torch.no_grad()
def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy ``src``'s buffers (e.g. BatchNorm running statistics) to every process.

    One flat broadcast per (device, dtype) instead of one per buffer.
    """
    if world_size() == 1:
        return
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for b in module.buffers():
        groups.setdefault((b.device, b.dtype), []).append(b)
    for buffers in groups.values():
        flat = torch.cat([b.reshape(-1) for b in buffers])
        dist.broadcast(flat, src=src)
        offset = 0
        for b in buffers:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()
