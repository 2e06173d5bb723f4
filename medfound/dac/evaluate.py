"""Evaluate a trained DAC model (or baseline) on parts of a split, per region, case and domain.

The image goes through the same deterministic pipeline as in training (resized to
``data.spatial_size``); the logits are resized back to the label's native size (bilinear)
before the argmax, so Dice is measured at the resolution of the reference masks. Every
case is scored (an empty reference with an empty prediction scores 1); unreadable cases are
listed as skipped, never silently dropped.

Results: ``evaluation/<part>_cases.csv`` (one row per case and region),
``evaluation/<part>_summary.json`` (mean and std per domain and region, mean of the domain
means), and the returned dict.

Example
-------
.. code-block:: python

    from medfound.dac import evaluate
    results = evaluate("runs/dac_d4/config.json")
    results["test"]["domains"]["Domain4"]["cup"]["mean"]
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medfound.dac.checkpoint import BEST_MODEL, LAST_CHECKPOINT, LAST_MODEL
from medfound.dac.config import DACConfig
from medfound.dac.data import build_transforms, load_split
from medfound.dac.model import build_network
from medfound.errors import ConfigError, DatasetLayoutError

__all__ = ["load_inference_model", "predict_items", "region_dice", "summarise", "evaluate_model", "evaluate_run"]

logger = logging.getLogger(__name__)


def region_dice(pred: torch.Tensor, label: torch.Tensor, regions: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Dice of each region (a union of classes) between two class-index maps; empty vs empty = 1.

    Example
    -------
    >>> import torch
    >>> region_dice(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[0, 2], [2, 0]]), {"disc": [1, 2], "cup": [2]})
    {'disc': 0.8, 'cup': 0.5}
    """
    out = {}
    for name, classes in regions.items():
        cls = torch.as_tensor(list(classes), device=pred.device)
        p, t = torch.isin(pred, cls), torch.isin(label.to(pred.device), cls)
        denom = int(p.sum()) + int(t.sum())
        out[name] = 1.0 if denom == 0 else 2.0 * int((p & t).sum()) / denom
    return out


def load_inference_model(cfg: DACConfig, num_classes: int, checkpoint: str | None = None,
                         device: torch.device | str = "cpu") -> torch.nn.Module:
    """The network to evaluate: ``"best"``, ``"last"`` (final deployable model) or a file path.

    With ``method.inference == "ensemble"`` the A+B ensemble is rebuilt from ``last.pt``.
    """
    from medfound.dac.workflow import build_model

    out = Path(cfg.train.output_dir)
    choice = checkpoint or cfg.evaluate.checkpoint
    if cfg.method.inference == "ensemble":
        path = out / LAST_CHECKPOINT if choice in ("best", "last") else Path(choice)
        if not path.is_file():
            raise DatasetLayoutError(f"checkpoint {path} does not exist: train first (`medfound dac train`)")
        model = build_model(cfg, num_classes)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["network"] if "network" in state else state)
        return model.to(device).eval()
    path = {"best": out / BEST_MODEL, "last": out / LAST_MODEL}.get(choice, Path(choice))
    if not path.is_file():
        hint = " (no validation items, so no best model: use checkpoint 'last')" if choice == "best" else ""
        raise DatasetLayoutError(f"model file {path} does not exist{hint}: train first (`medfound dac train`)")
    kwargs = dict(cfg.network.kwargs)
    kwargs.setdefault("in_channels", cfg.data.in_channels)
    kwargs.pop("backbone_weights", None)  # the trained weights replace any initial weights
    net = build_network(num_classes, cfg.network.target, kwargs)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "network" in state and isinstance(state["network"], dict):
        state = {k[len("model_a."):]: v for k, v in state["network"].items() if k.startswith("model_a.")}
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


