"""Peak memory of multi-task training against the number of tasks: medfound's trainer vs a naive loop.

For 1, 2, 4, 8 and 17 tasks of mixed kinds (segmentation, detection, classification,
multi-label, in turn), on the same UMedPT, data and batches:

- **medfound**: :class:`medfound.multitask.MultiTaskTrainer` with ``offload_heads=True``:
  one task per iteration, backward at once, shared gradients accumulated over a window of
  all tasks, one shared step per window (heads on the CPU except while used);
- **naive**: per step, every task's forward and loss, the losses summed, one backward and
  one optimiser step (every task's graph alive at once, all heads on the device).

Each configuration runs in its own process; the peak is the process's peak RSS on the CPU
(``getrusage``) or ``torch.cuda.max_memory_allocated`` on a GPU. Synthetic random images and
labels (the memory does not depend on their content), one batch per task held in memory.

The single-task configuration is a segmentation task, the kind with the largest activations
(the full-resolution decoder): medfound's peak is the largest task's activations plus the
shared gradients, so that is the fair baseline for "does not grow with the number of tasks".
``--first-kind classification`` starts the cycle with classification instead; its single-task
run then lacks the decoders' activations and gradients, and every ratio is larger for that.

Usage::

    python examples/benchmarks/multitask_memory.py [--tasks 1 2 4 8 17] [--image-size 128] [--batch-size 4]
        [--network small|tiny] [--windows 2] [--device auto|cpu|cuda] [--json out.json]

``--network tiny`` is the published Swin V2 tiny UMedPT (slow on a CPU). Prints a table;
``--json`` writes a flat JSON object: ``medfound_peak_mb_<N>``, ``naive_peak_mb_<N>``,
``peak_ratio_17_vs_1`` (medfound) and ``naive_peak_ratio_17_vs_1`` (with the largest task
count in place of 17 when 17 is not run). Target: medfound's ratio <= 1.10 while the naive
loop's grows with the number of tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

KINDS = ("segmentation", "detection", "classification", "multilabel")
NETWORKS = {
    "small": {
        "embed_dim": 48,
        "depths": [2, 2, 2, 2],
        "num_heads": [2, 4, 6, 12],
        "window_size": 8,
        "squeezer_channels": 256,
        "seg_hidden_channels": 64,
        "det_channels": 96,
        "det_num_convs": 2,
    },
    "tiny": {"variant": "tiny"},
}


def _task(index: int, samples: int, side: int, kinds: tuple[str, ...] = KINDS):
    """One random task; its items hold seeds and :class:`_Render` draws the tensors when an item is used.

    Rendering on use keeps the data of idle tasks out of memory, as a dataset read from disk does,
    so the measured peak is the training's, not the benchmark's data store.
    """
    import torch

    from medfound.utils import torch_generator

    kind = kinds[index % len(kinds)]
    g = torch_generator(0, "benchmark_task", index)
    classes = {"classification": 2 + index % 3, "segmentation": 2 + index % 3, "multilabel": 3, "detection": 1}[kind]
    names = (
        ["background", *[f"c{i}" for i in range(1, classes)]]
        if kind == "segmentation"
        else [f"c{i}" for i in range(classes)]
    )
    items = []
    for k in range(samples):
        seed = f"synthetic:{index}:{k}"
        item = {"image": seed}
        if kind == "classification":
            item["label"] = int(torch.randint(0, classes, (1,), generator=g))
        elif kind == "multilabel":
            item["label"] = torch.randint(0, 2, (classes,), generator=g).tolist()
        elif kind == "segmentation":
            item["label"] = seed
        else:
            x0, y0 = (int(v) for v in torch.randint(0, side // 2, (2,), generator=g))
            item["box"], item["label"] = [[x0, y0, x0 + side // 4, y0 + side // 4]], [0]
        items.append(item)
    return {
        "name": f"t{index:02d}_{kind}",
        "kind": kind,
        "class_names": names,
        "training": items,
        "transforms": {"train": _Render(side, classes)},
    }


class _Render:
    """Draw an item's image (and segmentation label) from the seed its ``image`` entry names."""

    def __init__(self, side: int, classes: int) -> None:
        self.side, self.classes = side, classes

    def __call__(self, item: dict) -> dict:
        import torch

        from medfound.utils import torch_generator

        item = dict(item)
        g = torch_generator(0, item["image"])
        item["image"] = torch.rand(3, self.side, self.side, generator=g)
        if isinstance(item.get("label"), str):
            item["label"] = torch.randint(0, self.classes, (1, self.side, self.side), generator=g, dtype=torch.uint8)
        return item


