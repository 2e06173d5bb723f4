"""Training-data subsets of the transfer protocol: stratified, at least one sample per class, seeded.

Example
-------
>>> import numpy as np
>>> idx = stratified_subset(np.array([0] * 90 + [1] * 10), fraction=5, seed=0, kind="classification")
>>> len(idx), int((np.array([0] * 90 + [1] * 10)[idx] == 1).sum())
(5, 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medfound.errors import ConfigError
from medfound.utils import check_float, make_rng

__all__ = ["task_targets", "stratified_subset"]


def task_targets(items: Sequence[Mapping[str, Any]], kind: str) -> np.ndarray:
    """What a subset is stratified by: class indices (classification), the 0/1/-1 label matrix
    (multi-label), zeros (other kinds)."""
    if kind == "classification":
        return np.asarray([int(i["label"]) for i in items])
    if kind == "multilabel":
        return np.asarray([list(i["label"]) for i in items])
    return np.zeros(len(items))


def stratified_subset(labels: np.ndarray, fraction: float, seed: int, kind: str = "classification") -> np.ndarray:
    """Indices of a ``fraction`` % subset: classes keep their share, at least one sample per class.

    Classification: ``max(1, round(f * N_c))`` of each class ``c`` (unlabelled -1 samples
    are never drawn). Multi-label: one positive sample for each label that has positives,
    then random samples up to ``max(1, round(f * N))``. Other kinds: ``max(1, round(f * N))``
    random samples. The same ``seed`` gives the same subset (:func:`medfound.utils.make_rng`).
    """
    f = check_float(fraction, "fraction (percent)", low=0.0, high=100.0, low_open=True) / 100.0
    rng = make_rng(int(seed))
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        raise ConfigError("no training samples to draw a subset from")
    if kind == "classification":
        chosen = []
        for c in np.unique(labels[labels >= 0]):
            members = np.nonzero(labels == c)[0]
            k = min(len(members), max(1, int(round(f * len(members)))))
            chosen.append(rng.choice(members, size=k, replace=False))
        return np.sort(np.concatenate(chosen))
    target = min(n, max(1, int(round(f * n))))
    if kind == "multilabel":
        picked: set[int] = set()
        for j in rng.permutation(labels.shape[1]):
            positives = np.nonzero(labels[:, j] == 1)[0]
            if len(positives) and not any(int(p) in picked for p in positives):
                picked.add(int(rng.choice(positives)))
        rest = [int(i) for i in rng.permutation(n) if int(i) not in picked]
        need = max(0, target - len(picked))
        return np.sort(np.asarray(sorted(picked) + rest[:need], dtype=np.int64))
    return np.sort(rng.choice(n, size=target, replace=False))
