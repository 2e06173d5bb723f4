"""The frozen-encoder linear probe of the transfer protocol, and LP-FT's head initialisation.

For classification and multi-label tasks the embeddings (``UMedPT.forward_features``) of every
image are extracted once per encoder without augmentation (:func:`probe_features`),
standardised with the subset's statistics, and an L2-regularised (multinomial or per-label)
logistic regression is fitted on the subset by full-batch L-BFGS (:func:`fit_linear_probe`).
:func:`linear_probe_head` turns a fitted probe into the task's head, so fine-tuning starts where
the probe ends (LP-FT, Kumar et al., ICLR 2022).

Example
-------
>>> import torch
>>> x = torch.tensor([[0.0], [1.0], [2.0], [3.0]]); y = torch.tensor([0, 0, 1, 1])
>>> fit_linear_probe(x, y, torch.tensor([[0.5], [2.5]]), "classification", 2).argmax(1).tolist()
[0, 1]
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import Dataset

from medfound.errors import ConfigError
from medfound.multitask.batches import collate_task_batch, prepare_task_batch
from medfound.multitask.datasets import TaskDataset
from medfound.multitask.task_transforms import task_transforms
from medfound.multitask.tasks import TaskSpec
from medfound.multitask.transfer.subsets import task_targets

__all__ = ["PROBE_KINDS", "ProbeFeatures", "probe_features", "extract_embeddings", "fit_linear_probe",
           "linear_probe_head"]

#: task kinds whose probe is a logistic regression on the embeddings (others: a frozen-encoder head)
PROBE_KINDS = ("classification", "multilabel")


class ProbeFeatures(NamedTuple):
    """One encoder's embeddings of a task's training and test images, and their labels."""

    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor


def probe_features(
    model: nn.Module,
    spec: TaskSpec,
    train_items: Sequence[Mapping[str, Any]],
    test_items: Sequence[Mapping[str, Any]],
    device: torch.device,
) -> ProbeFeatures:
    """Embeddings of every training and test item through the task's validation transforms
    (no augmentation), with the labels (classification / multi-label tasks)."""
    if spec.kind not in PROBE_KINDS:
        raise ConfigError(f"the linear probe on embeddings is for {PROBE_KINDS} tasks, not {spec.kind}")
    plain = copy.copy(spec)
    plain.augment = False
    transform = task_transforms(plain, train=False, example_path=str(train_items[0]["image"]))
    train_ds = TaskDataset(train_items, transform, spec.name)
    test_ds = TaskDataset(test_items, transform, spec.name)
    return ProbeFeatures(
        extract_embeddings(model, train_ds, spec.kind, device),
        torch.as_tensor(task_targets(train_items, spec.kind)),
        extract_embeddings(model, test_ds, spec.kind, device),
        collate_task_batch(spec.kind)([test_ds[i] for i in range(len(test_ds))])["label"],
    )


@torch.no_grad()
def extract_embeddings(
    model: nn.Module, dataset: Dataset, kind: str, device: torch.device, batch_size: int = 32
) -> torch.Tensor:
    """``model.forward_features`` of every item (eval mode, no augmentation): ``(N, D)`` float64 on the CPU."""
    model.eval().to(device)
    collate = collate_task_batch(kind)
    feats = []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
        images, _ = prepare_task_batch(kind, batch, device)
        feats.append(model.forward_features(images).double().cpu())
    return torch.cat(feats)


def fit_linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    kind: str,
    num_classes: int,
    l2: float = 1e-3,
    max_iter: int = 200,
    return_params: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Fit an L2-regularised logistic regression by full-batch L-BFGS; return the test logits.

    Features are standardised with the training statistics. ``classification``: multinomial
    (softmax) on class indices; ``multilabel``: one sigmoid per label on 0/1 targets (-1 =
    unknown, left out). The objective is the mean log-loss plus ``l2 / 2 * ||W||^2``.
    ``return_params`` also returns the fitted ``weight``, ``bias``, ``mean`` and ``std``.
    """
    x = train_x.double()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    x = (x - mean) / std
    tx = (test_x.double() - mean) / std
    d = x.shape[1]
    w = torch.zeros(d, num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    if kind == "classification":
        y = train_y.long()

        def data_loss() -> torch.Tensor:
            return torch.nn.functional.cross_entropy(x @ w + b, y)
    elif kind == "multilabel":
        y = train_y.double()
        known = y >= 0

        def data_loss() -> torch.Tensor:
            per = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y.clamp_min(0), reduction="none")
            return (per * known).sum() / known.sum().clamp_min(1)
    else:
        raise ConfigError(f"the linear probe on embeddings is for classification and multilabel tasks, not {kind}")
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=int(max_iter),
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = data_loss() + 0.5 * float(l2) * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        logits = (tx @ w + b).float()
    if return_params:  # weights on the standardised features, and the standardisation
        return logits, {"weight": w.detach(), "bias": b.detach(), "mean": mean, "std": std}
    return logits


def linear_probe_head(
    model: nn.Module, spec: TaskSpec, params: Mapping[str, torch.Tensor], dropout: float | None = None
) -> nn.Module:
    """Add ``spec``'s classification / multi-label head to ``model``, initialised from a linear probe.

    ``params`` are :func:`fit_linear_probe`'s (``return_params=True``): the head gets
    ``standardize=True`` with the probe's feature mean and std as buffers and the probe's
    weights, so before any training it outputs exactly the probe's logits (up to float32).
    An existing head of that name is replaced.

    Example
    -------
    >>> import torch
    >>> from medfound.networks.umedpt import UMedPT
    >>> from medfound.multitask.tasks import TaskSpec
    >>> net = UMedPT(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
    ...              squeezer_channels=16, det_channels=8, seg_hidden_channels=8)
    >>> spec = TaskSpec.from_dict({"name": "t", "kind": "classification", "class_names": ["a", "b"],
    ...                            "training": [{"image": "x.png", "label": 0}]})
    >>> params = {"weight": torch.zeros(16, 2), "bias": torch.tensor([0.0, 1.0]),
    ...           "mean": torch.zeros(16), "std": torch.ones(16)}
    >>> head = linear_probe_head(net, spec, params)
    >>> net.eval()(torch.rand(1, 3, 32, 32), task="t").argmax(1).item()  # the bias decides here
    1
    """
    if spec.kind not in ("classification", "multilabel"):
        raise ConfigError(f"task {spec.name!r}: a linear-probe head is for classification/multilabel, not {spec.kind}")
    cfg = {**spec.head_config(), "standardize": True}
    if dropout is not None:
        cfg["dropout"] = float(dropout)
    if cfg["name"] in model.heads:
        model.remove_task(cfg["name"])
    head = model.add_task(cfg.pop("name"), cfg.pop("kind"), cfg.pop("num_classes"), **cfg)
    with torch.no_grad():
        head.input_mean.copy_(params["mean"])
        head.input_std.copy_(params["std"])
        head.fc.weight.copy_(params["weight"].t())
        head.fc.bias.copy_(params["bias"])
    return head
