"""DAC: dual-supervised asymmetric co-training for cross-domain semi-supervised domain generalisation.

Song, Chen, Qin, Zhao, "Dual-supervised Asymmetric Co-training for Semi-supervised Medical
Domain Generalization", IEEE Trans. Multimedia 2025 (arXiv 2509.20785).

Modules, one job each:

- :mod:`~medfound.dac.config`: every constant, its default and why; the method switch;
- :mod:`~medfound.dac.losses`: supervised Dice + CE, (cross) pseudo supervision, feature loss;
- :mod:`~medfound.dac.heads`: projection head and the two 1x1 auxiliary heads;
- :mod:`~medfound.dac.aux_tasks`: auxiliary-task labels (CutMix mask, region rotation) and losses;
- :mod:`~medfound.dac.rampup`: sigmoid ramp-up;
- :mod:`~medfound.dac.objective`: the weighted total;
- :mod:`~medfound.dac.strong_view`: strong photometric view on the training device;
- :mod:`~medfound.dac.model`: sub-models A/B + training heads; deployable single model;
- :mod:`~medfound.dac.data`: split files, MONAI pipelines, the reproducible co-training loader;
- :mod:`~medfound.dac.trainer`: :class:`DACTrainer`, a MONAI ``SupervisedTrainer``;
- :mod:`~medfound.dac.checkpoint`: atomic checkpoints, resume, model selection;
- :mod:`~medfound.dac.validation`: region-Dice validation evaluator;
- :mod:`~medfound.dac.diagnostics`: pseudo-label quality per domain, training log;
- :mod:`~medfound.dac.evaluation`: Dice per region, case and domain on the test domain;
- :mod:`~medfound.dac.workflow`: :func:`train`, :func:`evaluate`, :class:`DACWorkflow`.

Example
-------
>>> from medfound.dac import METHODS
>>> sorted(METHODS)
['cps', 'dac', 'dac_no_aux', 'dac_no_feat', 'fixmatch', 'supervised']
"""

from __future__ import annotations

from medfound.dac.config import METHODS, DACConfig, load_config
from medfound.dac.data import CoTrainingLoader, load_split
from medfound.dac.losses import (
    CrossPseudoSupervisionLoss,
    FeatureConsistencyLoss,
    PseudoLabelLoss,
    SupervisedSegmentationLoss,
    pseudo_labels,
)
from medfound.dac.model import DACModel
from medfound.dac.objective import DACObjective
from medfound.dac.rampup import SigmoidRampUp, sigmoid_rampup
from medfound.dac.strong_view import StrongAugment
from medfound.dac.trainer import DACTrainer
from medfound.dac.workflow import DACWorkflow, build_trainer, evaluate, train

__all__ = [
    "METHODS",
    "DACConfig",
    "load_config",
    "load_split",
    "CoTrainingLoader",
    "SupervisedSegmentationLoss",
    "PseudoLabelLoss",
    "CrossPseudoSupervisionLoss",
    "FeatureConsistencyLoss",
    "pseudo_labels",
    "DACModel",
    "DACObjective",
    "sigmoid_rampup",
    "SigmoidRampUp",
    "StrongAugment",
    "DACTrainer",
    "DACWorkflow",
    "build_trainer",
    "train",
    "evaluate",
]
