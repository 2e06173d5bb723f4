"""The hostile-input sweep: crafted files of a few KB (or MB) that declare gigabytes go through the
readers, the DAC data pipeline and ``medfound convert-umedpt`` in a subprocess under a 2 GiB
address-space limit; each must end in a medfound error naming the file (no raw traceback, no
silent success) while the process stays under 1 GiB peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _bad_input_cases import hostile_case_ids
from _crafted_files import WRITERS

HERE = Path(__file__).parent
#: every case the worker runs (entry point per crafted file): the defect-4 sweep rows of the bad-input table
EXPECTED_CASES = hostile_case_ids()
ADDRESS_SPACE = 2 << 30  # enough for torch + MONAI (about 0.45 GiB resident); far below any bomb
PEAK_RSS = 1 << 30


def _limit_address_space() -> None:  # in the child, before exec
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[list[dict], int]:
    folder = tmp_path_factory.mktemp("hostile")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    env.pop("MEDFOUND_MAX_BYTES", None)  # the default limit
    proc = subprocess.run([sys.executable, str(HERE / "_hostile_worker.py"), str(folder)], capture_output=True,
                          text=True, env=env, preexec_fn=_limit_address_space, timeout=900)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    return lines[:-1], lines[-1]["peak_rss_bytes"]


def test_crafted_files_are_small_on_disk(tmp_path):
    for name, writer in WRITERS.items():
        assert writer(tmp_path).stat().st_size < 4 << 20, name


def test_every_crafted_file_gives_a_medfound_error_naming_it(sweep):
    cases, _ = sweep
    assert [c["case"] for c in cases] and {c["case"] for c in cases} == EXPECTED_CASES  # none vanished or unlisted
    assert len(cases) == len(EXPECTED_CASES)
    bad = [c for c in cases if c["outcome"] not in ("medfound-error", "cli-error") or c["file"] not in c["message"]]
    assert not bad, json.dumps(bad, indent=1)
    for c in cases:
        if c["outcome"] == "cli-error":
            assert c["message"].startswith("medfound: error:") and len(c["message"].splitlines()) == 1, c
        else:  # the multi-task dataset names the task and sample around it
            assert c["error"] == "TooLargeError" or "TooLargeError" in c["message"], c


def test_peak_memory_stays_under_one_gib(sweep):
    _, peak = sweep
    assert peak < PEAK_RSS, f"peak RSS {peak / 2**20:.0f} MiB"


def test_the_limit_is_configurable_and_a_region_counts_alone(tmp_path, monkeypatch):
    import numpy as np
    import tifffile

    from medfound.errors import TooLargeError
    from medfound.io import MicroscopyReader, SafeLoadImage
    from medfound.io.limits import check_image_file

    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, np.arange(256 * 256, dtype=np.uint16).reshape(256, 256))  # 128 KiB of pixels, valid
    assert check_image_file(path) == 256 * 256 * 2
    monkeypatch.setenv("MEDFOUND_MAX_BYTES", "64K")
    with pytest.raises(TooLargeError, match=r"slide\.tif: .*limit of 64\.00 KiB.*MEDFOUND_MAX_BYTES"):
        SafeLoadImage(reader=MicroscopyReader())(str(path))
    region = SafeLoadImage(reader=MicroscopyReader(roi_start=(0, 0), roi_end=(64, 64)))(str(path))
    assert tuple(region.shape[-2:]) == (64, 64) and int(region.max()) == 63 * 256 + 63
    monkeypatch.setenv("MEDFOUND_MAX_BYTES", "none")
    assert tuple(SafeLoadImage(reader=MicroscopyReader())(str(path)).shape[-2:]) == (256, 256)
    monkeypatch.setenv("MEDFOUND_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="MEDFOUND_MAX_BYTES"):
        check_image_file(path)
