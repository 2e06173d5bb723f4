"""Does the UMedPT demo's pre-training learn every task? Its recipe against a random frozen encoder.

Writes the demo's tasks (7 SYNTHETIC tasks and two small REAL nuclei tasks, as ``medfound demo
umedpt``), pre-trains the demo's small UMedPT with the demo's recipe
(:func:`medfound.demos.umedpt.demo_pretrain_config`), and trains the SAME heads, with the same
seed, iterations and head optimiser, on a RANDOM encoder kept frozen (``frozen_shared``: shared
blocks at their random initialisation, in evaluation mode). A task is learnt by the pre-training
when its final validation score is clearly above the random-frozen one: what the heads can read
from random features is the floor, not zero.

Writes ``recipe_table.md`` / ``recipe_table.json`` (each task's final primary validation score,
both runs, and the difference) and ``recipe_curves.png`` (per task: the training loss divided by
its first record, and the validation score, both runs).

Usage::

    python examples/umedpt_recipe.py --out recipe_run [--quick] [--seed 0]
    python examples/umedpt_recipe.py --summarise recipe_s0 recipe_s1 recipe_s2 --out recipe_seeds

``--summarise`` reads the ``recipe_table.json`` of runs with different seeds and writes
``recipe_seeds.md`` / ``recipe_seeds.json`` to ``--out``: per task the score of each run and
seed, the mean over seeds, and in how many seeds the pre-training is above the random frozen
encoder.

The full run (900 task-iterations, validation of all images every 4 epochs) takes ~2-3 min CPU
per run on one thread; ``--quick`` (18 iterations) only checks the machinery.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path

import torch

from medfound.demos.umedpt import demo_pretrain_config, write_demo_tasks
from medfound.multitask import load_tasks
from medfound.multitask.pretrain import pretrain
from medfound.utils import atomic_write_json, atomic_write_text

RUNS = ("pretrained", "random_frozen")


def run_recipe(out: Path, quick: bool, seed: int, synthetic_only: bool = False, runs: tuple[str, ...] = RUNS) -> dict:
    """Pre-train with the demo's recipe and train the same heads on a random frozen encoder.

    ``runs``: which of :data:`RUNS` to train now (the others must be in ``out`` already, e.g.
    from a process run in parallel with the same options); the data are written only once.
    """
    tasks_file = out / "data" / "tasks.json"
    if tasks_file.is_file():
        tasks = json.loads(tasks_file.read_text())["tasks"]
    else:
        tasks_file, tasks = write_demo_tasks(out / "data", seed, synthetic_only)
    n_pretrain = sum(t["role"] == "pretrain" for t in tasks)
    config = demo_pretrain_config(tasks_file, n_pretrain, quick, seed)
    frozen = copy.deepcopy(config)
    frozen["trainer"]["frozen_shared"] = True
    for name, cfg in zip(RUNS, (config, frozen)):
        if name in runs:
            pretrain(cfg, output_dir=out / name)
    specs = load_tasks(tasks_file, roles=["pretrain"])
    histories = {name: json.loads((out / name / "history.json").read_text()) for name in RUNS}
    rows = []
    for spec in specs:
        key = f"{spec.name}/{spec.primary_metric}"
        scores = {name: histories[name]["validation"][-1][key] for name in RUNS}
        rows.append({"task": spec.name, "kind": spec.kind, "metric": spec.primary_metric,
                     **scores, "difference": scores["pretrained"] - scores["random_frozen"],
                     "synthetic": bool(spec.extra.get("synthetic", False))})
    mean = {name: sum(r[name] for r in rows) / len(rows) for name in RUNS}
    result = {"seed": seed, "quick": quick, "iterations": config["trainer"]["max_iterations"],
              "rows": rows, "mean": mean}
    atomic_write_json(out / "recipe_table.json", result)
    lines = ["| task | data | kind | metric | pre-trained (recipe) | random frozen encoder, heads only | difference |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {'synthetic' if r['synthetic'] else 'real'} | {r['kind']} | {r['metric']} | "
                     f"{r['pretrained']:.3f} | {r['random_frozen']:.3f} | {r['difference']:+.3f} |")
    lines.append(f"| mean | | | | {mean['pretrained']:.3f} | {mean['random_frozen']:.3f} | "
                 f"{mean['pretrained'] - mean['random_frozen']:+.3f} |")
    atomic_write_text(out / "recipe_table.md", "\n".join(lines) + "\n")
    plot_curves(histories, rows, out / "recipe_curves.png", result["iterations"])
    return result


def summarise_seeds(tables: list[dict]) -> tuple[dict, str]:
    """Per task over the seeds of several :func:`run_recipe` results: scores, means, and in how many
    seeds the pre-trained score is above the random-frozen one; returns ``(summary, markdown)``.

    Example
    -------
    >>> row = {"task": "t", "kind": "classification", "metric": "f1_macro", "synthetic": True}
    >>> tables = [{"seed": s, "iterations": 9, "rows": [{**row, "pretrained": p, "random_frozen": r}]}
    ...           for s, p, r in ((0, 0.8, 0.5), (1, 0.4, 0.6))]
    >>> summary, _ = summarise_seeds(tables)
    >>> summary["rows"][0]["above"], summary["rows"][0]["pretrained_mean"]
    (1, 0.6000000000000001)
    """
    if not tables:
        raise ValueError("summarise_seeds needs at least one recipe table")
    seeds = [t["seed"] for t in tables]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the recipe tables repeat a seed: {seeds}")
    rows = []
    for i, first in enumerate(tables[0]["rows"]):
        per = [t["rows"][i] for t in tables]
        if any(r["task"] != first["task"] for r in per):
            raise ValueError(f"the recipe tables list different tasks at row {i}")
        entry = {k: first[k] for k in ("task", "kind", "metric", "synthetic")}
        for name in RUNS:
            entry[name] = [r[name] for r in per]
            entry[f"{name}_mean"] = sum(entry[name]) / len(per)
        entry["above"] = sum(r["pretrained"] > r["random_frozen"] for r in per)
        rows.append(entry)
    summary = {"seeds": seeds, "iterations": [t["iterations"] for t in tables], "rows": rows}
    seed_text = ", ".join(str(s) for s in seeds)
    lines = [f"| task | data | metric | pre-trained (seeds {seed_text}) | random frozen (seeds {seed_text}) | "
             "mean pre-trained | mean random frozen | seeds above |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {'synthetic' if r['synthetic'] else 'real'} | {r['metric']} | "
                     + " / ".join(f"{v:.3f}" for v in r["pretrained"]) + " | "
                     + " / ".join(f"{v:.3f}" for v in r["random_frozen"]) + f" | {r['pretrained_mean']:.3f} | "
                     f"{r['random_frozen_mean']:.3f} | {r['above']} of {len(seeds)} |")
    return summary, "\n".join(lines) + "\n"


def plot_curves(histories: dict, rows: list[dict], path: Path, iterations: int) -> Path:
    """Per task: training loss / its first record (solid) and validation score (markers), both runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows)
    cols = 3
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.2 * cols, 3.0 * ((n + cols - 1) // cols)),
                             squeeze=False)
    colours = {"pretrained": "tab:blue", "random_frozen": "tab:orange"}
    for ax, row in zip(axes.flat, rows):
        task, key = row["task"], f"{row['task']}/{row['metric']}"
        for name in RUNS:
            loss = [(r["iteration"], r[task]) for r in histories[name]["loss"] if task in r]
            if loss:
                first = loss[0][1] or 1.0
                ax.plot([i for i, _ in loss], [v / first for _, v in loss], color=colours[name], lw=1,
                        label=f"{name}: loss / first")
            val = [(r["iteration"], r[key]) for r in histories[name]["validation"] if key in r]
            ax.plot([i for i, _ in val], [v for _, v in val], "o--", color=colours[name], ms=3,
                    label=f"{name}: val {row['metric']}")
        ax.set_title(f"{task} ({'synthetic' if row['synthetic'] else 'real'})", fontsize=9)
        ax.set_xlabel("task-iteration")
        ax.set_ylim(0, max(1.5, ax.get_ylim()[1]))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(f"UMedPT demo pre-training (synthetic + 2 real nuclei tasks), {iterations} task-iterations: "
                 "recipe vs random frozen encoder", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="recipe_run", help="output folder (default: recipe_run)")
    parser.add_argument("--quick", action="store_true", help="a much shorter run (checks the machinery only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synthetic-only", action="store_true", help="leave out the two small real nuclei tasks")
    parser.add_argument("--runs", nargs="*", choices=RUNS, default=list(RUNS),
                        help="train only these runs (the others must be in --out already; none: only the table)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--summarise", nargs="+", metavar="RUN_DIR", default=None,
                        help="only summarise these runs' recipe_table.json over their seeds into --out")
    args = parser.parse_args()
    if args.summarise:
        tables = [json.loads((Path(d) / "recipe_table.json").read_text()) for d in args.summarise]
        summary, text = summarise_seeds(tables)
        atomic_write_json(Path(args.out) / "recipe_seeds.json", summary)
        atomic_write_text(Path(args.out) / "recipe_seeds.md", text)
        print(text)
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("medfound").setLevel(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_recipe(Path(args.out), args.quick, args.seed, args.synthetic_only, tuple(args.runs))
    print((Path(args.out) / "recipe_table.md").read_text())
    print(f"mean: pre-trained {result['mean']['pretrained']:.3f}, random frozen {result['mean']['random_frozen']:.3f}")


if __name__ == "__main__":
    main()
