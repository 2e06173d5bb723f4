"""The random frozen reference of a pre-training: the same heads on an encoder left at its random start.

A pre-training task is learnt when its final validation score is clearly above what the SAME
head reaches, trained with the same seed, iterations, data order and head optimiser, on the
shared blocks kept frozen at their random initialisation (the trainer's ``frozen_shared``:
no gradients, evaluation mode). What a head can read from random features is the floor, not
zero: a random convolutional encoder already separates bright nuclei from background.

- :func:`random_frozen_config`: a pre-training config turned into its reference;
- :func:`reference_table`: each task's final primary validation score in both runs and the
  difference, as a JSON-ready result and a markdown table;
- :func:`summarise_seeds`: the tables of several seeds side by side, and in how many seeds the
  pre-training is above the reference;
- :func:`plot_reference_curves`: per task, training loss and validation score of both runs.

Used by ``examples/umedpt_recipe.py`` (the demo) and ``examples/umedpt_real_transfer.py``
(``--random-frozen-reference``, the real-image pre-training).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medfound.evaluation.statistics import paired_difference
from medfound.multitask.tasks import TaskSpec
from medfound.utils import check_mapping

__all__ = ["RUNS", "random_frozen_config", "read_history", "reference_table", "summarise_seeds",
           "plot_reference_curves"]

#: the two runs compared, in table order: the pre-training and its random frozen reference
RUNS = ("pretrained", "random_frozen")


def random_frozen_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The same pre-training config (:mod:`medfound.multitask.pretrain`) with the shared blocks
    frozen at their random initialisation: only the heads train. The input is not changed.

    Example
    -------
    >>> config = {"tasks": "tasks.json", "seed": 3, "trainer": {"max_iterations": 20}}
    >>> frozen = random_frozen_config(config)
    >>> frozen["trainer"], frozen["seed"], "frozen_shared" in config["trainer"]
    ({'max_iterations': 20, 'frozen_shared': True}, 3, False)
    """
    frozen = copy.deepcopy(dict(check_mapping(config, "pre-training config")))
    trainer = dict(check_mapping(frozen.get("trainer") or {}, "trainer"))
    trainer["frozen_shared"] = True
    frozen["trainer"] = trainer
    return frozen


