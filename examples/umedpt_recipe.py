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

The mechanism (config, table, seed summary, curves) is :mod:`medfound.multitask.frozen_reference`,
shared with ``examples/umedpt_real_transfer.py --random-frozen-reference``.

The full run (900 task-iterations, validation of all images every epoch of 180 iterations) takes ~2-3 min CPU
per run on one thread; ``--quick`` (18 iterations) only checks the machinery.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from medfound.demos.umedpt import demo_pretrain_config, write_demo_tasks
from medfound.multitask import load_tasks
from medfound.multitask.frozen_reference import (
    RUNS,
    plot_reference_curves,
    random_frozen_config,
    read_history,
    reference_table,
    summarise_seeds,
)
from medfound.multitask.pretrain import pretrain
from medfound.utils import atomic_write_json, atomic_write_text


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
    for name, cfg in zip(RUNS, (config, random_frozen_config(config))):
        if name in runs:
            pretrain(cfg, output_dir=out / name)
    specs = load_tasks(tasks_file, roles=["pretrain"])
    histories = {name: read_history(out / name) for name in RUNS}
    result, table = reference_table(specs, histories, seed=seed, quick=quick,
                                    iterations=config["trainer"]["max_iterations"])
    atomic_write_json(out / "recipe_table.json", result)
    atomic_write_text(out / "recipe_table.md", table)
    plot_reference_curves(histories, result["rows"], out / "recipe_curves.png",
                          f"UMedPT demo pre-training (synthetic + 2 real nuclei tasks), {result['iterations']} "
                          "task-iterations: recipe vs random frozen encoder")
    return result


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
