"""Evaluation: segmentation metrics per region, case and domain (:mod:`medfound.evaluation.segmentation`)."""
