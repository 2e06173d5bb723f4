"""Run one ``medfound`` command in THIS process with a fault injected (started by test_fault_injection.py).

Usage: ``python tests/_fault_runner.py FAULT N -- MEDFOUND ARGS...``

FAULT is
- ``none``: run the command as it is;
- ``iteration``: SIGKILL right after training iteration ``N`` (a kill handler joins every engine a
  checkpoint saver attaches to, after the saver, so iteration ``N`` is done but not checkpointed
  unless ``N`` is a checkpoint iteration);
- ``write``: SIGKILL in the middle of the ``N``-th write of ``last.pt``: its temporary file is
  written in full, the rename over ``last.pt`` has not happened (the wrapper sits inside
  :func:`medfound.utils.atomic_path`, between the writer and its ``os.replace``).

Nothing is changed in medfound itself: the wrappers are installed on this process's modules.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_after_iteration(n: int) -> None:
    from ignite.engine import Events

    from medfound.handlers import AtomicCheckpointSaver

    attach = AtomicCheckpointSaver.attach

    def attach_and_arm(self, engine):
        attach(self, engine)
        engine.add_event_handler(Events.ITERATION_COMPLETED(once=n), lambda e: _die())

    AtomicCheckpointSaver.attach = attach_and_arm


def _kill_inside_write(n: int) -> None:
    import medfound.utils.files as files

    real = files.atomic_path
    writes = {"last.pt": 0}

    @contextmanager
    def dying_atomic_path(path, keep_suffix=False):
        with real(path, keep_suffix) as tmp:
            yield tmp
            if Path(path).name == "last.pt":
                writes["last.pt"] += 1
                if writes["last.pt"] == n:
                    assert tmp.is_file() and tmp.stat().st_size > 0, tmp  # written, not yet renamed
                    _die()

    files.atomic_path = dying_atomic_path  # atomic_torch_save looks it up in its module at each call


def main() -> int:
    import torch

    torch.set_num_threads(1)  # as the tests' in-process runs: float sums in the same order
    fault, n = sys.argv[1], int(sys.argv[2])
    argv = sys.argv[sys.argv.index("--") + 1:]
    if fault == "iteration":
        _kill_after_iteration(n)
    elif fault == "write":
        _kill_inside_write(n)
    elif fault != "none":
        raise SystemExit(f"unknown fault {fault!r}")
    from medfound.cli import main as medfound

    return medfound(argv)


if __name__ == "__main__":
    sys.exit(main())
