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
from torch.utils.data import DataLoader, Dataset, Sampler

from medfound.errors import ConfigError, DatasetLayoutError
from medfound.multitask.batches import collate_task_batch
from medfound.multitask.datasets import TaskDataset, build_task_datasets
from medfound.multitask.tasks import TaskSpec, per_task
from medfound.utils import check_choice, check_int, derive_seed, make_rng, torch_generator
from medfound.utils.devices import rank as process_rank
from medfound.utils.devices import world_size as process_count

__all__ = ["TaskBatchSampler", "CyclicTaskLoader", "BalancedValidationLoader"]


class TaskBatchSampler(Sampler):
    """Batches of ``(index, seed)`` keys for one task, one epoch, resumable mid-epoch.

    Parameters
    ----------
    num_items : size of the task's dataset.
    batch_size : per-rank batch size (reduced to what the data allows).
    seed, task : the run's seed and the task (its name): they fix the permutations and the
        samples' augmentation seeds (:func:`medfound.utils.make_rng` / :func:`~medfound.utils.derive_seed`).
    epoch : which epoch's permutation.
    start_batch : first batch to yield (to resume inside an epoch).
    shuffle : permute (training) or keep the order (validation).
    drop_last : leave out the last incomplete global batch (training).
    rank, world_size : this process's slice of each global batch.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int = 0,
        task: str | int = 0,
        epoch: int = 0,
        start_batch: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_items < world_size:
            raise DatasetLayoutError(f"{num_items} samples cannot be split over {world_size} processes")
        self.num_items, self.seed, self.task, self.epoch = int(num_items), int(seed), task, int(epoch)
        self.world_size, self.rank = int(world_size), int(rank)
        self.batch_size = max(1, min(int(batch_size), self.num_items // self.world_size))
        self.start_batch, self.shuffle, self.drop_last = int(start_batch), bool(shuffle), bool(drop_last)

    def __len__(self) -> int:
        global_batch = self.batch_size * self.world_size
        if self.drop_last:
            return self.num_items // global_batch
        return math.ceil(self.num_items / global_batch)

    def order(self) -> np.ndarray:
        """The epoch's order of indices."""
        if not self.shuffle:
            return np.arange(self.num_items)
        return make_rng(self.seed, "task_permutation", self.task, self.epoch).permutation(self.num_items)

    def __iter__(self):
        order = self.order()
        g = self.batch_size * self.world_size
        for b in range(self.start_batch, len(self)):
            chunk = order[b * g : (b + 1) * g]
            mine = chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            if len(mine) == 0:  # an incomplete last global batch may leave a rank empty
                mine = chunk[-1:]
            yield [(int(i), self.sample_seed(int(i))) for i in mine]

    def sample_seed(self, index: int) -> int:
        """The augmentation seed of one sample: a function of (run seed, task, epoch, index) only."""
        return derive_seed(self.seed, "sample", self.task, self.epoch, index)


def _collate_fns(
    names: Sequence[str], kinds: Mapping[str, str] | None, collate_fns: Mapping[str, Callable] | None
) -> dict[str, Callable]:
    if collate_fns is None:
        if kinds is None:
            raise ConfigError("give kinds or collate_fns")
        kinds = per_task(kinds, names, "kind")
        collate_fns = {n: collate_task_batch(kinds[n]) for n in names}
    return per_task(collate_fns, names, "collate function")


