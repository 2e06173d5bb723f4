"""Task heads during multi-task training: add missing heads, split shared from head parameters, offload heads.

The network is a UMedPT-like module: ``network.heads`` is a ``ModuleDict`` of task heads,
every other parameter is shared, and ``network(images, task=name)`` runs one task. With
``offload_heads`` a head and its optimiser state live on the CPU except while its task runs
(:func:`move_head`), so the device holds one head at a time.

Example
-------
>>> import torch
>>> from torch import nn
>>> net = nn.Module(); net.body = nn.Linear(2, 2); net.heads = nn.ModuleDict({"a": nn.Linear(2, 1)})
>>> shared, heads = split_parameters(net)
>>> len(shared), {k: len(v) for k, v in heads.items()}
(2, {'a': 2})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medfound.errors import ConfigError

__all__ = ["ensure_heads", "split_parameters", "move_optimizer_state", "move_head"]


def ensure_heads(network: nn.Module, specs: Sequence[Any]) -> None:
    """Give ``network`` a head for every task spec that lacks one (``network.add_task``); check kinds."""
    for spec in specs:
        if spec.name not in network.heads:
            if not hasattr(network, "add_task"):
                raise ConfigError(f"network has no head for task {spec.name!r} and no add_task()")
            cfg = spec.head_config()
            network.add_task(cfg.pop("name"), cfg.pop("kind"), cfg.pop("num_classes"), **cfg)
        kinds = getattr(network, "task_kinds", {})
        if spec.name in kinds and kinds[spec.name] != spec.kind:
            raise ConfigError(f"task {spec.name!r} is {spec.kind}, the network's head is for {kinds[spec.name]}")


def split_parameters(network: nn.Module) -> tuple[list[nn.Parameter], dict[str, list[nn.Parameter]]]:
    """``(shared parameters, {task: head parameters})`` of a network with a ``heads`` ModuleDict."""
    heads = getattr(network, "heads", None)
    if not isinstance(heads, nn.ModuleDict):
        raise ConfigError(f"{type(network).__name__} has no 'heads' ModuleDict: not a multi-task network")
    head_params = {name: list(head.parameters()) for name, head in heads.items()}
    in_heads = {id(p) for ps in head_params.values() for p in ps}
    shared = [p for p in network.parameters() if id(p) not in in_heads]
    return shared, head_params


def move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device | str) -> None:
    """Move every tensor of an optimiser's per-parameter state (moments, step counts) to ``device``."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and value.device != torch.device(device):
                # Adam keeps 'step' on the CPU unless capturable/fused: leave scalar steps where they are
                if key == "step" and value.ndim == 0 and value.device.type == "cpu":
                    continue
                state[key] = value.to(device, non_blocking=True)


def move_head(
    network: nn.Module, name: str, device: torch.device | str, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Move one task's head (and its optimiser state) to ``device``; parameters keep their identity."""
    head = network.heads[name]
    first = next(head.parameters(), None)
    if first is not None and first.device != torch.device(device):
        head.to(device)
    if optimizer is not None:
        move_optimizer_state(optimizer, device)
