"""Validation during training: Dice per region on the held-out part of the labelled source domain.

Model selection uses only this part of the split (never the test domain). The evaluator is
a MONAI ``SupervisedEvaluator`` over the DAC model's inference path (sub-model A by default),
so MONAI's ``ValidationHandler`` runs it from the trainer. Predictions and labels are turned
into one channel per **region** (named unions of classes, e.g. fundus disc = {1, 2} and
cup = {2}) and scored with MONAI's ``DiceMetric``; an empty reference with an empty
prediction scores 1 (``ignore_empty=False``), so no case is dropped.

Example
-------
>>> import torch
>>> from medfound.dac.validation import ClassesToRegionsd
>>> t = ClassesToRegionsd(["pred"], {"disc": [1, 2], "cup": [2]})
>>> t({"pred": torch.tensor([[[0, 1], [2, 2]]])})["pred"].tolist()
[[[0.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.engines import SupervisedEvaluator
from monai.handlers import IgniteMetricHandler, from_engine
from monai.inferers import SimpleInferer
from monai.metrics import DiceMetric
from monai.transforms import AsDiscreted, Compose, MapTransform

__all__ = ["ClassesToRegionsd", "build_evaluator", "VAL_METRIC"]

#: name of the key validation metric (mean Dice over regions and cases)
VAL_METRIC = "val_mean_dice"


class ClassesToRegionsd(MapTransform):
    """Class-index map ``(1, H, W)`` -> one binary channel per region ``(R, H, W)``."""

    def __init__(self, keys, regions: Mapping[str, Sequence[int]], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.regions = {str(k): [int(c) for c in v] for k, v in regions.items()}

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            x = x[0] if x.dim() == 3 and x.shape[0] == 1 else x
            chans = [torch.isin(x.long(), torch.as_tensor(c, device=x.device)) for c in self.regions.values()]
            d[key] = torch.stack(chans).float()
        return d


def build_evaluator(
    device: str | torch.device,
    val_data_loader: Any,
    network: torch.nn.Module,
    regions: Mapping[str, Sequence[int]],
    amp: bool = False,
    val_handlers: Sequence | None = None,
) -> SupervisedEvaluator:
    """A ``SupervisedEvaluator`` whose key metric :data:`VAL_METRIC` is the mean region Dice."""
    post = Compose([
        AsDiscreted(keys="pred", argmax=True),
        ClassesToRegionsd(keys=["pred", "label"], regions=regions),
    ])
    metric = IgniteMetricHandler(
        metric_fn=DiceMetric(include_background=True, reduction="mean", ignore_empty=False),
        output_transform=from_engine(["pred", "label"]),
    )
    return SupervisedEvaluator(
        device=torch.device(device),
        val_data_loader=val_data_loader,
        network=network,
        inferer=SimpleInferer(),
        postprocessing=post,
        key_val_metric={VAL_METRIC: metric},
        val_handlers=val_handlers,
        amp=bool(amp) and torch.device(device).type == "cuda",
    )
