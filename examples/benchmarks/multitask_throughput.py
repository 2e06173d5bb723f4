"""Training throughput of medfound's multi-task trainer on one task vs MONAI's SupervisedTrainer.

Same UMedPT (same initial weights), same in-memory data, same batch size, same loss
(normalised cross-entropy), same optimiser (AdamW), no gradient clipping, in one run:

- **medfound**: :class:`medfound.multitask.MultiTaskTrainer` with the single task (a window
  of one iteration: the head's and the shared optimiser step every iteration);
- **MONAI**: ``monai.engines.SupervisedTrainer`` on ``UMedPTTaskOutput(model, task)`` (the
  tensor-returning face of the same model) with one optimiser over all parameters.

Both are timed over the same iterations after a warm-up, alternating engines, several
rounds; samples per second is the median over rounds. The machine's other load affects
both alike, but not exactly: repeat on a quiet machine for numbers you quote.

Usage::

    python examples/benchmarks/multitask_throughput.py [--kind classification|segmentation] [--image-size 128]
        [--batch-size 8] [--iterations 10] [--rounds 3] [--network small|tiny] [--device auto] [--json out.json]

``--json`` writes a flat JSON object with ``medfound_samples_per_s``,
``supervised_trainer_samples_per_s`` and ``throughput_ratio_vs_supervised_trainer``
(target >= 0.95).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import torch
from ignite.engine import Events

from medfound.utils import resolve_device, torch_generator

NETWORKS = {
    "small": {"embed_dim": 48, "depths": [2, 2, 2, 2], "num_heads": [2, 4, 6, 12], "window_size": 8,
              "squeezer_channels": 256, "seg_hidden_channels": 64, "det_channels": 96, "det_num_convs": 2,
              "stochastic_depth_prob": 0.0, "head_dropout": 0.0},
    "tiny": {"variant": "tiny", "stochastic_depth_prob": 0.0, "head_dropout": 0.0},
}


def _identity(x):
    return x


def _items(kind: str, n: int, side: int, classes: int) -> list[dict]:
    g = torch_generator(0, "throughput_items")
    items = []
    for i in range(n):
        item = {"image": torch.rand(3, side, side, generator=g)}
        item["label"] = i % classes if kind == "classification" else torch.randint(0, classes, (1, side, side),
                                                                                    generator=g)
        items.append(item)
    return items


class _Timer:
    """Seconds between the end of iteration ``warmup`` and the end of the run."""

    def __init__(self, engine, warmup: int, device: torch.device) -> None:
        self.start = self.end = self.cpu_start = self.cpu_end = 0.0
        self.device = device
        engine.add_event_handler(Events.ITERATION_COMPLETED(once=warmup), self._begin)
        engine.add_event_handler(Events.COMPLETED, self._finish)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _begin(self, engine) -> None:
        self._sync()
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def _finish(self, engine) -> None:
        self._sync()
        self.end, self.cpu_end = time.perf_counter(), time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("classification", "segmentation"), default="classification")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--network", choices=sorted(NETWORKS), default="small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from monai.engines import SupervisedTrainer

    from medfound.multitask import CyclicTaskLoader, MultiTaskTrainer, TaskDataset, collate_task_batch
    from medfound.multitask.losses import build_task_loss
    from medfound.multitask.tasks import TaskSpec
    from medfound.networks.umedpt import UMedPT, UMedPTTaskOutput

    device = resolve_device(args.device)
    classes = 3
    names = ["background", "a", "b"] if args.kind == "segmentation" else ["a", "b", "c"]
    total = args.warmup + args.iterations
    items = _items(args.kind, args.batch_size * total, args.image_size, classes)
    spec = TaskSpec.from_dict({"name": "task", "kind": args.kind, "class_names": names, "training": items,
                               "transforms": {"train": _identity}})
    torch.manual_seed(0)
    init = UMedPT(**NETWORKS[args.network], tasks=[spec.head_config()]).state_dict()
    optimizer = {"name": "AdamW", "lr": 1e-4, "weight_decay": 0.05}

    def run_medfound() -> float:
        net = UMedPT(**NETWORKS[args.network], tasks=[spec.head_config()])
        net.load_state_dict(init)
        adamw = functools.partial(torch.optim.AdamW, lr=optimizer["lr"], weight_decay=optimizer["weight_decay"])
        trainer = MultiTaskTrainer(device, net, CyclicTaskLoader.from_tasks([spec], batch_size=args.batch_size), [spec],
                                   adamw, max_iterations=total, epoch_length=total, grad_clip=None, amp=True)
        timer = _Timer(trainer, args.warmup, device)
        trainer.run()
        return timer

    def run_monai() -> float:
        net = UMedPT(**NETWORKS[args.network], tasks=[spec.head_config()])
        net.load_state_dict(init)
        model = UMedPTTaskOutput(net, "task").to(device)
        loader = torch.utils.data.DataLoader(TaskDataset(items, _identity), batch_size=args.batch_size, shuffle=True,
                                             collate_fn=collate_task_batch(args.kind), drop_last=True,
                                             generator=torch_generator(0, "supervised_loader"))
        loss = build_task_loss(args.kind, classes).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=optimizer["lr"], weight_decay=optimizer["weight_decay"])
        trainer = SupervisedTrainer(device, max_epochs=1, train_data_loader=loader, network=model, optimizer=opt,
                                    loss_function=loss, epoch_length=total, amp=device.type == "cuda",
                                    decollate=False)
        timer = _Timer(trainer, args.warmup, device)
        trainer.run()
        return timer

    samples = args.iterations * args.batch_size
    cpu = {"medfound": [], "supervised_trainer": []}
    rounds = {"medfound": [], "supervised_trainer": []}
    print(f"device {device}, network {args.network}, {args.kind}, {args.image_size} px, batch {args.batch_size}, "
          f"{args.iterations} timed iterations x {args.rounds} rounds")
    for r in range(args.rounds):
        order = (("medfound", run_medfound), ("supervised_trainer", run_monai))
        for name, fn in order if r % 2 == 0 else order[::-1]:
            timer = fn()
            rounds[name].append(samples / (timer.end - timer.start))
            cpu[name].append(samples / max(1e-9, timer.cpu_end - timer.cpu_start))
        print(f"  round {r + 1}: medfound {rounds['medfound'][-1]:.2f} samples/s, "
              f"SupervisedTrainer {rounds['supervised_trainer'][-1]:.2f} samples/s", flush=True)
    med = {k: statistics.median(v) for k, v in rounds.items()}
    ratio = med["medfound"] / med["supervised_trainer"]
    print(f"{'engine':>20} {'samples/s (median)':>20}")
    print(f"{'medfound':>20} {med['medfound']:>20.2f}")
    print(f"{'SupervisedTrainer':>20} {med['supervised_trainer']:>20.2f}")
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    cpu_ratio = cpu_med["medfound"] / cpu_med["supervised_trainer"]
    print(f"throughput ratio medfound / SupervisedTrainer: {ratio:.3f} (target >= 0.95); "
          f"per CPU-second (less sensitive to other load): {cpu_ratio:.3f}")
    if args.json:
        out = {"medfound_samples_per_s": round(med["medfound"], 3),
               "supervised_trainer_samples_per_s": round(med["supervised_trainer"], 3),
               "throughput_ratio_vs_supervised_trainer": round(ratio, 4),
               "cpu_time_throughput_ratio_vs_supervised_trainer": round(cpu_ratio, 4), "batch_size": args.batch_size,
               "image_size": args.image_size, "iterations": args.iterations, "rounds": args.rounds,
               "on_gpu": float(device.type == "cuda")}
        out.update({f"medfound_round_{i}": round(v, 3) for i, v in enumerate(rounds["medfound"])})
        out.update({f"supervised_trainer_round_{i}": round(v, 3) for i, v in enumerate(rounds["supervised_trainer"])})
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
