"""Cost of DAC against its references, in one run.

1. Training iteration time of DAC vs CPS: the same two DeepLabV3+ sub-models, batch sizes,
   image size, optimiser and strong view; DAC adds the projection heads, the feature loss,
   the two 1x1 auxiliary heads and the region rotation. Target: DAC / CPS <= 1.15.
2. Inference time of the deployed DAC model (``DACModel.deployable()``, one sub-model) vs a
   plain DeepLabV3+ of the same configuration. Target: 1.00 +- 0.05. The DACModel container
   itself (``inference="a"``) is timed too.

Steps are timed directly (``DACTrainer._iteration`` on a fixed in-memory batch, no data
loading, which is the same for both methods), alternating DAC and CPS (and deployed and
plain) in every round so that a shared machine's load hits both alike; the table reports
medians over rounds.

Usage::

    python examples/benchmarks/dac_cost.py                     # CPU default: ResNet-18, 128 px, batch 4 + 4
    python examples/benchmarks/dac_cost.py --backbone resnet50 --size 256 --batch 8 --device cuda --amp
    python examples/benchmarks/dac_cost.py --json cost.json    # flat JSON of numbers incl. the two ratios
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time

import torch

from medfound.dac import DACModel, DACObjective, DACTrainer
from medfound.networks.deeplabv3plus import DeepLabV3Plus
from medfound.utils import resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(method: str, net_kwargs: dict, batch: int, device: torch.device, amp: bool) -> DACTrainer:
    model = DACModel(functools.partial(DeepLabV3Plus, 3, **net_kwargs), method=method).to(device)
    optimizer = functools.partial(torch.optim.SGD, lr=0.01, momentum=0.9, weight_decay=1e-4)
    # the loader is not used: steps are fed a fixed batch
    # the DAC defaults: inputs standardised per image in the step, head learning rate x10, clean rotation view
    return DACTrainer(device, 1, [None], model, optimizer, DACObjective(rampup_iterations=0), epoch_length=1,
                      amp=amp, normalize="image")


def make_batch(batch: int, size: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (batch, 1, size, size), generator=g)
    return {
        "labeled": {"image": torch.randn(batch, 3, size, size, generator=g).to(device), "label": labels.to(device)},
        "unlabeled": {"image": torch.randn(batch, 3, size, size, generator=g).to(device)},
    }


def time_step(trainer: DACTrainer, batch: dict, step: int, device: torch.device) -> float:
    trainer.state.iteration = step
    _sync(device)
    start = time.perf_counter()
    trainer._iteration(trainer, batch)
    _sync(device)
    return time.perf_counter() - start


@torch.no_grad()
def time_forward(model: torch.nn.Module, x: torch.Tensor, device: torch.device, amp: bool) -> float:
    _sync(device)
    start = time.perf_counter()
    with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
        model(x)
    _sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18", help="ResNet of both sub-models (default resnet18)")
    parser.add_argument("--width", type=int, default=64, help="backbone base channels (64 = published width)")
    parser.add_argument("--size", type=int, default=128, help="square image side (default 128)")
    parser.add_argument("--batch", type=int, default=4, help="labelled = unlabelled batch size (default 4)")
    parser.add_argument("--infer-batch", type=int, default=1, help="inference batch size (default 1)")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write a flat JSON object of the numbers")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, what="--device")
    amp = bool(args.amp and device.type == "cuda")
    net_kwargs = {"backbone": args.backbone, "base_channels": args.width}
    trainers = {m: make_trainer(m, net_kwargs, args.batch, device, amp) for m in ("dac", "cps")}
    batch = make_batch(args.batch, args.size, device)

    dac_model = trainers["dac"].network.eval()
    deployed = dac_model.deployable().to(device).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        plain = DeepLabV3Plus(3, **net_kwargs).to(device).eval()
    x = torch.randn(args.infer_batch, 3, args.size, args.size, device=device)

    times: dict[str, list[float]] = {"dac_step": [], "cps_step": [], "deployed": [], "plain": [], "container": []}
    for r in range(args.warmup + args.rounds):
        order = ("dac", "cps") if r % 2 == 0 else ("cps", "dac")
        step = {m: time_step(trainers[m], batch, r + 1, device) for m in order}
        dac_model.eval()
        infer = {}
        for name, model in ((("deployed", deployed), ("plain", plain), ("container", dac_model))
                            if r % 2 == 0 else (("plain", plain), ("deployed", deployed), ("container", dac_model))):
            infer[name] = statistics.median(time_forward(model, x, device, amp) for _ in range(3))
        if r >= args.warmup:
            times["dac_step"].append(step["dac"])
            times["cps_step"].append(step["cps"])
            for name, t in infer.items():
                times[name].append(t)

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio_steps = [d / c for d, c in zip(times["dac_step"], times["cps_step"])]
    ratio_infer = [d / p for d, p in zip(times["deployed"], times["plain"])]
    result = {
        "dac_iteration_s": med["dac_step"],
        "cps_iteration_s": med["cps_step"],
        "dac_vs_cps_iteration_time": med["dac_step"] / med["cps_step"],
        "dac_vs_cps_iteration_time_paired_median": statistics.median(ratio_steps),
        "deployed_dac_inference_s": med["deployed"],
        "plain_deeplabv3plus_inference_s": med["plain"],
        "dac_vs_plain_inference_time": med["deployed"] / med["plain"],
        "dac_vs_plain_inference_time_paired_median": statistics.median(ratio_infer),
        "dac_container_vs_plain_inference_time": med["container"] / med["plain"],
        "dac_parameters_training": sum(p.numel() for p in trainers["dac"].network.parameters()),
        "cps_parameters_training": sum(p.numel() for p in trainers["cps"].network.parameters()),
        "deployed_parameters": sum(p.numel() for p in deployed.parameters()),
        "plain_parameters": sum(p.numel() for p in plain.parameters()),
        "image_size": args.size, "batch_labeled": args.batch, "batch_unlabeled": args.batch,
        "inference_batch": args.infer_batch, "rounds": args.rounds, "threads": torch.get_num_threads(),
        "cuda": int(device.type == "cuda"), "amp": int(amp),
    }
    print(f"DAC cost on {device} ({args.backbone}, width {args.width}, {args.size}x{args.size}, "
          f"batch {args.batch} + {args.batch}, {args.rounds} rounds, {torch.get_num_threads()} threads)")
    print(f"{'measure':<44}{'DAC':>12}{'reference':>12}{'ratio':>9}  target")
    print(f"{'training iteration (s), reference = CPS':<44}{med['dac_step']:>12.4f}{med['cps_step']:>12.4f}"
          f"{result['dac_vs_cps_iteration_time']:>9.3f}  <= 1.15")
    print(f"{'inference (s), deployed vs plain DeepLabV3+':<44}{med['deployed']:>12.4f}{med['plain']:>12.4f}"
          f"{result['dac_vs_plain_inference_time']:>9.3f}  1.00 +- 0.05")
    print(f"{'inference (s), DACModel container vs plain':<44}{med['container']:>12.4f}{med['plain']:>12.4f}"
          f"{result['dac_container_vs_plain_inference_time']:>9.3f}")
    print(f"{'parameters, training (DAC vs CPS)':<44}{result['dac_parameters_training']:>12d}"
          f"{result['cps_parameters_training']:>12d}")
    print(f"{'parameters, deployed vs plain':<44}{result['deployed_parameters']:>12d}{result['plain_parameters']:>12d}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
