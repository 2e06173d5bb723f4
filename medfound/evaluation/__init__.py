"""Evaluation: metrics per domain/case, detection mAP, the transfer protocol (frozen probe, fine-tuning).

- :mod:`medfound.evaluation.detection`: detection mAP.
- :mod:`medfound.evaluation.segmentation`: segmentation Dice/HD95 per region, case and domain.
"""

from medfound.evaluation.detection import DetectionMAP, IgniteDetectionMAP, mean_average_precision  # noqa: F401
from medfound.evaluation.segmentation import SegmentationResults, evaluate_segmentation  # noqa: F401
