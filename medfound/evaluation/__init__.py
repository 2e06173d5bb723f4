"""Evaluation: metrics per domain/case and detection mAP (metrics only: no training code; the transfer
protocol lives with the training code, :mod:`medfound.multitask.transfer`).

- :mod:`medfound.evaluation.detection`: detection mAP.
- :mod:`medfound.evaluation.segmentation`: segmentation Dice/HD95 per region, case and domain.
"""

from medfound.evaluation.detection import DetectionMAP, IgniteDetectionMAP, mean_average_precision  # noqa: F401
from medfound.evaluation.segmentation import SegmentationResults, evaluate_segmentation  # noqa: F401