def read_history(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``history.json`` a pre-training wrote into ``run_dir``."""
    path = Path(run_dir) / "history.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training history (has the pre-training run in {run_dir}?)")
    return json.loads(path.read_text())


def _final_score(history: Mapping[str, Any], key: str, run: str) -> float:
    validation = history.get("validation") or []
    if not validation or key not in validation[-1]:
        raise ValueError(f"the {run} run's history has no final validation of {key!r}")
    return float(validation[-1][key])


def reference_table(specs: Sequence[TaskSpec], histories: Mapping[str, Mapping[str, Any]],
                    **meta: Any) -> tuple[dict[str, Any], str]:
    """Each task's final primary validation score in both :data:`RUNS` and their difference.

    Parameters
    ----------
    specs : the pre-training tasks, in table order.
    histories : ``{"pretrained": history, "random_frozen": history}`` (:func:`read_history`).
    meta : stored in the result as given (e.g. ``seed``, ``iterations``).

    Returns
    -------
    ``(result, markdown)``: ``result["rows"]`` holds per task ``task, kind, metric, pretrained,
    random_frozen, difference, synthetic``; ``result["mean"]`` the mean score of each run.

    Example
    -------
    >>> from medfound.multitask.tasks import TaskSpec
    >>> spec = TaskSpec(name="seg", kind="segmentation", class_names=["bg", "fg"], training=[])
    >>> runs = {"pretrained": 0.8, "random_frozen": 0.3}
    >>> histories = {run: {"validation": [{"seg/dice_mean": v}]} for run, v in runs.items()}
    >>> result, text = reference_table([spec], histories, seed=0)
    >>> round(result["rows"][0]["difference"], 3), result["seed"]
    (0.5, 0)
    >>> text.splitlines()[2]
    '| seg | real | segmentation | dice_mean | 0.800 | 0.300 | +0.500 |'
    """
    if not specs:
        raise ValueError("reference_table needs at least one task")
    missing = [run for run in RUNS if run not in histories]
    if missing:
        raise ValueError(f"reference_table needs the histories of {list(RUNS)}; missing {missing}")
    rows = []
    for spec in specs:
        key = f"{spec.name}/{spec.primary_metric}"
        scores = {run: _final_score(histories[run], key, run) for run in RUNS}
        rows.append({"task": spec.name, "kind": spec.kind, "metric": spec.primary_metric,
                     **scores, "difference": scores["pretrained"] - scores["random_frozen"],
                     "synthetic": bool(spec.extra.get("synthetic", False))})
    mean = {run: sum(r[run] for r in rows) / len(rows) for run in RUNS}
    result = {**meta, "rows": rows, "mean": mean}
    lines = ["| task | data | kind | metric | pre-trained (recipe) | random frozen encoder, heads only | difference |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {'synthetic' if r['synthetic'] else 'real'} | {r['kind']} | {r['metric']} | "
                     f"{r['pretrained']:.3f} | {r['random_frozen']:.3f} | {r['difference']:+.3f} |")
    lines.append(f"| mean | | | | {mean['pretrained']:.3f} | {mean['random_frozen']:.3f} | "
                 f"{mean['pretrained'] - mean['random_frozen']:+.3f} |")
    return result, "\n".join(lines) + "\n"


def summarise_seeds(tables: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], str]:
    """Per task over the seeds of several :func:`reference_table` results (each with a ``seed``):
    scores, means, in how many seeds the pre-trained score is above the random frozen one (a tie
    is not above) and the paired difference over seeds (mean and Student-t 95 % interval,
    :func:`~medfound.evaluation.statistics.paired_difference`; with one seed the interval and
    std are ``None``); returns ``(summary, markdown)``.

    Example
    -------
    >>> row = {"task": "t", "kind": "classification", "metric": "f1_macro", "synthetic": True}
    >>> tables = [{"seed": s, "iterations": 9, "rows": [{**row, "pretrained": p, "random_frozen": r}]}
    ...           for s, p, r in ((0, 0.8, 0.5), (1, 0.4, 0.6))]
    >>> summary, _ = summarise_seeds(tables)
    >>> summary["rows"][0]["above"], summary["rows"][0]["pretrained_mean"]
    (1, 0.6000000000000001)
    >>> round(summary["rows"][0]["difference"]["mean"], 3)
    0.05
    """
    if not tables:
        raise ValueError("summarise_seeds needs at least one reference table")
    seeds = [t["seed"] for t in tables]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the reference tables repeat a seed: {seeds}")
    if any(len(t["rows"]) != len(tables[0]["rows"]) for t in tables):
        raise ValueError(f"the reference tables list different tasks: {[len(t['rows']) for t in tables]} rows")
    rows = []
    for i, first in enumerate(tables[0]["rows"]):
        per = [t["rows"][i] for t in tables]
        if any(r["task"] != first["task"] for r in per):
            raise ValueError(f"the reference tables list different tasks at row {i}")
        entry = {k: first[k] for k in ("task", "kind", "metric", "synthetic")}
        for run in RUNS:
            entry[run] = [r[run] for r in per]
            entry[f"{run}_mean"] = sum(entry[run]) / len(per)
        entry["above"] = sum(r["pretrained"] > r["random_frozen"] for r in per)
        # NaN (the interval of one seed) as null: the summary is written as strict JSON
        entry["difference"] = {k: None if isinstance(v, float) and math.isnan(v) else v
                               for k, v in paired_difference(entry["pretrained"], entry["random_frozen"]).items()}
        rows.append(entry)
    summary = {"seeds": seeds, "iterations": [t.get("iterations") for t in tables], "rows": rows}
    seed_text = ", ".join(str(s) for s in seeds)
    lines = [f"| task | data | metric | pre-trained (seeds {seed_text}) | random frozen (seeds {seed_text}) | "
             "mean pre-trained | mean random frozen | seeds above | difference, mean [95 % interval over seeds] |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {'synthetic' if r['synthetic'] else 'real'} | {r['metric']} | "
                     + " / ".join(f"{v:.3f}" for v in r["pretrained"]) + " | "
                     + " / ".join(f"{v:.3f}" for v in r["random_frozen"]) + f" | {r['pretrained_mean']:.3f} | "
                     f"{r['random_frozen_mean']:.3f} | {r['above']} of {len(seeds)} | {_interval(r['difference'])} |")
    return summary, "\n".join(lines) + "\n"


def _interval(d: Mapping[str, float | None]) -> str:
    if d["low"] is None:
        return f"{d['mean']:+.3f}"
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def plot_reference_curves(histories: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                          path: str | os.PathLike, title: str) -> Path:
    """Per task: training loss / its first record (solid) and validation score (markers), both runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows)
    cols = min(3, n)
    n_rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.0 * n_rows), squeeze=False)
    colours = {"pretrained": "tab:blue", "random_frozen": "tab:orange"}
    for ax, row in zip(axes.flat, rows):
        task, key = row["task"], f"{row['task']}/{row['metric']}"
        for run in RUNS:
            loss = [(r["iteration"], r[task]) for r in histories[run]["loss"] if task in r]
            if loss:
                first = loss[0][1] or 1.0
                ax.plot([i for i, _ in loss], [v / first for _, v in loss], color=colours[run], lw=1,
                        label=f"{run}: loss / first")
            val = [(r["iteration"], r[key]) for r in histories[run]["validation"] if key in r]
            ax.plot([i for i, _ in val], [v for _, v in val], "o--", color=colours[run], ms=3,
                    label=f"{run}: val {row['metric']}")
        ax.set_title(f"{task} ({'synthetic' if row['synthetic'] else 'real'})", fontsize=9)
        ax.set_xlabel("task-iteration")
        ax.set_ylim(0, max(1.5, ax.get_ylim()[1]))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
