"""The DAC objective: ``sup + w(t) * (lambda_cps * cps + lambda_feat * feat) + lambda_aux * aux``.

``w(t)`` is the sigmoid ramp-up (:mod:`medfound.dac.rampup`); the auxiliary terms are ramped
too when ``rampup_aux`` is set. The trainer computes the individual terms (it owns the
views and forward passes) and this module weighs and sums them, so every constant lives
in one place and a bundle config can build it with ``_target_``.

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

from medfound.dac.losses import FeatureConsistencyLoss, PseudoLabelLoss, SupervisedSegmentationLoss
from medfound.dac.rampup import sigmoid_rampup
from medfound.errors import ConfigError

__all__ = ["DACObjective", "TERMS"]

#: loss terms the trainer may report, and the weight each one takes
TERMS = {"sup": "1", "pseudo": "cps", "feat": "feat", "aux_mask": "aux", "aux_rot": "aux"}


class DACObjective(nn.Module):
    """Loss functions and weights of DAC and its baselines.

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
        lambda_cps: float = 1.0,
        lambda_feat: float = 0.1,
        lambda_aux: float = 0.1,
        confidence_threshold: float = 0.0,
        rampup_iterations: int = 0,
        rampup_aux: bool = False,
        feature_loss: str = "cosine",
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        dice_include_background: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= confidence_threshold < 1.0:
            raise ConfigError(f"confidence_threshold must be in [0, 1), got {confidence_threshold}")
        for name, value in (("lambda_cps", lambda_cps), ("lambda_feat", lambda_feat), ("lambda_aux", lambda_aux)):
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        self.lambda_cps, self.lambda_feat, self.lambda_aux = float(lambda_cps), float(lambda_feat), float(lambda_aux)
        self.confidence_threshold = float(confidence_threshold)
        self.rampup_iterations = int(rampup_iterations)
        self.rampup_aux = bool(rampup_aux)
        self.supervised = SupervisedSegmentationLoss(lambda_dice, lambda_ce, dice_include_background)
        self.pseudo = PseudoLabelLoss()
        self.feature = FeatureConsistencyLoss(feature_loss)

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
