"""The FCOS benchmark script runs end to end on a tiny case and writes its JSON numbers."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "benchmarks" / "fcos_speed.py"


def test_fcos_speed_benchmark_smoke(tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--device", "cpu", "--sizes", "80", "--images", "6",
                                      "--repeats", "1", "--json", str(out)])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    numbers = json.loads(out.read_text())
    assert {"nms_speedup_vs_monai", "map_speedup_vs_monai", "map_abs_diff", "nms_80_medfound_s"} <= set(numbers)
    assert all(isinstance(v, float) and v >= 0 for v in numbers.values())
    assert numbers["map_abs_diff"] < 1e-4
    assert "speed-up" in capsys.readouterr().out
