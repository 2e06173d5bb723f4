"""Speed of medfound's Swin-V2-T against torchvision's implementation, on the same weights.

CPU (or GPU with ``--device cuda``) inference at batch 8, 256x256, and a training step
(forward, loss, backward, SGD step). Both models hold the same randomly initialised
weights (torchvision's ``swin_v2_t`` loaded into medfound's with ``strict=True``); the
feature pyramids (strides 4, 8, 16, 32) are compared and the largest absolute difference
is reported. Timings interleave the two models and take the median of ``--repeats`` runs
after ``--warmup`` runs, so load from other processes on a shared machine hits both alike.

torchvision is used as the reference only, never by medfound. Where its compiled ops do not
load (this project's CPU machines), install the wheel into a folder and point
``--torchvision-dir`` at it: its pure-Python model code is then imported without the
extension module::

    pip install --no-deps --target /tmp/tv torchvision==0.28.0
    python examples/benchmarks/swin_speed.py --torchvision-dir /tmp/tv --json swin_speed.json

Without torchvision, only medfound's times are measured.

Output: a table, and with ``--json PATH`` a flat JSON object of numbers, including
``speedup_vs_torchvision`` (torchvision inference time / medfound's), ``max_abs_diff`` and
``train_speedup_vs_torchvision``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torchvision_reference import import_torchvision_models  # this folder: run as a script

from medfound.networks.swin_v2 import swin_v2_t


def import_torchvision_swin(folder: str | None):
    """torchvision's ``swin_transformer`` module, or ``None`` when it cannot be imported."""
    try:
        return import_torchvision_models("swin_transformer", folder)
    except ImportError as err:
        print(f"torchvision not importable ({err}); timing medfound only")
        return None


def tv_pyramid(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """torchvision's stage outputs (features[1], [3], [5], [7]) as NCHW, as UMedPT's encoder returns them."""
    outs = []
    for i, layer in enumerate(model.features):
        x = layer(x)
        if i % 2 == 1:
            outs.append(x.permute(0, 3, 1, 2))
    return outs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict, warmup: int, repeats: int, device: torch.device) -> dict[str, list[float]]:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="medfound Swin-V2-T vs torchvision: inference and training step")
    parser.add_argument("--torchvision-dir", default=None, help="folder holding the torchvision package (optional)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--train-batch", type=int, default=None, help="training-step batch (default: --batch)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--no-train", action="store_true", help="skip the training step")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the numbers as a flat JSON object")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    sw = import_torchvision_swin(args.torchvision_dir)
    ours = swin_v2_t(num_classes=1000).to(device)
    tv = None
    if sw is not None:
        tv = sw.swin_v2_t().to(device)
        ours.load_state_dict(tv.state_dict(), strict=True)

    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    result: dict[str, float] = {"batch": args.batch, "size": args.size, "threads": torch.get_num_threads()}

    # -- inference ------------------------------------------------------------------------------
    ours.eval()
    fns = {"medfound": lambda: ours(x)}
    if tv is not None:
        tv.eval()
        fns["torchvision"] = lambda: tv_pyramid(tv, x)
    with torch.inference_mode():
        times = time_interleaved(fns, args.warmup, args.repeats, device)
        if tv is not None:
            diff = max((a - b).abs().max().item() for a, b in zip(ours(x), tv_pyramid(tv, x)))
            result["max_abs_diff"] = diff
    for name, ts in times.items():
        result[f"{name}_infer_s"] = statistics.median(ts)
        result[f"{name}_infer_min_s"] = min(ts)
        result[f"{name}_infer_img_per_s"] = args.batch / statistics.median(ts)
    if tv is not None:
        result["speedup_vs_torchvision"] = result["torchvision_infer_s"] / result["medfound_infer_s"]
        result["speedup_vs_torchvision_min"] = result["torchvision_infer_min_s"] / result["medfound_infer_min_s"]

    # -- training step ------------------------------------------------------------------------
    if not args.no_train:
        tb = args.train_batch or args.batch
        xt = torch.rand(tb, 3, args.size, args.size, device=device)
        yt = torch.randint(0, 1000, (tb,), device=device)

        def step(model, logits_fn, opt):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(logits_fn(xt), yt)
            loss.backward()
            opt.step()

        ours.train()
        opt_ours = torch.optim.SGD(ours.parameters(), lr=1e-4)
        train_fns = {"medfound": lambda: step(ours, lambda t: ours.forward_head(ours.forward_features(t)), opt_ours)}
        if tv is not None:
            tv.train()
            opt_tv = torch.optim.SGD(tv.parameters(), lr=1e-4)
            train_fns["torchvision"] = lambda: step(tv, tv, opt_tv)
        times = time_interleaved(train_fns, 1, args.train_repeats, device)
        for name, ts in times.items():
            result[f"{name}_train_step_s"] = statistics.median(ts)
        if tv is not None:
            result["train_speedup_vs_torchvision"] = (
                result["torchvision_train_step_s"] / result["medfound_train_step_s"]
            )

    # -- report ---------------------------------------------------------------------------------
    print(f"Swin-V2-T, batch {args.batch}, {args.size}x{args.size}, device {device}, {result['threads']} threads")
    print(f"{'':14s}{'inference (s)':>15s}{'img/s':>9s}{'train step (s)':>16s}")
    for name in ("torchvision", "medfound"):
        if f"{name}_infer_s" in result:
            train = result.get(f"{name}_train_step_s")
            print(
                f"{name:14s}{result[f'{name}_infer_s']:15.3f}{result[f'{name}_infer_img_per_s']:9.1f}"
                f"{(f'{train:16.3f}' if train is not None else '               -')}"
            )
    if "speedup_vs_torchvision" in result:
        print(
            f"speedup_vs_torchvision (inference, median): {result['speedup_vs_torchvision']:.2f}x "
            f"(min-time ratio {result['speedup_vs_torchvision_min']:.2f}x); "
            f"max_abs_diff of the pyramids: {result['max_abs_diff']:.2e}"
        )
        if "train_speedup_vs_torchvision" in result:
            print(f"train_speedup_vs_torchvision: {result['train_speedup_vs_torchvision']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
