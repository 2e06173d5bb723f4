"""Bundle-style configs of a DAC run, built from a :class:`~medfound.dac.config.DACConfig`.

:func:`train_bundle_config` and :func:`evaluate_bundle_config` turn the documented
dataclass config (the one source of the defaults) into the MONAI bundle form: a plain
JSON dict in which every object (network factory, :class:`~medfound.dac.model.DACModel`,
objective, optimiser and scheduler factories, datasets and loaders, trainer, evaluator,
handlers) is a ``_target_`` component, instantiated by ``monai.bundle.ConfigParser``.
:func:`medfound.dac.train` writes the train config next to the run
(``train_config.json``) and runs exactly that, so a user can edit and rerun it::

    python -m monai.bundle run --config_file runs/dac/train_config.json

and a MONAI bundle's ``train.json`` can ``_target_`` the same pieces under the same ids.

Ids of the train config (MONAI model-zoo style): ``output_dir``, ``split_file``, ``seed``,
``device``, ``amp``, ``max_epochs``, ``iterations_per_epoch``, ``max_iterations``,
``log_interval``, ``checkpoint_interval``, ``split``, ``num_classes``, ``regions``,
``network_def`` (the segmentation network, callable mode: a factory), ``dac_model``,
``network`` (the model on the device), ``objective``, ``optimizer`` and ``lr_scheduler``
(callable mode: factories the trainer calls), ``strong_augment``, ``train#preprocessing``,
``train#augmentation``, ``train#dataset`` (its items under ``train#dataset#data``),
``train#unlabeled_*``, ``train#dataloader``, ``train#inferer``, ``train#handlers`` (a list,
attached in order, as in the MONAI model zoo), ``train#trainer``, ``validate#preprocessing``
(the training one, plus per-image standardisation with ``data.normalize = "image"``), ``validate#dataset``,
``validate#dataloader``, ``validate#inferer``, ``validate#postprocessing``,
``validate#key_metric``, ``validate#handlers``, ``validate#evaluator``, ``checkpoint_objects``
(:func:`checkpoint_objects`), ``checkpoint`` (:class:`~medfound.handlers.AtomicCheckpointSaver`),
``resume`` (:class:`~medfound.handlers.CheckpointResume`), and the workflow lists
``initialize``, ``run``, ``finalize``.

The composition reads the split once: to check ``network.num_classes`` against its classes,
and to leave out what the split cannot feed (validation and model selection without
validation items; the pseudo-label diagnostics when unlabelled items carry no labels).

Example
-------
>>> import json, os, tempfile
>>> from medfound.dac.config import DACConfig
>>> folder = tempfile.mkdtemp(); split = os.path.join(folder, "split.json")
>>> _ = open(split, "w").write(json.dumps({"labeled": [{"image": "a.png", "label": "a_m.png"}],
...     "unlabeled": [{"image": "b.png"}], "validation": [], "test": [],
...     "class_names": ["background", "disc"]}))
>>> bundle = train_bundle_config(DACConfig.from_dict({"data": {"split": split}}))
>>> bundle["train"]["trainer"]["_target_"], bundle["optimizer"]["_mode_"], bundle["run"]
('medfound.dac.trainer.DACTrainer', 'callable', ['$@train#trainer.run()'])
>>> [h["_target_"].rsplit(".", 1)[1] for h in bundle["train"]["handlers"]][:3]
['StopOnNonFiniteLoss', 'StatsHandler', 'TensorBoardStatsHandler']
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medfound.dac.config import DACConfig
from medfound.dac.data import labels_available, load_split
from medfound.dac.diagnostics import PseudoLabelMonitor, TrainingLog
from medfound.dac.selection import BEST_MODEL, BestModelSaver
from medfound.errors import ConfigError
from medfound.handlers.checkpoint import LAST_CHECKPOINT
from medfound.handlers.curves import CurvePlot
from medfound.utils import check_module

__all__ = [
    "train_bundle_config",
    "evaluate_bundle_config",
    "checkpoint_objects",
    "STATEFUL_HANDLERS",
    "VAL_METRIC",
    "LAST_CHECKPOINT",
    "BEST_MODEL",
    "LAST_MODEL",
    "TRAIN_CONFIG",
    "EVALUATE_CONFIG",
]

#: name of the key validation metric (mean Dice over regions and cases of the source validation part)
VAL_METRIC = "val_mean_dice"
#: the deployable network at the end of training
LAST_MODEL = "model.pt"
#: the bundle-style config :func:`medfound.dac.train` writes into the run folder and runs
TRAIN_CONFIG = "train_config.json"
#: the bundle-style config :func:`medfound.dac.evaluate` writes into the evaluation folder and runs
EVALUATE_CONFIG = "evaluate_config.json"

#: checkpoint entry -> class of the training handler whose state it holds (model selection, the
#: epoch's running log sums, the pseudo-label counts, the curve history)
STATEFUL_HANDLERS: dict[str, type] = {"best": BestModelSaver, "log": TrainingLog, "pseudo_monitor": PseudoLabelMonitor,
                                      "curves": CurvePlot}

#: output transform of the logging handlers: the float entries of the trainer's output
_SCALARS = {"_target_": "medfound.handlers.curves.scalar_items", "_mode_": "callable"}


def checkpoint_objects(trainer: Any, handlers: Iterable[Any] = ()) -> dict[str, Any]:
    """Everything a checkpoint holds for an exact resume: the trainer's own objects
    (``trainer.checkpoint_objects()``: trainer, network, optimiser, scheduler, scaler) and the
    handlers among ``handlers`` that keep state (:data:`STATEFUL_HANDLERS`, at most one each).

    Example
    -------
    >>> class Trainer:
    ...     def checkpoint_objects(self):
    ...         return {"trainer": self}
    >>> log = TrainingLog(None)
    >>> sorted(checkpoint_objects(Trainer(), [log, "a handler without state"]))
    ['log', 'trainer']
    """
    objs = dict(trainer.checkpoint_objects())
    handlers = list(handlers)
    for key, cls in STATEFUL_HANDLERS.items():
        found = [h for h in handlers if isinstance(h, cls)]
        if len(found) > 1:
            raise ConfigError(f"{len(found)} {cls.__name__} handlers: a checkpoint holds the state of one")
        if found:
            objs[key] = found[0]
    return objs


def _checked_split(cfg: DACConfig) -> dict[str, Any]:
    if not cfg.data.split:
        raise ConfigError("data.split is not set: give the split JSON written by `medfound dac split`")
    split = load_split(cfg.data.split)
    if cfg.network.num_classes is not None and cfg.network.num_classes != split["num_classes"]:
        raise ConfigError(
            f"network.num_classes={cfg.network.num_classes} but the split {cfg.data.split} has "
            f"{split['num_classes']} classes {split['class_names']}"
        )
    return split


def _network_arguments(cfg: DACConfig, for_training: bool) -> dict[str, Any]:
    args = {"num_classes": "@num_classes", "in_channels": cfg.data.in_channels, **cfg.network.kwargs}
    if not for_training:
        args.pop("backbone_weights", None)  # trained weights replace any initial weights
    return args


def _preprocessing(cfg: DACConfig, spatial_size: list[int] | None, with_label: bool,
                   for_network: bool = True) -> dict[str, Any]:
    """The deterministic pipeline; ``for_network=False``: training items, which the step normalises itself."""
    d = cfg.data
    fixed = d.normalize == "fixed"
    pre = {"_target_": "medfound.dac.data.preprocessing", "num_classes": "@num_classes",
           "spatial_size": spatial_size, "in_channels": d.in_channels, "intensity": d.intensity,
           "normalize_mean": d.normalize_mean if fixed else None, "normalize_std": d.normalize_std if fixed else None,
           "label_values": d.label_values, "with_label": with_label}
    if fixed or not for_network:
        return pre
    # data.normalize = "image": each image's channels standardised, as the training step does
    return {"_target_": "monai.transforms.Compose", "transforms": [
        pre, {"_target_": "monai.transforms.NormalizeIntensityd", "keys": "image", "channel_wise": True}]}


def _weak_augmentation(cfg: DACConfig, with_label: bool, unlabeled: bool = False) -> dict[str, Any]:
    a = cfg.augment
    flip = a.unlabeled_flip_prob if unlabeled and a.unlabeled_flip_prob is not None else a.flip_prob
    return {"_target_": "medfound.dac.data.weak_augmentation", "flip_prob": flip,
            "rotate_degrees": a.rotate_degrees, "scale_range": list(a.scale_range), "affine_prob": a.affine_prob,
            "with_label": with_label}


def _common(cfg: DACConfig, output_dir: str) -> dict[str, Any]:
    t = cfg.train
    return {  # absolute paths: the written config runs from any working directory
        "output_dir": os.path.abspath(output_dir),
        "split_file": os.path.abspath(cfg.data.split),
        "device": {"_target_": "medfound.utils.resolve_device", "device": t.device, "what": "train.device"},
        # mixed precision only on CUDA (train.amp = null: on when CUDA is used)
        "amp": False if t.amp is False else "$@device.type == 'cuda'",
        "split": {"_target_": "medfound.dac.data.load_split", "path": "@split_file"},
        "num_classes": "$@split['num_classes']" if cfg.network.num_classes is None else cfg.network.num_classes,
        "regions": "$@split['regions']",
    }


def _optimizer(cfg: DACConfig) -> dict[str, Any]:
    o = cfg.optim
    if o.name == "sgd":
        return {"_target_": "torch.optim.SGD", "_mode_": "callable", "lr": o.lr, "momentum": o.momentum,
                "weight_decay": o.weight_decay, "nesterov": o.nesterov}
    return {"_target_": "torch.optim.Adam" if o.name == "adam" else "torch.optim.AdamW", "_mode_": "callable",
            "lr": o.lr, "betas": list(o.betas), "weight_decay": o.weight_decay}


def train_bundle_config(config: DACConfig) -> dict[str, Any]:
    """The bundle-style train config of ``config`` (plain JSON values, ``_target_`` for every object).

    Parameters
    ----------
    config : the run (its split file must exist: the composition reads its classes and parts).

    Returns
    -------
    dict
        Ready for ``monai.bundle.ConfigParser``: ``initialize`` (skipped-items report,
        checkpoint saver and resume attached to the trainer), ``run`` (``trainer.run()``),
        ``finalize`` (TensorBoard writer closed).
    """
    cfg = config
    split = _checked_split(cfg)
    d, m, a, t = cfg.data, cfg.method, cfg.augment, cfg.train
    comp = cfg.components()
    semi = comp.pseudo is not None
    track = bool(t.track_pseudo_labels and semi and labels_available(split.get("unlabeled", [])))
    validate = bool(split["validation"])
    cache = d.cache_rate > 0
    size = [int(v) for v in d.spatial_size]

    bundle: dict[str, Any] = {
        **_common(cfg, str(t.output_dir)),
        "seed": t.seed,
        "max_epochs": t.max_epochs,
        "iterations_per_epoch": t.iterations_per_epoch,
        "max_iterations": "$@max_epochs * @iterations_per_epoch",
        "log_interval": t.log_interval,
        "checkpoint_interval": t.checkpoint_interval,
        "network_def": {"_target_": cfg.network.target, "_mode_": "callable", **_network_arguments(cfg, True)},
        "dac_model": {"_target_": "medfound.dac.model.DACModel", "network": "@network_def", "method": m.name,
                      "feature_layer": m.feature_layer, "mask_layer": m.mask_layer,
                      "rotation_layer": m.rotation_layer,
                      "projection_channels": m.projection_channels, "init_seeds": list(m.init_seeds),
                      "inference": m.inference, "aux_head_init": m.aux_head_init},
        "network": "$@dac_model.to(@device)",
        "objective": {"_target_": "medfound.dac.objective.DACObjective", "lambda_cps": m.lambda_cps,
                      "lambda_feat": m.lambda_feat, "lambda_aux": m.lambda_aux,
                      "confidence_threshold": cfg.threshold(),
                      "rampup_iterations": f"$int(round({m.rampup_fraction!r} * @max_iterations))",
                      "rampup_aux": m.rampup_aux, "feature_loss": m.feature_loss, "lambda_dice": m.lambda_dice,
                      "lambda_ce": m.lambda_ce, "dice_include_background": m.dice_include_background},
        "optimizer": _optimizer(cfg),
        "lr_scheduler": None if cfg.optim.schedule == "constant" else {
            "_target_": "torch.optim.lr_scheduler.PolynomialLR", "_mode_": "callable",
            "total_iters": "@max_iterations", "power": cfg.optim.poly_power},
        "strong_augment": {"_target_": "medfound.dac.strong_view.StrongAugment", "jitter_prob": a.jitter_prob,
                           "brightness": a.brightness, "contrast": a.contrast, "saturation": a.saturation,
                           "grayscale_prob": a.grayscale_prob, "blur_prob": a.blur_prob,
                           "blur_sigma": list(a.blur_sigma), "noise_prob": a.noise_prob, "noise_std": a.noise_std,
                           # images in [0, 1] with data.normalize = "image" (the step standardises them)
                           "mean": d.normalize_mean if d.normalize == "fixed" else None,
                           "std": d.normalize_std if d.normalize == "fixed" else None},
    }
    if t.tensorboard:
        check_module("torch.utils.tensorboard", "train.tensorboard", package="tensorboard")
    if t.progress_bar:
        check_module("tqdm", "train.progress_bar")
    if t.tensorboard:
        bundle["tensorboard_writer"] = {"_target_": "torch.utils.tensorboard.SummaryWriter",
                                        "log_dir": "$@output_dir + '/tensorboard'"}

    train: dict[str, Any] = {
        "preprocessing": _preprocessing(cfg, size, with_label=True, for_network=False),
        "augmentation": _weak_augmentation(cfg, with_label=True),
        "dataset": {"_target_": "medfound.dac.data.PreparedDataset", "data": "$@split['labeled']",
                    "transform": "@train#preprocessing", "random_transform": "@train#augmentation",
                    "cache": cache, "part": "labeled", "on_error": d.on_error},
    }
    if semi:
        # an unlabelled item's label (`hidden_label` in split files) is loaded only to score pseudo
        # labels (diagnostics, track_pseudo_labels); the losses never see it
        train["unlabeled_preprocessing"] = _preprocessing(cfg, size, with_label=track, for_network=False)
        train["unlabeled_augmentation"] = _weak_augmentation(cfg, with_label=track, unlabeled=True)
        train["unlabeled_dataset"] = {
            "_target_": "medfound.dac.data.PreparedDataset",
            "data": {"_target_": "medfound.dac.data.unlabeled_items", "items": "$@split['unlabeled']",
                      "keep_labels": track},
            "transform": "@train#unlabeled_preprocessing", "random_transform": "@train#unlabeled_augmentation",
            "cache": cache, "part": "unlabeled", "on_error": d.on_error}
    train["inferer"] = {"_target_": "monai.inferers.SimpleInferer"}
    train["dataloader"] = {
        "_target_": "medfound.dac.data.CoTrainingLoader", "labeled": "@train#dataset",
        "unlabeled": "@train#unlabeled_dataset" if semi else None, "batch_size_labeled": d.batch_size_labeled,
        "batch_size_unlabeled": d.batch_size_unlabeled, "seed": "@seed", "num_workers": d.num_workers,
        "pin_memory": "$@device.type == 'cuda'"}

    evaluator = "@validate#evaluator" if validate else None
    # first: a NaN/inf loss stops the run before any later handler (or the checkpoint saver) sees the step
    handlers: dict[str, Any] = {"finite_loss": {"_target_": "medfound.handlers.StopOnNonFiniteLoss",
                                                "checkpoint": f"$@output_dir + '/{LAST_CHECKPOINT}'"}}
    if validate:
        # model selection on the held-out part of the labelled source domain, never the test domain
        handlers["validation"] = {"_target_": "monai.handlers.ValidationHandler", "validator": evaluator,
                                  "interval": t.validation_interval, "epoch_level": True}
        handlers["best_model"] = {"_target_": "medfound.dac.selection.BestModelSaver", "evaluator": evaluator,
                                  "network": "@dac_model", "save_dir": "@output_dir", "metric_name": VAL_METRIC}
    handlers["stats"] = {"_target_": "monai.handlers.StatsHandler", "name": "medfound.dac.train",
                         "iteration_log": "$lambda engine, iteration: iteration % @log_interval == 0",
                         "output_transform": _SCALARS}
    if t.tensorboard:
        handlers["tensorboard"] = {"_target_": "monai.handlers.TensorBoardStatsHandler",
                                   "summary_writer": "@tensorboard_writer", "iteration_log": "@log_interval",
                                   "epoch_log": False, "output_transform": _SCALARS}
    handlers["training_log"] = {"_target_": "medfound.dac.diagnostics.TrainingLog",
                                "path": "$@output_dir + '/training_log.jsonl'", "evaluator": evaluator}
    if track:
        handlers["pseudo_labels"] = {"_target_": "medfound.dac.diagnostics.PseudoLabelMonitor",
                                     "path": "$@output_dir + '/pseudo_labels.jsonl'"}
    handlers["curves"] = {"_target_": "medfound.handlers.curves.CurvePlot", "path": "$@output_dir + '/curves.png'",
                          "evaluator": evaluator, "title": f"{m.name}: training losses and source validation"}
    if t.progress_bar:
        handlers["progress_bar"] = {"_target_": "ignite.handlers.ProgressBar", "persist": True}
    train["handlers"] = list(handlers.values())
    train["trainer"] = {
        "_target_": "medfound.dac.trainer.DACTrainer", "device": "@device", "max_epochs": "@max_epochs",
        "epoch_length": "@iterations_per_epoch", "train_data_loader": "@train#dataloader", "network": "@network",
        "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler", "loss_function": "@objective",
        "strong_augment": "@strong_augment",
        "cutmix": {"prob": a.cutmix_prob, "num_boxes": a.cutmix_num_boxes, "area_range": list(a.cutmix_area_range),
                   "aspect_ratio_range": list(a.cutmix_aspect_ratio_range)},
        "rotation": {"side_range": list(a.rotation_side_range), "align": a.rotation_align},
        "normalize": "image" if d.normalize == "image" else "none", "aux_rotation_view": m.aux_rotation_view,
        "head_lr_scale": cfg.optim.head_lr_scale,
        "style_mix": {"prob": a.style_mix_prob, "window": a.style_mix_window},
        "seed": "@seed", "regions": "@regions", "track_pseudo_labels": track, "amp": "@amp",
        "inferer": "@train#inferer", "train_handlers": "@train#handlers",
    }
    bundle["train"] = train

    if validate:
        bundle["validate"] = {
            "preprocessing": _preprocessing(cfg, size, with_label=True),
            "dataset": {"_target_": "medfound.dac.data.PreparedDataset", "data": "$@split['validation']",
                        "transform": "@validate#preprocessing", "cache": True, "part": "validation",
                        "on_error": d.on_error},
            "dataloader": {"_target_": "torch.utils.data.DataLoader", "dataset": "@validate#dataset",
                           "batch_size": d.batch_size_labeled, "num_workers": 0,
                           "collate_fn": "$monai.data.list_data_collate"},
            "inferer": {"_target_": "monai.inferers.SimpleInferer"},
            "postprocessing": {"_target_": "monai.transforms.Compose", "transforms": [
                {"_target_": "monai.transforms.AsDiscreted", "keys": "pred", "argmax": True},
                {"_target_": "medfound.transforms.regions.ClassesToRegionsd", "keys": ["pred", "label"],
                 "regions": "@regions"}]},
            # Dice per region, 1 for an empty reference predicted empty (ignore_empty=False): no case dropped
            "key_metric": {VAL_METRIC: {
                "_target_": "monai.handlers.IgniteMetricHandler",
                "metric_fn": {"_target_": "monai.metrics.DiceMetric", "include_background": True,
                              "reduction": "mean", "ignore_empty": False},
                "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"}},
            "handlers": ([{"_target_": "monai.handlers.TensorBoardStatsHandler",
                           "summary_writer": "@tensorboard_writer", "iteration_log": False, "epoch_log": True}]
                         if t.tensorboard else []),
            "evaluator": {"_target_": "monai.engines.SupervisedEvaluator", "device": "@device",
                          "val_data_loader": "@validate#dataloader", "network": "@network",
                          "inferer": "@validate#inferer", "postprocessing": "@validate#postprocessing",
                          "key_val_metric": "@validate#key_metric", "val_handlers": "@validate#handlers",
                          "amp": "@amp"},
        }

    bundle["checkpoint_objects"] = {"_target_": "medfound.dac.bundle_configs.checkpoint_objects",
                                    "trainer": "@train#trainer", "handlers": "@train#handlers"}
    bundle["checkpoint"] = {"_target_": "medfound.handlers.AtomicCheckpointSaver", "save_dir": "@output_dir",
                            "save_dict": "@checkpoint_objects", "save_interval": "@checkpoint_interval",
                            "filename": LAST_CHECKPOINT,
                            "final_files": {LAST_MODEL: "$@dac_model.deployable_state_dict"}}
    initialize: list[Any] = [
        {"_target_": "medfound.dac.data.write_skipped_items", "path": "$@output_dir + '/skipped_items.json'",
         "datasets": ["@train#dataset", *(["@train#unlabeled_dataset"] if semi else []),
                      *(["@validate#dataset"] if validate else [])]},
        "$@checkpoint.attach(@train#trainer)",
    ]
    if t.resume:
        bundle["resume"] = {"_target_": "medfound.handlers.CheckpointResume",
                            "path": f"$@output_dir + '/{LAST_CHECKPOINT}'", "load_dict": "@checkpoint_objects",
                            "map_location": "@device"}
        initialize.append("$@resume.attach(@train#trainer)")
    bundle["initialize"] = initialize
    bundle["run"] = ["$@train#trainer.run()"]
    bundle["finalize"] = ["$@tensorboard_writer.close()"] if t.tensorboard else []
    return bundle


def evaluate_bundle_config(config: DACConfig) -> dict[str, Any]:
    """The bundle-style evaluation config of ``config``: the selected network on ``evaluate.parts``.

    ``evaluate.checkpoint``: ``"best"`` (``best_model.pt``, selected on source validation),
    ``"last"`` (the final ``model.pt``) or a file; with ``method.inference = "ensemble"`` the
    A+B container is rebuilt from ``last.pt`` (or the given checkpoint file).
    """
    cfg = config
    m, e = cfg.method, cfg.evaluate
    run_dir = Path(cfg.train.output_dir)
    out = e.output_dir or str(run_dir / "evaluation")
    _checked_split(cfg)
    bundle = _common(cfg, out)
    if m.inference == "ensemble":
        path = run_dir / LAST_CHECKPOINT if e.checkpoint in ("best", "last") else Path(e.checkpoint)
        bundle["network_def"] = {
            "_target_": "medfound.dac.model.DACModel",
            "network": {"_target_": cfg.network.target, "_mode_": "callable", **_network_arguments(cfg, False)},
            "method": m.name, "feature_layer": m.feature_layer, "mask_layer": m.mask_layer,
            "rotation_layer": m.rotation_layer,
            "projection_channels": m.projection_channels, "init_seeds": list(m.init_seeds), "inference": "ensemble"}
    else:
        path = {"best": run_dir / BEST_MODEL, "last": run_dir / LAST_MODEL}.get(e.checkpoint, Path(e.checkpoint))
        bundle["network_def"] = {"_target_": cfg.network.target, **_network_arguments(cfg, False)}
    bundle.update({
        "network": {"_target_": "medfound.dac.evaluation.load_trained_network", "network": "@network_def",
                    "path": str(path), "sub_model": "a" if m.inference == "ensemble" else m.inference},
        "predictor": {"_target_": "medfound.dac.evaluation.ResizedPredictor", "network": "@network",
                      "spatial_size": [int(v) for v in cfg.data.spatial_size]},
        # native resolution: Dice is measured on the reference masks as they are
        "preprocessing": _preprocessing(cfg, None, with_label=True),
        "evaluator": {"_target_": "medfound.dac.evaluation.SplitEvaluator", "predictor": "@predictor",
                      "split": "@split", "parts": list(e.parts), "transform": "@preprocessing",
                      "output_dir": "@output_dir", "device": "@device", "amp": "@amp"},
        "run": ["$@evaluator.run()"],
    })
    return bundle
