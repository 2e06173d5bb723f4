"""Task losses normalised so that an untrained model scores about 1 on every kind of task.

Multi-task pre-training sums (accumulates) the gradients of very different losses in the
shared blocks. If one kind of loss is ten times larger than another at the start, its tasks
dominate the shared gradient. Each loss here is therefore divided by the value an
uninformed prediction gets, so every task starts near 1:

- classification: cross-entropy / ln C (a uniform softmax scores exactly 1);
- multi-label: mean binary cross-entropy / ln 2 (all probabilities 0.5 score exactly 1);
- segmentation: ``(dice / dice_uniform + ce / ln C) / 2`` where ``dice_uniform`` is the
  soft Dice loss a uniform prediction would get on the batch's own targets (a closed form
  of the class fractions; no gradient), so both halves are 1 for a uniform prediction.
  ``"focal"`` replaces cross-entropy by focal cross-entropy divided by ``(1 - 1/C)^gamma ln C``.
  Label ``-1`` (``ignore_index``) marks pixels that count in neither term;
- detection: ``(loss_cls / c_cls + loss_box + loss_centerness / ln 2) / 3`` over the three
  FCOS losses (:class:`medfound.multitask.fcos_loss.FCOSLoss`). At initialisation the class logits
  sit at the prior ``pi`` (``prior_prob``), so the focal loss per positive location is
  ``c_cls = alpha (1 - pi)^gamma ln(1/pi)`` (1.13 for pi = 0.01) and negatives add almost
  nothing; centerness logits start at 0, whose BCE is ln 2 whatever the target; ``1 - GIoU``
  lies in [0, 2] and is about 1 for the initial boxes of one stride per side.

Every loss takes the network output and the target as the task's batch holds it and
returns a scalar; detection and segmentation losses also expose their parts
(:meth:`components`) for logging.

Example
-------
>>> import torch
>>> loss = NormalizedCrossEntropyLoss(num_classes=4)
>>> round(loss(torch.zeros(8, 4), torch.randint(0, 4, (8,))).item(), 4)
1.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medfound.errors import ConfigError, LabelMismatchError, ShapeError
from medfound.multitask.fcos_loss import FCOSLoss
from medfound.multitask.fcos_targets import DEFAULT_SIZE_RANGES
from medfound.networks.fcos import DEFAULT_STRIDES

__all__ = [
    "NormalizedCrossEntropyLoss",
    "NormalizedBCELoss",
    "NormalizedSegmentationLoss",
    "NormalizedDetectionLoss",
    "uniform_dice_loss",
    "build_task_loss",
]


def _plain(t: torch.Tensor) -> torch.Tensor:
    # MetaTensor arithmetic is slow and drags metadata through the loss; the loss needs none of it
    return t.as_tensor() if hasattr(t, "as_tensor") else t


def _zero_like_graph(x: torch.Tensor) -> torch.Tensor:
    """A zero that keeps ``x``'s graph connected (so every parameter gets a gradient)."""
    return x.sum() * 0.0


class NormalizedCrossEntropyLoss(nn.Module):
    """Cross-entropy divided by ln C: 1 for a uniform prediction.

    Parameters
    ----------
    num_classes : C (at least 2).
    label_smoothing : as ``torch.nn.functional.cross_entropy``.
    ignore_index : targets with this value (default -1: missing label) do not count.

    ``forward(logits (B, C), target (B,) or (B, 1) class indices)``.
    """

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, ignore_index: int = -1) -> None:
        super().__init__()
        if int(num_classes) < 2:
            raise ConfigError(f"classification needs at least 2 classes, got {num_classes}")
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = int(ignore_index)
        self.norm = math.log(self.num_classes)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _plain(logits), _plain(target)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ShapeError(f"classification logits must be (B, {self.num_classes}), got {tuple(logits.shape)}")
        target = target.reshape(-1).long()
        if target.numel() != logits.shape[0]:
            raise ShapeError(f"got {target.numel()} class labels for a batch of {logits.shape[0]}")
        valid = target != self.ignore_index
        if bool(((target < 0) & valid).any() or (target >= self.num_classes).any()):
            bad = target[valid & ((target < 0) | (target >= self.num_classes))].tolist()
            raise LabelMismatchError(f"class labels {bad} outside 0..{self.num_classes - 1}")
        if not bool(valid.any()):
            return _zero_like_graph(logits)
        ce = F.cross_entropy(
            logits.float(), target, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing
        )
        return ce / self.norm


