"""The transfer protocol of the UMedPT paper: frozen-encoder probe and fine-tuning at data fractions.

For one target task and each encoder (a pre-trained UMedPT, the random-initialisation
baseline, optionally torchvision-format ImageNet Swin V2 weights), each mode and each
training-data fraction (1, 5, 10, 25, 50, 100 %), with ``repeats`` fixed seeds:

1. draw a **stratified** subset of the task's training data
   (:func:`~medfound.multitask.transfer.subsets.stratified_subset`); repeat ``r`` uses seed
   ``seed + r``, so every encoder and mode sees the same subsets;
2. train:

   - ``"linear"`` (frozen encoder): classification / multi-label: a logistic regression on the
     embeddings (:mod:`~medfound.multitask.transfer.linear_probe`); segmentation / detection:
     the shared blocks are frozen and the task head alone is trained
     (:func:`~medfound.multitask.transfer.finetune.train_and_score` with ``frozen``);
   - ``"finetune"``: a new head on a copy of the encoder's model, everything trained
     (:mod:`~medfound.multitask.transfer.finetune`). Classification / multi-label heads start
     from the subset's linear probe by default (``head_init="linear_probe"``, LP-FT, Kumar et
     al., ICLR 2022): the head standardises the embedding with the subset's statistics and its
     linear layer is the probe's solution, so fine-tuning starts where the frozen probe ends
     instead of sending a random head's gradients into the encoder (``head_init="random"``: a
     plain, randomly initialised head);

3. score the result on the task's validation split (the held-out test data) with the task's metrics.

Results (:mod:`~medfound.multitask.transfer.results`): ``transfer_results.json`` (every run and
the summary), ``transfer_summary.csv`` (mean and standard deviation per encoder x mode x
fraction) and ``transfer_plot.png``. :func:`transfer_config` composes the protocol as a MONAI
bundle config and :func:`run_transfer_config` writes it as ``transfer.json`` and runs it (what
``medfound transfer`` does).

Encoders are given as ``name -> source``: ``"random"``; a pre-training output folder (with
``model.pt`` and ``network.json``, see :func:`medfound.multitask.pretrain.pretrain`) or a
UMedPT ``model.pt``; ``"torchvision:PATH"`` for a torchvision Swin V2 state dict (ImageNet
weights; inputs then get ImageNet normalisation).

Example
-------
>>> cfg = transfer_config("tasks.json", {"umedpt": "runs/pretrain", "random": "random"}, "runs/transfer")
>>> cfg["transfer"]["_target_"], cfg["transfer"]["fractions"]
('medfound.multitask.transfer.run_transfer', [1.0, 5.0, 10.0, 25.0, 50.0, 100.0])
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from torch import nn

from medfound.errors import ConfigError
from medfound.multitask.tasks import TaskSpec, load_tasks
from medfound.multitask.transfer.encoders import build_encoder_model, encoder_network_args
from medfound.multitask.transfer.finetune import check_finetune_options, train_and_score
from medfound.multitask.transfer.linear_probe import PROBE_KINDS, ProbeFeatures, fit_linear_probe, probe_features
from medfound.multitask.transfer.results import baseline_reached, data_label, summarise_runs, write_transfer_outputs
from medfound.multitask.transfer.subsets import stratified_subset, task_targets
from medfound.utils import atomic_write_json, check_choice, check_float, check_int, check_mapping, resolve_device

__all__ = [
    "DEFAULT_FRACTIONS",
    "TRANSFER_MODES",
    "DEFAULT_LINEAR",
    "select_target_task",
    "run_transfer",
    "transfer_config",
    "run_transfer_config",
]

logger = logging.getLogger(__name__)

#: training-data fractions of the paper's protocol, in percent
DEFAULT_FRACTIONS: tuple[float, ...] = (1, 5, 10, 25, 50, 100)
TRANSFER_MODES = ("linear", "finetune")
#: options of the logistic-regression probe
DEFAULT_LINEAR: dict[str, Any] = {"l2": 1e-3, "max_iter": 200}


def select_target_task(task: TaskSpec | Mapping[str, Any] | str | os.PathLike, name: str | None = None) -> TaskSpec:
    """The target task: a spec, a task dict, or the task ``name`` of a task file (default: the one
    with role ``"transfer"``)."""
    if isinstance(task, TaskSpec):
        return task
    if isinstance(task, (str, os.PathLike)):
        specs = load_tasks(task, roles=None if name else "transfer", names=[name] if name else None)
        if len(specs) != 1:
            raise ConfigError(f"{task}: name the target task (task_name); candidates: {[s.name for s in specs]}")
        return specs[0]
    return TaskSpec.from_dict(task)


def _check_options(modes: Sequence[str], fractions: Sequence[float], repeats: int, seed: int,
                   linear: Mapping[str, Any] | None) -> tuple[list[str], list[float], int, int, dict[str, Any]]:
    modes = list(modes) if isinstance(modes, (list, tuple)) else [modes]
    if not modes:
        raise ConfigError(f"modes must be among {TRANSFER_MODES}, got none")
    modes = [check_choice(m, TRANSFER_MODES, "modes") for m in modes]
    fractions = [check_float(f, "fractions (percent)", low=0.0, high=100.0, low_open=True) for f in fractions]
    if not fractions:
        raise ConfigError("give at least one training-data fraction")
    lin = {**DEFAULT_LINEAR, **check_mapping(linear or {}, "linear", known=DEFAULT_LINEAR)}
    lin = {"l2": check_float(lin["l2"], "linear.l2", low=0.0), "max_iter": check_int(lin["max_iter"], "linear.max_iter",
                                                                                      low=1)}
    return modes, fractions, check_int(repeats, "repeats", low=1), check_int(seed, "seed", low=0), lin


def _run_row(encoder: str, mode: str, fraction: float, repeat: int, seed: int, n_train: int,
             values: Mapping[str, float], started: float) -> dict[str, Any]:
    return {
        "encoder": encoder,
        "mode": mode,
        "fraction": fraction,
        "repeat": repeat,
        "seed": seed,
        "n_train": n_train,
        "score": float(values["score"]),
        "seconds": round(time.time() - started, 2),
        "metrics": {k: float(v) for k, v in values.items()},
    }


def _probe_scores(spec: TaskSpec, feats: ProbeFeatures, idx: np.ndarray, lin: Mapping[str, Any]) -> dict[str, float]:
    """The linear probe on the subset ``idx``, scored on the test embeddings."""
    logits = fit_linear_probe(feats.train[idx], feats.train_labels[idx], feats.test, spec.kind, spec.num_classes,
                              float(lin["l2"]), int(lin["max_iter"]))
    metric = spec.build_metric()
    metric.update(logits, feats.test_labels)
    return metric.compute()


def _probe_params(spec: TaskSpec, feats: ProbeFeatures, idx: np.ndarray, lin: Mapping[str, Any]) -> dict:
    """The subset's probe weights and standardisation (LP-FT's head initialisation)."""
    _, params = fit_linear_probe(feats.train[idx], feats.train_labels[idx], feats.test[:1], spec.kind,
                                 spec.num_classes, float(lin["l2"]), int(lin["max_iter"]), return_params=True)
    return params


class _RunClock:
    """Progress of the protocol's runs for its log lines: runs done of all, time spent, time left
    (the mean time per run so far times the runs left; the runs of a long protocol are its
    progress bar, as ignite's ``ProgressBar`` is that of one training run)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = int(total), 0, time.time()

    @staticmethod
    def _clock(seconds: float) -> str:
        seconds = int(round(seconds))
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    def tick(self) -> str:
        """Count one run done; ``"[done/total, H:MM:SS elapsed, ETA H:MM:SS]"``."""
        self.done += 1
        elapsed = time.time() - self.started
        left = elapsed / self.done * max(0, self.total - self.done)
        return f"[{self.done}/{self.total}, {self._clock(elapsed)} elapsed, ETA {self._clock(left)}]"


def _encoder_runs(name: str, base_model: nn.Module, spec: TaskSpec, train_items: list, test_items: list,
                  subsets: Mapping[tuple[float, int], np.ndarray], modes: Sequence[str], fractions: Sequence[float],
                  repeats: int, seed: int, lin: Mapping[str, Any], ft: Mapping[str, Any],
                  device: torch.device, clock: _RunClock | None = None) -> list[dict[str, Any]]:
    """Every mode x fraction x repeat of one encoder."""
    lp_ft = "finetune" in modes and ft["head_init"] == "linear_probe"
    feats = None
    if ("linear" in modes or lp_ft) and spec.kind in PROBE_KINDS:
        feats = probe_features(base_model, spec, train_items, test_items, device)
    rows = []
    for mode in modes:
        for f in fractions:
            for r in range(repeats):
                idx, started = subsets[(f, r)], time.time()
                if mode == "linear" and feats is not None:
                    values = _probe_scores(spec, feats, idx, lin)
                else:
                    lp_ft_run = mode == "finetune" and lp_ft and feats is not None
                    probe = _probe_params(spec, feats, idx, lin) if lp_ft_run else None
                    values = train_and_score(copy.deepcopy(base_model), spec, [train_items[i] for i in idx],
                                             test_items, ft, seed + r, device, frozen=mode == "linear", probe=probe)
                rows.append(_run_row(name, mode, f, r, seed + r, len(idx), values, started))
                logger.info("  %10s %8s %5g%% (n=%4d) repeat %d: %s %.3f  %s", name, mode, f, len(idx), r,
                            spec.primary_metric, rows[-1]["score"], clock.tick() if clock is not None else "")
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
    min_per_class: int = 1,
    baseline: str | None = "random",
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
    linear : ``{"l2", "max_iter"}`` of the logistic-regression probe (:data:`DEFAULT_LINEAR`).
    finetune : fine-tuning options (:data:`~medfound.multitask.transfer.finetune.DEFAULT_FINETUNE`:
        ``epochs``, ``min_iterations``, ``max_iterations``, ``batch_size``, ``optimizer``,
        ``head_lr_factor``, ``scheduler``, ``grad_clip``, ``amp``, ``head_init``), also used to
        train the heads of frozen segmentation/detection probes.
    note : a remark carried into the JSON and the plot's title (e.g. ``"SYNTHETIC data"``). The
        title also says whether the task's data are synthetic or real (its ``synthetic`` flag in
        the task file; ``result["data"]``).
    min_per_class : classification: the fewest training images of each class in a subset
        (:func:`~medfound.multitask.transfer.subsets.stratified_subset`); every run records the
        number it used (``n_train``), the summary its mean, min and max.
    baseline : the encoder whose best score at the largest fraction the others' frozen probes are
        compared with (``result["baseline_reached"]``,
        :func:`~medfound.multitask.transfer.results.baseline_reached`); ``None``: no comparison.
    """
    spec = select_target_task(task, task_name)
    modes, fractions, repeats, seed, lin = _check_options(modes, fractions, repeats, seed, linear)
    min_per_class = check_int(min_per_class, "min_per_class", low=1)
    ft = check_finetune_options(finetune)
    if not encoders:
        raise ConfigError("give at least one encoder")
    device = resolve_device(device)
    train_items, test_items = spec.load_split("train"), spec.load_split("val")
    if not test_items:
        raise ConfigError(f"task {spec.name!r} has no validation items to score the transfer on")
    labels = task_targets(train_items, spec.kind)
    subsets = {(f, r): stratified_subset(labels, f, seed + r, spec.kind, min_per_class)
               for f in fractions for r in range(repeats)}
    base_network = encoder_network_args(encoders, network)
    runs: list[dict[str, Any]] = []
    started = time.time()
    clock = _RunClock(len(encoders) * len(modes) * len(fractions) * repeats)
    for name, source in encoders.items():
        base_model, _ = build_encoder_model(source, base_network, seed)
        logger.info("encoder %r (%s): %.2f M parameters", name, source,
                    sum(p.numel() for p in base_model.parameters()) / 1e6)
        runs += _encoder_runs(name, base_model, spec, train_items, test_items, subsets, modes, fractions, repeats,
                              seed, lin, ft, device, clock)
    result = {
        "task": spec.name,
        "kind": spec.kind,
        "metric": spec.primary_metric,
        "class_names": spec.class_names,
        "encoders": {k: os.fspath(v) for k, v in encoders.items()},
        "modes": modes,
        "fractions": fractions,
        "repeats": repeats,
        "seed": seed,
        "n_train_total": len(train_items),
        "n_test": len(test_items),
        "linear": lin,
        "finetune": ft,
        "device": str(device),
        "seconds": round(time.time() - started, 1),
        "note": note,
        "data": data_label(spec.extra.get("synthetic")),
        "min_per_class": min_per_class,
        "runs": runs,
        "summary": summarise_runs(runs),
    }
    result["baseline"] = baseline if baseline in encoders else None
    result["baseline_reached"] = baseline_reached(result["summary"], baseline) if result["baseline"] else []
    result["files"] = write_transfer_outputs(result, output_dir)
    return result


def transfer_config(
    task: Any, encoders: Mapping[str, str | os.PathLike], output_dir: str | os.PathLike, **options: Any
) -> dict[str, Any]:
    """The protocol as a MONAI bundle config: ids ``output_dir``, ``device``, ``seed``, ``task``
    (``select_target_task``), ``encoders``, ``network``, ``transfer`` (``run_transfer``) and ``run``.

    ``options`` are :func:`run_transfer`'s keyword arguments; the others take its defaults (written
    into the config, so it records the whole protocol). Every value is checked here.
    """
    try:
        bound = inspect.signature(run_transfer).bind(task, encoders, output_dir, **options)
    except TypeError as err:
        raise ConfigError(f"transfer options: {err}") from None
    bound.apply_defaults()
    args = dict(bound.arguments)
    _check_options(args["modes"], args["fractions"], args["repeats"], args["seed"], args["linear"])
    check_finetune_options(args["finetune"])
    device = args["device"] if isinstance(args["device"], str) else str(args["device"])
    resolve_device(device, what="device")
    encoders = {str(k): os.fspath(v) for k, v in check_mapping(encoders, "encoders").items()}
    if not encoders:
        raise ConfigError("give at least one encoder")
    task = args["task"]
    return {
        "output_dir": os.path.abspath(os.fspath(output_dir)),
        "device": device,
        "seed": int(args["seed"]),
        "task": {"_target_": "medfound.multitask.transfer.select_target_task",
                 "task": os.fspath(task) if isinstance(task, os.PathLike) else task, "name": args["task_name"]},
        "encoders": encoders,
        "network": None if args["network"] is None else dict(args["network"]),
        "transfer": {
            "_target_": "medfound.multitask.transfer.run_transfer",
            "task": "@task",
            "encoders": "@encoders",
            "output_dir": "@output_dir",
            "modes": list(args["modes"]),
            "fractions": [float(f) for f in args["fractions"]],
            "repeats": int(args["repeats"]),
            "seed": "@seed",
            "network": "@network",
            "device": "@device",
            "linear": dict(args["linear"] or {}),
            "finetune": dict(args["finetune"] or {}),
            "note": args["note"],
            "min_per_class": check_int(args["min_per_class"], "min_per_class", low=1),
            "baseline": args["baseline"],
        },
        "run": ["@transfer"],
    }


def run_transfer_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``config`` (a :func:`transfer_config`) as ``<output_dir>/transfer.json``, run it with
    ``monai.bundle.ConfigParser`` and return the results dict."""
    out = Path(config["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "transfer.json", config)
    result = ConfigParser(dict(config)).get_parsed_content("transfer")
    result["files"]["config"] = str(out / "transfer.json")
    return result
