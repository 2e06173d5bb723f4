"""The DAC objective: ``sup + w(t) * (lambda_cps * cps + lambda_feat * feat) + lambda_aux * aux``.

``w(t)`` is the sigmoid ramp-up (:mod:`medfound.dac.rampup`); the auxiliary terms are ramped
too when ``rampup_aux`` is set. The objective holds every loss function of a step (its
attributes ``supervised``, ``pseudo``, ``feature``, ``mixed_region``, ``rotation``) and the
weights; the trainer computes the individual terms with them (it owns the views and
forward passes) and :meth:`DACObjective.total` weighs and sums them, so every constant
lives in one place and a bundle config builds it with ``_target_``.

Example
-------
>>> import torch
>>> from medfound.dac.objective import DACObjective
>>> obj = DACObjective(lambda_cps=1.0, lambda_feat=0.5, lambda_aux=0.1, rampup_iterations=0)
>>> terms = {"sup": torch.tensor(1.0), "pseudo": torch.tensor(2.0), "feat": torch.tensor(2.0),
...          "aux_mask": torch.tensor(1.0), "aux_rot": torch.tensor(1.0)}
>>> round(float(obj.total(terms, step=0)), 4)
4.2
"""

from __future__ import annotations

import torch
from torch import nn

from medfound.dac.aux_tasks import MixedRegionLoss, RotationLoss
from medfound.dac.config import MethodConfig, default
from medfound.dac.losses import FeatureConsistencyLoss, PseudoLabelLoss, SupervisedSegmentationLoss
from medfound.dac.rampup import sigmoid_rampup
from medfound.utils import check_bool, check_float, check_int

__all__ = ["DACObjective"]


class DACObjective(nn.Module):
    """Loss functions and weights of DAC and its baselines (defaults: :class:`~medfound.dac.config.MethodConfig`).

    Parameters
    ----------
    lambda_cps : weight of the pseudo-label term (cross pseudo supervision, or FixMatch's
        self-training term).
    lambda_feat : weight of the feature-level supervision.
    lambda_aux : weight of the auxiliary tasks (mixed-region + rotation).
    confidence_threshold : pseudo-labelled pixels below this softmax confidence are ignored.
    rampup_iterations : length of the sigmoid ramp-up (0: none).
    rampup_aux : ramp the auxiliary terms as well.
    feature_loss : ``"cosine"`` or ``"mse"``.
    lambda_dice, lambda_ce, dice_include_background : the supervised Dice + CE loss.
    """

    def __init__(
        self,
        lambda_cps: float = default(MethodConfig, "lambda_cps"),
        lambda_feat: float = default(MethodConfig, "lambda_feat"),
        lambda_aux: float = default(MethodConfig, "lambda_aux"),
        confidence_threshold: float = 0.0,
        rampup_iterations: int = 0,
        rampup_aux: bool = default(MethodConfig, "rampup_aux"),
        feature_loss: str = default(MethodConfig, "feature_loss"),
        lambda_dice: float = default(MethodConfig, "lambda_dice"),
        lambda_ce: float = default(MethodConfig, "lambda_ce"),
        dice_include_background: bool = default(MethodConfig, "dice_include_background"),
    ) -> None:
        super().__init__()
        self.lambda_cps = check_float(lambda_cps, "lambda_cps", low=0.0)
        self.lambda_feat = check_float(lambda_feat, "lambda_feat", low=0.0)
        self.lambda_aux = check_float(lambda_aux, "lambda_aux", low=0.0)
        self.confidence_threshold = check_float(confidence_threshold, "confidence_threshold", low=0.0, high=1.0,
                                                high_open=True)
        self.rampup_iterations = check_int(rampup_iterations, "rampup_iterations", low=0)
        self.rampup_aux = check_bool(rampup_aux, "rampup_aux")
        self.supervised = SupervisedSegmentationLoss(check_float(lambda_dice, "lambda_dice", low=0.0),
                                                     check_float(lambda_ce, "lambda_ce", low=0.0),
                                                     check_bool(dice_include_background, "dice_include_background"))
        self.pseudo = PseudoLabelLoss()
        self.feature = FeatureConsistencyLoss(feature_loss)
        self.mixed_region = MixedRegionLoss()
        self.rotation = RotationLoss()

    def rampup(self, step: int) -> float:
        """Ramp-up weight after ``step`` completed iterations."""
        return sigmoid_rampup(step, self.rampup_iterations)

    def weights(self, step: int) -> dict[str, float]:
        """Effective weight of each term at ``step``."""
        r = self.rampup(step)
        aux = self.lambda_aux * (r if self.rampup_aux else 1.0)
        return {"sup": 1.0, "pseudo": self.lambda_cps * r, "feat": self.lambda_feat * r,
                "aux_mask": aux, "aux_rot": aux}

    def total(self, terms: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """Weighted sum of the terms present in ``terms`` (unknown names raise ``KeyError``)."""
        w = self.weights(step)
        unknown = set(terms) - set(w)
        if unknown:
            raise KeyError(f"unknown loss term(s) {sorted(unknown)}; known: {sorted(w)}")
        return sum(w[name] * value for name, value in terms.items())
