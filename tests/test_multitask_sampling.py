"""Cyclic task sampling: order, restart of shorter loaders, exact state round trip; rank slicing; validation."""

from __future__ import annotations

import pytest
import torch

from medfound.errors import ConfigError
from medfound.multitask.datasets import TaskDataset
from medfound.multitask.sampling import BalancedValidationLoader, CyclicTaskLoader, TaskBatchSampler
from medfound.utils import derive_seed, make_rng


def _indexed(n: int, tag: int) -> list[dict]:
    return [{"image": torch.full((1, 2, 2), float(i)), "label": tag} for i in range(n)]


def _loader(order: str = "fixed", **kw) -> CyclicTaskLoader:
    data = {"long": _indexed(6, 0), "short": _indexed(2, 1), "mid": _indexed(4, 2)}
    return CyclicTaskLoader(
        data,
        batch_sizes={"long": 2, "short": 2, "mid": 2},
        kinds=dict.fromkeys(data, "classification"),
        seed=3,
        order=order,
        **kw,
    )


def _ids(batch) -> list[int]:
    return [int(v) for v in batch["image"][:, 0, 0, 0]]


def test_cyclic_order_and_restart_of_short_loaders():
    loader = _loader()
    it = iter(loader)
    drawn = [next(it) for _ in range(9)]
    assert [n for n, _ in drawn] == ["long", "short", "mid"] * 3
    short = [_ids(b) for n, b in drawn if n == "short"]
    # one batch per epoch: each epoch is the same two samples in a new (seeded) order
    assert all(sorted(s) == [0, 1] for s in short)
    long_ids = [i for n, b in drawn if n == "long" for i in _ids(b)]
    assert sorted(long_ids) == list(range(6))  # three batches = exactly one epoch of "long"
    state = loader.state_dict()
    assert state["step"] == 9
    assert state["tasks"] == {
        "long": {"epoch": 0, "batch": 3},
        "short": {"epoch": 2, "batch": 1},
        "mid": {"epoch": 1, "batch": 1},
    }


def test_shuffled_order_is_a_permutation_per_cycle_and_deterministic():
    a, b = _loader("shuffle"), _loader("shuffle")
    seq = [a.task_at(s) for s in range(30)]
    assert seq == [b.task_at(s) for s in range(30)]
    for c in range(10):
        assert sorted(seq[3 * c : 3 * c + 3]) == ["long", "mid", "short"]
    assert len({tuple(seq[3 * c : 3 * c + 3]) for c in range(10)}) > 1
    names = ["long", "short", "mid"]
    assert seq[6:9] == [names[i] for i in make_rng(3, "task_order", 2).permutation(3)]  # cycle 2 of seed 3
    with pytest.raises(ConfigError):
        _loader("random")


def test_state_round_trip_gives_the_same_next_batches():
    ref = _loader("shuffle")
    it = iter(ref)
    for _ in range(7):
        next(it)
    state = ref.state_dict()
    expected = [(n, _ids(b)) for n, b in (next(it) for _ in range(12))]
    fresh = _loader("shuffle")
    fresh.load_state_dict(state)
    got = [(n, _ids(b)) for n, b in (next(iter(fresh)) for _ in range(1))]
    it2 = iter(fresh)
    got += [(n, _ids(b)) for n, b in (next(it2) for _ in range(11))]
    assert got == expected
    other = CyclicTaskLoader({"x": _indexed(2, 0)}, 1, kinds={"x": "classification"})
    with pytest.raises(ConfigError, match="tasks"):
        other.load_state_dict(state)


def test_loader_does_not_touch_the_global_torch_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    it = iter(_loader())
    for _ in range(8):
        next(it)
    assert torch.equal(torch.rand(3), expected)


def test_rank_slices_equal_the_single_process_global_batch():
    single = TaskBatchSampler(20, batch_size=6, seed=1, task="t", epoch=3)
    ranks = [TaskBatchSampler(20, batch_size=3, seed=1, task="t", epoch=3, rank=r, world_size=2) for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 3
    for whole, r0, r1 in zip(single, *ranks):
        assert whole == r0 + r1
    resumed = list(TaskBatchSampler(20, batch_size=6, seed=1, task="t", epoch=3, start_batch=2))
    assert resumed == list(single)[2:]
    # the one seeding scheme: the permutation and each sample's augmentation seed come from (seed, task, epoch[, index])
    first = list(single)[0]
    assert [i for i, _ in first] == make_rng(1, "task_permutation", "t", 3).permutation(20)[:6].tolist()
    assert first[0][1] == derive_seed(1, "sample", "t", 3, first[0][0])
    assert TaskBatchSampler(5, batch_size=8).batch_size == 5


def test_balanced_validation_visits_each_task_once_interleaved():
    data = {"a": TaskDataset(_indexed(5, 0), lambda d: d), "b": TaskDataset(_indexed(2, 1), lambda d: d)}
    loader = BalancedValidationLoader(data, 2, kinds=dict.fromkeys(data, "classification"))
    seen = [(n, _ids(b)) for n, b in loader]
    assert len(loader) == 4 == len(seen)
    assert [n for n, _ in seen] == ["a", "b", "a", "a"]
    assert [i for n, ids in seen if n == "a" for i in ids] == [0, 1, 2, 3, 4]
    capped = BalancedValidationLoader(data, 2, kinds=dict.fromkeys(data, "classification"), max_batches_per_task=1)
    assert [n for n, _ in capped] == ["a", "b"]
