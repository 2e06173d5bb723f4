"""Results of the transfer protocol: the summary table, ``transfer_results.json``, ``transfer_summary.csv``
and ``transfer_plot.png`` (score against training-data fraction and number of training images, one
line per encoder and mode, the 95 % interval of the mean over repeats as a band).

Each summary row holds the mean, the standard deviation and the Student-t 95 % interval of the mean
over the repeats (:func:`medfound.evaluation.statistics.mean_interval`; ``None`` with one repeat)
and the number of training images actually used (mean, min, max over repeats).
:func:`baseline_reached` says where a frozen pre-trained encoder first reaches the baseline's score
at 100 % of the data (the paper's data-efficiency claim).

Example
-------
>>> runs = [{"encoder": "a", "mode": "linear", "fraction": 10, "n_train": 4, "score": s} for s in (0.5, 0.7)]
>>> row = summarise_runs(runs)[0]
>>> round(row["mean"], 3), round(row["std"], 3), row["repeats"], round(row["ci95_high"], 3)
(0.6, 0.141, 2, 1.871)
>>> summary = [{"encoder": "random", "mode": "linear", "fraction": 100.0, "mean": 0.7},
...            {"encoder": "umedpt", "mode": "linear", "fraction": 1.0, "mean": 0.6},
...            {"encoder": "umedpt", "mode": "linear", "fraction": 10.0, "mean": 0.72}]
>>> baseline_reached(summary, "random")[0]["first_fraction"]
10.0
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medfound.evaluation.statistics import mean_interval
from medfound.utils import atomic_path, atomic_write_json

__all__ = ["summarise_runs", "baseline_reached", "data_label", "write_transfer_outputs", "plot_transfer"]


def summarise_runs(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per encoder x mode x fraction: mean, standard deviation (ddof 1) and Student-t 95 % interval of the
    mean (``ci95_low`` / ``ci95_high``, ``None`` with fewer than two valid scores) of the score, NaN scores
    left out, and the number of training images (``n_train`` mean, ``n_train_min``, ``n_train_max``)."""
    groups: dict[tuple[str, str, float], list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["encoder"], r["mode"], float(r["fraction"])), []).append(r)
    rows = []
    for (enc, mode, frac), rs in groups.items():
        scores = np.asarray([r["score"] for r in rs], np.float64)
        valid = scores[~np.isnan(scores)]
        interval = mean_interval(valid)
        n_train = [int(r["n_train"]) for r in rs]
        rows.append(
            {
                "encoder": enc,
                "mode": mode,
                "fraction": frac,
                "n_train": float(np.mean(n_train)),
                "n_train_min": min(n_train),
                "n_train_max": max(n_train),
                "repeats": len(rs),
                "mean": float(valid.mean()) if valid.size else math.nan,
                "std": float(valid.std(ddof=1)) if valid.size > 1 else 0.0 if valid.size else math.nan,
                # None, not NaN, where undefined: the JSON file then reads back equal
                "ci95_low": float(interval["low"]) if valid.size > 1 else None,
                "ci95_high": float(interval["high"]) if valid.size > 1 else None,
            }
        )
    return rows


def baseline_reached(
    summary: Sequence[Mapping[str, Any]], baseline: str = "random", mode: str = "linear"
) -> list[dict[str, Any]]:
    """Where each other encoder's ``mode`` (default: the frozen linear probe) first reaches the baseline.

    The baseline's score is its best mean over its modes at its largest fraction (100 % in the paper's
    protocol). Returns one dict per other encoder: ``encoder``, ``mode``, ``baseline``,
    ``baseline_fraction``, ``baseline_mode``, ``baseline_score``, ``first_fraction`` (the smallest
    fraction whose mean is >= the baseline's score, ``None`` if none) and its ``score``. An empty
    list without baseline rows.
    """
    base = [r for r in summary if r["encoder"] == baseline and not math.isnan(r["mean"])]
    if not base:
        return []
    top = max(r["fraction"] for r in base)
    best = max((r for r in base if r["fraction"] == top), key=lambda r: r["mean"])
    out = []
    for enc in dict.fromkeys(r["encoder"] for r in summary if r["encoder"] != baseline):
        rows = sorted((r for r in summary if r["encoder"] == enc and r["mode"] == mode), key=lambda r: r["fraction"])
        if not rows:
            continue
        hit = next((r for r in rows if r["mean"] >= best["mean"]), None)
        out.append({"encoder": enc, "mode": mode, "baseline": baseline, "baseline_fraction": top,
                    "baseline_mode": best["mode"], "baseline_score": best["mean"],
                    "first_fraction": None if hit is None else hit["fraction"],
                    "score": None if hit is None else hit["mean"]})
    return out


def data_label(synthetic: Any) -> str:
    """``"synthetic"``, ``"real"`` or ``"unspecified"`` from a task's ``synthetic`` flag (``None``: not given).

    >>> data_label(True), data_label(False), data_label(None)
    ('synthetic', 'real', 'unspecified')
    """
    return "unspecified" if synthetic is None else "synthetic" if synthetic else "real"