def worker(args: argparse.Namespace) -> dict:
    import functools

    import torch

    from medfound.multitask import CyclicTaskLoader, MultiTaskTrainer, collate_task_batch, prepare_task_batch, task_loss
    from medfound.multitask.tasks import TaskSpec
    from medfound.networks.umedpt import UMedPT

    device = torch.device(args.device)
    torch.manual_seed(0)
    first = KINDS.index(args.first_kind)
    kinds = KINDS[first:] + KINDS[:first]
    tasks = [_task(i, args.batch_size, args.image_size, kinds) for i in range(args.num_tasks)]
    specs = [TaskSpec.from_dict(t) for t in tasks]
    net = UMedPT(**NETWORKS[args.network], tasks=[s.head_config() for s in specs])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if args.mode == "medfound":
        trainer = MultiTaskTrainer(
            device,
            net,
            CyclicTaskLoader.from_tasks(specs, batch_size=args.batch_size),
            specs,
            functools.partial(torch.optim.AdamW, lr=1e-4),
            max_iterations=args.windows * args.num_tasks,
            offload_heads=True,
            grad_clip=1.0,
        )
        trainer.run()
    else:
        net.to(device).train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        losses = {s.name: s.build_loss().to(device) for s in specs}
        # the naive loop needs every task's batch at once (one backward over the sum of all losses)
        batches = {
            s.name: collate_task_batch(s.kind)(
                [t["transforms"]["train"](i) for i in s.load_split("train")[: args.batch_size]]
            )
            for s, t in zip(specs, tasks)
        }
        for _ in range(args.windows):
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for s in specs:
                images, target = prepare_task_batch(s.kind, batches[s.name], device)
                total = total + task_loss(s.kind, losses[s.name], net(images, task=s.name), target, images)
            total.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"peak_mb": round(peak, 1), "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", type=int, default=[1, 2, 4, 8, 17])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--windows", type=int, default=2, help="shared steps (naive: steps) per configuration")
    parser.add_argument("--network", choices=sorted(NETWORKS), default="small")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--first-kind", choices=KINDS, default="segmentation", help="kind of the first task (the single-task baseline)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each worker (0: default)")
    parser.add_argument("--json", default=None, help="write the numbers to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("medfound", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--num-tasks", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from medfound.utils import resolve_device

    args.device = str(resolve_device(args.device))
    if args.worker:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(worker(args)))
        return

    results: dict[str, float] = {}
    print(
        f"device {args.device}, network {args.network}, {args.image_size} px, batch {args.batch_size}, "
        f"{args.windows} windows, first task {args.first_kind}; "
        f"peak {'max allocated' if args.device.startswith('cuda') else 'RSS'} in MiB"
    )
    print(f"{'tasks':>5} {'medfound':>10} {'naive':>10} {'medfound s':>11} {'naive s':>8}")
    for n in args.tasks:
        row = {}
        for mode in ("medfound", "naive"):
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                "--mode",
                mode,
                "--num-tasks",
                str(n),
                "--image-size",
                str(args.image_size),
                "--batch-size",
                str(args.batch_size),
                "--windows",
                str(args.windows),
                "--network",
                args.network,
                "--device",
                args.device,
                "--threads",
                str(args.threads),
                "--first-kind",
                args.first_kind,
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{mode} with {n} tasks failed:\n{done.stderr[-3000:]}")
            row[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            results[f"{mode}_peak_mb_{n}"] = row[mode]["peak_mb"]
            results[f"{mode}_seconds_{n}"] = row[mode]["seconds"]
        print(
            f"{n:>5} {row['medfound']['peak_mb']:>10.1f} {row['naive']['peak_mb']:>10.1f} "
            f"{row['medfound']['seconds']:>11.1f} {row['naive']['seconds']:>8.1f}",
            flush=True,
        )
    lo, hi = min(args.tasks), max(args.tasks)
    results["peak_ratio_17_vs_1"] = round(results[f"medfound_peak_mb_{hi}"] / results[f"medfound_peak_mb_{lo}"], 4)
    results["naive_peak_ratio_17_vs_1"] = round(results[f"naive_peak_mb_{hi}"] / results[f"naive_peak_mb_{lo}"], 4)
    results.update(
        {
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "windows": args.windows,
            "max_tasks": hi,
            "min_tasks": lo,
            "on_gpu": float(args.device.startswith("cuda")),
        }
    )
    print(
        f"peak ratio {hi} vs {lo} tasks: medfound {results['peak_ratio_17_vs_1']:.3f} (target <= 1.10), "
        f"naive {results['naive_peak_ratio_17_vs_1']:.3f}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
