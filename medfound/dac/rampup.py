"""Sigmoid ramp-up of the unsupervised loss weights (Laine & Aila 2017; mean teacher).

``w(t) = exp(-5 (1 - t)^2)`` for ``t = step / length`` clipped to ``[0, 1]``: about 0.0067 at
the start, 1 from ``step >= length`` on. A length of 0 means no ramp-up (weight 1).

Example
-------
>>> from medfound.dac.rampup import sigmoid_rampup
>>> round(sigmoid_rampup(0, 100), 4), round(sigmoid_rampup(50, 100), 4), sigmoid_rampup(100, 100)
(0.0067, 0.2865, 1.0)
"""

from __future__ import annotations

import math

from medfound.utils import check_float

__all__ = ["sigmoid_rampup"]


def sigmoid_rampup(step: float, length: float) -> float:
    """Weight in ``(0, 1]`` after ``step`` of a ramp-up lasting ``length`` steps."""
    length = check_float(length, "ramp-up length", low=0.0)
    if length == 0:
        return 1.0
    t = min(max(float(step) / float(length), 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))
