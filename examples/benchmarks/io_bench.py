"""Read time of a CT DICOM series: medfound vs SimpleITK vs MONAI (ITKReader, PydicomReader).

A series of 512 x 512 slices (default 240) is written into a temporary folder from a real CT
volume, then read by every reader in the same run, round-robin (one read per reader per round,
so a busy machine slows all alike), a few rounds; the table shows the median. Ratios are medfound's
time divided by the other's (lower is better):

- ``medfound_vs_simpleitk``: ``DicomSeriesReader`` (folder -> ``(x, y, z)`` volume in HU +
  metadata) against SimpleITK's ``GetGDCMSeriesFileNames`` + ``ImageSeriesReader.Execute``
  (folder -> image, kept in DICOM's ``(z, y, x)`` memory order);
- ``medfound_vs_simpleitk_array``: the same against SimpleITK plus the contiguous ``(x, y, z)``
  array MONAI works with (the transposition medfound's time includes);
- ``medfound_vs_monai_pydicom`` and ``medfound_vs_monai_itk``: ``LoadImage(reader=...)`` for
  both sides (folder -> MetaTensor), so the MetaTensor conversion is in both.

Usage
-----
.. code-block:: bash

    python examples/benchmarks/io_bench.py                       # committed CT crop, tiled
    python examples/benchmarks/io_bench.py --volume lung1_image.nrrd --slices 240 --json io.json

Without ``--volume`` the committed real CT crop (``tests/data/io/lung1_ct_crop.nii.gz``,
112 x 112 x 12 HU voxels) is tiled in-plane to 512 x 512 and mirrored along z to the slice count:
real HU values, repeated. With ``--volume`` (any NIfTI/NRRD CT), its slices are cropped or
tiled to 512 x 512 and mirrored along z the same way.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_VOLUME = REPO / "tests" / "data" / "io" / "lung1_ct_crop.nii.gz"


def build_volume(path: Path, size: int, slices: int) -> np.ndarray:
    """A (size, size, slices) HU volume from a real CT: in-plane tiles/crop, z mirrored."""
    import nibabel as nib
    import SimpleITK as sitk

    if str(path).endswith((".nii", ".nii.gz")):
        vol = np.asarray(nib.load(str(path)).dataobj)
    else:
        vol = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)
    vol = vol.astype(np.float32)
    reps = (int(np.ceil(size / vol.shape[0])), int(np.ceil(size / vol.shape[1])), 1)
    vol = np.tile(vol, reps)[:size, :size]
    zs = np.concatenate([vol, vol[:, :, ::-1]], axis=2)
    zs = np.tile(zs, (1, 1, int(np.ceil(slices / zs.shape[2]))))
    return np.ascontiguousarray(zs[:, :, :slices])


def timed_round_robin(runs: dict, repeats: int) -> tuple[dict, dict]:
    """Time every reader once per round, for ``repeats`` rounds, so all see the same machine load."""
    outputs = {name: fn() for name, fn in runs.items()}  # warm-up: imports, page cache, ITK factories
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times, outputs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volume", type=Path, default=None, help="CT volume (NIfTI/NRRD) to write the series from")
    parser.add_argument("--slices", type=int, default=240, help="number of slices (default 240)")
    parser.add_argument("--size", type=int, default=512, help="in-plane size (default 512)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--json", type=Path, default=None, help="write a flat JSON object of the numbers here")
    parser.add_argument("--workdir", type=Path, default=None, help="folder for the series (default: a temp folder)")
    args = parser.parse_args(argv)

    import SimpleITK as sitk
    from monai.transforms import LoadImage

    from medfound.io import DicomSeriesReader, write_dicom_series

    source = args.volume or DEFAULT_VOLUME
    what = "given volume" if args.volume else "committed real CT crop"
    vol = build_volume(source, args.size, args.slices)
    work = Path(tempfile.mkdtemp(prefix="io_bench_", dir=args.workdir))
    folder = work / "series"
    try:
        affine = np.diag([0.7, 0.7, 1.25, 1.0])
        affine[:3, 3] = (-180.0, -180.0, -300.0)
        t0 = time.perf_counter()
        # stored as CT scanners store it: 12 bits unsigned with RescaleIntercept -1024
        write_dicom_series(vol, folder, affine, stored_dtype="uint16", bits_stored=12, rescale_intercept=-1024)
        write_s = time.perf_counter() - t0
        mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        print(f"series: {args.slices} slices of {args.size}x{args.size} from the {what} ({source.name}), "
              f"{mb:.0f} MiB, written in {write_s:.1f} s; {args.repeats} rounds, median")  # fmt: skip

        reader = DicomSeriesReader()

        def medfound_reader():
            return reader.get_data(reader.read(str(folder)))[0]

        def simpleitk():
            r = sitk.ImageSeriesReader()
            r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
            return r.Execute()

        def simpleitk_array():
            # what a MONAI user needs from SimpleITK: the (x, y, z) array MONAI's readers return
            image = simpleitk()  # keep the image alive while its buffer is viewed
            return np.ascontiguousarray(sitk.GetArrayViewFromImage(image).transpose(2, 1, 0))

        loaders = {
            "medfound_loadimage": LoadImage(reader=DicomSeriesReader(), image_only=True),
            "monai_itk": LoadImage(reader="ITKReader", image_only=True),
            "monai_pydicom": LoadImage(reader="PydicomReader", image_only=True),
        }
        runs = {"medfound_reader": medfound_reader, "simpleitk": simpleitk, "simpleitk_array": simpleitk_array}
        runs.update({k: (lambda ld=ld: ld(str(folder))) for k, ld in loaders.items()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            times, outputs = timed_round_robin(runs, args.repeats)
        results = {name: (statistics.median(t), t) for name, t in times.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ref = outputs["medfound_reader"]
    same = {}
    for name, out in outputs.items():
        arr = sitk.GetArrayFromImage(out).transpose(2, 1, 0) if name == "simpleitk" else np.asarray(out)
        same[name] = arr.shape == ref.shape and bool(np.array_equal(arr.astype(np.float32), ref))
    print(f"\n{'reader':<22}{'median s':>10}{'min s':>9}{'max s':>9}   same voxels as medfound")
    for name, (med, times) in results.items():
        print(f"{name:<22}{med:>10.3f}{min(times):>9.3f}{max(times):>9.3f}   {'yes' if same[name] else 'NO'}")
    numbers = {
        "slices": args.slices,
        "size": args.size,
        "repeats": args.repeats,
        "series_mib": round(mb, 1),
        **{f"{k}_s": round(v[0], 4) for k, v in results.items()},
        "medfound_vs_simpleitk": round(results["medfound_reader"][0] / results["simpleitk"][0], 3),
        "medfound_vs_simpleitk_array": round(results["medfound_reader"][0] / results["simpleitk_array"][0], 3),
        "medfound_vs_monai_pydicom": round(results["medfound_loadimage"][0] / results["monai_pydicom"][0], 3),
        "medfound_vs_monai_itk": round(results["medfound_loadimage"][0] / results["monai_itk"][0], 3),
        **{f"same_voxels_{k}": int(v) for k, v in same.items()},
    }
    print(f"\nmedfound / SimpleITK          = {numbers['medfound_vs_simpleitk']:.3f}  (target <= 1)")
    print(f"medfound / SimpleITK + (x, y, z) array = {numbers['medfound_vs_simpleitk_array']:.3f}")
    print(f"medfound / MONAI PydicomReader = {numbers['medfound_vs_monai_pydicom']:.3f}  (target < 1)")
    print(f"medfound / MONAI ITKReader     = {numbers['medfound_vs_monai_itk']:.3f}")
    print(f"machine: {platform.machine()}, {platform.python_version()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(numbers, indent=1) + "\n")
        print(f"wrote {args.json}")
    return numbers


if __name__ == "__main__":
    main()
