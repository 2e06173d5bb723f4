"""Train and evaluate DAC from a :class:`~medfound.dac.config.DACConfig`: thin composition over bundle configs.

The Python API behind ``medfound dac train CONFIG`` and ``medfound dac evaluate CONFIG``.
Neither builds an object itself: each turns the config into a bundle-style config
(:mod:`medfound.dac.bundle_configs`), writes it next to the results, and runs it with MONAI's
``ConfigParser`` the way ``python -m monai.bundle run`` does (``initialize``, ``run``,
``finalize``), so the file left behind reproduces the run.

- :func:`train`: writes ``config.json`` (the resolved :class:`DACConfig`) and
  ``train_config.json`` into ``train.output_dir``, trains (resuming from ``last.pt`` when it
  exists) and returns a summary.
- :func:`evaluate`: evaluates the run as it was trained (its ``config.json``, see
  :func:`evaluation_config`), writes ``evaluate_config.json`` into the evaluation folder
  (``evaluate.output_dir``, default ``train.output_dir/evaluation``) and returns, per part
  of the split, the Dice per region, case and domain.

A DAC config is plain data: values in MONAI config syntax (``$``, ``@``, ``%``, ``_target_``)
are refused, and ``network.target`` must name a registered network
(:data:`~medfound.dac.config.NETWORKS`) unless ``allow_any_network=True``. The bundle
configs written next to a run (``train_config.json``) are MONAI configs, i.e. code: run only
your own.

Files in ``train.output_dir``: ``config.json``, ``train_config.json``, ``last.pt`` (the
checkpoint), ``best_model.pt`` / ``best_model.json`` (selected on source validation),
``model.pt`` (the final deployable network), ``training_log.jsonl``, ``curves.png``,
``tensorboard/``, ``pseudo_labels.jsonl`` (when unlabelled items carry labels),
``skipped_items.json``.

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

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from medfound.dac.bundle_configs import (
    BEST_MODEL,
    EVALUATE_CONFIG,
    LAST_CHECKPOINT,
    LAST_MODEL,
    TRAIN_CONFIG,
    evaluate_bundle_config,
    train_bundle_config,
)
from medfound.dac.config import DACConfig, check_network, load_config
from medfound.dac.selection import BestModelSaver
from medfound.handlers import HandledErrorEcho, quiet_error_echoes
from medfound.utils import atomic_write_json, parsed_content

__all__ = ["training_parser", "run_workflow", "training_summary", "train", "evaluation_config", "evaluate"]

logger = logging.getLogger("medfound.dac")

ConfigLike = str | os.PathLike | Mapping[str, Any] | DACConfig


def _as_config(config: ConfigLike, overrides: Mapping[str, Any] | None = None) -> DACConfig:
    if isinstance(config, DACConfig) and not overrides:
        return config
    return load_config(config if not isinstance(config, Mapping) else dict(config), dict(overrides or {}))


def _stdout_logging() -> None:
    """Send medfound's and MONAI's INFO logs to stdout once (a CLI run should show progress)."""
    root = logging.getLogger("medfound")
    if not any(getattr(h, "_medfound", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        quiet_error_echoes([h])  # StatsHandler logs a medfound error's traceback; the caller reports it
        h._medfound = True  # type: ignore[attr-defined]
        for name in ("medfound", "monai.handlers.StatsHandler"):
            lg = logging.getLogger(name)
            lg.addHandler(h)
            lg.setLevel(logging.INFO)
            lg.propagate = False


def run_workflow(parser: ConfigParser) -> list[Any]:
    """Evaluate ``initialize``, ``run`` and ``finalize`` in order, as ``monai.bundle run`` does.

    Returns the values of ``run``'s expressions.
    """
    results: dict[str, list[Any]] = {}
    for key in ("initialize", "run", "finalize"):
        n = len(parser[key]) if key in parser else 0
        results[key] = [parsed_content(parser, f"{key}#{i}") for i in range(n)]
    return results["run"]


def training_parser(config: ConfigLike, overrides: Mapping[str, Any] | None = None,
                    allow_any_network: bool = False) -> ConfigParser:
    """Write ``config.json`` and ``train_config.json`` into the run folder; return the parser of the latter.

    Nothing is instantiated yet: ``parser.get_parsed_content("train#trainer")`` builds the
    trainer (with its data, model, evaluator and handlers), :func:`run_workflow` runs it.
    ``allow_any_network``: see :func:`train`.
    """
    cfg = _as_config(config, overrides)
    check_network(cfg, allow_any_network)
    bundle = train_bundle_config(cfg)
    # MONAI's StatsHandler logs a failing run's traceback before the error reaches the caller: for a
    # medfound error (bad input, named in its message) the caller's report is enough
    stats_name = next(h["name"] for h in bundle["train"]["handlers"] if h["_target_"] == "monai.handlers.StatsHandler")
    stats = logging.getLogger(stats_name)
    if not any(isinstance(f, HandledErrorEcho) for f in stats.filters):
        stats.addFilter(HandledErrorEcho())
    out = Path(cfg.train.output_dir)
    atomic_write_json(out / "config.json", cfg.to_dict())
    atomic_write_json(out / TRAIN_CONFIG, bundle)
    return ConfigParser(bundle)


def training_summary(parser: ConfigParser) -> dict[str, Any]:
    """What a finished (or continued) run of a :func:`training_parser` config did and wrote."""
    trainer = parsed_content(parser, "train#trainer")
    out = Path(parsed_content(parser, "output_dir"))
    best = next((h for h in parsed_content(parser, "train#handlers") if isinstance(h, BestModelSaver)), None)
    datasets = [parsed_content(parser, i) for i in ("train#dataset", "train#unlabeled_dataset", "validate#dataset")
                if i in parser]
    return {
        "method": trainer.network.method,
        "iterations": int(trainer.state.iteration),
        "resumed": bool("resume" in parser and parsed_content(parser, "resume").resumed),
        "best_metric": None if best is None or best.best_iteration < 0 else best.best_metric,
        "best_iteration": -1 if best is None else best.best_iteration,
        "checkpoint": str(out / LAST_CHECKPOINT),
        "best_model": str(out / BEST_MODEL) if (out / BEST_MODEL).exists() else None,
        "final_model": str(out / LAST_MODEL) if (out / LAST_MODEL).exists() else None,
        "skipped": sum(len(ds.skipped) for ds in datasets),
        "output_dir": str(out),
    }


def train(config: ConfigLike, overrides: Mapping[str, Any] | None = None, verbose: bool = False,
          allow_any_network: bool = False) -> dict[str, Any]:
    """Train DAC (or the configured baseline) and return a summary (see :func:`training_summary`).

    Parameters
    ----------
    config : a config file (JSON/YAML), its values as a dict, or a :class:`DACConfig`.
    overrides : dotted keys to override (``{"method.name": "cps", "train.max_epochs": 5}``).
    verbose : log progress to stdout.
    allow_any_network : let ``network.target`` import any class, not only the registered networks
        (:data:`~medfound.dac.config.NETWORKS`): the config then chooses code to run; only for
        configs you wrote.
    """
    if verbose:
        _stdout_logging()
    parser = training_parser(config, overrides, allow_any_network)
    run_workflow(parser)
    return training_summary(parser)


#: what an evaluation may set differently from the training run; everything else comes from the run
_EVALUATION_KEYS = {("train", "output_dir"), ("train", "device"), ("train", "amp")}


def evaluation_config(config: ConfigLike, overrides: Mapping[str, Any] | None = None) -> DACConfig:
    """The config to evaluate a run with: the run **as it was trained**, from its ``config.json``.

    ``config`` (plus ``overrides``) names the run (``train.output_dir``) and says how to evaluate
    it (the ``evaluate`` section, ``train.device``, ``train.amp``); every other value is the
    trained run's (``--set`` overrides of the training included), so the network is rebuilt as
    it was trained. ``overrides`` given here still win: an explicit choice for this evaluation.
    Values of ``config`` that differ from the run's are logged. Without a ``config.json`` (a
    run trained elsewhere) ``config`` is used as it is.
    """
    cfg = _as_config(config, overrides)
    saved = Path(cfg.train.output_dir) / "config.json"
    if not saved.is_file():
        return cfg
    trained = load_config(saved).to_dict()
    given = cfg.to_dict()
    merged = {section: dict(values) for section, values in trained.items()}
    merged["evaluate"] = given["evaluate"]
    for section, key in _EVALUATION_KEYS:
        merged[section][key] = given[section][key]
    result = load_config(merged, dict(overrides or {}))
    explicit = set(overrides or {})
    differ = sorted(f"{section}.{key}" for section, values in given.items() if section != "evaluate"
                    for key, value in values.items() if (section, key) not in _EVALUATION_KEYS
                    and f"{section}.{key}" not in explicit and trained.get(section, {}).get(key) != value)
    if differ:
        logger.warning("evaluating the run as it was trained (%s): %s differ in the given config and were not used",
                       saved, ", ".join(differ))
    return result


def evaluate(config: ConfigLike, overrides: Mapping[str, Any] | None = None, verbose: bool = False,
             allow_any_network: bool = False) -> dict[str, Any]:
    """Evaluate the trained model on ``evaluate.parts``: part ->
    :class:`~medfound.evaluation.segmentation.SegmentationResults` (files in the evaluation folder).

    The run is evaluated as it was trained (:func:`evaluation_config`); ``allow_any_network``
    as in :func:`train`.
    """
    if verbose:
        _stdout_logging()
    cfg = evaluation_config(config, overrides)
    check_network(cfg, allow_any_network)
    bundle = evaluate_bundle_config(cfg)
    atomic_write_json(Path(bundle["output_dir"]) / EVALUATE_CONFIG, bundle)
    return run_workflow(ConfigParser(bundle))[0]
