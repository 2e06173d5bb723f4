"""Results of the transfer protocol: the summary table, ``transfer_results.json``, ``transfer_summary.csv``
and ``transfer_plot.png`` (score against training-data fraction, one line per encoder and mode).

Example
-------
>>> runs = [{"encoder": "a", "mode": "linear", "fraction": 10, "n_train": 4, "score": s} for s in (0.5, 0.7)]
>>> row = summarise_runs(runs)[0]
>>> round(row["mean"], 3), round(row["std"], 3), row["repeats"]
(0.6, 0.141, 2)
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medfound.utils import atomic_path, atomic_write_json

__all__ = ["summarise_runs", "write_transfer_outputs", "plot_transfer"]


def summarise_runs(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation (ddof 1) of the score per encoder x mode x fraction, NaN scores left out."""
    groups: dict[tuple[str, str, float], list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["encoder"], r["mode"], float(r["fraction"])), []).append(r)
    rows = []
    for (enc, mode, frac), rs in groups.items():
        scores = np.asarray([r["score"] for r in rs], np.float64)
        valid = scores[~np.isnan(scores)]
        rows.append(
            {
                "encoder": enc,
                "mode": mode,
                "fraction": frac,
                "n_train": float(np.mean([r["n_train"] for r in rs])),
                "repeats": len(rs),
                "mean": float(valid.mean()) if valid.size else math.nan,
                "std": float(valid.std(ddof=1)) if valid.size > 1 else 0.0 if valid.size else math.nan,
            }
        )
    return rows


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
        writer.writerow(["task", "metric", "encoder", "mode", "fraction_percent", "n_train", "repeats", "mean", "std"])
        for row in result["summary"]:
            writer.writerow(
                [
                    result["task"],
                    result["metric"],
                    row["encoder"],
                    row["mode"],
                    f"{row['fraction']:g}",
                    f"{row['n_train']:g}",
                    row["repeats"],
                    f"{row['mean']:.6f}",
                    f"{row['std']:.6f}",
                ]
            )
    plot_transfer(result, files["plot"])
    return files


def plot_transfer(result: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Score against training-data fraction (log axis), one line per encoder and mode, ± one std."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    styles = {"linear": "--", "finetune": "-"}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    encoders = list(dict.fromkeys(r["encoder"] for r in result["summary"]))
    for i, enc in enumerate(encoders):
        for mode in dict.fromkeys(r["mode"] for r in result["summary"]):
            rows = sorted(
                (r for r in result["summary"] if r["encoder"] == enc and r["mode"] == mode), key=lambda r: r["fraction"]
            )
            if not rows:
                continue
            x = np.asarray([r["fraction"] for r in rows])
            y = np.asarray([r["mean"] for r in rows])
            s = np.asarray([r["std"] for r in rows])
            colour = colours[i % len(colours)]
            ax.plot(x, y, styles.get(mode, ":"), marker="o", color=colour, label=f"{enc} ({mode})")
            ax.fill_between(x, y - s, y + s, color=colour, alpha=0.12)
    ax.set_xscale("log")
    fractions = sorted({r["fraction"] for r in result["summary"]})
    ax.set_xticks(fractions)
    ax.set_xticklabels([f"{f:g}" for f in fractions])
    ax.set_xlabel("training data used (%)")
    ax.set_ylabel(result["metric"])
    title = f"transfer to {result['task']}"
    ax.set_title(title + (f"\n({result['note']})" if result.get("note") else ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(os.fspath(tmp), format="png")
    plt.close(fig)
