"""Gradient and parameter synchronisation for multi-task training with ``ignite.distributed``.

Multi-task iterations use different parts of the model (one head, and only the shared
decoders that task needs), and inactive heads may sit on the CPU. DDP's per-backward
bucketed hooks and its unused-parameter bookkeeping fit that badly, so the trainer does
what DDP with ``no_sync()`` would do, explicitly: nothing is communicated while gradients
accumulate; on an update step the accumulated gradients of the shared blocks are averaged
over processes in a few large flat all-reduces; a head's gradients are averaged right after
its task's backward (each head is small and steps on its own). Every process runs the same
task at the same step (the task order depends only on the seed), so all take part in each
reduction. Parameters start equal: :func:`broadcast_module` copies rank 0's.

Example
-------
>>> import torch
>>> p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.full((3,), 2.0)
>>> all_reduce_gradients([p])  # one process: unchanged
>>> p.grad.tolist()
[2.0, 2.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Iterable

import ignite.distributed as idist
import torch
from torch import nn

from medfound.utils.devices import world_size

__all__ = ["all_reduce_gradients", "broadcast_module"]

#: the largest flat buffer of one all-reduce (in elements)
BUCKET_ELEMENTS = 25 * 1024 * 1024 // 4


def all_reduce_gradients(params: Iterable[nn.Parameter], average: bool = True) -> None:
    """Sum (and average) the ``.grad`` of ``params`` over processes, in flat buckets.

    Parameters whose ``.grad`` is ``None`` are skipped: every process must have the same
    set (true when all run the same task sequence).
    """
    n = world_size()
    if n == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    buckets: dict[tuple[torch.device, torch.dtype], list[list[torch.Tensor]]] = {}
    for g in grads:
        groups = buckets.setdefault((g.device, g.dtype), [[]])
        if sum(t.numel() for t in groups[-1]) + g.numel() > BUCKET_ELEMENTS and groups[-1]:
            groups.append([])
        groups[-1].append(g)
    for groups in buckets.values():
        for group in groups:
            flat = torch.cat([g.reshape(-1) for g in group])
            flat = idist.all_reduce(flat)
            if average:
                flat.div_(n)
            offset = 0
            for g in group:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy ``src``'s parameters and buffers to every process (what DDP does at construction)."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            t.copy_(idist.broadcast(t.detach().clone(), src=src))