@torch.no_grad()
def predict_items(
    model: Callable[[torch.Tensor], torch.Tensor],
    items: Sequence[Mapping[str, Any]],
    transform: Callable,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Predict class-index maps at each label's native size.

    Returns
    -------
    cases : ``{"item": item, "pred": (H, W) long, "label": (H, W) long or None}`` per readable item.
    skipped : ``{"image", "error"}`` per item that could not be read.
    """
    log = log or logger.warning
    cases, skipped = [], []
    for item in items:
        try:
            d = transform(dict(item))
        except Exception as err:  # noqa: BLE001 - report the case, keep going
            cause = err
            while cause.__cause__ is not None:
                cause = cause.__cause__
            skipped.append({"image": str(item.get("image")), "error": f"{type(cause).__name__}: {cause}"})
            log(f"skipping {item.get('image')}: {type(cause).__name__}: {cause}")
            continue
        image = d["image"].as_tensor() if hasattr(d["image"], "as_tensor") else torch.as_tensor(d["image"])
        logits = model(image[None].to(device).float()).float()
        label = d.get("label")
        if label is not None:
            label = (label.as_tensor() if hasattr(label, "as_tensor") else torch.as_tensor(label))[0].long()
            logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
        cases.append({"item": dict(item), "pred": logits.argmax(1)[0].cpu(), "label": label})
    return cases, skipped


def summarise(rows: Sequence[Mapping[str, Any]], regions: Sequence[str]) -> dict[str, Any]:
    """Mean and std of Dice per domain and region, and the mean over domains of the domain means."""
    domains: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        per = domains.setdefault(str(row["domain"]), {r: [] for r in regions})
        for r in regions:
            per[r].append(float(row[r]))
    summary: dict[str, Any] = {"domains": {}, "mean_over_domains": {}}
    for domain, per in sorted(domains.items()):
        summary["domains"][domain] = {
            r: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for r, v in per.items()
        }
    for r in regions:
        means = [summary["domains"][d][r]["mean"] for d in summary["domains"]]
        summary["mean_over_domains"][r] = float(np.mean(means)) if means else float("nan")
    return summary


def evaluate_model(
    model: Callable[[torch.Tensor], torch.Tensor],
    items: Sequence[Mapping[str, Any]],
    transform: Callable,
    regions: Mapping[str, Sequence[int]],
    device: torch.device | str = "cpu",
    output_dir: str | os.PathLike | None = None,
    part: str = "test",
) -> dict[str, Any]:
    """Dice per region, case and domain of ``model`` on ``items``; writes CSV/JSON when ``output_dir`` is set."""
    cases, skipped = predict_items(model, items, transform, device)
    names = list(regions)
    rows = []
    for case in cases:
        if case["label"] is None:
            continue
        item = case["item"]
        dice = region_dice(case["pred"], case["label"], regions)
        rows.append({"case_id": item.get("case_id", os.path.basename(str(item["image"]))),
                     "domain": item.get("domain", "unknown"), "image": str(item["image"]), **dice})
    result = {"part": part, "n_cases": len(rows), "regions": names, "cases": rows, "skipped": skipped,
              **summarise(rows, names)}
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"{part}_cases.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["case_id", "domain", "image", *names])
            w.writeheader()
            w.writerows(rows)
        (out / f"{part}_summary.json").write_text(json.dumps({k: v for k, v in result.items() if k != "cases"},
                                                             indent=2))
    return result


def evaluate_run(cfg: DACConfig) -> dict[str, Any]:
    """Evaluate the run of ``cfg`` on ``cfg.evaluate.parts``; returns ``{part: result}``."""
    from medfound.dac.workflow import resolve_device

    split = load_split(cfg.data.split)
    num_classes = int(cfg.network.num_classes or split["num_classes"])
    device = resolve_device(cfg.train.device)
    model = load_inference_model(cfg, num_classes, device=device)
    det, _ = build_transforms(cfg.data, num_classes, None, with_label=True, resize_label=False)
    out_dir = Path(cfg.evaluate.output_dir or Path(cfg.train.output_dir) / "evaluation")
    results = {}
    for part in cfg.evaluate.parts:
        if part not in split or not isinstance(split[part], list):
            raise ConfigError(f"evaluate.parts: {part!r} is not a part of the split {cfg.data.split}")
        results[part] = evaluate_model(model, split[part], det, split["regions"], device, out_dir, part)
    return results
