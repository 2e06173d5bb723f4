"""Build and run DAC training and evaluation from a :class:`~medfound.dac.config.DACConfig`.

The Python API behind ``medfound dac train CONFIG`` and ``medfound dac evaluate CONFIG``:

- :func:`train` reads the split, prepares the data (bad items skipped and listed in
  ``skipped_items.json``), builds the :class:`~medfound.dac.model.DACModel`, the objective,
  optimiser, poly schedule, the :class:`~medfound.dac.trainer.DACTrainer`, the validation
  evaluator (source validation part) and the handlers (``ValidationHandler``,
  ``StatsHandler``, atomic checkpoints, best-model selection, logs), resumes from
  ``output_dir/last.pt`` when present, and runs.
- :func:`evaluate` runs the selected model over parts of the split (``test`` by default) at
  the native label resolution and writes Dice per region, per case and per domain.
- :class:`DACWorkflow` wraps both for MONAI bundle configs: ``{"_target_":
  "medfound.dac.DACWorkflow", "config": {...}}`` then ``.train()`` / ``.evaluate()``.

Files in ``train.output_dir``: ``config.json`` (the resolved config), ``last.pt`` (the
checkpoint), ``best_model.pt`` / ``best_model.json`` (selected on source validation),
``model.pt`` (the final deployable network), ``training_log.jsonl``,
``pseudo_labels.jsonl`` (when unlabelled items carry labels), ``skipped_items.json``.

Example
-------
.. code-block:: python

    from medfound.dac import train, evaluate
    cfg = {"data": {"split": "splits/fundus_test-Domain4.json"},
           "method": {"name": "dac"}, "train": {"output_dir": "runs/dac_d4"}}
    summary = train(cfg)
    results = evaluate(cfg)           # Dice per region / case / domain on the test domain
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.handlers import StatsHandler, ValidationHandler
from torch.utils.data import DataLoader

from medfound.dac.checkpoint import (
    BEST_MODEL,
    LAST_CHECKPOINT,
    LAST_MODEL,
    AtomicCheckpointSaver,
    BestModelSaver,
    attach_resume,
)
from medfound.dac.config import DACConfig, load_config
from medfound.dac.data import CoTrainingLoader, SeededItemDataset, build_transforms, load_split, prepare_items
from medfound.dac.diagnostics import PseudoLabelMonitor, TrainingLog
from medfound.dac.model import DACModel
from medfound.dac.objective import DACObjective
from medfound.dac.strong_view import StrongAugment
from medfound.dac.trainer import DACTrainer
from medfound.dac.validation import VAL_METRIC, build_evaluator
from medfound.errors import ConfigError

__all__ = [
    "resolve_device",
    "build_model",
    "build_objective",
    "build_optimizer",
    "build_scheduler",
    "build_strong_augment",
    "build_trainer",
    "TrainingRun",
    "train",
    "evaluate",
    "DACWorkflow",
]

logger = logging.getLogger("medfound.dac")


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"train.device {name!r} is not a device: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device {name!r} asks for CUDA, which is not available here")
    return device


def build_model(cfg: DACConfig, num_classes: int) -> DACModel:
    """The :class:`DACModel` of the config's method and network."""
    m = cfg.method
    kwargs = dict(cfg.network.kwargs)
    kwargs.setdefault("in_channels", cfg.data.in_channels)
    return DACModel(
        num_classes=num_classes,
        method=m.name,
        network_target=cfg.network.target,
        network_kwargs=kwargs,
        feature_layer=m.feature_layer,
        aux_layer=m.aux_layer,
        projection_channels=m.projection_channels,
        init_seeds=list(m.init_seeds),
        inference=m.inference,
    )


def build_objective(cfg: DACConfig) -> DACObjective:
    """The weighted losses, with the ramp-up length in iterations."""
    m = cfg.method
    return DACObjective(
        lambda_cps=m.lambda_cps,
        lambda_feat=m.lambda_feat,
        lambda_aux=m.lambda_aux,
        confidence_threshold=cfg.threshold(),
        rampup_iterations=int(round(m.rampup_fraction * cfg.max_iterations)),
        rampup_aux=m.rampup_aux,
        feature_loss=m.feature_loss,
        lambda_dice=m.lambda_dice,
        lambda_ce=m.lambda_ce,
        dice_include_background=m.dice_include_background,
    )


