"""The transfer protocol of the UMedPT paper: frozen-encoder probe and fine-tuning at data fractions.

For one target task and each encoder (a pre-trained UMedPT, the random-initialisation
baseline, optionally torchvision-format ImageNet Swin V2 weights), each mode and each
training-data fraction (1, 5, 10, 25, 50, 100 %), with ``repeats`` fixed seeds:

1. draw a **stratified** subset of the task's training data (every class keeps its share,
   at least one sample per class; multi-label: at least one positive per label; other kinds:
   a random subset of at least one sample); repeat ``r`` uses seed ``seed + r``, so every
   encoder and mode sees the same subsets;
2. train:

   - ``"linear"`` (frozen encoder): classification / multi-label: the embeddings
     (``UMedPT.forward_features``) of every image are extracted once per encoder without
     augmentation, standardised with the subset's statistics, and an L2-regularised
     (multinomial or per-label) logistic regression is fitted on the subset by full-batch
     L-BFGS; segmentation / detection: the shared blocks are frozen (eval mode) and the task
     head alone is trained with :class:`~medfound.multitask.trainer.MultiTaskTrainer`;
   - ``"finetune"``: a new head on a copy of the encoder's model, everything trained with
     :class:`~medfound.multitask.trainer.MultiTaskTrainer` (augmentation, AdamW, the head
     at ``head_lr_factor`` times the encoder's learning rate) for ``epochs`` passes over the
     subset (at least ``min_iterations`` iterations). Classification / multi-label heads
     start from the subset's linear probe by default (``head_init="linear_probe"``, LP-FT,
     Kumar et al., ICLR 2022): the head standardises the embedding with the subset's
     statistics and its linear layer is the probe's solution, so fine-tuning starts where
     the frozen probe ends instead of sending a random head's gradients into the encoder
     (``head_init="random"``: a plain, randomly initialised head);

3. score the result on the task's validation split (the held-out test data here; there is no
   model selection, the final weights count) with the task's metrics.

Results: ``transfer_results.json`` (every run and the summary), ``transfer_summary.csv``
(mean and standard deviation per encoder x mode x fraction) and ``transfer_plot.png``
(score against fraction, one line per encoder and mode).

Encoders are given as ``name -> source``: ``"random"``; a pre-training output folder (with
``model.pt`` and ``network.json``, see :func:`medfound.multitask.pretrain.pretrain`) or a
UMedPT ``model.pt``; ``"torchvision:PATH"`` for a torchvision Swin V2 state dict (ImageNet
weights; inputs then get ImageNet normalisation).

Example
-------
>>> import numpy as np
>>> idx = stratified_subset(np.array([0] * 90 + [1] * 10), fraction=5, seed=0, kind="classification")
>>> len(idx), int((np.array([0] * 90 + [1] * 10)[idx] == 1).sum())
(5, 1)
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medfound.errors import ConfigError, WeightsError
from medfound.multitask.checkpoint import load_checkpoint
from medfound.multitask.data import TaskDataset, collate_task_batch, prepare_task_batch, task_transforms
from medfound.multitask.evaluator import MultiTaskEvaluator
from medfound.multitask.tasks import TaskSpec, load_tasks
from medfound.multitask.trainer import MultiTaskTrainer, _as_device

__all__ = [
    "DEFAULT_FRACTIONS",
    "TRANSFER_MODES",
    "stratified_subset",
    "build_encoder_model",
    "extract_embeddings",
    "fit_linear_probe",
    "linear_probe_head",
    "run_transfer",
    "write_transfer_outputs",
    "plot_transfer",
]

logger = logging.getLogger(__name__)

#: training-data fractions of the paper's protocol, in percent
DEFAULT_FRACTIONS: tuple[float, ...] = (1, 5, 10, 25, 50, 100)
TRANSFER_MODES = ("linear", "finetune")
DEFAULT_LINEAR: dict[str, Any] = {"l2": 1e-3, "max_iter": 200}
DEFAULT_FINETUNE: dict[str, Any] = {
    "epochs": 20,
    "min_iterations": 25,
    "max_iterations": 5000,
    "batch_size": 16,
    "optimizer": {"name": "AdamW", "lr": 1e-4, "weight_decay": 0.05},
    "head_lr_factor": 10.0,
    "scheduler": "cosine",
    "grad_clip": 1.0,
    "head_init": "linear_probe",
}
HEAD_INITS = ("linear_probe", "random")


# ---------------------------------------------------------------------------------------------
# subsets


def _targets(items: Sequence[Mapping[str, Any]], kind: str) -> np.ndarray:
    if kind == "classification":
        return np.asarray([int(i["label"]) for i in items])
    if kind == "multilabel":
        return np.asarray([list(i["label"]) for i in items])
    return np.zeros(len(items))


def stratified_subset(labels: np.ndarray, fraction: float, seed: int, kind: str = "classification") -> np.ndarray:
    """Indices of a ``fraction`` % subset: classes keep their share, at least one sample per class.

    Classification: ``max(1, round(f * N_c))`` of each class ``c`` (unlabelled -1 samples
    are never drawn). Multi-label: one positive sample for each label that has positives,
    then random samples up to ``max(1, round(f * N))``. Other kinds: ``max(1, round(f * N))``
    random samples. The same ``seed`` gives the same subset.
    """
    if not 0 < float(fraction) <= 100:
        raise ConfigError(f"fraction must be in (0, 100] percent, got {fraction}")
    f = float(fraction) / 100.0
    rng = np.random.default_rng(int(seed))
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        raise ConfigError("no training samples to draw a subset from")
    if kind == "classification":
        chosen = []
        for c in np.unique(labels[labels >= 0]):
            members = np.nonzero(labels == c)[0]
            k = min(len(members), max(1, int(round(f * len(members)))))
            chosen.append(rng.choice(members, size=k, replace=False))
        return np.sort(np.concatenate(chosen))
    target = min(n, max(1, int(round(f * n))))
    if kind == "multilabel":
        chosen: set[int] = set()
        for j in rng.permutation(labels.shape[1]):
            positives = np.nonzero(labels[:, j] == 1)[0]
            if len(positives) and not any(int(p) in chosen for p in positives):
                chosen.add(int(rng.choice(positives)))
        rest = [int(i) for i in rng.permutation(n) if int(i) not in chosen]
        need = max(0, target - len(chosen))
        return np.sort(np.asarray(sorted(chosen) + rest[:need], dtype=np.int64))
    return np.sort(rng.choice(n, size=target, replace=False))


# ---------------------------------------------------------------------------------------------
# encoders


def _is_torchvision_swin(state: Mapping[str, Any]) -> bool:
    return any(k.startswith("features.") for k in state)


def build_encoder_model(
    source: str | os.PathLike, network: Mapping[str, Any] | None = None, seed: int = 0
) -> tuple[nn.Module, dict[str, Any]]:
    """A UMedPT without task heads for one encoder source; returns ``(model, umedpt_kwargs)``.

    ``source``: ``"random"`` (``network`` arguments, weights drawn with ``seed``); a
    pre-training folder (``model.pt`` + ``network.json``); a UMedPT state dict file; or
    ``"torchvision:PATH"`` (a torchvision Swin V2 state dict loaded into the encoder, with
    ImageNet input normalisation).
    """
    from medfound.networks.umedpt import UMedPT

    kwargs = dict(network or {})
    kwargs.pop("tasks", None)
    text = os.fspath(source)
    torch.manual_seed(int(seed))
    if text == "random":
        return UMedPT(**kwargs), kwargs
    if text.startswith("torchvision:"):
        path = text.split(":", 1)[1]
        if not os.path.isfile(path):
            raise WeightsError(f"torchvision weights {path} do not exist")
        kwargs.update(encoder_weights=path, input_normalization="imagenet")
        model = UMedPT(**kwargs)
        return model, {k: v for k, v in kwargs.items() if k != "encoder_weights"}
    path = Path(text)
    if path.is_dir():
        meta_path = path / "network.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            kwargs = {**dict(meta.get("umedpt") or {}), **{k: v for k, v in kwargs.items() if k == "head_dropout"}}
        path = path / "model.pt"
    state = load_checkpoint(path)
    if _is_torchvision_swin(state):
        return build_encoder_model(f"torchvision:{path}", kwargs, seed)
    shared = {k[len("shared.") :]: v for k, v in state.items() if k.startswith("shared.")}
    if not shared:
        raise WeightsError(f"{path} holds no UMedPT shared blocks (no 'shared.*' keys)")
    model = UMedPT(**kwargs)
    try:
        model.shared.load_state_dict(shared, strict=True)
    except RuntimeError as err:
        raise WeightsError(f"{path} does not fit a UMedPT built with {kwargs}: {err}") from None
    return model, kwargs


# ---------------------------------------------------------------------------------------------
# linear probe


@torch.no_grad()
def extract_embeddings(
    model: nn.Module, dataset: TaskDataset, kind: str, device: torch.device, batch_size: int = 32
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


# ---------------------------------------------------------------------------------------------
# one run


def _subset_spec(
    spec: TaskSpec, items: Sequence[Mapping[str, Any]], val_items: Sequence[Mapping[str, Any]]
) -> TaskSpec:
    sub = copy.copy(spec)
    sub.datalist = None
    sub.training = [dict(i) for i in items]
    sub.validation = [dict(i) for i in val_items]
    return sub


def _trained_score(
    model: nn.Module,
    spec: TaskSpec,
    train_items: Sequence[Mapping[str, Any]],
    val_items: Sequence[Mapping[str, Any]],
    frozen: bool,
    cfg: Mapping[str, Any],
    seed: int,
    device: torch.device,
    probe: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    sub = _subset_spec(spec, train_items, val_items)
    if probe is not None:
        linear_probe_head(model, sub, probe)
    batch_size = int(spec.batch_size or cfg["batch_size"])
    per_epoch = math.ceil(len(train_items) / min(batch_size, len(train_items)))
    iterations = int(min(cfg["max_iterations"], max(cfg["min_iterations"], cfg["epochs"] * per_epoch)))
    torch.manual_seed(seed)
    trainer = MultiTaskTrainer(
        device,
        model,
        [sub],
        max_iterations=iterations,
        batch_size=batch_size,
        seed=seed,
        optimizer=cfg["optimizer"],
        head_lr_factor=cfg["head_lr_factor"],
        scheduler=cfg["scheduler"],
        grad_clip=cfg["grad_clip"],
        frozen_shared=frozen,
        amp=bool(cfg.get("amp", True)),
    )
    trainer.run()
    evaluator = MultiTaskEvaluator(device, model, [sub], batch_size=batch_size, amp=trainer.amp_enabled)
    evaluator.run()
    prefix = f"{spec.name}/"
    return {k[len(prefix) :]: float(v) for k, v in evaluator.state.metrics.items() if k.startswith(prefix)}


def _summarise(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, float], list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["encoder"], r["mode"], float(r["fraction"])), []).append(r)
    rows = []
    for (enc, mode, frac), rs in groups.items():
        scores = np.asarray([r["score"] for r in rs], np.float64)
        valid = scores[~np.isnan(scores)]
        rows.append(
            {
                "encoder": enc,
                "mode": mode,
                "fraction": frac,
                "n_train": float(np.mean([r["n_train"] for r in rs])),
                "repeats": len(rs),
                "mean": float(valid.mean()) if valid.size else math.nan,
                "std": float(valid.std(ddof=1)) if valid.size > 1 else 0.0 if valid.size else math.nan,
            }
        )
    return rows


def run_transfer(
    task: TaskSpec | Mapping[str, Any] | str | os.PathLike,
    encoders: Mapping[str, str | os.PathLike],
    output_dir: str | os.PathLike,
    task_name: str | None = None,
    modes: Sequence[str] = TRANSFER_MODES,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    repeats: int = 3,
    seed: int = 0,
    network: Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    linear: Mapping[str, Any] | None = None,
    finetune: Mapping[str, Any] | None = None,
    note: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the transfer protocol and write the JSON, CSV and PNG outputs; returns the results dict.

    Parameters
    ----------
    task : a :class:`~medfound.multitask.tasks.TaskSpec`, a task dict, or a task file (then
        ``task_name`` picks the task; by default the one with role ``"transfer"``).
    encoders : name -> source (see the module docstring), e.g.
        ``{"umedpt": "runs/pretrain", "random": "random"}``.
    output_dir : where the outputs go.
    modes : ``"linear"`` and/or ``"finetune"``.
    fractions : training-data fractions in percent.
    repeats : seeds per fraction (``seed``, ``seed + 1``, ...).
    network : UMedPT arguments for encoders that do not carry their own (``"random"``,
        ``"torchvision:..."``); default: those of the first pre-trained encoder given.
    device : ``"auto"``, ``"cuda"``, ``"cpu"``.
    linear : ``{"l2", "max_iter"}`` of the logistic-regression probe.
    finetune : ``{"epochs", "min_iterations", "max_iterations", "batch_size", "optimizer",
        "head_lr_factor", "scheduler", "grad_clip", "amp", "head_init"}`` (also used to train
        the heads of frozen segmentation/detection probes). ``head_init``: ``"linear_probe"``
        (default; classification / multi-label heads start from the subset's probe, LP-FT) or
        ``"random"``.
    note : a remark carried into the JSON and the plot's title (e.g. ``"SYNTHETIC data"``).
    log : progress lines (default: the module logger).
    """
    emit = log or logger.info
    if isinstance(task, (str, os.PathLike)):
        names = [task_name] if task_name else None
        specs = load_tasks(task, roles=None if names else "transfer", names=names)
        if len(specs) != 1:
            raise ConfigError(f"{task}: name the target task (task_name); candidates: {[s.name for s in specs]}")
        spec = specs[0]
    else:
        spec = TaskSpec.from_dict(task)
    modes = list(modes)
    bad = [m for m in modes if m not in TRANSFER_MODES]
    if bad or not modes:
        raise ConfigError(f"modes must be among {TRANSFER_MODES}, got {list(modes)}")
    if not encoders:
        raise ConfigError("give at least one encoder")
    if int(repeats) < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    fractions = [float(f) for f in fractions]
    device = _as_device(device)
    lin_cfg = {**DEFAULT_LINEAR, **dict(linear or {})}
    ft_cfg = {**DEFAULT_FINETUNE, **dict(finetune or {})}
    if ft_cfg["head_init"] not in HEAD_INITS:
        raise ConfigError(f"finetune.head_init must be one of {HEAD_INITS}, got {ft_cfg['head_init']!r}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    train_items, val_items = spec.load_split("train"), spec.load_split("val")
    if not val_items:
        raise ConfigError(f"task {spec.name!r} has no validation items to score the transfer on")
    labels = _targets(train_items, spec.kind)
    subsets = {
        (f, r): stratified_subset(labels, f, seed + r, spec.kind) for f in fractions for r in range(int(repeats))
    }

    # UMedPT arguments for encoders without their own: the first pre-trained encoder's
    base_network = dict(network) if network is not None else None
    if base_network is None:
        for src in encoders.values():
            meta = Path(os.fspath(src)) / "network.json"
            if meta.is_file():
                base_network = dict(json.loads(meta.read_text()).get("umedpt") or {})
                break
    base_network = base_network or {}

    runs: list[dict[str, Any]] = []
    started = time.time()
    for enc_name, source in encoders.items():
        base_model, _ = build_encoder_model(source, base_network, seed)
        emit(
            f"encoder {enc_name!r} ({source}): {sum(p.numel() for p in base_model.parameters()) / 1e6:.2f} M parameters"
        )
        probe_feats = None
        lp_ft = "finetune" in modes and ft_cfg["head_init"] == "linear_probe"
        if ("linear" in modes or lp_ft) and spec.kind in ("classification", "multilabel"):
            plain = copy.copy(spec)
            plain.augment = False
            val_tf = task_transforms(plain, train=False, example_path=str(train_items[0]["image"]))
            tr_ds = TaskDataset(train_items, val_tf, spec.name)
            va_ds = TaskDataset(val_items, val_tf, spec.name)
            probe_feats = (
                extract_embeddings(base_model, tr_ds, spec.kind, device),
                extract_embeddings(base_model, va_ds, spec.kind, device),
            )
            all_train_y = torch.as_tensor(np.asarray(labels))
            val_batch = collate_task_batch(spec.kind)([va_ds[i] for i in range(len(va_ds))])
            val_y = val_batch["label"]
        for mode in modes:
            for f in fractions:
                for r in range(int(repeats)):
                    idx = subsets[(f, r)]
                    run_seed = seed + r
                    t0 = time.time()
                    if mode == "linear" and probe_feats is not None:
                        metric = spec.build_metric()
                        logits = fit_linear_probe(
                            probe_feats[0][idx],
                            all_train_y[idx],
                            probe_feats[1],
                            spec.kind,
                            spec.num_classes,
                            float(lin_cfg["l2"]),
                            int(lin_cfg["max_iter"]),
                        )
                        metric.update(logits, val_y)
                        values = metric.compute()
                    else:
                        probe = None
                        if mode == "finetune" and lp_ft and probe_feats is not None:
                            _, probe = fit_linear_probe(
                                probe_feats[0][idx],
                                all_train_y[idx],
                                probe_feats[1][:1],
                                spec.kind,
                                spec.num_classes,
                                float(lin_cfg["l2"]),
                                int(lin_cfg["max_iter"]),
                                return_params=True,
                            )
                        model = copy.deepcopy(base_model)
                        values = _trained_score(
                            model,
                            spec,
                            [train_items[i] for i in idx],
                            val_items,
                            frozen=mode == "linear",
                            cfg=ft_cfg,
                            seed=run_seed,
                            device=device,
                            probe=probe,
                        )
                        del model
                    row = {
                        "encoder": enc_name,
                        "mode": mode,
                        "fraction": f,
                        "repeat": r,
                        "seed": run_seed,
                        "n_train": len(idx),
                        "score": float(values["score"]),
                        "seconds": round(time.time() - t0, 2),
                        "metrics": {k: float(v) for k, v in values.items()},
                    }
                    runs.append(row)
                    emit(
                        f"  {enc_name:>10} {mode:>8} {f:>5g}% (n={len(idx):>4}) repeat {r}: "
                        f"{spec.primary_metric} {row['score']:.3f}"
                    )
    result = {
        "task": spec.name,
        "kind": spec.kind,
        "metric": spec.primary_metric,
        "class_names": spec.class_names,
        "encoders": {k: os.fspath(v) for k, v in encoders.items()},
        "modes": modes,
        "fractions": fractions,
        "repeats": int(repeats),
        "seed": int(seed),
        "n_train_total": len(train_items),
        "n_test": len(val_items),
        "linear": lin_cfg,
        "finetune": ft_cfg,
        "device": str(device),
        "seconds": round(time.time() - started, 1),
        "note": note,
        "runs": runs,
        "summary": _summarise(runs),
    }
    result["files"] = write_transfer_outputs(result, out)
    return result


# ---------------------------------------------------------------------------------------------
# outputs


def write_transfer_outputs(result: Mapping[str, Any], output_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``transfer_results.json``, ``transfer_summary.csv`` and ``transfer_plot.png``; return their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "json": str(out / "transfer_results.json"),
        "csv": str(out / "transfer_summary.csv"),
        "plot": str(out / "transfer_plot.png"),
    }
    payload = {k: v for k, v in result.items() if k != "files"}
    payload["files"] = files
    Path(files["json"]).write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    with open(files["csv"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["task", "metric", "encoder", "mode", "fraction_percent", "n_train", "repeats", "mean", "std"])
        for row in result["summary"]:
            writer.writerow(
                [
                    result["task"],
                    result["metric"],
                    row["encoder"],
                    row["mode"],
                    f"{row['fraction']:g}",
                    f"{row['n_train']:g}",
                    row["repeats"],
                    f"{row['mean']:.6f}",
                    f"{row['std']:.6f}",
                ]
            )
    plot_transfer(result, files["plot"])
    return files


def plot_transfer(result: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Score against training-data fraction (log axis), one line per encoder and mode, ± one std."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    styles = {"linear": "--", "finetune": "-"}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    encoders = list(dict.fromkeys(r["encoder"] for r in result["summary"]))
    for i, enc in enumerate(encoders):
        for mode in dict.fromkeys(r["mode"] for r in result["summary"]):
            rows = sorted(
                (r for r in result["summary"] if r["encoder"] == enc and r["mode"] == mode), key=lambda r: r["fraction"]
            )
            if not rows:
                continue
            x = np.asarray([r["fraction"] for r in rows])
            y = np.asarray([r["mean"] for r in rows])
            s = np.asarray([r["std"] for r in rows])
            colour = colours[i % len(colours)]
            ax.plot(x, y, styles.get(mode, ":"), marker="o", color=colour, label=f"{enc} ({mode})")
            ax.fill_between(x, y - s, y + s, color=colour, alpha=0.12)
    ax.set_xscale("log")
    fractions = sorted({r["fraction"] for r in result["summary"]})
    ax.set_xticks(fractions)
    ax.set_xticklabels([f"{f:g}" for f in fractions])
    ax.set_xlabel("training data used (%)")
    ax.set_ylabel(result["metric"])
    title = f"transfer to {result['task']}"
    ax.set_title(title + (f"\n({result['note']})" if result.get("note") else ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)
