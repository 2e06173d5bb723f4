"""Atomic checkpoint files and random-number-generator states.

:func:`save_checkpoint` writes to a temporary file in the target folder, flushes it to disk
and renames it over the target (``os.replace``), so a run killed while saving leaves the
previous checkpoint intact. :func:`capture_rng_state` / :func:`restore_rng_state` cover
Python's ``random``, NumPy's global generator, torch's CPU generator and every CUDA
device's generator, in types that ``torch.load(weights_only=True)`` accepts.

Example
-------
>>> import os, tempfile, torch
>>> path = os.path.join(tempfile.mkdtemp(), "last.pt")
>>> save_checkpoint({"w": torch.ones(2)}, path)
>>> load_checkpoint(path)["w"].tolist()
[1.0, 1.0]
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from medfound.errors import WeightsError

__all__ = ["save_checkpoint", "load_checkpoint", "capture_rng_state", "restore_rng_state"]


def save_checkpoint(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` atomically (temporary file, fsync, ``os.replace``)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True``; :class:`~medfound.errors.WeightsError` names a bad file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise WeightsError(f"checkpoint {path} cannot be read (truncated or not a torch file?): {err}") from None


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states (python, numpy, torch CPU, CUDA) as weights-only-safe values."""
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
