"""Loss and metric curves of a training run as a PNG, as an ignite handler for any medfound trainer.

:class:`CurvePlot` records the scalar entries of ``engine.state.output`` every
``iteration_interval`` iterations and, when given a validation ``evaluator``, its metrics
each time it runs (against the trainer's iteration). It redraws the figure, one panel per
series (the raw values and, for iteration series, a running mean), at every epoch end and
when the run completes, writing the PNG atomically. Its history is part of
:meth:`CurvePlot.state_dict`, so a resumed run continues the curves where the checkpoint
left them. MONAI's ``TensorBoardStatsHandler`` gives the interactive view; this file is what
a run leaves for a report or a quick look without TensorBoard.

:func:`scalar_items` is the output transform it uses by default, and suits MONAI's
``StatsHandler`` / ``TensorBoardStatsHandler`` for trainers whose output is a dict of terms.

Example
-------
>>> import tempfile
>>> from pathlib import Path
>>> from ignite.engine import Engine
>>> trainer = Engine(lambda engine, batch: {"loss": 1.0 / engine.state.iteration, "counts": {"a": 1}})
>>> plot = CurvePlot(Path(tempfile.mkdtemp()) / "curves.png")
>>> plot.attach(trainer)
>>> _ = trainer.run(range(4), max_epochs=2)
>>> plot.path.is_file(), [round(v, 3) for _, v in plot.series["loss"]][:3]
(True, [1.0, 0.5, 0.333])
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events

from medfound.utils import atomic_path, check_int
from medfound.utils.devices import rank

__all__ = ["CurvePlot", "scalar_items"]

logger = logging.getLogger(__name__)


def _is_number(value: Any) -> bool:
    if hasattr(value, "numel") and hasattr(value, "item"):  # a one-element tensor
        return value.numel() == 1
    return isinstance(value, Real) and not isinstance(value, bool)


def scalar_items(output: Any) -> dict[str, float]:
    """The numeric entries of a dict output as floats (nested values, strings and bools left out);
    a single number becomes ``{"loss": value}``.

    Example
    -------
    >>> scalar_items({"loss": 0.5, "sup": 0.25, "pseudo_counts": {("D2", "a"): {}}, "flag": True})
    {'loss': 0.5, 'sup': 0.25}
    """
    if isinstance(output, Mapping):
        return {str(k): float(v) for k, v in output.items() if _is_number(v)}
    if _is_number(output):
        return {"loss": float(output)}
    return {}


class CurvePlot:
    """Record scalar training outputs and validation metrics; draw them as a PNG at each epoch end.

    Parameters
    ----------
    path : the PNG file (parent folders are created).
    output_transform : ``engine.state.output`` -> ``{name: number}`` (default :func:`scalar_items`).
    evaluator : a validation engine (e.g. MONAI's ``SupervisedEvaluator`` run by
        ``ValidationHandler``); its scalar metrics are recorded each time it completes.
    metric_names : which of the evaluator's metrics to plot (default: every scalar one).
    iteration_interval : record the output every this many iterations.
    title : figure title.
    rank0_only : under ``torch.distributed``, draw on rank 0 only (every rank records).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        output_transform: Callable[[Any], Mapping[str, float]] = scalar_items,
        evaluator: Engine | None = None,
        metric_names: Sequence[str] | None = None,
        iteration_interval: int = 1,
        title: str | None = None,
        rank0_only: bool = True,
    ) -> None:
        self.path = Path(path)
        self.output_transform = output_transform
        self.evaluator = evaluator
        self.metric_names = None if metric_names is None else [str(m) for m in metric_names]
        self.iteration_interval = check_int(iteration_interval, "iteration_interval", low=1)
        self.title = title
        self.rank0_only = bool(rank0_only)
        self.series: dict[str, list[tuple[int, float]]] = {}  #: iteration outputs: name -> (iteration, value)
        self.metrics: dict[str, list[tuple[int, float]]] = {}  #: evaluator metrics: name -> (iteration, value)
        self._trainer: Engine | None = None

    def attach(self, engine: Engine) -> None:
        """Record on ``engine`` (the trainer) and its evaluator; draw at epoch ends and completion."""
        self._trainer = engine
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.iteration_interval), self.record_output)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.draw)
        engine.add_event_handler(Events.COMPLETED, self.draw)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.EPOCH_COMPLETED, self.record_metrics)

    def record_output(self, engine: Engine) -> None:
        it = int(engine.state.iteration)
        for name, value in self.output_transform(engine.state.output).items():
            self.series.setdefault(name, []).append((it, float(value)))

    def record_metrics(self, evaluator: Engine) -> None:
        it = int(self._trainer.state.iteration) if self._trainer is not None else int(evaluator.state.epoch)
        metrics = scalar_items(evaluator.state.metrics)
        for name, value in metrics.items():
            if self.metric_names is None or name in self.metric_names:
                self.metrics.setdefault(name, []).append((it, value))

    def draw(self, engine: Engine | None = None) -> Path | None:
        """Write the figure now (on the drawing rank); returns its path, or ``None`` when nothing was recorded."""
        if (self.rank0_only and rank() != 0) or not (self.series or self.metrics):
            return None
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        panels = [(n, s, False) for n, s in self.series.items()] + [(n, s, True) for n, s in self.metrics.items()]
        cols = min(4, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig = Figure(figsize=(3.6 * cols, 2.6 * rows), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        for i, (name, points, is_metric) in enumerate(panels):
            ax = fig.add_subplot(rows, cols, i + 1)
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            if is_metric:
                ax.plot(xs, ys, "o-", color="tab:green", markersize=3)
            else:
                window = max(1, len(ys) // 25)
                ax.plot(xs, ys, color="tab:blue", alpha=0.35 if window > 1 else 1.0, linewidth=0.8)
                if window > 1:  # running mean over the last `window` points
                    c = np.concatenate([[0.0], np.cumsum(ys)])
                    n = np.minimum(np.arange(1, len(ys) + 1), window)
                    ax.plot(xs, (c[1:] - c[np.arange(1, len(ys) + 1) - n]) / n, color="tab:blue", linewidth=1.5)
            ax.set_title(name + (" (validation)" if is_metric else ""), fontsize=9)
            ax.set_xlabel("iteration", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        if self.title:
            fig.suptitle(self.title, fontsize=10)
        with atomic_path(self.path, keep_suffix=True) as tmp:
            fig.savefig(tmp, format="png")
        return self.path

    def state_dict(self) -> dict[str, Any]:
        return {"series": {k: [list(p) for p in v] for k, v in self.series.items()},
                "metrics": {k: [list(p) for p in v] for k, v in self.metrics.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.series = {k: [(int(i), float(v)) for i, v in pts] for k, pts in state.get("series", {}).items()}
        self.metrics = {k: [(int(i), float(v)) for i, v in pts] for k, pts in state.get("metrics", {}).items()}
