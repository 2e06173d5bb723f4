"""The DAC bundles' generated configs: ``train.json``, ``evaluate.json``, ``multi_gpu_train.json``
and ``demo.json`` of ``bundles/dac_{fundus,polyp,scgm}_segmentation``.

One source of truth: :func:`bundle_train_config` starts from
:func:`~medfound.dac.bundle_configs.train_bundle_config` (what ``medfound dac train`` runs) of the
library's :class:`~medfound.dac.config.DACConfig` defaults with the bundle's data settings
(:data:`BUNDLES`), and only turns what that config fixes at composition time into the bundle's
switches:

- the data come from ``dataset_dir`` (or the synthetic demo) through
  :func:`~medfound.dac.bundle_data.prepare_split` instead of a split file;
- the data options, batch sizes, ``val_interval``, ``rampup_fraction`` and the confidence
  threshold become top-level ids (``--spatial_size``, ``--batch_size_labeled``, ... on the command
  line), referenced where :func:`train_bundle_config` wrote their values;
- ``method`` switches between DAC, its ablations and baselines at run time, so the parts a
  method or a split may not need (unlabelled data, validation, pseudo-label diagnostics) are
  switched off with ``_disabled_`` instead of being left out;
- ``is_main_process`` keeps the handlers that write on rank 0 (``multi_gpu_train.json``);
- at the end the selected network is copied to ``models/model.pt``
  (:func:`~medfound.dac.bundle_outputs.publish_model`).

A test checks that the committed files are exactly :func:`bundle_configs`. To rewrite them
(after a default changed in :mod:`medfound.dac.config` or :mod:`medfound.dac.bundle_configs`)::

    python -m medfound.dac.bundle_files bundles

``inference.json`` and ``logging.conf`` stay hand-written: inference is not a DAC run (a folder
of images or volumes through MONAI transforms) and differs between the 2D and volume bundles.

Example
-------
>>> train = bundle_train_config("dac_scgm_segmentation")
>>> train["dataset_name"], train["in_channels"], train["train"]["trainer"]["normalize"]
('scgm', 1, 'none')
>>> [h["_target_"].rsplit(".", 1)[1] for h in train["train"]["handlers"]][:3]
['StopOnNonFiniteLoss', 'ValidationHandler', 'BestModelSaver']
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medfound.dac.bundle_configs import evaluate_bundle_config, train_bundle_config
from medfound.dac.bundle_data import prepare_split
from medfound.dac.config import DACConfig
from medfound.errors import ConfigError

__all__ = ["BUNDLES", "DEMO", "bundle_train_config", "bundle_evaluate_config", "bundle_multi_gpu_overlay",
           "bundle_configs", "write_bundle_configs"]

#: bundle folder -> its dataset (a :data:`~medfound.dac.bundle_data.DATASET_ADAPTERS` name), default
#: held-out domain, title of the printed results and the DACConfig ``data`` settings of its images
BUNDLES: dict[str, dict[str, Any]] = {
    "dac_fundus_segmentation": {"dataset": "fundus", "test_domain": "Domain4", "title": "DAC fundus",
                                "data": {"in_channels": 3, "intensity": "uint8", "normalize": "image"}},
    "dac_polyp_segmentation": {"dataset": "polyp", "test_domain": "ETIS-LaribPolypDB", "title": "DAC polyp",
                               "data": {"in_channels": 3, "intensity": "uint8", "normalize": "image"}},
    # MR slices: one channel, intensities already normalised per slice by the SCGM adapter
    "dac_scgm_segmentation": {"dataset": "scgm", "test_domain": "site4", "title": "DAC spinal cord grey matter",
                              "data": {"in_channels": 1, "intensity": "none", "normalize": "fixed",
                                       "normalize_mean": None, "normalize_std": None}},
}

#: ``network_def`` arguments of the bundles beyond the library default (ResNet-50, stride 16):
#: no initial backbone weights (nothing is downloaded), dropout for MONAI Label's epistemic scoring
NETWORK_KWARGS: dict[str, Any] = {"backbone": "resnet50", "output_stride": 16, "backbone_weights": None,
                                  "dropout": 0.1, "norm": "batch"}

#: ``configs/demo.json``: the demo size (a small network, 64 px, 5 epochs x 40 iterations): at 80
#: iterations none of the three demos had learned its small structure yet (fundus cup Dice 0, no
#: polyp, no grey matter); 200 gave fundus disc 0.94 / 0.51 / 0.91 and cup 0.60 / 0.66 / 0.59
#: (seeds 0-2, synthetic Domain4) in about three minutes on 2 CPU cores
DEMO: dict[str, Any] = {
    "max_epochs": 5, "iterations_per_epoch": 40, "checkpoint_interval": 40, "log_interval": 10,
    "spatial_size": [64, 64], "batch_size_labeled": 4, "batch_size_unlabeled": 4, "num_workers": 0,
    "network_def#backbone": "resnet18", "network_def#base_channels": 8, "network_def#decoder_channels": 32,
    "network_def#low_level_channels": 8,
}

#: top-level ids of the data options (the values train_bundle_config wrote into each preprocessing)
_DATA_IDS = ("spatial_size", "in_channels", "intensity", "normalize_mean", "normalize_std", "label_values")
#: handler -> when it is switched off (rank-0 writers; parts the method or split may not have)
_DISABLED = {
    "monai.handlers.ValidationHandler": "$not @has_validation",
    "medfound.dac.selection.BestModelSaver": "$not (@has_validation and @is_main_process)",
    "monai.handlers.StatsHandler": "$not @is_main_process",
    "monai.handlers.TensorBoardStatsHandler": "$not @is_main_process",
    "medfound.dac.diagnostics.TrainingLog": "$not @is_main_process",
    "medfound.dac.diagnostics.PseudoLabelMonitor": "$not (@track_pseudo_labels and @is_main_process)",
    "medfound.handlers.curves.CurvePlot": "$not @is_main_process",
    "ignite.handlers.ProgressBar": "$not @is_main_process",
}
_MAIN = "$not @is_main_process"


def _spec(name: str) -> dict[str, Any]:
    if name not in BUNDLES:
        raise ConfigError(f"unknown DAC bundle {name!r}; known: {', '.join(BUNDLES)}")
    return BUNDLES[name]


def _dac_config(name: str, split: str) -> DACConfig:
    spec = _spec(name)
    return DACConfig.from_dict({"data": {"split": split, **spec["data"]}, "network": {"kwargs": NETWORK_KWARGS}})


def _library_configs(name: str) -> tuple[DACConfig, dict[str, Any], dict[str, Any]]:
    """The DACConfig of bundle ``name`` and its train and evaluate configs, composed on a split
    with every part (validation, unlabelled items with labels), so nothing is left out."""
    with tempfile.TemporaryDirectory() as folder:
        split = os.path.join(folder, "split.json")
        Path(split).write_text(json.dumps({
            "labeled": [{"image": "l.png", "label": "l_mask.png"}],
            "unlabeled": [{"image": "u.png", "hidden_label": "u_mask.png"}],
            "validation": [{"image": "v.png", "label": "v_mask.png"}], "test": [],
            "class_names": ["background", "foreground"]}), encoding="utf-8")
        cfg = _dac_config(name, split)
        return cfg, train_bundle_config(cfg), evaluate_bundle_config(cfg)


def _with_target_first(node: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``node`` with ``extra`` keys (``_disabled_``) right after its ``_target_``."""
    out = {"_target_": node["_target_"]}
    out.update({f"_{k}_": v for k, v in extra.items()})
    out.update({k: v for k, v in node.items() if k != "_target_"})
    return out


