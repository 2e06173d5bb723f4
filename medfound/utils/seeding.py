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

import zlib

import numpy as np

__all__ = ["seed_entropy", "derive_seed", "make_rng", "torch_generator"]


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
