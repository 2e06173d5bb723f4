"""The Swin speed benchmark runs end to end on a tiny case and writes its JSON numbers."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "benchmarks" / "swin_speed.py"


@pytest.mark.slow
def test_swin_speed_benchmark_smoke(tmp_path, monkeypatch, capsys):
    """Without torchvision (as in CI) only medfound is timed; the JSON is flat numbers."""
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--device", "cpu", "--batch", "1", "--size", "64", "--warmup", "0",
                                      "--repeats", "1", "--train-repeats", "1", "--threads", "1",
                                      "--torchvision-dir", str(tmp_path / "no_torchvision"), "--json", str(out)])
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # its sibling torchvision_reference, as when run as a script
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        torch.set_num_threads(threads)  # the script's --threads is process-wide
    assert not any(m == "torchvision" or m.startswith("torchvision.") for m in sys.modules)  # nothing left behind
    numbers = json.loads(out.read_text())
    assert {"medfound_infer_s", "medfound_infer_img_per_s", "medfound_train_step_s", "batch", "size"} <= set(numbers)
    assert all(isinstance(v, (int, float)) and v > 0 for v in numbers.values())
    assert "speedup_vs_torchvision" not in numbers  # no reference, no ratio
    printed = capsys.readouterr().out
    assert "torchvision not importable" in printed and "medfound" in printed
