"""Helpers of the multitask tests: a tiny UMedPT and small in-memory tasks of every kind."""

from __future__ import annotations

import logging

import torch

TINY = dict(
    embed_dim=8,
    depths=(1, 1, 1, 1),
    num_heads=(1, 1, 2, 2),
    window_size=4,
    squeezer_channels=16,
    seg_hidden_channels=16,
    det_channels=16,
    det_num_convs=1,
    stochastic_depth_prob=0.0,
    head_dropout=0.0,
)


def tiny_umedpt(seed: int = 0, **kwargs):
    from medfound.networks.umedpt import UMedPT

    torch.manual_seed(seed)
    return UMedPT(**{**TINY, **kwargs})


def identity(x):
    return x


def _image(g: torch.Generator, side: int, value: float) -> torch.Tensor:
    img = torch.rand(1, side, side, generator=g) * 0.3
    img[:, side // 4 : side // 2, side // 4 : side // 2] += value
    return img.clamp(0, 1)


def memory_task(name: str, kind: str, n: int = 8, side: int = 32, seed: int = 0, n_val: int = 4, **extra) -> dict:
    """A task dict with ready tensors (identity transforms); labels depend on the image, so it is learnable."""
    g = torch.Generator().manual_seed(seed)

    def items(count: int) -> list[dict]:
        out = []
        for i in range(count):
            if kind == "classification":
                c = i % 2
                out.append({"image": _image(g, side, 0.6 * c), "label": c})
            elif kind == "multilabel":
                lab = [i % 2, (i // 2) % 2, 1 - i % 2]
                out.append({"image": _image(g, side, 0.3 * lab[0] + 0.3 * lab[1]), "label": lab})
            elif kind == "segmentation":
                img = torch.rand(1, side, side, generator=g) * 0.3
                lab = torch.zeros(1, side, side, dtype=torch.long)
                r = 4 + i % 6
                lab[:, r : r + side // 3, r : r + side // 3] = 1
                lab[:, side - 6 :, side - 6 :] = 2 if extra.get("three_classes") else 1
                img = img + 0.5 * (lab > 0)
                out.append({"image": img, "label": lab})
            else:
                img = torch.rand(1, side, side, generator=g) * 0.2
                x0 = 4 + 2 * (i % 5)
                box = [x0, 6, x0 + 12, 20]
                img[:, 6:20, x0 : x0 + 12] += 0.7
                out.append({"image": img, "box": [box], "label": [0]})
        return out

    classes = {
        "classification": ["neg", "pos"],
        "multilabel": ["a", "b", "c"],
        "segmentation": ["background", "fg", "edge"] if extra.get("three_classes") else ["background", "fg"],
        "detection": ["obj"],
    }[kind]
    task = {
        "name": name,
        "kind": kind,
        "class_names": classes,
        "training": items(n),
        "validation": items(n_val),
        "transforms": {"train": identity, "val": identity},
    }
    task.update({k: v for k, v in extra.items() if k != "three_classes"})
    return task


def four_tasks(n: int = 8, side: int = 32) -> list[dict]:
    return [
        memory_task("cls", "classification", n, side, 1),
        memory_task("seg", "segmentation", n, side, 2),
        memory_task("mlc", "multilabel", n, side, 3),
        memory_task("det", "detection", n, side, 4),
    ]


def adamw(lr: float = 1e-4, weight_decay: float = 0.05):
    """The default optimiser as a factory (what a ``"_mode_": "callable"`` config entry gives)."""
    import functools

    return functools.partial(torch.optim.AdamW, lr=lr, weight_decay=weight_decay)


def trainer_for(net, tasks, batch_size: int = 8, seed: int = 0, task_order: str = "fixed", optimizer=None,
                device: str = "cpu", **kwargs):
    """A MultiTaskTrainer of ready objects: task specs, their loader, an optimiser factory (AdamW 1e-4 by default)."""
    from medfound.multitask import CyclicTaskLoader, MultiTaskTrainer, load_tasks

    specs = load_tasks(tasks)
    loader = CyclicTaskLoader.from_tasks(specs, batch_size=batch_size, seed=seed, order=task_order)
    return MultiTaskTrainer(device, net, loader, specs, optimizer or adamw(), **kwargs)


def evaluator_for(net, tasks, batch_size: int = 8, max_batches_per_task=None, device: str = "cpu", **kwargs):
    """A MultiTaskEvaluator of ready objects: task specs and their validation loader."""
    from medfound.multitask import BalancedValidationLoader, MultiTaskEvaluator, load_tasks

    specs = load_tasks(tasks)
    loader = BalancedValidationLoader.from_tasks(specs, batch_size, max_batches_per_task)
    return MultiTaskEvaluator(device, net, loader, specs, **kwargs)


class LogCollector(logging.Handler):
    """Keeps the messages of the loggers it is added to (MONAI's StatsHandler loggers do not propagate)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
