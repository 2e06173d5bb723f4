"""Normalised task losses: known values, MONAI parity, ignore labels, random-init models score about 1."""

from __future__ import annotations

import math

import pytest
import torch
from _multitask_utils import four_tasks, tiny_umedpt
from monai.losses import DiceLoss

from medfound.errors import ConfigError, LabelMismatchError, ShapeError
from medfound.multitask.batches import collate_task_batch, prepare_task_batch
from medfound.multitask.losses import (
    NormalizedBCELoss,
    NormalizedCrossEntropyLoss,
    NormalizedDetectionLoss,
    NormalizedSegmentationLoss,
    build_task_loss,
    uniform_dice_loss,
)
from medfound.multitask.tasks import TaskSpec
from medfound.multitask.trainer import task_loss


@pytest.mark.parametrize("c", [2, 3, 7])
def test_cross_entropy_is_one_for_uniform_prediction(c):
    target = torch.arange(10) % c
    assert NormalizedCrossEntropyLoss(c)(torch.zeros(10, c), target).item() == pytest.approx(1.0, abs=1e-6)
    # a confident right answer is near 0, a confident wrong one large
    logits = torch.nn.functional.one_hot(target, c).float() * 20
    assert NormalizedCrossEntropyLoss(c)(logits, target).item() < 1e-6


def test_cross_entropy_known_value_and_ignore():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]])
    target = torch.tensor([0, 1, -1])  # the last sample has no label
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2 / math.log(2)
    assert NormalizedCrossEntropyLoss(2)(logits, target).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(LabelMismatchError, match="outside"):
        NormalizedCrossEntropyLoss(2)(logits, torch.tensor([0, 2, 1]))
    with pytest.raises(ShapeError):
        NormalizedCrossEntropyLoss(3)(logits, target)


def test_bce_is_one_at_zero_logits_and_ignores_unknown():
    loss = NormalizedBCELoss(3)
    target = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])
    assert loss(torch.zeros(2, 3), target).item() == pytest.approx(1.0, abs=1e-6)
    logits = torch.tensor([[3.0, -1.0, 100.0], [0.5, 2.0, -0.5]])
    valid = [(3.0, 1), (-1.0, 0), (0.5, 0), (2.0, 1), (-0.5, 1)]
    bce = [math.log(1 + math.exp(-x)) if t else math.log(1 + math.exp(x)) for x, t in valid]
    assert loss(logits, target).item() == pytest.approx(sum(bce) / 5 / math.log(2), rel=1e-5)
    with pytest.raises(LabelMismatchError):
        loss(logits, torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))


def test_segmentation_uniform_prediction_scores_one():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (2, 16, 16), generator=g)
    target[:, :4] = 0  # unequal class fractions
    for ce in ("ce", "focal"):
        loss = NormalizedSegmentationLoss(3, ce=ce)
        assert loss(torch.zeros(2, 3, 16, 16), target).item() == pytest.approx(1.0, abs=1e-4)


def test_segmentation_dice_term_matches_monai():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 12, 12, generator=g)
    target = torch.randint(0, 3, (2, 1, 12, 12), generator=g)
    ours = NormalizedSegmentationLoss(3, dice_weight=1.0, ce_weight=0.0, normalize_dice=False)(logits, target)
    monai = DiceLoss(softmax=True, to_onehot_y=True, batch=True)(logits, target)
    assert ours.item() == pytest.approx(monai.item(), rel=1e-5)
    ce_only = NormalizedSegmentationLoss(3, dice_weight=0.0, ce_weight=1.0)(logits, target)
    ref = torch.nn.functional.cross_entropy(logits, target[:, 0]) / math.log(3)
    assert ce_only.item() == pytest.approx(ref.item(), rel=1e-5)


def test_segmentation_ignores_minus_one_pixels():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 2, 8, 8, generator=g)
    target = torch.randint(0, 2, (1, 8, 8), generator=g)
    target[:, :, :3] = -1
    loss = NormalizedSegmentationLoss(2)
    before = loss(logits, target)
    changed = logits.clone()
    changed[:, :, :, :3] = torch.randn(1, 2, 8, 3, generator=g) * 10  # only ignored pixels change
    assert loss(changed, target).item() == pytest.approx(before.item(), rel=1e-6)
    # the same as cropping the ignored columns away (CE part, and Dice over the valid pixels)
    assert loss(logits[..., 3:], target[..., 3:]).item() == pytest.approx(before.item(), rel=1e-5)
    assert loss(logits, torch.full_like(target, -1)).item() == 0.0
    with pytest.raises(LabelMismatchError, match="outside"):
        loss(logits, torch.full_like(target, 5))


def test_uniform_dice_closed_form():
    # two classes, fractions 0.25/0.75 of 100 pixels, uniform probabilities 0.5
    f = torch.tensor([0.25, 0.75])
    dice = [(2 * 0.5 * 25) / (50 + 25), (2 * 0.5 * 75) / (50 + 75)]
    assert uniform_dice_loss(f, 2, smooth=0.0, total=100.0).item() == pytest.approx(1 - sum(dice) / 2, rel=1e-6)


def _fcos_outputs(side: int, prior: float, num_classes: int = 1) -> dict:
    logit = math.log(prior / (1 - prior))
    sizes = [side // s for s in (8, 16, 32)] + [1, 1]
    return {
        "cls_logits": [torch.full((1, num_classes, n, n), logit) for n in sizes],
        "box_regression": [torch.full((1, 4, n, n), 8.0 * 2**i) for i, n in enumerate(sizes)],
        "centerness": [torch.zeros(1, 1, n, n) for n in sizes],
    }


def test_detection_loss_terms_at_initial_prior():
    loss = NormalizedDetectionLoss(1, prior_prob=0.01)
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([0])}]
    value = loss(_fcos_outputs(64, 0.01), targets, image_size=(64, 64))
    parts = loss.last_components
    assert parts["centerness"] == pytest.approx(1.0, abs=1e-6)  # BCE at logit 0 is ln 2 whatever the target
    assert parts["cls"] == pytest.approx(1.0, abs=0.01)  # positives at the prior; negatives add ~1e-6 each
    assert 0.0 <= parts["box"] <= 2.0
    assert value.item() == pytest.approx((parts["cls"] + parts["box"] + parts["centerness"]) / 3, rel=1e-6)
    with pytest.raises(ConfigError):
        NormalizedDetectionLoss(1, prior_prob=1.5)


def test_build_task_loss_errors():
    with pytest.raises(ConfigError, match="unknown task kind"):
        build_task_loss("regression", 2)
    with pytest.raises(ConfigError, match="bad segmentation loss option"):
        build_task_loss("segmentation", 2, colour="red")
    with pytest.raises(ConfigError):
        build_task_loss("classification", 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_init_umedpt_scores_about_one_on_every_kind(seed):
    specs = [TaskSpec.from_dict(t) for t in four_tasks(n=8)]
    net = tiny_umedpt(seed=seed, tasks=[s.head_config() for s in specs])
    net.train()
    for spec in specs:
        batch = collate_task_batch(spec.kind)(spec.load_split("train"))
        images, target = prepare_task_batch(spec.kind, batch, "cpu")
        with torch.no_grad():
            value = task_loss(spec.kind, spec.build_loss(), net(images, task=spec.name), target, images).item()
        assert 0.6 < value < 1.5, (spec.kind, value)