def build_optimizer(cfg: DACConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """One optimiser over every parameter of both sub-models and the training heads."""
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
    cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
    return cls(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


def build_scheduler(cfg: DACConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Poly (``(1 - t / T) ** power``, stepped per iteration) or constant learning rate."""
    if cfg.optim.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=cfg.max_iterations, power=cfg.optim.poly_power)


def build_strong_augment(cfg: DACConfig) -> StrongAugment:
    a, d = cfg.augment, cfg.data
    return StrongAugment(
        jitter_prob=a.jitter_prob, brightness=a.brightness, contrast=a.contrast, saturation=a.saturation,
        grayscale_prob=a.grayscale_prob, blur_prob=a.blur_prob, blur_sigma=a.blur_sigma,
        noise_prob=a.noise_prob, noise_std=a.noise_std, mean=d.normalize_mean, std=d.normalize_std,
    )


def _as_config(config: str | os.PathLike | Mapping[str, Any] | DACConfig,
               overrides: Mapping[str, Any] | None = None) -> DACConfig:
    if isinstance(config, DACConfig) and not overrides:
        return config
    return load_config(config if not isinstance(config, Mapping) else dict(config), dict(overrides or {}))


def _stdout_logging() -> None:
    """Send medfound's and MONAI's INFO logs to stdout once (a CLI run should show progress)."""
    root = logging.getLogger("medfound")
    if not any(getattr(h, "_medfound", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        h._medfound = True  # type: ignore[attr-defined]
        for name in ("medfound", "monai.handlers.StatsHandler"):
            lg = logging.getLogger(name)
            lg.addHandler(h)
            lg.setLevel(logging.INFO)
            lg.propagate = False


class TrainingRun:
    """Everything :func:`train` builds, for inspection or custom handlers before :meth:`run`.

    Attributes: ``config``, ``split``, ``device``, ``model``, ``objective``, ``optimizer``,
    ``scheduler``, ``loader``, ``trainer``, ``evaluator``, ``output_dir``, ``skipped``,
    ``best`` (:class:`BestModelSaver`), ``resumed`` (whether ``last.pt`` was loaded).
    """

    def __init__(self, config: DACConfig) -> None:
        self.config = cfg = config
        if not cfg.data.split:
            raise ConfigError("data.split is not set: give the split JSON written by `medfound dac split`")
        self.split = split = load_split(cfg.data.split)
        self.num_classes = int(cfg.network.num_classes or split["num_classes"])
        if self.num_classes != split["num_classes"]:
            raise ConfigError(
                f"network.num_classes={cfg.network.num_classes} but the split {cfg.data.split} has "
                f"{split['num_classes']} classes {split['class_names']}"
            )
        self.device = resolve_device(cfg.train.device)
        self.output_dir = Path(cfg.train.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        comp = cfg.components()
        amp = cfg.train.amp if cfg.train.amp is not None else self.device.type == "cuda"

        # data: deterministic part once (cached), bad items skipped and reported
        cache = cfg.data.cache_rate > 0
        items_unl = split.get("unlabeled", [])
        track = cfg.train.track_pseudo_labels and bool(items_unl) and all(
            "hidden_label" in it or "label" in it for it in items_unl)
        det_l, rand_l = build_transforms(cfg.data, self.num_classes, cfg.augment, with_label=True)
        det_u, rand_u = build_transforms(cfg.data, self.num_classes, cfg.augment, with_label=track)
        det_v, _ = build_transforms(cfg.data, self.num_classes, None, with_label=True)
        self.skipped: list[dict[str, str]] = []
        labeled, sk = prepare_items(split["labeled"], det_l, cache, "labeled")
        self.skipped += sk
        unlabeled = None
        if comp.pseudo is not None:
            # an unlabelled item's label (``hidden_label`` in split files) is loaded only to score
            # pseudo labels (diagnostics); the losses never see it
            items_u = []
            for it in split.get("unlabeled", []):
                item = {k: v for k, v in it.items() if k not in ("label", "hidden_label")}
                hidden = it.get("hidden_label", it.get("label"))
                if track and hidden is not None:
                    item["label"] = hidden
                items_u.append(item)
            unlabeled, sk = prepare_items(items_u, det_u, cache, "unlabeled")
            self.skipped += sk
        validation, sk = prepare_items(split["validation"], det_v, True, "validation")
        self.skipped += sk
        (self.output_dir / "skipped_items.json").write_text(json.dumps(self.skipped, indent=2))
        if not labeled:
            raise ConfigError(f"no readable labelled item in {cfg.data.split} (see skipped_items.json)")

        self.loader = CoTrainingLoader(
            SeededItemDataset(labeled, rand_l, None if cache else det_l),
            None if unlabeled is None else SeededItemDataset(unlabeled, rand_u, None if cache else det_u),
            cfg.data.batch_size_labeled, cfg.data.batch_size_unlabeled, seed=cfg.train.seed,
            num_workers=cfg.data.num_workers, pin_memory=self.device.type == "cuda",
        )
        self.model = build_model(cfg, self.num_classes).to(self.device)
        self.objective = build_objective(cfg)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_scheduler(cfg, self.optimizer)
        self.trainer = DACTrainer(
            device=self.device,
            max_epochs=cfg.train.max_epochs,
            train_data_loader=self.loader,
            network=self.model,
            optimizer=self.optimizer,
            loss_function=self.objective,
            epoch_length=cfg.train.iterations_per_epoch,
            lr_scheduler=self.scheduler,
            strong_augment=build_strong_augment(cfg),
            cutmix={"num_boxes": cfg.augment.cutmix_num_boxes, "area_range": cfg.augment.cutmix_area_range,
                    "aspect_ratio_range": cfg.augment.cutmix_aspect_ratio_range, "prob": cfg.augment.cutmix_prob},
            rotation={"side_range": cfg.augment.rotation_side_range, "align": cfg.augment.rotation_align},
            seed=cfg.train.seed,
            regions=split["regions"],
            track_pseudo_labels=track,
            amp=amp,
        )

        # validation on the held-out part of the labelled source domain (model selection)
        self.evaluator = None
        self.best = BestModelSaver(self.model, self.output_dir, self.trainer, VAL_METRIC, BEST_MODEL)
        if validation:
            val_loader = DataLoader(SeededItemDataset(validation), batch_size=max(1, cfg.data.batch_size_labeled),
                                    num_workers=0, collate_fn=_collate)
            self.evaluator = build_evaluator(self.device, val_loader, self.model, split["regions"], amp)
            self.best.attach(self.evaluator)
            ValidationHandler(interval=cfg.train.validation_interval, validator=self.evaluator).attach(self.trainer)
        else:
            logger.warning("the split has no validation items: no model selection, best_model.pt is not written")

        log_every = max(1, cfg.train.log_interval)
        StatsHandler(
            iteration_log=lambda engine, it: it % log_every == 0,
            output_transform=lambda out: {k: v for k, v in (out or {}).items() if isinstance(v, float)},
            name="medfound.dac.train",
        ).attach(self.trainer)
        self.log = TrainingLog(self.output_dir / "training_log.jsonl", self.evaluator)
        self.log.attach(self.trainer)
        self.monitor = PseudoLabelMonitor(self.output_dir / "pseudo_labels.jsonl") if track else None
        if self.monitor is not None:
            self.monitor.attach(self.trainer)

        save_dict = {**self.trainer.checkpoint_objects(), "best": self.best, "log": self.log}
        if self.monitor is not None:
            save_dict["pseudo_monitor"] = self.monitor
        self.saver = AtomicCheckpointSaver(self.output_dir, save_dict, cfg.train.checkpoint_interval,
                                           LAST_CHECKPOINT, final_model=(self.model, LAST_MODEL))
        self.saver.attach(self.trainer)
        self.resumed = cfg.train.resume and attach_resume(
            self.trainer, self.output_dir / LAST_CHECKPOINT, save_dict, map_location=self.device
        )
        (self.output_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    def run(self) -> dict[str, Any]:
        """Train (or continue) to ``max_epochs``; returns a summary."""
        self.trainer.run()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        out = self.output_dir
        return {
            "method": self.config.method.name,
            "iterations": int(self.trainer.state.iteration),
            "resumed": bool(self.resumed),
            "best_metric": None if self.best.best_iteration < 0 else self.best.best_metric,
            "best_iteration": self.best.best_iteration,
            "checkpoint": str(out / LAST_CHECKPOINT),
            "best_model": str(out / BEST_MODEL) if (out / BEST_MODEL).exists() else None,
            "final_model": str(out / LAST_MODEL) if (out / LAST_MODEL).exists() else None,
            "skipped": len(self.skipped),
            "output_dir": str(out),
        }


def _collate(batch):
    from monai.data import list_data_collate

    return list_data_collate(batch)


def build_trainer(config: str | os.PathLike | Mapping[str, Any] | DACConfig,
                  overrides: Mapping[str, Any] | None = None) -> TrainingRun:
    """Build a :class:`TrainingRun` (trainer, evaluator, handlers) without running it."""
    return TrainingRun(_as_config(config, overrides))


def train(config: str | os.PathLike | Mapping[str, Any] | DACConfig, overrides: Mapping[str, Any] | None = None,
          verbose: bool = False) -> dict[str, Any]:
    """Train DAC (or the configured baseline) and return a summary (see :meth:`TrainingRun.summary`)."""
    if verbose:
        _stdout_logging()
    return build_trainer(config, overrides).run()


def evaluate(config: str | os.PathLike | Mapping[str, Any] | DACConfig, overrides: Mapping[str, Any] | None = None,
             verbose: bool = False) -> dict[str, Any]:
    """Evaluate the trained model on ``evaluate.parts``: part -> ``SegmentationResults`` (see
    :func:`medfound.dac.evaluation.evaluate_run`)."""
    from medfound.dac.evaluation import evaluate_run

    if verbose:
        _stdout_logging()
    return evaluate_run(_as_config(config, overrides))


class DACWorkflow:
    """Bundle-friendly face: ``{"_target_": "medfound.dac.DACWorkflow", "config": {...}}``.

    Parameters
    ----------
    config : a config file path, or the config as plain JSON values.
    overrides : dotted keys to override (``{"method.name": "cps"}``).

    Example
    -------
    >>> wf = DACWorkflow({"data": {"split": "split.json"}, "method": {"name": "cps"}})
    >>> wf.config.method.name
    'cps'
    """

    def __init__(self, config: str | os.PathLike | Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
                 verbose: bool = True) -> None:
        self.config = _as_config(config, overrides)
        self.verbose = verbose

    def train(self) -> dict[str, Any]:
        return train(self.config, verbose=self.verbose)

    def evaluate(self) -> dict[str, Any]:
        return evaluate(self.config, verbose=self.verbose)

    def run(self) -> dict[str, Any]:
        """Train, then evaluate; returns ``{"train": ..., "evaluate": ...}``."""
        return {"train": self.train(), "evaluate": self.evaluate()}


