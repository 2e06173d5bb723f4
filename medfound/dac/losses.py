"""Losses of DAC co-training: supervised Dice + CE, (cross) pseudo supervision, feature consistency.

- :class:`SupervisedSegmentationLoss`: Dice + cross-entropy on class-index labels (MONAI
  ``DiceCELoss``).
- :func:`pseudo_labels` and :class:`PseudoLabelLoss`: hard pseudo labels (argmax of a
  detached prediction) with an optional confidence threshold; the loss is the per-pixel
  cross-entropy against them, averaged over **all** pixels, so masked (low-confidence)
  pixels count as zero and the term shrinks with the share of confident pixels, as in
  UniMatch. Cross pseudo supervision (CPS, Chen et al. 2021) is these two with the models
  swapped: each model learns from the other's pseudo labels (the trainer pairs them, since
  its targets are the weak view's predictions, mixed and rotated as the student's input).
- :class:`FeatureConsistencyLoss`: feature-level supervision, cosine distance or MSE per
  pixel between a prediction (a sub-model's projected features) and a stop-gradient target
  (the other sub-model's features).

Example
-------
>>> import torch
>>> from medfound.dac.losses import PseudoLabelLoss, pseudo_labels
>>> a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
>>> labels_b, valid_b, _ = pseudo_labels(b)          # B's argmax supervises A
>>> float(PseudoLabelLoss()(a, labels_b, valid_b)) > 0
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn

from medfound.errors import LabelMismatchError
from medfound.utils import check_choice, check_float

__all__ = [
    "SupervisedSegmentationLoss",
    "pseudo_labels",
    "PseudoLabelLoss",
    "FeatureConsistencyLoss",
]


def _as_index_map(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` or ``(B, 1, H, W)`` labels -> ``(B, 1, H, W)`` long, checked against ``logits``."""
    if labels.dim() == logits.dim() - 1:
        labels = labels[:, None]
    if labels.shape[0] != logits.shape[0] or labels.shape[1] != 1 or labels.shape[2:] != logits.shape[2:]:
        raise LabelMismatchError(
            f"labels of shape {tuple(labels.shape)} do not fit logits of shape {tuple(logits.shape)} "
            "(expected class-index maps (B, 1, H, W) or (B, H, W))"
        )
    return labels.long()


class SupervisedSegmentationLoss(nn.Module):
    """Dice + cross-entropy between logits ``(B, C, H, W)`` and class-index labels.

    Parameters
    ----------
    lambda_dice, lambda_ce : weights of the two terms.
    include_background : whether class 0 enters the Dice term (cross-entropy always sees it).

    Example
    -------
    >>> import torch
    >>> loss = SupervisedSegmentationLoss()
    >>> labels = torch.tensor([[[0, 1], [2, 2]]])
    >>> perfect = 20.0 * torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    >>> float(loss(perfect, labels)) < 1e-6
    True
    """

    def __init__(self, lambda_dice: float = 1.0, lambda_ce: float = 1.0, include_background: bool = False) -> None:
        super().__init__()
        self.loss = DiceCELoss(
            to_onehot_y=True,
            softmax=True,
            include_background=include_background,
            lambda_dice=lambda_dice,
            lambda_ce=lambda_ce,
        )

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = _as_index_map(labels, logits)
        n_classes = logits.shape[1]
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n_classes):
            raise LabelMismatchError(
                f"label values {sorted(target.unique().tolist())} outside the {n_classes} classes of the network"
            )
        return self.loss(logits.float(), target)


def pseudo_labels(logits: torch.Tensor, threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hard pseudo labels from (detached) logits.

    Returns
    -------
    labels : long ``(B, H, W)``, the argmax class.
    valid : float ``(B, H, W)``, 1 where the softmax confidence is >= ``threshold``.
    confidence : float ``(B, H, W)``, the softmax probability of the argmax class.

    Example
    -------
    >>> import torch
    >>> logits = torch.tensor([[[[2.0]], [[0.0]]], [[[0.1]], [[0.0]]]])  # confident / unsure pixel
    >>> labels, valid, conf = pseudo_labels(logits, threshold=0.8)
    >>> labels.flatten().tolist(), valid.flatten().tolist()
    ([0, 0], [1.0, 0.0])
    """
    threshold = check_float(threshold, "confidence threshold", low=0.0, high=1.0, high_open=True)
    prob = torch.softmax(logits.detach().float(), dim=1)
    confidence, labels = prob.max(dim=1)
    valid = (confidence >= threshold).float() if threshold > 0 else torch.ones_like(confidence)
    return labels, valid, confidence


class PseudoLabelLoss(nn.Module):
    """Cross-entropy against hard pseudo labels, masked pixels counting as zero (mean over all pixels).

    Example
    -------
    >>> import torch
    >>> logits = torch.zeros(1, 2, 1, 2)
    >>> labels, valid = torch.zeros(1, 1, 2, dtype=torch.long), torch.tensor([[[1.0, 0.0]]])
    >>> round(float(PseudoLabelLoss()(logits, labels, valid)), 4)  # ln 2 on one of two pixels
    0.3466
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        target = _as_index_map(labels, logits)[:, 0]
        ce = F.cross_entropy(logits.float(), target, reduction="none")
        if valid is not None:
            if valid.shape != ce.shape:
                raise LabelMismatchError(f"valid mask {tuple(valid.shape)} does not fit labels {tuple(ce.shape)}")
            ce = ce * valid.to(ce.dtype)
        return ce.mean()


class FeatureConsistencyLoss(nn.Module):
    """Per-pixel distance between a feature prediction and a stop-gradient target, averaged.

    Parameters
    ----------
    kind : ``"cosine"`` (``1 - cos`` over channels, in ``[0, 2]``) or ``"mse"`` (mean squared
        difference over channels).

    Example
    -------
    >>> import torch
    >>> f = torch.randn(2, 8, 4, 4)
    >>> float(FeatureConsistencyLoss()(f, f.clone())) < 1e-6, float(FeatureConsistencyLoss()(f, -f))
    (True, 2.0)
    """

    def __init__(self, kind: str = "cosine") -> None:
        super().__init__()
        self.kind = check_choice(kind, ("cosine", "mse"), "feature loss kind")

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if prediction.shape != target.shape:
            raise LabelMismatchError(
                f"feature prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ"
            )
        pred, tgt = prediction.float(), target.detach().float()  # stop-gradient on the target
        if self.kind == "cosine":
            return (1.0 - F.cosine_similarity(pred, tgt, dim=1, eps=1e-6)).mean()
        return (pred - tgt).pow(2).mean()
