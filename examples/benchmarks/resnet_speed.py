"""Forward speed of medfound's ResNet-50 against torchvision's, same weights, same run; plus DeepLabV3+.

torchvision is the reference only here (never a medfound dependency): its model code is pure
Python and runs on the CPU torch once its compiled ops are bypassed::

    pip install --no-deps --target /tmp/tv torchvision==0.28.0
    python examples/benchmarks/resnet_speed.py --torchvision-dir /tmp/tv --json resnet_speed.json

Prints a table; ``--json PATH`` writes a flat JSON object with ``medfound_vs_torchvision_resnet50``
(medfound's time / torchvision's, lower is better, target <= 1.05), the largest output
difference, and DeepLabV3+ (ResNet-50, OS16) throughput.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torchvision_reference import import_torchvision_models  # this folder: run as a script

from medfound.networks.deeplabv3plus import DeepLabV3Plus
from medfound.networks.resnet import resnet50


def _interleaved_min_times(fns: dict, x: torch.Tensor, calls: int, warmup: int = 2) -> dict[str, float]:
    """Fastest call of each model, calling them in turn so machine load hits all alike.

    The minimum, not the mean: on a shared machine interference only ever adds time.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for fn in fns.values():
            for _ in range(warmup):
                fn(x)
        for _ in range(calls):
            for name, fn in fns.items():
                if x.is_cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                fn(x)
                if x.is_cuda:
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torchvision-dir", required=True)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--calls", type=int, default=15, help="timed calls per model, interleaved")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tv = import_torchvision_models("resnet", args.torchvision_dir).resnet50().eval().to(device)
    ours = resnet50(num_classes=1000).eval().to(device)
    ours.load_state_dict(tv.state_dict(), strict=True)
    deeplab = DeepLabV3Plus(num_classes=3).eval().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    with torch.inference_mode():
        diff = float((ours(x) - tv(x)).abs().max())

    best = _interleaved_min_times({"tv": tv, "ours": ours, "deeplab": deeplab}, x, args.calls)
    t_ours_m, t_tv_m, t_dl_m = best["ours"], best["tv"], best["deeplab"]
    result = {
        "batch": args.batch,
        "size": args.size,
        "torch_threads": torch.get_num_threads(),
        "medfound_resnet50_s": t_ours_m,
        "torchvision_resnet50_s": t_tv_m,
        "medfound_vs_torchvision_resnet50": t_ours_m / t_tv_m,
        "max_abs_output_difference": diff,
        "deeplabv3plus_resnet50_os16_s": t_dl_m,
        "deeplabv3plus_images_per_s": args.batch / t_dl_m,
    }
    print(f"device {device}, batch {args.batch} x 3 x {args.size} x {args.size}, fastest of {args.calls} "
          f"interleaved calls, {torch.get_num_threads()} torch thread(s)")
    print(f"{'model':<32}{'s / batch':>12}{'img / s':>10}")
    for name, t in (("torchvision resnet50", t_tv_m), ("medfound resnet50", t_ours_m),
                    ("medfound DeepLabV3+ (R50, OS16)", t_dl_m)):
        print(f"{name:<32}{t:>12.4f}{args.batch / t:>10.1f}")
    print(f"medfound / torchvision: {result['medfound_vs_torchvision_resnet50']:.3f}   "
          f"max |output difference|: {diff:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
