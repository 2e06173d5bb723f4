"""The UMedPT demo: multi-task pre-training on SYNTHETIC tasks (+ two small real ones), then transfer.

1. writes the synthetic multi-task collection (:mod:`medfound.data.synthetic.multitask`:
   CT, MR, fluorescence microscopy and X-ray look-alikes; classification, multi-label,
   segmentation and detection) and, unless ``synthetic_only``, two small REAL tasks cut from
   one fluorescence nuclei image that ships with medfound (:mod:`medfound.demos.real_nuclei`);
2. pre-trains a small UMedPT on the tasks with role ``"pretrain"`` with the
   gradient-accumulating multi-task trainer (:func:`medfound.multitask.pretrain.pretrain`);
3. runs the transfer protocol (:func:`medfound.multitask.transfer.run_transfer`, composed as a
   bundle config by :func:`~medfound.multitask.transfer.transfer_config`) on the held-out task
   (role ``"transfer"``: nuclei phenotype classification): frozen-encoder linear probe and
   fine-tuning at 1-100 % of its training data, the pre-trained encoder against random
   initialisation.

Progress and the result table go to the ``medfound.demos.umedpt`` logger (``medfound demo``
shows them on stdout); :func:`demo_pretrain_config` is the pre-training config it runs.

Everything is small enough for a laptop CPU (a few minutes on 2 cores); the numbers say
whether multi-task pre-training helps on this synthetic data, nothing about real images.
The full-size model (Swin V2 tiny, 256 px) is what ``medfound pretrain`` builds by default.

Example
-------
.. code-block:: bash

    medfound demo umedpt --out demo_run
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from medfound.data.synthetic.multitask import write_multitask_demo
from medfound.demos.real_nuclei import write_real_nuclei_tasks
from medfound.multitask.pretrain import pretrain
from medfound.multitask.transfer import run_transfer_config, transfer_config
from medfound.utils import atomic_write_json, check_int

__all__ = ["DEMO_NETWORK", "ITERATIONS_PER_TASK", "demo_pretrain_config", "run_umedpt_demo", "write_demo_tasks"]

logger = logging.getLogger(__name__)

#: the demo's small UMedPT (the published model is variant "tiny" with the defaults)
DEMO_NETWORK: dict[str, Any] = {
    "embed_dim": 24,
    "depths": [1, 1, 2, 1],
    "num_heads": [1, 2, 3, 6],
    "window_size": 4,
    "squeezer_channels": 96,
    "seg_hidden_channels": 32,
    "det_channels": 32,
    "det_num_convs": 2,
    "stochastic_depth_prob": 0.05,
    "head_dropout": 0.1,
}


def run_umedpt_demo(
    out_dir: str | Path = "demo_run",
    quick: bool = False,
    seed: int = 0,
    synthetic_only: bool = False,
    threads: int | None = 1,
) -> dict[str, Any]:
    """Write the data, pre-train, run the transfer protocol; returns a summary.

    ``quick`` shortens everything (for tests): fewer iterations, fractions 10 and 100 %, one
    repeat. ``synthetic_only`` leaves out the two real nuclei tasks. ``threads``: torch CPU
    threads during the demo (``None`` or 0: leave as is). One is the default: the demo's
    network is small, and on a CPU shared with other processes two OpenMP threads spin-wait
    (measured 4.7 s against 0.15 s per training iteration on this project's busy 2-core
    machines).
    """
    import torch

    threads = check_int(threads, "threads", low=0, allow_none=True)
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(out_dir, quick, check_int(seed, "seed", low=0), synthetic_only)
    finally:
        torch.set_num_threads(previous)


#: task-iterations per pre-training task (the run has this many times the number of tasks)
ITERATIONS_PER_TASK = 100


def demo_pretrain_config(tasks_file: str | Path, n_pretrain: int, quick: bool, seed: int) -> dict[str, Any]:
    """The demo's pre-training config (:mod:`medfound.multitask.pretrain`) for ``n_pretrain`` tasks.

    Every value was measured on the demo's 9 tasks (7 synthetic, 2 real) on 2 CPU cores, one
    torch thread (issue 15; ``examples/umedpt_recipe.py`` reruns the table):

    - ``lr`` 3e-4 with a linear warm-up over the first 10 % of the shared steps: at 1e-3 with 3
      warm-up steps the encoder's pooled deepest features became the same for every image
      within ~10 shared steps (between-image std / mean 0.28 -> 0.001) and never recovered;
    - ``window`` 1 (the shared blocks step after every task-iteration, each gradient from one
      task's batch): with one step per window of 9 tasks, 900 iterations give 100 shared steps,
      and even at 1e-3 the MR lesion task stayed at Dice 0;
    - ``head_lr_factor`` 10: each head steps only on its own task's iterations (1 in 9); at the
      shared learning rate a segmentation head's 3x3 conv moved too little in 100 steps;
    - :data:`ITERATIONS_PER_TASK` 100 (was 50): at 50 the small-structure tasks (MR lesion, CT
      organs) were still at Dice 0 in every recipe tried;
    - validation on all images of each task (32 per synthetic task, 128 for the two labelled per
      image): F1 / AUC on 16 images moved by 0.1-0.2 between validations of the same run.

    The task side of the recipe is in the task definitions the generator writes
    (:data:`medfound.data.synthetic.multitask.PRETRAIN_TASK_OPTIONS`: batch-standardised
    classification heads; the CT abdomen window; X-ray nodules the detector's strides can see; CT chest
    nodules larger than the vessel dots, which the pre-training otherwise memorised at chance; four
    times the images for the tasks labelled per image,
    :data:`~medfound.data.synthetic.multitask.IMAGE_LABEL_COUNT_FACTOR`).

    Examples
    --------
    >>> cfg = demo_pretrain_config("tasks.json", 9, quick=False, seed=0)
    >>> cfg["trainer"]["max_iterations"], cfg["trainer"]["window"], cfg["trainer"]["scheduler"]["warmup_steps"]
    (900, 1, 90)
    """
    iterations = (2 if quick else ITERATIONS_PER_TASK) * n_pretrain
    return {
        "tasks": str(tasks_file),
        "roles": ["pretrain"],
        "device": "auto",
        "seed": seed,
        "network": DEMO_NETWORK,
        "trainer": {
            "max_iterations": iterations,
            "batch_size": 8,
            "window": 1,
            "optimizer": {"name": "AdamW", "lr": 3e-4, "weight_decay": 0.05},
            "head_lr_factor": 10.0,
            "scheduler": {"name": "cosine", "warmup_steps": max(1, iterations // 10)},
            "grad_clip": 1.0,
            "offload_heads": True,
            "amp": True,
            "task_order": "shuffle",
            "checkpoint_every": 10 * n_pretrain,
        },
        # every epoch and at the end, on all validation images: an epoch is every task's largest epoch once,
        # 180 task-iterations here (9 tasks x the 20 batches of the 160-image tasks), so each learning curve
        # gets 5 validation points (every 4 epochs of 54 iterations gave 5 when every task had 40 images)
        "validation": {"interval": 1, "max_batches_per_task": None},
        "log_every": n_pretrain if quick else 5 * n_pretrain,
        "progress_bar": False,
    }


def write_demo_tasks(data_dir: str | Path, seed: int = 0, synthetic_only: bool = False) -> tuple[Path, list[dict]]:
    """Write the demo's task collection under ``data_dir``; returns ``tasks.json``'s path and its tasks.

    The synthetic collection goes to ``data_dir/multitask``, the two real nuclei tasks (unless
    ``synthetic_only``) to ``data_dir/real_nuclei``; ``tasks.json`` lists both.
    """
    data_dir = Path(data_dir)
    manifest = write_multitask_demo(data_dir / "multitask", size="small", seed=seed)
    tasks = [{**t, "datalist": f"multitask/{t['datalist']}", "synthetic": True} for t in manifest["tasks"]]
    if not synthetic_only:
        tasks += [
            {**t, "datalist": f"real_nuclei/{t['datalist']}"}
            for t in write_real_nuclei_tasks(data_dir / "real_nuclei")
        ]
    tasks_file = data_dir / "tasks.json"
    atomic_write_json(tasks_file, {"tasks": tasks})
    return tasks_file, tasks


def _run(out_dir: str | Path, quick: bool, seed: int, synthetic_only: bool) -> dict:
    log = logger.info
    started = time.time()
    out = Path(out_dir)
    data = out / "data" / "multitask"
    log("=" * 78)
    log("UMedPT demo on SYNTHETIC data (generated look-alikes, not patient images)")
    if not synthetic_only:
        log("plus two small REAL tasks from one fluorescence nuclei image (2018 Data Science Bowl, via stardist).")
    log("=" * 78)
    log(f"[1/3] writing the synthetic multi-task collection to {data}")
    if not synthetic_only:
        log(f"      and the real nuclei tiles to {out / 'data' / 'real_nuclei'}")
    tasks_file, tasks = write_demo_tasks(out / "data", seed, synthetic_only)
    n_pretrain = sum(t["role"] == "pretrain" for t in tasks)
    config = demo_pretrain_config(tasks_file, n_pretrain, quick, seed)
    log(f"[2/3] pre-training a small UMedPT on {n_pretrain} tasks ({config['trainer']['max_iterations']} "
        "task-iterations)")
    summary = pretrain(config, output_dir=out / "pretrain")
    log("[3/3] transfer to the held-out task: linear probe and fine-tuning, pre-trained vs random init")
    fractions = (10, 100) if quick else (1, 5, 10, 25, 50, 100)
    transfer = run_transfer_config(transfer_config(
        tasks_file,
        {"umedpt": out / "pretrain", "random": "random"},
        out / "transfer",
        fractions=fractions,
        repeats=1 if quick else 3,
        seed=seed,
        network=DEMO_NETWORK,
        note="SYNTHETIC demo data",
        finetune={
            "epochs": 3 if quick else 8,
            "min_iterations": 4 if quick else 16,
            "batch_size": 8,
            "optimizer": {"name": "AdamW", "lr": 1e-4, "weight_decay": 0.05},
            "head_init": "linear_probe",
        },
    ))
    table = [f"{'encoder':>8} {'mode':>8} " + " ".join(f"{f:>6g}%" for f in fractions)]
    for enc in ("umedpt", "random"):
        for mode in ("linear", "finetune"):
            rows = {r["fraction"]: r for r in transfer["summary"] if r["encoder"] == enc and r["mode"] == mode}
            table.append(f"{enc:>8} {mode:>8} " + " ".join(f"{rows[float(f)]['mean']:7.3f}" for f in fractions))
    result = {
        "synthetic": True,
        "real_tasks": [t["name"] for t in tasks if t.get("synthetic") is False],
        "transfer_task_synthetic": True,
        "seconds": round(time.time() - started, 1),
        "pretrain": summary,
        "transfer_task": transfer["task"],
        "metric": transfer["metric"],
        "transfer_summary": transfer["summary"],
        "files": {**transfer["files"], "model": summary["model"]},
    }
    atomic_write_json(out / "demo_summary.json", result)
    log("")
    log(
        f"Transfer to {transfer['task']} ({transfer['metric']} on its {transfer['n_test']} test images, "
        f"mean over repeats) -- SYNTHETIC data:"
    )
    for line in table:
        log("  " + line)
    log("")
    log(f"Done in {result['seconds']:.0f} s. Results (SYNTHETIC data):")
    log(f"  pre-trained weights: {summary['model']}")
    log(f"  transfer table:      {transfer['files']['csv']}")
    log(f"  transfer plot:       {transfer['files']['plot']}")
    log(f"  all numbers:         {(out / 'demo_summary.json').resolve()}")
    return result
