"""Evaluate a trained DAC model (or baseline) on parts of a split, per region, case and domain.

The metrics are those of :mod:`medfound.evaluation.segmentation` (Dice per region, per
case, per domain; mean of domain means; no case dropped, unreadable cases listed). This
module supplies the DAC-side pieces a bundle-style evaluation config composes
(:func:`medfound.dac.bundle_configs.evaluate_bundle_config`):

- :func:`load_trained_network`: trained weights into a freshly built network (the selected
  ``best_model.pt``, the final ``model.pt``, sub-model A of a ``last.pt`` checkpoint), or
  into a :class:`~medfound.dac.model.DACModel` for the A+B ensemble;
- :class:`ResizedPredictor`: runs the network at its training size
  (``data.spatial_size``, resized with MONAI ``Resize`` exactly as in training) on images of
  any size and returns logits at the input size, so Dice is measured at the resolution of
  the reference masks;
- :class:`SplitEvaluator`: runs a predictor over parts of a split and writes
  ``<part>.json``, ``<part>_cases.csv`` and ``<part>_summary.csv``.

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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from monai.transforms import Resize
from torch import nn

from medfound.dac.model import DACModel
from medfound.errors import ConfigError, DatasetLayoutError, WeightsError
from medfound.evaluation.segmentation import SegmentationResults, evaluate_segmentation
from medfound.utils import check_choice, load_torch_file, resolve_device

__all__ = ["ResizedPredictor", "load_trained_network", "SplitEvaluator"]

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


def load_trained_network(network: nn.Module, path: str | os.PathLike, sub_model: str = "a") -> nn.Module:
    """Load trained weights from ``path`` into ``network`` (strictly) and return it in eval mode.

    ``path`` holds a deployable state dict (``best_model.pt``, ``model.pt``) or a training
    checkpoint (``last.pt``): a plain network then takes the weights of ``sub_model``
    (``"a"`` or ``"b"``), a :class:`~medfound.dac.model.DACModel` (the A+B ensemble) the whole
    container's.

    Raises
    ------
    DatasetLayoutError
        The file does not exist (the run was not trained, or has no validation part and
        hence no ``best_model.pt``).
    WeightsError
        The file is unreadable or does not fit the network.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(
            f"model file {path} does not exist: train first (`medfound dac train`); a split without validation "
            "items gives no best_model.pt (evaluate checkpoint 'last')"
        )
    state = load_torch_file(path, "cpu", what="model file")
    if not isinstance(state, Mapping):
        raise WeightsError(f"model file {path} holds a {type(state).__name__}, not a state dict")
    checkpoint = isinstance(state.get("network"), Mapping)
    if isinstance(network, DACModel):
        if not checkpoint:
            raise WeightsError(f"model file {path} holds one network; the A+B ensemble needs the checkpoint last.pt")
        state = state["network"]
    elif checkpoint:
        prefix = f"model_{check_choice(sub_model, ('a', 'b'), 'sub_model')}."
        state = {k[len(prefix):]: v for k, v in state["network"].items() if k.startswith(prefix)}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise WeightsError(f"model file {path} does not fit the configured network: {first}") from None
    return network.eval()


class SplitEvaluator:
    """Run a predictor over parts of a split; Dice per region, case and domain, written to files.

    Parameters
    ----------
    predictor : ``image (1, C, H, W) -> logits (1, K, H, W)`` (e.g. :class:`ResizedPredictor`).
    split : the split (:func:`medfound.dac.data.load_split`), with ``regions``.
    parts : the split's parts to evaluate (every item must have a ``label``).
    transform : the deterministic pipeline without resizing
        (``medfound.dac.data.preprocessing(..., spatial_size=None)``).
    output_dir : where ``<part>.json``, ``<part>_cases.csv``, ``<part>_summary.csv`` go.
    device : where the predictor runs.
    amp : autocast on CUDA.
    metrics : ``("dice",)`` or ``("dice", "hd95")``.
    log : progress and skipped-case messages (default: the module's logger).
    """

    def __init__(self, predictor: Callable[[torch.Tensor], Any], split: Mapping[str, Any], parts: Sequence[str],
                 transform: Callable[[dict], dict], output_dir: str | os.PathLike, device: Any = "auto",
                 amp: bool = False, metrics: Sequence[str] = ("dice",),
                 log: Callable[[str], None] | None = None) -> None:
        self.predictor = predictor
        self.split = split
        self.parts = [str(p) for p in parts]
        for part in self.parts:
            if not isinstance(split.get(part), list):
                raise ConfigError(f"evaluate.parts: {part!r} is not a part of the split {split.get('path', '')}")
            unlabeled = [it for it in split[part] if "label" not in it]
            if unlabeled:
                raise ConfigError(f"evaluate.parts: {len(unlabeled)} item(s) of {part!r} have no 'label' "
                                  f"(first: {unlabeled[0]['image']})")
        self.transform = transform
        self.output_dir = Path(output_dir)
        self.device = resolve_device(device, what="evaluation device")
        self.amp = bool(amp)
        self.metrics = tuple(metrics)
        self.log = log or logger.info

    def run(self) -> dict[str, SegmentationResults]:
        """Evaluate every part; returns part -> :class:`~medfound.evaluation.segmentation.SegmentationResults`."""
        results = {}
        for part in self.parts:
            res = evaluate_segmentation(self.predictor, self.split[part], self.split["regions"],
                                        transform=self.transform, metrics=self.metrics, device=self.device,
                                        amp=self.amp, on_error="skip", log=self.log)
            res.to_json(self.output_dir / f"{part}.json")
            res.to_csv(self.output_dir / part)
            for bad in res.skipped:
                logger.warning("could not evaluate %s (%s): %s", bad["case_id"], bad["domain"], bad["error"])
            results[part] = res
        return results
