"""The one seeding scheme: ``(seed, *keys)`` -> an independent, reproducible random stream.

Every random number medfound draws (synthetic data, splits, task order, augmentation of a
sample, the views of a training step) comes from a stream named by the run's ``seed`` and
keys that say what it is for (``"fundus"``, a domain name, a task index, an iteration).
Keys are hashed with CRC32 of their text (stable across processes and Python versions,
unlike ``hash``) and fed to NumPy's ``SeedSequence``, whose mixing makes streams with
different keys statistically independent. The result depends on the values only, never
on what ran before, which is what makes a resumed run draw exactly what an uninterrupted
one would.

Example
-------
>>> int(make_rng(0, "fundus", 3).integers(0, 100)) == int(make_rng(0, "fundus", 3).integers(0, 100))
True
>>> derive_seed(0, "a") != derive_seed(0, "b")
True
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["seed_entropy", "derive_seed", "make_rng", "torch_generator", "capture_rng_state", "restore_rng_state"]


def seed_entropy(seed: int, *keys: str | int) -> list[int]:
    """The entropy words of ``(seed, *keys)``: the seed's low 32 bits, then CRC32 of each key's text."""
    return [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(k).encode()) for k in keys]


def derive_seed(seed: int, *keys: str | int) -> int:
    """A 32-bit seed for ``(seed, *keys)`` (for APIs that take an int: ``torch.manual_seed``, MONAI)."""
    return int(np.random.SeedSequence(seed_entropy(seed, *keys)).generate_state(1)[0])


def make_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A NumPy ``Generator`` for ``(seed, *keys)``.

    Example
    -------
    >>> a = make_rng(0, "fundus", 3).random()
    >>> b = make_rng(0, "fundus", 3).random()
    >>> a == b
    True
    """
    return np.random.default_rng(np.random.SeedSequence(seed_entropy(seed, *keys)))


def torch_generator(seed: int, *keys: str | int, device: str = "cpu"):
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed` of ``(seed, *keys)``.

    Example
    -------
    >>> import torch
    >>> a = torch.rand(2, generator=torch_generator(1, "x"))
    >>> torch.equal(a, torch.rand(2, generator=torch_generator(1, "x")))
    True
    """
    import torch

    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states (python, numpy, torch CPU, CUDA) as weights-only-safe values.

    For checkpoints of runs that draw from the global generators (dropout, stochastic depth).

    Example
    -------
    >>> import torch
    >>> state = capture_rng_state(); a = torch.rand(1)
    >>> restore_rng_state(state); torch.equal(a, torch.rand(1))
    True
    """
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set the global RNGs to a :func:`capture_rng_state` result."""
    import torch

    if "python" in state:
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
    if "numpy" in state:
        n = state["numpy"]
        keys = n["keys"].numpy() if torch.is_tensor(n["keys"]) else np.asarray(n["keys"])
        np.random.set_state(
            (n["kind"], keys.astype(np.uint32), int(n["pos"]), int(n["has_gauss"]), float(n["cached_gaussian"]))
        )
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        states = list(state["cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.cpu() for s in states])
