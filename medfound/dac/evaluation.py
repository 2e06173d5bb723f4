"""Evaluate a trained DAC model (or baseline) on parts of a split, per region, case and domain.

The metrics are those of :mod:`medfound.evaluation.segmentation` (Dice per region, per
case, per domain; mean of domain means; no case dropped, unreadable cases listed). This
module supplies what is DAC-specific:

- :func:`load_inference_model`: the selected network (``best_model.pt`` chosen on the
  source validation part, the final ``model.pt``, any file, or the A+B ensemble);
- :class:`ResizedPredictor`: runs the network at its training size
  (``data.spatial_size``, resized with MONAI ``Resize`` exactly as in training) on images of
  any size and returns logits at the input size, so Dice is measured at the resolution of
  the reference masks;
- :func:`evaluate_run`: both applied to the parts of the split named in
  ``evaluate.parts``; results go to ``<output_dir>/evaluation/<part>.json`` and
  ``<part>_cases.csv`` / ``<part>_summary.csv``.

Example
-------
>>> import torch
>>> from medfound.dac.evaluation import ResizedPredictor
>>> net = torch.nn.Conv2d(3, 2, 1)
>>> ResizedPredictor(net, (16, 16))(torch.rand(1, 3, 40, 30)).shape
torch.Size([1, 2, 40, 30])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from monai.transforms import Resize
from torch import nn

from medfound.dac.checkpoint import BEST_MODEL, LAST_CHECKPOINT, LAST_MODEL
from medfound.dac.config import DACConfig
from medfound.dac.data import build_transforms, load_split
from medfound.dac.model import build_network
from medfound.errors import ConfigError, DatasetLayoutError

__all__ = ["ResizedPredictor", "load_inference_model", "evaluate_run"]

logger = logging.getLogger(__name__)


class ResizedPredictor(nn.Module):
    """Network at a fixed working size, logits back at the input size.

    Parameters
    ----------
    network : segmentation network ``(B, C, h, w) -> (B, K, h, w)``.
    spatial_size : working size ``(h, w)`` (the training ``data.spatial_size``).
    anti_aliasing : Gaussian pre-smoothing when shrinking, as the training pipeline does.
    """

    def __init__(self, network: nn.Module, spatial_size: Sequence[int], anti_aliasing: bool = True) -> None:
        super().__init__()
        self.network = network
        self.spatial_size = tuple(int(s) for s in spatial_size)
        self.resize = Resize(self.spatial_size, mode="bilinear", anti_aliasing=anti_aliasing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        x = x.as_tensor() if hasattr(x, "as_tensor") else x
        if size != self.spatial_size:
            x = torch.stack([torch.as_tensor(self.resize(xi, lazy=False)).as_subclass(torch.Tensor) for xi in x])
        logits = self.network(x)
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
        return logits


def load_inference_model(cfg: DACConfig, num_classes: int, checkpoint: str | None = None) -> nn.Module:
    """The network to evaluate: ``"best"``, ``"last"`` (final deployable model) or a file path.

    With ``method.inference == "ensemble"`` the A+B ensemble is rebuilt from ``last.pt`` (the
    selected model file holds sub-model A only).
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
        return model.eval()
    path = {"best": out / BEST_MODEL, "last": out / LAST_MODEL}.get(choice, Path(choice))
    if not path.is_file():
        hint = " (the split has no validation items, so no best model: use 'last')" if choice == "best" else ""
        raise DatasetLayoutError(f"model file {path} does not exist{hint}: train first (`medfound dac train`)")
    kwargs = dict(cfg.network.kwargs)
    kwargs.setdefault("in_channels", cfg.data.in_channels)
    kwargs.pop("backbone_weights", None)  # the trained weights replace any initial weights
    net = build_network(num_classes, cfg.network.target, kwargs)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("network"), dict):  # a training checkpoint: take A
        state = {k[len("model_a."):]: v for k, v in state["network"].items() if k.startswith("model_a.")}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"model file {path} does not fit the configured network: {err}") from err
    return net.eval()


def evaluate_run(cfg: DACConfig, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Evaluate the run of ``cfg`` on ``cfg.evaluate.parts``.

    Returns
    -------
    dict
        part -> :class:`medfound.evaluation.segmentation.SegmentationResults`.
    """
    from medfound.dac.workflow import resolve_device
    from medfound.evaluation.segmentation import evaluate_segmentation

    split = load_split(cfg.data.split)
    num_classes = int(cfg.network.num_classes or split["num_classes"])
    device = resolve_device(cfg.train.device)
    predictor = ResizedPredictor(load_inference_model(cfg, num_classes), cfg.data.spatial_size)
    transform, _ = build_transforms(cfg.data, num_classes, None, with_label=True, resize=False)
    out = Path(output_dir or cfg.evaluate.output_dir or Path(cfg.train.output_dir) / "evaluation")
    amp = cfg.train.amp if cfg.train.amp is not None else device.type == "cuda"
    results = {}
    for part in cfg.evaluate.parts:
        if part not in split or not isinstance(split[part], list):
            raise ConfigError(f"evaluate.parts: {part!r} is not a part of the split {cfg.data.split}")
        items = split[part]
        unlabeled = [it for it in items if "label" not in it]
        if unlabeled:
            raise ConfigError(f"evaluate.parts: {len(unlabeled)} item(s) of {part!r} have no 'label' "
                              f"(first: {unlabeled[0]['image']})")
        res = evaluate_segmentation(predictor, items, split["regions"], transform=transform, device=device,
                                    amp=amp, on_error="skip", log=logger.info)
        res.to_json(out / f"{part}.json")
        res.to_csv(out / part)
        for bad in res.skipped:
            logger.warning("could not evaluate %s (%s): %s", bad["case_id"], bad["domain"], bad["error"])
        results[part] = res
    return results
