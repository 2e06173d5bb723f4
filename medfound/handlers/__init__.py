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

__all__ = ["AtomicCheckpointSaver", "CheckpointResume", "CurvePlot", "scalar_items"]
