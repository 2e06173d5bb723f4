"""DAC losses, ramp-up and objective on hand-made tensors (known answers)."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

import medfound.dac.losses as losses_mod
import medfound.dac.objective as objective_mod
import medfound.dac.rampup as rampup_mod
from medfound.dac.losses import (
    FeatureConsistencyLoss,
    PseudoLabelLoss,
    SupervisedSegmentationLoss,
    pseudo_labels,
)
from medfound.dac.objective import DACObjective
from medfound.dac.rampup import sigmoid_rampup
from medfound.errors import ConfigError, LabelMismatchError

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.mark.parametrize("module", [losses_mod, objective_mod, rampup_mod])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_supervised_loss_matches_monai_dice_ce_and_checks_labels():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    ours = SupervisedSegmentationLoss(lambda_dice=0.7, lambda_ce=1.3, include_background=False)(logits, labels)
    ref = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, lambda_dice=0.7, lambda_ce=1.3)(
        logits, labels[:, None])
    assert torch.isclose(ours, ref)
    # CE part by hand: lambda_dice=0 leaves the mean cross-entropy
    ce_only = SupervisedSegmentationLoss(lambda_dice=0.0, lambda_ce=1.0)(logits, labels[:, None].float())
    assert torch.isclose(ce_only, F.cross_entropy(logits, labels))
    with pytest.raises(LabelMismatchError, match="outside the 3 classes"):
        SupervisedSegmentationLoss()(logits, torch.full((2, 8, 8), 3))
    with pytest.raises(LabelMismatchError, match="do not fit"):
        SupervisedSegmentationLoss()(logits, labels[:, :4])


def test_pseudo_label_loss_is_cross_entropy_against_the_other_models_argmax():
    """Cross pseudo supervision as the trainer composes it: pseudo_labels of one model, PseudoLabelLoss of the other."""
    torch.manual_seed(1)
    a, b = torch.randn(2, 3, 5, 7, requires_grad=True), torch.randn(2, 3, 5, 7, requires_grad=True)
    (la, va, _), (lb, vb, _) = pseudo_labels(a), pseudo_labels(b)
    loss = PseudoLabelLoss()(a, lb, vb) + PseudoLabelLoss()(b, la, va)
    expected = F.cross_entropy(a, b.argmax(1)) + F.cross_entropy(b, a.argmax(1))
    assert torch.isclose(loss, expected)
    # targets are detached: the gradient w.r.t. a is exactly that of CE(a, argmax b)
    loss.backward()
    a2 = a.detach().clone().requires_grad_(True)
    F.cross_entropy(a2, b.argmax(1)).backward()
    assert torch.allclose(a.grad, a2.grad)


def test_threshold_masks_out_low_confidence_pixels():
    # pixel 0: p = softmax(4, 0) = 0.982 (kept at 0.9); pixel 1: p = softmax(0.5, 0) = 0.62 (masked)
    teacher = torch.tensor([[[[4.0, 0.5]], [[0.0, 0.0]]]])
    labels, valid, conf = pseudo_labels(teacher, threshold=0.9)
    assert labels.tolist() == [[[0, 0]]] and valid.tolist() == [[[1.0, 0.0]]]
    assert conf[0, 0, 0] == pytest.approx(1 / (1 + math.exp(-4)), abs=1e-6)
    student = torch.tensor([[[[0.0, 0.0]], [[1.0, 5.0]]]])
    loss = PseudoLabelLoss()(student, labels, valid)
    # only pixel 0 contributes, the mean runs over both pixels
    assert loss.item() == pytest.approx(F.cross_entropy(student[..., :1], labels[..., :1]).item() / 2, abs=1e-6)
    assert PseudoLabelLoss()(student, labels, torch.zeros_like(valid)).item() == 0.0
    with pytest.raises(ConfigError):
        pseudo_labels(teacher, threshold=1.0)


def test_feature_loss_zero_for_identical_and_no_gradient_to_target():
    torch.manual_seed(2)
    pred = torch.randn(2, 6, 4, 4, requires_grad=True)
    target = pred.detach().clone().requires_grad_(True)
    for kind in ("cosine", "mse"):
        loss = FeatureConsistencyLoss(kind)(pred, target)
        assert loss.item() == pytest.approx(0.0, abs=1e-6)
    target2 = torch.randn(2, 6, 4, 4, requires_grad=True)
    loss = FeatureConsistencyLoss("cosine")(pred, target2)
    cos = F.cosine_similarity(pred, target2, dim=1)
    assert torch.isclose(loss, (1 - cos).mean())
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target2.grad is None  # stop-gradient on the target
    mse = FeatureConsistencyLoss("mse")(pred, 2 * pred.detach())
    assert torch.isclose(mse, pred.detach().pow(2).mean())
    # cosine is scale-free
    assert FeatureConsistencyLoss()(pred, 3 * pred.detach()).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(LabelMismatchError):
        FeatureConsistencyLoss()(pred, pred[:, :3])
    with pytest.raises(ConfigError):
        FeatureConsistencyLoss("l1")


def test_sigmoid_rampup_values():
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(25, 100) == pytest.approx(math.exp(-5 * 0.75 ** 2))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(100, 100) == 1.0 and sigmoid_rampup(500, 100) == 1.0
    assert sigmoid_rampup(-3, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(7, 0) == 1.0
    values = [sigmoid_rampup(s, 40) for s in range(41)]
    assert all(x < y for x, y in zip(values, values[1:]))  # strictly increasing up to the end
    with pytest.raises(ConfigError):
        sigmoid_rampup(1, -1)


def test_objective_weights_and_total():
    obj = DACObjective(lambda_cps=2.0, lambda_feat=0.5, lambda_aux=0.1, rampup_iterations=10)
    w0, w10 = obj.weights(0), obj.weights(10)
    assert w0["pseudo"] == pytest.approx(2.0 * math.exp(-5)) and w0["feat"] == pytest.approx(0.5 * math.exp(-5))
    assert w0["aux_mask"] == 0.1 and w0["aux_rot"] == 0.1  # auxiliary terms are not ramped by default
    assert w10 == {"sup": 1.0, "pseudo": 2.0, "feat": 0.5, "aux_mask": 0.1, "aux_rot": 0.1}
    assert DACObjective(lambda_aux=0.1, rampup_iterations=10, rampup_aux=True).weights(0)["aux_rot"] == pytest.approx(
        0.1 * math.exp(-5))
    terms = {"sup": torch.tensor(1.0), "pseudo": torch.tensor(1.0), "aux_rot": torch.tensor(3.0)}
    assert obj.total(terms, 10).item() == pytest.approx(1.0 + 2.0 + 0.3)
    with pytest.raises(KeyError):
        obj.total({"unknown": torch.tensor(1.0)}, 0)
    with pytest.raises(ConfigError):
        DACObjective(lambda_feat=-1)
