"""Evaluation: metrics per domain/case, detection mAP, the transfer protocol (frozen probe, fine-tuning)."""

from medfound.evaluation.detection import DetectionMAP, IgniteDetectionMAP, mean_average_precision  # noqa: F401