def write_transfer_outputs(result: Mapping[str, Any], output_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``transfer_results.json``, ``transfer_summary.csv`` and ``transfer_plot.png``; return their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "json": str(out / "transfer_results.json"),
        "csv": str(out / "transfer_summary.csv"),
        "plot": str(out / "transfer_plot.png"),
    }
    payload = {k: v for k, v in result.items() if k != "files"}
    payload["files"] = files
    atomic_write_json(files["json"], payload)
    with atomic_path(files["csv"]) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["task", "data", "metric", "encoder", "mode", "fraction_percent", "n_train", "n_train_min",
                         "n_train_max", "repeats", "mean", "std", "ci95_low", "ci95_high"])
        for row in result["summary"]:
            writer.writerow(
                [
                    result["task"],
                    result.get("data", "unspecified"),
                    result["metric"],
                    row["encoder"],
                    row["mode"],
                    f"{row['fraction']:g}",
                    f"{row['n_train']:g}",
                    row.get("n_train_min", ""),
                    row.get("n_train_max", ""),
                    row["repeats"],
                    f"{row['mean']:.6f}",
                    f"{row['std']:.6f}",
                    "" if row.get("ci95_low") is None else f"{row['ci95_low']:.6f}",
                    "" if row.get("ci95_high") is None else f"{row['ci95_high']:.6f}",
                ]
            )
    plot_transfer(result, files["plot"])
    return files


def plot_transfer(result: Mapping[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """Score against training-data fraction (log axis; the tick labels give the number of training
    images), one line per encoder and mode, the shaded band the 95 % interval of the mean over the
    repeats; a dotted line at the baseline's best score at 100 % and a star where each frozen
    encoder first reaches it (``result["baseline_reached"]``). The title names the task and whether
    its data are synthetic or real. Returns the texts drawn: ``title``, ``xticklabels``, ``legend``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(7.0, 4.8), dpi=120)
    styles = {"linear": "--", "finetune": "-"}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    encoders = list(dict.fromkeys(r["encoder"] for r in result["summary"]))
    colour_of = {enc: colours[i % len(colours)] for i, enc in enumerate(encoders)}
    clipped = False
    for enc in encoders:
        for mode in dict.fromkeys(r["mode"] for r in result["summary"]):
            rows = sorted(
                (r for r in result["summary"] if r["encoder"] == enc and r["mode"] == mode), key=lambda r: r["fraction"]
            )
            if not rows:
                continue
            x = np.asarray([r["fraction"] for r in rows])
            y = np.asarray([r["mean"] for r in rows])
            low = np.asarray([np.nan if r.get("ci95_low") is None else r["ci95_low"] for r in rows], np.float64)
            high = np.asarray([np.nan if r.get("ci95_high") is None else r["ci95_high"] for r in rows], np.float64)
            colour = colour_of[enc]
            ax.plot(x, y, styles.get(mode, ":"), marker="o", color=colour, label=f"{enc} ({mode})")
            # the scores (F1, AUC, Dice, mAP) lie in [0, 1]: a t interval of few repeats can reach past
            # that, the band is drawn clipped to it (the CSV keeps the interval itself)
            clipped |= bool(np.any(low < 0) or np.any(high > 1))
            ax.fill_between(x, np.clip(low, 0, 1), np.clip(high, 0, 1), color=colour, alpha=0.12)
    for hit in result.get("baseline_reached") or []:
        ax.axhline(hit["baseline_score"], color=colour_of.get(hit["baseline"], "grey"), ls=":", lw=1)
        if hit["first_fraction"] is not None:
            ax.plot([hit["first_fraction"]], [hit["score"]], "*", ms=14, color=colour_of[hit["encoder"]],
                    label=f"{hit['encoder']} ({hit['mode']}) first >= {hit['baseline']} "
                    f"{hit['baseline_fraction']:g} % ({hit['baseline_score']:.3f})")
    ax.set_xscale("log")
    fractions = sorted({r["fraction"] for r in result["summary"]})
    n_train = {}
    for r in result["summary"]:
        n_train.setdefault(r["fraction"], (r.get("n_train_min", r["n_train"]), r.get("n_train_max", r["n_train"])))
    ax.set_xticks(fractions)
    ax.set_xticklabels([f"{f:g} %\n{_count(n_train[f])}" for f in fractions], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("training data used: fraction and number of images")
    ax.set_ylabel(result["metric"])
    repeats = sorted({r["repeats"] for r in result["summary"]})
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Patch(color="grey", alpha=0.25))
    labels.append(f"band: 95 % interval of the mean ({'/'.join(map(str, repeats))} repeats)"
                  + (", clipped to [0, 1]" if clipped else ""))
    data = result.get("data", "unspecified")
    title = f"transfer to {result['task']} ({data.upper() if data == 'synthetic' else data} data)"
    ax.set_title(title + (f"\n{result['note']}" if result.get("note") else ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(handles, labels, fontsize=7)
    fig.tight_layout()
    texts = {"title": ax.get_title(), "xticklabels": [t.get_text() for t in ax.get_xticklabels()],
             "legend": [t.get_text() for t in ax.get_legend().get_texts()]}
    with atomic_path(path) as tmp:
        fig.savefig(os.fspath(tmp), format="png")
    plt.close(fig)
    return texts


def _count(bounds: tuple[float, float]) -> str:
    low, high = int(bounds[0]), int(bounds[1])
    return f"n={low}" if low == high else f"n={low}-{high}"
