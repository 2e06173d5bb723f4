"""Ignite/MONAI handlers shared by medfound's trainers (multi-task pre-training and DAC).

MONAI's and ignite's handlers are used wherever they do the job (``StatsHandler``,
``TensorBoardStatsHandler``, ``ValidationHandler``, ``ProgressBar``); what lives here is
what they lack:

- :class:`~medfound.handlers.checkpoint.AtomicCheckpointSaver`: one fixed-name, fsynced,
  atomically replaced ``last.pt`` (MONAI's ``CheckpointSaver`` names files by iteration and
  does not fsync), written on rank 0 only, plus the final deployable weights;
- :class:`~medfound.handlers.checkpoint.CheckpointResume`: loads ``last.pt`` at start with
  ``weights_only=True`` and a clear error for a torn or foreign file, so a killed run
  continues bit-identically;
- :class:`~medfound.handlers.finite_loss.StopOnNonFiniteLoss`: stops a run at a NaN/inf loss with
  an error naming the iteration, the task and the batch's files, before the checkpoint saver
  can overwrite the last good ``last.pt`` (ignite's ``TerminateOnNan`` lets it);
- :class:`~medfound.handlers.error_echo.HandledErrorEcho`: a logging filter that keeps a
  medfound error to the one line the command prints (ignite and MONAI's ``StatsHandler`` log
  copies of it on the way out);
- :class:`~medfound.handlers.curves.CurvePlot`: the run's loss and metric curves as a PNG
  (TensorBoard needs a server to look at), with its history in the checkpoint;
  :func:`~medfound.handlers.curves.scalar_items`, the output transform for dict outputs.

Example
-------
>>> from medfound.handlers import AtomicCheckpointSaver, CheckpointResume
"""

from __future__ import annotations

from medfound.handlers.checkpoint import AtomicCheckpointSaver, CheckpointResume
from medfound.handlers.curves import CurvePlot, scalar_items
from medfound.handlers.error_echo import HandledErrorEcho, quiet_error_echoes
from medfound.handlers.finite_loss import StopOnNonFiniteLoss, batch_sources

__all__ = [
    "AtomicCheckpointSaver",
    "CheckpointResume",
    "CurvePlot",
    "scalar_items",
    "StopOnNonFiniteLoss",
    "batch_sources",
    "HandledErrorEcho",
    "quiet_error_echoes",
]
