"""Run every crafted file through its entry points in THIS process (started by test_hostile_inputs.py
under an address-space limit) and print one JSON line per case, then the peak RSS.

Usage: python tests/_hostile_worker.py FOLDER
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _crafted_files import WRITERS  # noqa: E402


def _cases(folder: Path):
    from medfound.cli import main
    from medfound.dac.data import prepare_items, preprocessing
    from medfound.io import MicroscopyReader, PhotoReader, RadiographReader, SafeLoadImage

    files = {name: writer(folder) for name, writer in WRITERS.items()}

    def cli(*argv):
        def run():
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main([str(a) for a in argv])
            if code == 0:
                return None  # silent success: reported as such
            raise SystemExit(err.getvalue().strip())
        return run

    def dac_raise(path):
        return lambda: prepare_items([{"image": str(path)}], preprocessing(3, [32, 32], with_label=False),
                                     on_error="raise")

    yield "nifti/SafeLoadImage", files["nifti_header_bomb"], lambda: SafeLoadImage()(str(files["nifti_header_bomb"]))
    yield ("nifti/NibabelReader", files["nifti_header_bomb"],
           lambda: SafeLoadImage(reader="NibabelReader")(str(files["nifti_header_bomb"])))
    yield "nifti/dac-data", files["nifti_header_bomb"], dac_raise(files["nifti_header_bomb"])
    yield ("tiff/MicroscopyReader", files["tiff_tile_bomb"],
           lambda: SafeLoadImage(reader=MicroscopyReader())(str(files["tiff_tile_bomb"])))
    yield "tiff/SafeLoadImage", files["tiff_tile_bomb"], lambda: SafeLoadImage()(str(files["tiff_tile_bomb"]))
    yield ("png/PhotoReader", files["png_header_bomb"],
           lambda: SafeLoadImage(reader=PhotoReader())(str(files["png_header_bomb"])))
    yield "png/dac-data", files["png_header_bomb"], dac_raise(files["png_header_bomb"])
    def multitask_raise(path):
        from medfound.multitask.datasets import build_task_datasets
        from medfound.multitask.tasks import load_tasks

        task = {"name": "t", "kind": "classification", "class_names": ["a", "b"],
                "training": [{"image": str(path), "label": 0}]}
        return lambda: build_task_datasets(load_tasks([task]), "train", skip_bad=False)["t"][0]

    yield "png/multitask-data", files["png_header_bomb"], multitask_raise(files["png_header_bomb"])
    yield ("dicom/RadiographReader", files["dicom_header_bomb"],
           lambda: SafeLoadImage(reader=RadiographReader())(str(files["dicom_header_bomb"])))
    for name in ("umedpt_stride0", "umedpt_deflate_bomb"):
        yield f"{name}/convert-umedpt", files[name], cli("convert-umedpt", files[name], folder / f"out_{name}")


def main() -> None:
    folder = Path(sys.argv[1])
    for case, path, run in _cases(folder):
        from medfound.errors import MedfoundError

        record = {"case": case, "file": path.name}
        try:
            result = run()
            record.update(outcome="success", message=repr(result)[:200])
        except SystemExit as err:  # the CLI's exit 2: its one stderr line
            record.update(outcome="cli-error", error="SystemExit", message=str(err))
        except MedfoundError as err:
            record.update(outcome="medfound-error", error=type(err).__name__, message=str(err))
        except BaseException as err:  # noqa: BLE001 - what the test must catch: a raw error or a MemoryError
            record.update(outcome="raw-error", error=type(err).__name__, message=traceback.format_exc()[-400:])
        print(json.dumps(record), flush=True)
    print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}), flush=True)


if __name__ == "__main__":
    main()