class NormalizedBCELoss(nn.Module):
    """Multi-label binary cross-entropy (mean over labels and samples) divided by ln 2.

    Target entries of ``-1`` (``ignore_value``: label unknown for that sample) do not count.
    ``pos_weight``: optional per-label weight of positives, as ``BCEWithLogitsLoss``.

    ``forward(logits (B, K), target (B, K) of 0/1/-1)``.
    """

    def __init__(self, num_classes: int, pos_weight: Sequence[float] | None = None, ignore_value: float = -1) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ConfigError(f"multi-label classification needs at least 1 label, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_value = float(ignore_value)
        pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)
        if pw is not None and pw.numel() != self.num_classes:
            raise ConfigError(f"pos_weight needs {self.num_classes} values, got {pw.numel()}")
        self.register_buffer("pos_weight", pw, persistent=False)
        self.norm = math.log(2.0)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _plain(logits), _plain(target)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ShapeError(f"multi-label logits must be (B, {self.num_classes}), got {tuple(logits.shape)}")
        target = target.reshape(logits.shape).float()
        valid = target != self.ignore_value
        if bool(((target != 0) & (target != 1) & valid).any()):
            raise LabelMismatchError("multi-label targets must be 0, 1 or -1 (unknown)")
        if not bool(valid.any()):
            return _zero_like_graph(logits)
        per = F.binary_cross_entropy_with_logits(
            logits.float(), target.clamp_min(0), reduction="none", pos_weight=self.pos_weight
        )
        return (per * valid).sum() / valid.sum() / self.norm


def uniform_dice_loss(
    fractions: torch.Tensor, num_classes: int, smooth: float = 1e-5, total: float = 1.0
) -> torch.Tensor:
    """Soft Dice loss (mean over classes) of a uniform prediction, given each class's pixel fraction.

    For ``n`` valid pixels, a class with fraction ``f`` gets ``dice = (2 f n / C + s) /
    (n / C + f n + s)``; the loss is ``1 - mean(dice)``. ``total`` is ``n``.

    Example
    -------
    >>> import torch
    >>> round(uniform_dice_loss(torch.tensor([0.5, 0.5]), 2, total=100.0).item(), 4)
    0.5
    """
    c = float(num_classes)
    n = float(total)
    dice = (2.0 * fractions * n / c + smooth) / (n / c + fractions * n + smooth)
    return 1.0 - dice.mean()


