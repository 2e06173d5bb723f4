"""Summary statistics for metrics and evidence tables: NaN-aware means and 95 % intervals.

- :func:`nanmean`: the mean of the finite values, NaN when there are none (a class absent
  from every case, a task without a score);
- :func:`mean_interval`: mean and two-sided Student-t confidence interval over repeats
  (seeds, data subsets);
- :func:`paired_difference`: mean difference of two methods that share seeds (or cases),
  with its t interval, so run-to-run noise common to both cancels.

Example
-------
>>> nanmean([1.0, float("nan"), 3.0])
2.0
>>> s = mean_interval([0.70, 0.72, 0.74])
>>> round(s["mean"], 3), round(s["low"], 3), round(s["high"], 3), s["n"]
(0.72, 0.67, 0.77, 3)
>>> d = paired_difference([0.80, 0.82, 0.85], [0.70, 0.73, 0.74])
>>> round(d["mean"], 3), d["low"] > 0
(0.1, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medfound.errors import ShapeError

__all__ = ["nanmean", "mean_interval", "paired_difference"]


def nanmean(values: Sequence[float]) -> float:
    """Mean of the non-NaN values (float64), NaN if there are none."""
    arr = np.asarray([float(v) for v in values], np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std and the Student-t ``confidence`` interval of the mean, over non-NaN values.

    Returns ``{"mean", "std", "low", "high", "half_width", "n"}``; with one value the interval
    is undefined (``low = high = NaN``), with none everything is NaN.
    """
    arr = np.asarray([float(v) for v in values], np.float64)
    arr = arr[~np.isnan(arr)]
    n = int(arr.size)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "low": math.nan, "high": math.nan, "half_width": math.nan, "n": 0}
    mean = float(arr.mean())
    if n == 1:
        return {"mean": mean, "std": math.nan, "low": math.nan, "high": math.nan, "half_width": math.nan, "n": 1}
    from scipy import stats

    std = float(arr.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
    return {"mean": mean, "std": std, "low": mean - half, "high": mean + half, "half_width": half, "n": n}


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """``a - b`` per pair (same seed / case), summarised by :func:`mean_interval`.

    Pairs where either side is NaN are left out (and counted in ``n``'s absence).
    """
    a_arr, b_arr = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1:
        raise ShapeError(f"paired values need two equally long 1D sequences, got {a_arr.shape} and {b_arr.shape}")
    return mean_interval((a_arr - b_arr).tolist(), confidence)
