"""Train and evaluate DAC from a :class:`~medfound.dac.config.DACConfig`: thin composition over bundle configs.

The Python API behind ``medfound dac train CONFIG`` and ``medfound dac evaluate CONFIG``.
Neither builds an object itself: each turns the config into a bundle-style config
(:mod:`medfound.dac.bundle_configs`), writes it next to the results, and runs it with MONAI's
``ConfigParser`` the way ``python -m monai.bundle run`` does (``initialize``, ``run``,
``finalize``), so the file left behind reproduces the run.

- :func:`train`: writes ``config.json`` (the resolved :class:`DACConfig`) and
  ``train_config.json`` into ``train.output_dir``, trains (resuming from ``last.pt`` when it
  exists) and returns a summary.
- :func:`evaluate`: writes ``evaluate_config.json`` into the evaluation folder
  (``evaluate.output_dir``, default ``train.output_dir/evaluation``) and returns, per part
  of the split, the Dice per region, case and domain.

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
from medfound.dac.config import DACConfig, load_config
from medfound.dac.selection import BestModelSaver
from medfound.errors import MedfoundError
from medfound.utils import atomic_write_json

__all__ = ["training_parser", "run_workflow", "training_summary", "train", "evaluate"]

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
        h._medfound = True  # type: ignore[attr-defined]
        for name in ("medfound", "monai.handlers.StatsHandler"):
            lg = logging.getLogger(name)
            lg.addHandler(h)
            lg.setLevel(logging.INFO)
            lg.propagate = False


def _parsed(parser: ConfigParser, id: str) -> Any:
    """``parser.get_parsed_content(id)``, re-raising a medfound error from a component as itself.

    MONAI wraps whatever a ``_target_`` raises in ``RuntimeError("Failed to instantiate ...")``;
    a bad value or file deserves the one-line error that names it.
    """
    try:
        return parser.get_parsed_content(id)
    except Exception as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, MedfoundError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None


def run_workflow(parser: ConfigParser) -> list[Any]:
    """Evaluate ``initialize``, ``run`` and ``finalize`` in order, as ``monai.bundle run`` does.

    Returns the values of ``run``'s expressions.
    """
    results: dict[str, list[Any]] = {}
    for key in ("initialize", "run", "finalize"):
        n = len(parser[key]) if key in parser else 0
        results[key] = [_parsed(parser, f"{key}#{i}") for i in range(n)]
    return results["run"]


def training_parser(config: ConfigLike, overrides: Mapping[str, Any] | None = None) -> ConfigParser:
    """Write ``config.json`` and ``train_config.json`` into the run folder; return the parser of the latter.

    Nothing is instantiated yet: ``parser.get_parsed_content("train#trainer")`` builds the
    trainer (with its data, model, evaluator and handlers), :func:`run_workflow` runs it.
    """
    cfg = _as_config(config, overrides)
    bundle = train_bundle_config(cfg)
    out = Path(cfg.train.output_dir)
    atomic_write_json(out / "config.json", cfg.to_dict())
    atomic_write_json(out / TRAIN_CONFIG, bundle)
    return ConfigParser(bundle)


def training_summary(parser: ConfigParser) -> dict[str, Any]:
    """What a finished (or continued) run of a :func:`training_parser` config did and wrote."""
    trainer = _parsed(parser, "train#trainer")
    out = Path(_parsed(parser, "output_dir"))
    best = next((h for h in _parsed(parser, "train#handlers") if isinstance(h, BestModelSaver)), None)
    datasets = [_parsed(parser, i) for i in ("train#dataset", "train#unlabeled_dataset", "validate#dataset")
                if i in parser]
    return {
        "method": trainer.network.method,
        "iterations": int(trainer.state.iteration),
        "resumed": bool("resume" in parser and _parsed(parser, "resume").resumed),
        "best_metric": None if best is None or best.best_iteration < 0 else best.best_metric,
        "best_iteration": -1 if best is None else best.best_iteration,
        "checkpoint": str(out / LAST_CHECKPOINT),
        "best_model": str(out / BEST_MODEL) if (out / BEST_MODEL).exists() else None,
        "final_model": str(out / LAST_MODEL) if (out / LAST_MODEL).exists() else None,
        "skipped": sum(len(ds.skipped) for ds in datasets),
        "output_dir": str(out),
    }


def train(config: ConfigLike, overrides: Mapping[str, Any] | None = None, verbose: bool = False) -> dict[str, Any]:
    """Train DAC (or the configured baseline) and return a summary (see :func:`training_summary`).

    Parameters
    ----------
    config : a config file (JSON/YAML), its values as a dict, or a :class:`DACConfig`.
    overrides : dotted keys to override (``{"method.name": "cps", "train.max_epochs": 5}``).
    verbose : log progress to stdout.
    """
    if verbose:
        _stdout_logging()
    parser = training_parser(config, overrides)
    run_workflow(parser)
    return training_summary(parser)


def evaluate(config: ConfigLike, overrides: Mapping[str, Any] | None = None, verbose: bool = False) -> dict[str, Any]:
    """Evaluate the trained model on ``evaluate.parts``: part ->
    :class:`~medfound.evaluation.segmentation.SegmentationResults` (files in the evaluation folder)."""
    if verbose:
        _stdout_logging()
    cfg = _as_config(config, overrides)
    bundle = evaluate_bundle_config(cfg)
    atomic_write_json(Path(bundle["output_dir"]) / EVALUATE_CONFIG, bundle)
    return run_workflow(ConfigParser(bundle))[0]