class NormalizedSegmentationLoss(nn.Module):
    """Soft Dice + cross-entropy (or focal), each normalised to 1 for a uniform prediction.

    ``loss = (dice_weight * dice / dice_uniform + ce_weight * ce / ln C) / (dice_weight + ce_weight)``

    The Dice term is MONAI's soft Dice (``DiceLoss(softmax=True, to_onehot_y=True,
    batch=True, smooth_nr=smooth_dr=1e-5)``: one Dice per class over the whole batch,
    averaged over classes, background included) computed over the valid pixels only.

    Parameters
    ----------
    num_classes : C, background included (at least 2).
    ce : ``"ce"`` (cross-entropy) or ``"focal"`` (focal cross-entropy, ``gamma``).
    dice_weight, ce_weight : weights of the two terms.
    normalize_dice : divide the Dice term by the uniform prediction's Dice loss on the same
        targets (:func:`uniform_dice_loss`); ``False`` leaves it as it is.
    ignore_index : pixels with this label (default -1) count in neither term.

    ``forward(logits (B, C, H, W), target (B, H, W) or (B, 1, H, W) class indices)``.
    """

    def __init__(
        self,
        num_classes: int,
        ce: str = "ce",
        gamma: float = 2.0,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        normalize_dice: bool = True,
        ignore_index: int = -1,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        if int(num_classes) < 2:
            raise ConfigError(f"segmentation needs at least 2 classes (background included), got {num_classes}")
        if ce not in ("ce", "focal"):
            raise ConfigError(f"segmentation ce must be 'ce' or 'focal', got {ce!r}")
        if dice_weight < 0 or ce_weight < 0 or dice_weight + ce_weight <= 0:
            raise ConfigError(
                f"dice_weight and ce_weight must be >= 0 with a positive sum, got {dice_weight}, {ce_weight}"
            )
        self.num_classes = int(num_classes)
        self.ce, self.gamma = ce, float(gamma)
        self.dice_weight, self.ce_weight = float(dice_weight), float(ce_weight)
        self.normalize_dice = bool(normalize_dice)
        self.ignore_index = int(ignore_index)
        self.smooth = float(smooth)
        c = self.num_classes
        self.ce_norm = math.log(c) if ce == "ce" else (1.0 - 1.0 / c) ** self.gamma * math.log(c)
        self.last_components: dict[str, float] = {}

    def _check(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim < 3 or logits.shape[1] != self.num_classes:
            raise ShapeError(f"segmentation logits must be (B, {self.num_classes}, H, W), got {tuple(logits.shape)}")
        if target.ndim == logits.ndim:
            if target.shape[1] != 1:
                raise ShapeError(f"segmentation target must hold class indices (B, 1, H, W), got {tuple(target.shape)}")
            target = target[:, 0]
        if tuple(target.shape) != (logits.shape[0], *logits.shape[2:]):
            raise ShapeError(f"segmentation target {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
        target = target.long()
        bad = (target != self.ignore_index) & ((target < 0) | (target >= self.num_classes))
        if bool(bad.any()):
            raise LabelMismatchError(
                f"segmentation labels {sorted(set(target[bad].unique().tolist()))} outside 0..{self.num_classes - 1} "
                f"(and {self.ignore_index} = ignore)"
            )
        return target

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _plain(logits).float(), _plain(target)
        target = self._check(logits, target)
        valid = target != self.ignore_index
        n_valid = valid.sum()
        if not bool(n_valid > 0):
            self.last_components = {"dice": 0.0, "ce": 0.0}
            return _zero_like_graph(logits)
        safe = torch.where(valid, target, torch.zeros_like(target))
        logp = F.log_softmax(logits, dim=1)
        mask = valid.unsqueeze(1).to(logits.dtype)
        onehot = F.one_hot(safe, self.num_classes).movedim(-1, 1).to(logits.dtype) * mask
        prob = logp.exp() * mask
        reduce = [0, *range(2, logits.ndim)]
        inter = (prob * onehot).sum(reduce)
        denom = prob.sum(reduce) + onehot.sum(reduce)
        dice = 1.0 - ((2.0 * inter + self.smooth) / (denom + self.smooth)).mean()
        if self.normalize_dice:
            with torch.no_grad():
                fractions = onehot.sum(reduce) / n_valid
                dice_ref = uniform_dice_loss(fractions, self.num_classes, self.smooth, float(n_valid))
            dice = dice / dice_ref.clamp_min(1e-3)
        logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
        if self.ce == "ce":
            per = -logp_t
        else:
            per = -((1.0 - logp_t.exp()) ** self.gamma) * logp_t
        ce = (per * valid).sum() / n_valid / self.ce_norm
        self.last_components = {"dice": float(dice.detach()), "ce": float(ce.detach())}
        return (self.dice_weight * dice + self.ce_weight * ce) / (self.dice_weight + self.ce_weight)


class NormalizedDetectionLoss(nn.Module):
    """FCOS losses normalised to about 1 for an untrained head (see the module docstring).

    ``loss = (cls_weight * loss_cls / c_cls + box_weight * loss_box + centerness_weight *
    loss_centerness / ln 2) / (cls_weight + box_weight + centerness_weight)`` with
    ``c_cls = alpha (1 - prior_prob)^gamma ln(1 / prior_prob)``; ``prior_prob`` must be the
    head's (``FCOSHead(prior_prob=...)``, 0.01 by default).

    ``forward(outputs, targets, image_size)``: ``outputs`` is the FCOS head's dict, ``targets``
    one ``{"boxes": (N, 4), "labels": (N,)}`` per image, ``image_size`` the (padded) input size.
    """

    def __init__(
        self,
        num_classes: int,
        prior_prob: float = 0.01,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_loss: str = "giou",
        cls_weight: float = 1.0,
        box_weight: float = 1.0,
        centerness_weight: float = 1.0,
        strides: Sequence[int] = DEFAULT_STRIDES,
        size_ranges: Sequence[Sequence[float | None]] = DEFAULT_SIZE_RANGES,
        center_sampling_radius: float | None = 1.5,
    ) -> None:
        super().__init__()
        if not 0.0 < float(prior_prob) < 1.0:
            raise ConfigError(f"prior_prob must be in (0, 1), got {prior_prob}")
        self.fcos = FCOSLoss(
            num_classes,
            strides=strides,
            size_ranges=size_ranges,
            center_sampling_radius=center_sampling_radius,
            focal_alpha=focal_alpha,
            focal_gamma=focal_gamma,
            box_loss=box_loss,
        )
        self.num_classes = int(num_classes)
        p = float(prior_prob)
        self.cls_norm = float(focal_alpha) * (1.0 - p) ** float(focal_gamma) * math.log(1.0 / p)
        # -ln IoU has no natural scale: ln 2 (an IoU of 1/2) is taken as its "untrained" value
        self.box_norm = math.log(2.0) if box_loss == "log_iou" else 1.0
        self.ctr_norm = math.log(2.0)
        self.weights = (float(cls_weight), float(box_weight), float(centerness_weight))
        if min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ConfigError(f"detection loss weights must be >= 0 with a positive sum, got {self.weights}")
        self.last_components: dict[str, float] = {}

    def forward(
        self, outputs: Mapping[str, Sequence[torch.Tensor]], targets: Sequence[Mapping[str, Any]], image_size: Any
    ) -> torch.Tensor:
        parts = self.fcos(outputs, targets, image_size=image_size)
        wc, wb, wz = self.weights
        cls = parts["loss_cls"] / self.cls_norm
        box = parts["loss_box"] / self.box_norm
        ctr = parts["loss_centerness"] / self.ctr_norm
        self.last_components = {
            "cls": float(cls.detach()),
            "box": float(box.detach()),
            "centerness": float(ctr.detach()),
        }
        return (wc * cls + wb * box + wz * ctr) / (wc + wb + wz)


def build_task_loss(kind: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """The normalised loss of a task kind (``classification``, ``multilabel``, ``segmentation``, ``detection``).

    ``kwargs`` go to the loss class; for detection, ``prior_prob`` should match the head's.

    Example
    -------
    >>> type(build_task_loss("multilabel", 3)).__name__
    'NormalizedBCELoss'
    """
    classes = {
        "classification": NormalizedCrossEntropyLoss,
        "multilabel": NormalizedBCELoss,
        "segmentation": NormalizedSegmentationLoss,
        "detection": NormalizedDetectionLoss,
    }
    if kind not in classes:
        raise ConfigError(f"unknown task kind {kind!r}; kinds: {', '.join(classes)}")
    try:
        return classes[kind](num_classes, **kwargs)
    except TypeError as err:
        raise ConfigError(f"bad {kind} loss option: {err}") from None
