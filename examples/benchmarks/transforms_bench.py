"""Speed and agreement of medfound's transforms against the reference implementations, in one run.

Compared (medfound time / reference time: below 1 is faster; agreement as the largest absolute
difference of the outputs):

- CLAHE (``medfound.transforms.intensity.clahe``) vs OpenCV ``cv2.createCLAHE`` on a fundus green
  channel (skipped when OpenCV is not installed; it is not a medfound dependency);
- MR percentile normalisation vs MONAI ``ScaleIntensityRangePercentiles``;
- per-channel (microscopy) percentile normalisation vs MONAI ``ScaleIntensityRangePercentiles(channel_wise=True)``;
- a CT window vs MONAI ``ScaleIntensityRange``;
- instance mask to boxes vs MONAI ``BoundingRect`` on the one-hot mask.

These numbers decide where medfound keeps its own code (see each transform's docstring); tiled
inference went to MONAI's ``SlidingWindowInferer`` after it measured no faster (ratio 1.01).

Images: the committed test fixtures (``tests/data``: the fundus photograph, the stardist nuclei
image and mask) and synthetic arrays for the volumes (stated in the table).

Usage::

    python examples/benchmarks/transforms_bench.py [--repeats 5] [--json out.json] [--full] [--threads 1]

``--full`` uses full-size inputs (2048 px fundus, 512x512x256 volume, 2x2 tiled nuclei mask);
the default sizes run in about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from medfound.transforms.intensity import clahe  # noqa: E402
from medfound.transforms.microscopy import ChannelPercentileNormalize, instance_boxes  # noqa: E402
from medfound.transforms.tomography import CTWindow, MRPercentileNormalize  # noqa: E402

DATA = ROOT / "tests" / "data"


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn()`` over ``repeats`` runs (after one warm-up) and its last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def compare(ours, reference, repeats: int) -> tuple[float, object, float, object]:
    """Median times of two functions run alternately (fair on a machine whose load changes), with results."""
    out_a, out_b = ours(), reference()
    t_a, t_b = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out_a = ours()
        t_a.append(time.perf_counter() - start)
        start = time.perf_counter()
        out_b = reference()
        t_b.append(time.perf_counter() - start)
    return statistics.median(t_a), out_a, statistics.median(t_b), out_b


def bench_clahe(repeats: int, full: bool) -> dict[str, float]:
    side = 2048 if full else 1024
    rgb = Image.open(DATA / "fundus" / "retina_512.jpg").resize((side, side), Image.BICUBIC)
    green = np.asarray(rgb)[..., 1].copy()
    x = torch.from_numpy(green).float() / 255
    try:
        import cv2
    except ImportError:
        print("  (OpenCV not installed: CLAHE reference skipped)")
        t_ours, _ = timed(lambda: clahe(x, 2.0, (8, 8)), repeats)
        return {"clahe_medfound_s": t_ours, "clahe_side_px": float(side)}
    cv2.setNumThreads(torch.get_num_threads())  # same thread budget as torch
    op = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    t_ours, ours, t_ref, ref = compare(lambda: clahe(x, 2.0, (8, 8)), lambda: op.apply(green), repeats)
    row = {"clahe_medfound_s": t_ours, "clahe_side_px": float(side)}
    row.update({"clahe_opencv_s": t_ref, "clahe_vs_opencv": t_ours / t_ref,
                "clahe_max_abs_diff_grey_levels": float(np.abs(ours.numpy() * 255 - ref).max())})
    return row


def bench_percentiles(repeats: int, full: bool) -> dict[str, float]:
    from monai.transforms import ScaleIntensityRangePercentiles

    shape = (1, 512, 512, 256) if full else (1, 256, 256, 96)
    vol = torch.from_numpy(np.random.default_rng(0).gamma(2.0, 100.0, size=shape).astype(np.float32))
    ours_t = MRPercentileNormalize(lower=0.5, upper=99.5)
    ref_t = ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)
    t_ours, ours, t_ref, ref = compare(lambda: ours_t(vol), lambda: ref_t(vol), repeats)
    return {"percentile_medfound_s": t_ours, "percentile_monai_s": t_ref, "percentile_vs_monai": t_ours / t_ref,
            "percentile_max_abs_diff": float((torch.as_tensor(ours) - torch.as_tensor(ref)).abs().max()),
            "percentile_voxels": float(np.prod(shape))}


def bench_channel_percentiles(repeats: int, full: bool) -> dict[str, float]:
    import tifffile
    from monai.transforms import ScaleIntensityRangePercentiles

    nuclei = tifffile.imread(DATA / "microscopy" / "nuclei_image.tif").astype(np.float32)
    reps = 8 if full else 3
    img = np.tile(nuclei, (reps, reps))
    two = torch.from_numpy(np.stack([img, img * 30 + 7]))  # two stains 30-fold apart
    ours_t = ChannelPercentileNormalize(lower=1.0, upper=99.8)
    ref_t = ScaleIntensityRangePercentiles(lower=1.0, upper=99.8, b_min=0.0, b_max=1.0, clip=True, channel_wise=True)
    t_ours, ours, t_ref, ref = compare(lambda: ours_t(two), lambda: ref_t(two), repeats)
    return {"channel_percentile_medfound_s": t_ours, "channel_percentile_monai_s": t_ref,
            "channel_percentile_vs_monai": t_ours / t_ref,
            "channel_percentile_max_abs_diff": float((torch.as_tensor(ours) - torch.as_tensor(ref)).abs().max()),
            "channel_percentile_pixels": float(two.numel())}


def bench_ct_window(repeats: int, full: bool) -> dict[str, float]:
    from monai.transforms import ScaleIntensityRange

    shape = (1, 512, 512, 256) if full else (1, 512, 512, 64)
    hu = torch.from_numpy(np.random.default_rng(1).integers(-1024, 3000, size=shape).astype(np.float32))
    ours_t = CTWindow("lung")
    ref_t = ScaleIntensityRange(a_min=-1350.0, a_max=150.0, b_min=0.0, b_max=1.0, clip=True)
    t_ours, ours, t_ref, ref = compare(lambda: ours_t(hu), lambda: ref_t(hu), repeats)
    return {"ctwindow_medfound_s": t_ours, "ctwindow_monai_s": t_ref, "ctwindow_vs_monai": t_ours / t_ref,
            "ctwindow_max_abs_diff": float((torch.as_tensor(ours) - torch.as_tensor(ref)).abs().max())}


def bench_boxes(repeats: int, full: bool) -> dict[str, float]:
    import tifffile
    from monai.transforms import BoundingRect

    mask = tifffile.imread(DATA / "microscopy" / "nuclei_instances.tif").astype(np.int64)
    if full:
        mask = np.block([[mask, mask + 1000 * (mask > 0)], [mask + 2000 * (mask > 0), mask + 3000 * (mask > 0)]])
    ids = np.unique(mask[mask > 0])
    rect = BoundingRect()

    def reference() -> np.ndarray:
        onehot = mask[None] == ids[:, None, None]
        r = np.asarray(rect(onehot))  # per channel: [row_start, row_end, col_start, col_end]
        return r[:, [2, 0, 3, 1]].astype(np.float32)  # to [x_min, y_min, x_max, y_max]

    t_ours, ours, t_ref, ref = compare(lambda: instance_boxes(mask)["box"], reference, repeats)
    return {"boxes_medfound_s": t_ours, "boxes_monai_s": t_ref, "boxes_vs_monai_boundingrect": t_ours / t_ref,
            "boxes_max_abs_diff": float(np.abs(ours - ref).max()), "boxes_instances": float(len(ids))}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="write the numbers as a flat JSON object")
    parser.add_argument("--full", action="store_true", help="full-size inputs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared, busy machine more threads mostly wait on each "
                             "other and the timings become noise)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    results: dict[str, float] = {"repeats": float(args.repeats), "torch_threads": float(torch.get_num_threads())}
    rows = []
    for name, fn, ref, ratio, diff in [
        ("CLAHE", bench_clahe, "OpenCV", "clahe_vs_opencv", "clahe_max_abs_diff_grey_levels"),
        ("MR percentiles", bench_percentiles, "MONAI ScaleIntensityRangePercentiles", "percentile_vs_monai",
         "percentile_max_abs_diff"),
        ("channel percentiles", bench_channel_percentiles, "MONAI ScaleIntensityRangePercentiles(channel)",
         "channel_percentile_vs_monai", "channel_percentile_max_abs_diff"),
        ("CT window", bench_ct_window, "MONAI ScaleIntensityRange", "ctwindow_vs_monai", "ctwindow_max_abs_diff"),
        ("instance boxes", bench_boxes, "MONAI BoundingRect (one-hot)", "boxes_vs_monai_boundingrect",
         "boxes_max_abs_diff"),
    ]:
        print(f"running {name} ...", flush=True)
        r = fn(args.repeats, args.full)
        results.update(r)
        rows.append((name, ref, r.get(ratio), r.get(diff)))
    print(f"\n{'transform':<20} {'reference':<46} {'medfound/ref time':>18} {'max |diff|':>12}")
    for name, ref, ratio, diff in rows:
        ratio_s = f"{ratio:.3f}" if ratio is not None else "n/a"
        diff_s = f"{diff:.2e}" if diff is not None else "n/a"
        print(f"{name:<20} {ref:<46} {ratio_s:>18} {diff_s:>12}")
    print("\nvolumes are synthetic random arrays; CLAHE uses the fundus fixture, channel percentiles the stardist "
          "nuclei image (tiled, two stains), boxes the stardist nuclei mask")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True))
    return results


if __name__ == "__main__":
    main()
