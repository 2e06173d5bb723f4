"""medfound.evaluation.statistics: known answers for the means and t intervals of the evidence tables."""

from __future__ import annotations

import math

import pytest

from medfound.errors import ShapeError
from medfound.evaluation.statistics import mean_interval, nanmean, paired_difference


def test_nanmean():
    assert nanmean([1, 2, float("nan")]) == 1.5
    assert math.isnan(nanmean([])) and math.isnan(nanmean([float("nan")]))


def test_mean_interval_known_answer():
    # n = 4, mean 2.5, sd = sqrt(5/3); t(0.975, 3) = 3.182446305284263
    s = mean_interval([1, 2, 3, 4])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert s["n"] == 4 and s["mean"] == 2.5
    assert s["std"] == pytest.approx(math.sqrt(5 / 3), rel=1e-12)
    assert (s["low"], s["high"]) == pytest.approx((2.5 - half, 2.5 + half), rel=1e-9)
    one = mean_interval([0.3, float("nan")])
    assert one["n"] == 1 and one["mean"] == 0.3 and math.isnan(one["low"])
    assert mean_interval([])["n"] == 0


def test_paired_difference_cancels_shared_noise():
    # seed effects shared by both methods (+-0.2) vanish in the paired difference (exactly 0.05)
    a = [0.55, 0.95, 0.75]
    b = [0.50, 0.90, 0.70]
    d = paired_difference(a, b)
    assert d["mean"] == pytest.approx(0.05) and d["std"] == pytest.approx(0.0, abs=1e-12)
    assert mean_interval(a)["half_width"] > 0.4  # unpaired, the same data say nothing
    with pytest.raises(ShapeError):
        paired_difference([1, 2], [1])
