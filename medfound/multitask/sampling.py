"""Task sampling: cyclic training order over tasks (resumable) and balanced validation.

:class:`CyclicTaskLoader` is an endless iterable of ``(task_name, batch)``: step ``s``
belongs to task ``order(s // T)[s % T]`` (``T`` tasks; the order is fixed, or shuffled per
cycle from the seed), and each task's batches come from its own ``DataLoader``, which
restarts with a new epoch (a new permutation) when it runs out, so short tasks repeat while
long ones go on. Its state (the step, and per task the epoch and the batches used in it) is
small; :meth:`~CyclicTaskLoader.load_state_dict` makes the next batch exactly the one an
uninterrupted run would have drawn.

:class:`BalancedValidationLoader` walks every task's validation data once (up to
``max_batches_per_task``), interleaving tasks, so each task is evaluated on its own data
and the aggregate can weigh tasks equally.

Example
-------
>>> import torch
>>> from medfound.multitask.sampling import CyclicTaskLoader
>>> data = {"a": [{"image": torch.zeros(1, 4, 4), "label": 0}] * 4,
...         "b": [{"image": torch.zeros(1, 4, 4), "label": 1}] * 2}
>>> loader = CyclicTaskLoader(data, batch_sizes=2, kinds={"a": "classification", "b": "classification"})
>>> it = iter(loader)
>>> [next(it)[0] for _ in range(5)], loader.state_dict()["tasks"]["b"]
(['a', 'b', 'a', 'b', 'a'], {'epoch': 1, 'batch': 1})
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from medfound.errors import ConfigError
from medfound.multitask.data import TaskBatchSampler, TaskDataset, collate_task_batch

__all__ = ["CyclicTaskLoader", "BalancedValidationLoader"]


def _per_task(value: Any, names: Sequence[str], what: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        missing = [n for n in names if n not in value]
        if missing:
            raise ConfigError(f"{what} missing for tasks {missing}")
        return {n: value[n] for n in names}
    return {n: value for n in names}


def _as_dataset(data: Any, name: str) -> Dataset:
    if isinstance(data, Dataset) or (
        hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, (list, tuple))
    ):
        return data
    if isinstance(data, (list, tuple)):  # ready samples (already transformed)
        return TaskDataset(list(data), transform=lambda x: x, name=name)
    raise ConfigError(f"task {name!r}: data must be a Dataset or a list of samples, got {type(data).__name__}")


class CyclicTaskLoader:
    """Endless ``(task_name, batch)`` iterable: one task per step, cyclic, resumable.

    Parameters
    ----------
    datasets : task name -> dataset taking ``(index, seed)`` keys (:class:`TaskDataset`) or a
        list of ready samples.
    batch_sizes : per-rank batch size, one for all or per task.
    kinds : task name -> kind (for the collate function); or give ``collate_fns``.
    collate_fns : task name -> collate function (default :func:`collate_task_batch`).
    seed : fixes every permutation and augmentation.
    order : ``"fixed"`` (tasks in the given order every cycle) or ``"shuffle"`` (a new order
        per cycle, drawn from the seed and the cycle number).
    num_workers : worker processes per task's ``DataLoader``.
    pin_memory : as ``DataLoader``.
    rank, world_size : this process's part of each global batch (distributed training).
    """

    def __init__(
        self,
        datasets: Mapping[str, Any],
        batch_sizes: int | Mapping[str, int] = 8,
        kinds: Mapping[str, str] | None = None,
        collate_fns: Mapping[str, Callable] | None = None,
        seed: int = 0,
        order: str = "fixed",
        num_workers: int = 0,
        pin_memory: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.names = list(datasets)
        if not self.names:
            raise ConfigError("CyclicTaskLoader needs at least one task")
        if order not in ("fixed", "shuffle"):
            raise ConfigError(f"order must be 'fixed' or 'shuffle', got {order!r}")
        self.datasets = {n: _as_dataset(datasets[n], n) for n in self.names}
        for n, ds in self.datasets.items():
            if len(ds) == 0:
                raise ConfigError(f"task {n!r} has no training samples")
        self.batch_sizes = {n: int(b) for n, b in _per_task(batch_sizes, self.names, "batch size").items()}
        if collate_fns is None:
            if kinds is None:
                raise ConfigError("give kinds or collate_fns")
            kinds = _per_task(kinds, self.names, "kind")
            collate_fns = {n: collate_task_batch(kinds[n]) for n in self.names}
        self.collate_fns = _per_task(collate_fns, self.names, "collate function")
        self.seed, self.order, self.num_workers, self.pin_memory = int(seed), order, int(num_workers), bool(pin_memory)
        self.rank, self.world_size = int(rank), int(world_size)
        self.step = 0
        self.task_state = {n: {"epoch": 0, "batch": 0} for n in self.names}
        self._iters: dict[str, Iterator] = {}

    # -- order ---------------------------------------------------------------------------------
    def task_at(self, step: int) -> str:
        """The task of global step ``step`` (0-based)."""
        t = len(self.names)
        cycle, pos = divmod(int(step), t)
        if self.order == "fixed":
            return self.names[pos]
        perm = np.random.default_rng([self.seed & 0xFFFFFFFF, 7919, cycle]).permutation(t)
        return self.names[int(perm[pos])]

    def batches_per_epoch(self, name: str) -> int:
        """Batches of task ``name`` in one of its epochs."""
        return len(self._sampler(name, 0, 0))

    # -- iteration -----------------------------------------------------------------------------
    def _sampler(self, name: str, epoch: int, start: int) -> TaskBatchSampler:
        return TaskBatchSampler(
            len(self.datasets[name]),
            self.batch_sizes[name],
            seed=self.seed,
            task_index=self.names.index(name),
            epoch=epoch,
            start_batch=start,
            shuffle=True,
            drop_last=True,
            rank=self.rank,
            world_size=self.world_size,
        )

    def _open(self, name: str) -> Iterator:
        st = self.task_state[name]
        sampler = self._sampler(name, st["epoch"], st["batch"])
        # a private generator: creating a DataLoader iterator must not consume the global torch RNG
        gen = torch.Generator().manual_seed(self.seed * 1000003 + self.names.index(name) * 7919 + st["epoch"])
        loader = DataLoader(
            self.datasets[name],
            batch_sampler=sampler,
            collate_fn=self.collate_fns[name],
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            generator=gen,
        )
        return iter(loader)

    def next_batch(self, name: str) -> Any:
        """The next batch of task ``name`` (starting a new epoch when the current one is used up)."""
        st = self.task_state[name]
        for _ in range(2):
            it = self._iters.get(name)
            if it is None:
                it = self._iters[name] = self._open(name)
            try:
                batch = next(it)
            except StopIteration:
                st["epoch"] += 1
                st["batch"] = 0
                self._iters.pop(name, None)
                continue
            st["batch"] += 1
            return batch
        raise ConfigError(
            f"task {name!r} yields no batch (batch size {self.batch_sizes[name]}, {len(self.datasets[name])} samples)"
        )

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        while True:
            name = self.task_at(self.step)
            batch = self.next_batch(name)
            self.step += 1
            yield name, batch

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Position of the loader: plain ints and strings (safe for ``torch.load(weights_only=True)``)."""
        return {
            "step": self.step,
            "seed": self.seed,
            "order": self.order,
            "names": list(self.names),
            "tasks": {n: dict(s) for n, s in self.task_state.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``: the next batch is the one an uninterrupted run would draw next."""
        if list(state.get("names", self.names)) != self.names:
            raise ConfigError(f"loader state is for tasks {state.get('names')}, this loader has {self.names}")
        if int(state.get("seed", self.seed)) != self.seed or state.get("order", self.order) != self.order:
            raise ConfigError("loader state was saved with another seed or order")
        self.step = int(state["step"])
        self.task_state = {
            n: {"epoch": int(state["tasks"][n]["epoch"]), "batch": int(state["tasks"][n]["batch"])} for n in self.names
        }
        self._iters = {}


class BalancedValidationLoader:
    """Every task's validation batches once, tasks interleaved: ``(task_name, batch)``.

    Parameters
    ----------
    datasets : task name -> dataset (plain indices) or list of ready samples.
    batch_sizes : one for all or per task.
    kinds / collate_fns : as :class:`CyclicTaskLoader`.
    max_batches_per_task : cap per task (``None``: all of it).
    num_workers : per task's ``DataLoader``.
    """

    def __init__(
        self,
        datasets: Mapping[str, Any],
        batch_sizes: int | Mapping[str, int] = 8,
        kinds: Mapping[str, str] | None = None,
        collate_fns: Mapping[str, Callable] | None = None,
        max_batches_per_task: int | None = None,
        num_workers: int = 0,
    ) -> None:
        self.names = [n for n in datasets]
        self.datasets = {n: _as_dataset(datasets[n], n) for n in self.names}
        self.batch_sizes = {n: int(b) for n, b in _per_task(batch_sizes, self.names, "batch size").items()}
        if collate_fns is None:
            if kinds is None:
                raise ConfigError("give kinds or collate_fns")
            kinds = _per_task(kinds, self.names, "kind")
            collate_fns = {n: collate_task_batch(kinds[n]) for n in self.names}
        self.collate_fns = _per_task(collate_fns, self.names, "collate function")
        self.max_batches = None if max_batches_per_task is None else int(max_batches_per_task)
        self.num_workers = int(num_workers)

    def batches(self, name: str) -> int:
        n = math.ceil(len(self.datasets[name]) / self.batch_sizes[name])
        return n if self.max_batches is None else min(n, self.max_batches)

    def __len__(self) -> int:
        return sum(self.batches(n) for n in self.names)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        iters = {}
        for n in self.names:
            if self.batches(n) == 0:
                continue
            # a private generator: a validation pass must not consume the global torch RNG (exact resume)
            loader = DataLoader(
                self.datasets[n],
                batch_size=self.batch_sizes[n],
                shuffle=False,
                collate_fn=self.collate_fns[n],
                num_workers=self.num_workers,
                generator=torch.Generator().manual_seed(0),
            )
            iters[n] = (iter(loader), self.batches(n))
        counts = dict.fromkeys(iters, 0)
        while iters:
            for n in list(iters):
                it, limit = iters[n]
                if counts[n] >= limit:
                    iters.pop(n)
                    continue
                try:
                    batch = next(it)
                except StopIteration:
                    iters.pop(n)
                    continue
                counts[n] += 1
                yield n, batch
