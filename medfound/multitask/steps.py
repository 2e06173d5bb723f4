"""What the multi-task trainer and evaluator share: parameter split, head offloading, loss, decoding.

The network is a UMedPT-like module: ``network.heads`` is a ``ModuleDict`` of task heads,
every other parameter is shared, and ``network(images, task=name)`` runs one task.

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

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from medfound.errors import ConfigError
from medfound.multitask.data import padded_size

__all__ = [
    "ensure_heads",
    "split_parameters",
    "move_optimizer_state",
    "move_head",
    "task_loss",
    "detach_output",
    "to_cpu_targets",
    "decollate_output",
    "collate_outputs",
]


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


def task_loss(
    kind: str, loss_fn: nn.Module, pred: Any, target: Any, images: torch.Tensor, size_divisor: int = 32
) -> torch.Tensor:
    """The task's normalised loss; detection gets the padded input size for its target assignment."""
    if kind == "detection":
        return loss_fn(pred, target, image_size=padded_size(images.shape[-2], images.shape[-1], size_divisor))
    return loss_fn(pred, target)


def detach_output(pred: Any) -> Any:
    """Detach a task output (tensor, or the detection dict of per-level lists)."""
    if torch.is_tensor(pred):
        return pred.detach()
    if isinstance(pred, Mapping):
        return {k: detach_output(v) for k, v in pred.items()}
    if isinstance(pred, Sequence) and not isinstance(pred, str):
        return [detach_output(v) for v in pred]
    return pred


def to_cpu_targets(kind: str, target: Any) -> Any:
    """Targets on the CPU, in the form the task's metric takes."""
    if kind == "detection":
        return [{"boxes": t["boxes"].detach().cpu(), "labels": t["labels"].detach().cpu()} for t in target]
    return target.detach().cpu()


def _item(value: Any, i: int) -> Any:
    if torch.is_tensor(value) and value.ndim > 0:
        return value[i]
    if isinstance(value, Mapping):
        return {k: _item(v, i) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # detection: per-level lists of batched maps, or per-image targets
        if value and all(torch.is_tensor(v) and v.ndim == 4 for v in value):
            return [v[i] for v in value]
        return value[i]
    return value


def decollate_output(
    output: Mapping[str, Any], batch_size: int, per_sample: Sequence[str] = ("pred", "label")
) -> list[dict]:
    """MONAI's decollated output: one dict per sample; ``per_sample`` keys are split, others replicated.

    So ``monai.handlers.from_engine(["loss"], first=True)`` (the usual ``output_transform``) works.
    """
    return [{k: (_item(v, i) if k in per_sample else v) for k, v in output.items()} for i in range(batch_size)]


def collate_outputs(output: Any) -> Mapping[str, Any]:
    """The inverse for metrics: a decollated list back to one dict with batched ``pred`` / ``label``."""
    if isinstance(output, Mapping):
        return output
    items = list(output)
    if not items:
        raise ConfigError("empty engine output")
    first = dict(items[0])
    for key in ("pred", "label"):
        values = [it[key] for it in items]
        if all(torch.is_tensor(v) for v in values):
            first[key] = torch.stack(values)
        elif all(isinstance(v, Mapping) and {"boxes", "labels"} <= set(v) for v in values):
            first[key] = values  # detection targets / decoded detections: one dict per image
        else:
            raise ConfigError(
                f"cannot collate the engine's {key!r} for a metric (raw detection outputs: "
                "use the evaluator, which decodes them)"
            )
    return first
