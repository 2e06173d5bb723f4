"""DAC: dual-supervised asymmetric co-training for cross-domain semi-supervised domain generalisation.

Song, Chen, Qin, Zhao, "Dual-supervised Asymmetric Co-training for Semi-supervised Medical
Domain Generalization", IEEE Trans. Multimedia 2025 (arXiv 2509.20785).

Modules, one job each:

- :mod:`~medfound.dac.config`: every constant, its default and why; the method switch (the one
  source of the defaults);
- :mod:`~medfound.dac.losses`: supervised Dice + CE, (cross) pseudo supervision, feature loss;
- :mod:`~medfound.dac.heads`: projection head and the two 1x1 auxiliary heads;
- :mod:`~medfound.dac.aux_tasks`: auxiliary-task views and labels (CutMix mask, region rotation), losses;
- :mod:`~medfound.dac.rampup`: sigmoid ramp-up;
- :mod:`~medfound.dac.objective`: the weighted total;
- :mod:`~medfound.dac.strong_view`: strong photometric view on the training device;
- :mod:`~medfound.dac.model`: sub-models A/B + training heads; deployable single model;
- :mod:`~medfound.dac.data`: split files, MONAI pipelines, the reproducible co-training loader;
- :mod:`~medfound.dac.trainer`: :class:`DACTrainer`, a MONAI ``SupervisedTrainer`` taking ready objects;
- :mod:`~medfound.dac.selection`: :class:`BestModelSaver`, model selection on source validation;
- :mod:`~medfound.dac.diagnostics`: pseudo-label quality per domain, training log;
- :mod:`~medfound.dac.evaluation`: trained network, resized predictor, evaluation of split parts;
- :mod:`~medfound.dac.bundle_configs`: a :class:`DACConfig` as bundle-style train / evaluate configs;
- :mod:`~medfound.dac.workflow`: :func:`train`, :func:`evaluate`: those configs written and run.

Checkpoints and resume are :class:`medfound.handlers.AtomicCheckpointSaver` and
:class:`medfound.handlers.CheckpointResume`; validation, logs, TensorBoard and the progress
bar are MONAI / ignite handlers.

Example
-------
>>> from medfound.dac import METHODS
>>> sorted(METHODS)
['cps', 'dac', 'dac_no_aux', 'dac_no_feat', 'fixmatch', 'supervised']
"""

from __future__ import annotations

from medfound.dac.bundle_configs import evaluate_bundle_config, train_bundle_config
from medfound.dac.config import METHODS, DACConfig, load_config
from medfound.dac.data import CoTrainingLoader, PreparedDataset, load_split
from medfound.dac.losses import (
    FeatureConsistencyLoss,
    PseudoLabelLoss,
    SupervisedSegmentationLoss,
    pseudo_labels,
)
from medfound.dac.model import DACModel
from medfound.dac.objective import DACObjective
from medfound.dac.rampup import sigmoid_rampup
from medfound.dac.selection import BestModelSaver
from medfound.dac.strong_view import StrongAugment
from medfound.dac.trainer import DACTrainer
from medfound.dac.workflow import evaluate, train, training_parser

__all__ = [
    "METHODS",
    "DACConfig",
    "load_config",
    "load_split",
    "PreparedDataset",
    "CoTrainingLoader",
    "SupervisedSegmentationLoss",
    "PseudoLabelLoss",
    "FeatureConsistencyLoss",
    "pseudo_labels",
    "DACModel",
    "DACObjective",
    "sigmoid_rampup",
    "StrongAugment",
    "DACTrainer",
    "BestModelSaver",
    "train_bundle_config",
    "evaluate_bundle_config",
    "training_parser",
    "train",
    "evaluate",
]