def _refer(node: dict[str, Any], key: str, top: dict[str, Any], name: str | None = None) -> None:
    """Move ``node[key]`` to the top-level id ``name`` (default ``key``) and refer to it."""
    name = name or key
    value = node[key]
    if name in top and top[name] != value:
        raise ConfigError(f"{name}: {value!r} here but {top[name]!r} elsewhere in the generated config")
    top[name] = value
    node[key] = f"@{name}"


def _refer_preprocessing(pre: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """A deterministic pipeline of :func:`~medfound.dac.bundle_configs._preprocessing` (the
    medfound one, or a Compose starting with it) with the data options as references."""
    first = pre["transforms"][0] if pre["_target_"] == "monai.transforms.Compose" else pre
    for key in _DATA_IDS:
        if key == "spatial_size" and first[key] is None:  # native size (evaluation)
            continue
        _refer(first, key, top)
    return pre


def _split_parameters() -> dict[str, Any]:
    """The split options of :func:`~medfound.dac.bundle_data.prepare_split`, with its defaults."""
    defaults = {k: p.default for k, p in inspect.signature(prepare_split).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {"labeled_domain": defaults["labeled_domain"], "labeled_ratio": defaults["labeled_ratio"],
            "val_ratio": defaults["val_ratio"], "split_seed": defaults["seed"],
            "demo_size": defaults["demo_size"], "demo_seed": defaults["demo_seed"]}


def bundle_train_config(name: str) -> dict[str, Any]:
    """``configs/train.json`` of DAC bundle ``name`` (a :data:`BUNDLES` key).

    Ids beyond :func:`~medfound.dac.bundle_configs.train_bundle_config`'s: ``bundle_root``,
    ``dataset_name``, ``dataset_dir`` (empty: the synthetic demo, written into ``cache_dir``),
    ``test_domain``, ``labeled_domain``, ``labeled_ratio``, ``val_ratio``, ``split_seed``,
    ``demo_size``, ``demo_seed``, ``method``, ``ckpt_dir`` (``models/``), ``is_main_process``,
    ``val_interval``, ``class_names``, ``has_validation``, ``semi_supervised``,
    ``track_pseudo_labels``, the data options (``spatial_size``, ``in_channels``, ``intensity``,
    ``normalize_mean``, ``normalize_std``, ``label_values``, ``batch_size_labeled``,
    ``batch_size_unlabeled``, ``num_workers``, ``cache``, ``on_error``), ``confidence_threshold``
    and ``rampup_fraction``.
    """
    spec = _spec(name)
    cfg, base, _ = _library_configs(name)
    base = copy.deepcopy(base)
    train, validate = base["train"], base["validate"]
    handlers = train["handlers"]
    validation = next(h for h in handlers if h["_target_"] == "monai.handlers.ValidationHandler")

    top: dict[str, Any] = {
        "imports": ["$from medfound.dac.config import METHODS", "$from medfound.dac.data import labels_available"],
        "bundle_root": ".",
        "dataset_name": spec["dataset"],
        "dataset_dir": "",
        "cache_dir": "$@bundle_root + '/cache'",
        "test_domain": spec["test_domain"],
        **_split_parameters(),
        "split_file": {"_target_": "medfound.dac.bundle_data.prepare_split", "dataset": "@dataset_name",
                       "dataset_dir": "@dataset_dir", "cache_dir": "@cache_dir", "test_domain": "@test_domain",
                       "labeled_domain": "@labeled_domain", "labeled_ratio": "@labeled_ratio",
                       "val_ratio": "@val_ratio", "seed": "@split_seed", "demo_size": "@demo_size",
                       "demo_seed": "@demo_seed"},
        "method": cfg.method.name,
        "output_dir": "$@bundle_root + '/runs/' + ('data' if @dataset_dir else 'demo') + '_' + @method + "
                      "'_test-' + @test_domain",
        "ckpt_dir": "$@bundle_root + '/models'",
        "seed": base["seed"],
        "device": {**base["device"], "what": "device"},
        "amp": base["amp"],
        "is_main_process": "$torch.distributed.get_rank() == 0 if torch.distributed.is_initialized() else True",
    }
    for key in ("max_epochs", "iterations_per_epoch", "max_iterations"):
        top[key] = base[key]
    _refer(validation, "interval", top, "val_interval")
    for key in ("log_interval", "checkpoint_interval", "split"):
        top[key] = base[key]
    top["class_names"] = "$@split['class_names']"
    top["num_classes"], top["regions"] = base["num_classes"], base["regions"]
    top["has_validation"] = "$bool(@split['validation'])"
    top["semi_supervised"] = "$METHODS[@method].pseudo is not None"
    top["track_pseudo_labels"] = "$@semi_supervised and labels_available(@split['unlabeled'])"

    # validation's pipeline is the training one (plus per-image standardisation): say so by reference
    if validate["preprocessing"] == train["preprocessing"]:
        validate["preprocessing"] = "@train#preprocessing"
    elif validate["preprocessing"]["transforms"][0] == train["preprocessing"]:
        validate["preprocessing"]["transforms"][0] = "@train#preprocessing"
    _refer_preprocessing(train["preprocessing"], top)
    _refer_preprocessing(train["unlabeled_preprocessing"], top)
    loader = train["dataloader"]
    for key in ("batch_size_labeled", "batch_size_unlabeled", "num_workers"):
        _refer(loader, key, top)
    for dataset in (train["dataset"], train["unlabeled_dataset"]):
        _refer(dataset, "cache", top)
        _refer(dataset, "on_error", top)
    _refer(validate["dataset"], "on_error", top)
    validate["dataloader"]["batch_size"] = "@batch_size_labeled"

    # the method, chosen at run time
    base["dac_model"]["method"] = "@method"
    _refer(base["network_def"], "in_channels", top)
    objective = base["objective"]
    if objective["confidence_threshold"] != cfg.threshold() or objective["rampup_iterations"] != (
            f"$int(round({cfg.method.rampup_fraction!r} * @max_iterations))"):
        raise ConfigError("train_bundle_config's objective changed: update bundle_train_config")
    objective["confidence_threshold"] = "@confidence_threshold"
    objective["rampup_iterations"] = "$int(round(@rampup_fraction * @max_iterations))"
    for key in ("mean", "std"):
        _refer(base["strong_augment"], key, top, f"normalize_{key}")
    for key in ("network_def", "dac_model", "network"):
        top[key] = base[key]
    top["confidence_threshold"] = "$METHODS[@method].default_threshold"
    top["rampup_fraction"] = cfg.method.rampup_fraction
    for key in ("objective", "optimizer", "lr_scheduler", "strong_augment"):
        top[key] = base[key]
    top["tensorboard_writer"] = _with_target_first(base["tensorboard_writer"], disabled=_MAIN)

    # the parts a method or split may not need are switched off, not left out
    train["unlabeled_preprocessing"]["with_label"] = "@track_pseudo_labels"
    train["unlabeled_augmentation"]["with_label"] = "@track_pseudo_labels"
    train["unlabeled_dataset"]["data"]["keep_labels"] = "@track_pseudo_labels"
    train["unlabeled_dataset"] = _with_target_first(train["unlabeled_dataset"], disabled="$not @semi_supervised")
    train["trainer"]["track_pseudo_labels"] = "@track_pseudo_labels"
    for i, handler in enumerate(handlers):
        if handler["_target_"] in _DISABLED:
            handlers[i] = _with_target_first(handler, disabled=_DISABLED[handler["_target_"]])
    curves = next(h for h in handlers if h["_target_"] == "medfound.handlers.curves.CurvePlot")
    curves["title"] = "$@method + ': " + curves["title"].split(": ", 1)[1] + "'"
    validate["handlers"] = [_with_target_first(h, disabled=_MAIN) for h in validate["handlers"]]
    validate["evaluator"] = _with_target_first(validate["evaluator"], disabled="$not @has_validation")
    top["train"], top["validate"] = train, validate

    for key in ("checkpoint_objects", "checkpoint", "resume"):
        top[key] = base[key]
    initialize = base["initialize"]
    initialize[0] = _with_target_first(initialize[0], disabled=_MAIN)  # the skipped-items report
    top["initialize"] = initialize
    top["run"] = [*base["run"], {"_target_": "medfound.dac.bundle_outputs.publish_model",
                                 "run_dir": "@output_dir", "ckpt_dir": "@ckpt_dir"}]
    top["finalize"] = ["$@tensorboard_writer is None or @tensorboard_writer.close()"]
    return top


def bundle_evaluate_config(name: str) -> dict[str, Any]:
    """``configs/evaluate.json`` of DAC bundle ``name``: the overlay of its ``train.json`` that
    evaluates ``models/model.pt`` on the held-out domain (native resolution, the
    preprocessing of :func:`~medfound.dac.bundle_configs.evaluate_bundle_config`) and prints the
    per-domain Dice table."""
    _, _, evaluate = _library_configs(name)
    top: dict[str, Any] = {}
    preprocessing = _refer_preprocessing(copy.deepcopy(evaluate["preprocessing"]), top)
    return {
        "model_path": "$@ckpt_dir + '/model.pt'",
        "evaluation_dir": "$@output_dir + '/evaluation'",
        "evaluate_parts": list(evaluate["evaluator"]["parts"]),
        "trained_network": {"_target_": "medfound.dac.evaluation.load_trained_network",
                            "network": "$@network_def().to(@device)", "path": "@model_path",
                            "sub_model": evaluate["network"]["sub_model"]},
        "predictor": {**evaluate["predictor"], "network": "@trained_network", "spatial_size": "@spatial_size"},
        "preprocessing": preprocessing,
        "evaluator": {**evaluate["evaluator"], "parts": "@evaluate_parts", "output_dir": "@evaluation_dir"},
        "initialize": [],
        "run": [{"_target_": "medfound.dac.bundle_outputs.print_results", "results": "$@evaluator.run()",
                 "title": f"$'{_spec(name)['title']} (' + @method + '), held-out domain ' + @test_domain + ':'"}],
        "finalize": [],
    }


def bundle_multi_gpu_overlay(train: Mapping[str, Any]) -> dict[str, Any]:
    """``configs/multi_gpu_train.json``: the overlay of ``train`` (a :func:`bundle_train_config`)
    for ``torchrun``: the process group first (nccl on GPU, gloo on CPU), the trainer's step under
    ``DistributedDataParallel``, each rank drawing its slice of every global batch,
    ``DistributedSampler`` for validation; rank-0 handlers as in ``train`` (``is_main_process``)."""
    return {
        "backend": "$'nccl' if torch.cuda.is_available() else 'gloo'",
        "sync_batchnorm": False,
        "network": {"_target_": "medfound.dac.distributed.convert_sync_batchnorm",
                    "module": train["network"],
                    "enabled": "@sync_batchnorm"},
        "train#trainer#distributed": True,
        "train#dataloader#rank": {"_target_": "medfound.utils.devices.rank"},
        "train#dataloader#world_size": {"_target_": "medfound.utils.devices.world_size"},
        "validate#sampler": {"_target_": "monai.data.DistributedSampler", "dataset": "@validate#dataset",
                             "even_divisible": False, "shuffle": False,
                             "num_replicas": "@train#dataloader#world_size", "rank": "@train#dataloader#rank"},
        "validate#dataloader#sampler": "@validate#sampler",
        "initialize": [{"_target_": "medfound.dac.distributed.init_distributed", "backend": "@backend"},
                       "$torch.cuda.set_device(@device) if @device.type == 'cuda' else None",
                       {"_target_": "medfound.dac.distributed.quiet_other_ranks"},
                       *copy.deepcopy(train["initialize"])],
        "finalize": [*train["finalize"],
                     "$torch.distributed.is_initialized() and torch.distributed.destroy_process_group()"],
    }


def bundle_configs(name: str) -> dict[str, dict[str, Any]]:
    """The generated configs of DAC bundle ``name``, by file name; a test checks that the
    committed files are exactly these (rewrite them with :func:`write_bundle_configs`)."""
    train = bundle_train_config(name)
    return {"train.json": train, "evaluate.json": bundle_evaluate_config(name),
            "multi_gpu_train.json": bundle_multi_gpu_overlay(train), "demo.json": dict(DEMO)}


def write_bundle_configs(bundles_dir: str | os.PathLike) -> list[Path]:
    """Write every DAC bundle's generated configs under ``bundles_dir/<bundle>/configs``; returns the paths."""
    written = []
    for name in BUNDLES:
        for file, config in bundle_configs(name).items():
            path = Path(bundles_dir, name, "configs", file)
            path.write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
            written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - the command named in the module docstring
    for written_path in write_bundle_configs(sys.argv[1] if len(sys.argv) > 1 else "bundles"):
        print(written_path)