def _as_specs(tasks: Any) -> list[TaskSpec]:
    specs = list(tasks.values()) if isinstance(tasks, Mapping) else list(tasks)
    bad = [type(s).__name__ for s in specs if not isinstance(s, TaskSpec)]
    if bad or not specs:
        raise ConfigError(f"tasks must be a non-empty list of TaskSpec (medfound.multitask.load_tasks), "
                          f"got {bad or specs}")
    return specs


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
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.names = list(datasets)
        if not self.names:
            raise ConfigError("CyclicTaskLoader needs at least one task")
        self.order = check_choice(order, ("fixed", "shuffle"), "order")
        self.datasets = {n: _as_dataset(datasets[n], n) for n in self.names}
        for n, ds in self.datasets.items():
            if len(ds) == 0:
                raise DatasetLayoutError(f"task {n!r} has no training samples")
        self.batch_sizes = {
            n: check_int(b, f"batch size of task {n!r}", low=1)
            for n, b in per_task(batch_sizes, self.names, "batch size").items()
        }
        self.collate_fns = _collate_fns(self.names, kinds, collate_fns)
        self.seed = check_int(seed, "seed", low=0)
        self.num_workers = check_int(num_workers, "num_workers", low=0)
        self.pin_memory = bool(pin_memory)
        self.world_size = check_int(process_count() if world_size is None else world_size, "world_size", low=1)
        self.rank = check_int(process_rank() if rank is None else rank, "rank", low=0, high=self.world_size - 1)
        self.step = 0
        self.task_state = {n: {"epoch": 0, "batch": 0} for n in self.names}
        self._iters: dict[str, Iterator] = {}

    @classmethod
    def from_tasks(
        cls,
        tasks: Sequence[TaskSpec],
        batch_size: int = 8,
        seed: int = 0,
        order: str = "fixed",
        num_workers: int = 0,
        pin_memory: bool = False,
        skip_bad: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> CyclicTaskLoader:
        """The loader of the tasks' training data: their datasets and transforms, each task's
        ``batch_size`` (``batch_size`` for tasks without one); the other arguments as the class's.

        Example
        -------
        >>> import torch
        >>> from medfound.multitask.tasks import load_tasks
        >>> specs = load_tasks([{"name": "a", "kind": "classification", "class_names": ["x", "y"],
        ...                      "training": [{"image": torch.zeros(1, 4, 4), "label": i % 2} for i in range(4)],
        ...                      "transforms": {"train": lambda d: d}}])
        >>> loader = CyclicTaskLoader.from_tasks(specs, batch_size=2, seed=1)
        >>> loader.batch_sizes, loader.epoch_length()
        ({'a': 2}, 2)
        """
        specs = _as_specs(tasks)
        return cls(
            build_task_datasets(specs, "train", skip_bad),
            {s.name: s.batch_size or batch_size for s in specs},
            kinds={s.name: s.kind for s in specs},
            seed=seed,
            order=order,
            num_workers=num_workers,
            pin_memory=pin_memory,
            rank=rank,
            world_size=world_size,
        )

    # -- order ---------------------------------------------------------------------------------
    def task_at(self, step: int) -> str:
        """The task of global step ``step`` (0-based)."""
        t = len(self.names)
        cycle, pos = divmod(int(step), t)
        if self.order == "fixed":
            return self.names[pos]
        perm = make_rng(self.seed, "task_order", cycle).permutation(t)
        return self.names[int(perm[pos])]

    def batches_per_epoch(self, name: str) -> int:
        """Batches of task ``name`` in one of its epochs."""
        return len(self._sampler(name, 0, 0))

    def epoch_length(self, window: int | None = None) -> int:
        """Iterations of one training epoch: every task's largest epoch, once per task, rounded up
        to whole windows of ``window`` iterations (default: one per task)."""
        window = len(self.names) if window is None else check_int(window, "window", low=1)
        most = max(self.batches_per_epoch(n) for n in self.names)
        return window * math.ceil(len(self.names) * max(1, most) / window)

    # -- iteration -----------------------------------------------------------------------------
    def _sampler(self, name: str, epoch: int, start: int) -> TaskBatchSampler:
        return TaskBatchSampler(
            len(self.datasets[name]),
            self.batch_sizes[name],
            seed=self.seed,
            task=name,
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
        gen = torch_generator(self.seed, "task_loader", name, st["epoch"])
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
        self.batch_sizes = {
            n: check_int(b, f"validation batch size of task {n!r}", low=1)
            for n, b in per_task(batch_sizes, self.names, "batch size").items()
        }
        self.collate_fns = _collate_fns(self.names, kinds, collate_fns)
        self.max_batches = check_int(max_batches_per_task, "max_batches_per_task", low=1, allow_none=True)
        self.num_workers = check_int(num_workers, "num_workers", low=0)

    @classmethod
    def from_tasks(
        cls,
        tasks: Sequence[TaskSpec],
        batch_size: int = 8,
        max_batches_per_task: int | None = None,
        num_workers: int = 0,
        skip_bad: bool = True,
    ) -> BalancedValidationLoader:
        """The loader of the tasks' validation data (tasks without any are left out); a task's
        batch size is its ``val_batch_size``, else its ``batch_size``, else ``batch_size``.

        Example
        -------
        >>> import torch
        >>> from medfound.multitask.tasks import load_tasks
        >>> specs = load_tasks([{"name": "a", "kind": "classification", "class_names": ["x", "y"], "training": [],
        ...                      "validation": [{"image": torch.zeros(1, 4, 4), "label": 0}] * 3,
        ...                      "transforms": {"val": lambda d: d}}])
        >>> [(name, len(batch["label"])) for name, batch in BalancedValidationLoader.from_tasks(specs, batch_size=2)]
        [('a', 2), ('a', 1)]
        """
        specs = {s.name: s for s in _as_specs(tasks)}
        datasets = {n: d for n, d in build_task_datasets(list(specs.values()), "val", skip_bad).items() if len(d)}
        if not datasets:
            raise DatasetLayoutError(f"no task has validation data (tasks: {sorted(specs)})")
        return cls(
            datasets,
            {n: specs[n].val_batch_size or specs[n].batch_size or batch_size for n in datasets},
            kinds={n: specs[n].kind for n in datasets},
            max_batches_per_task=max_batches_per_task,
            num_workers=num_workers,
        )

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
                generator=torch_generator(0, "validation"),
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
