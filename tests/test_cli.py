"""The ``medfound`` command: --version, info, demo-data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import medfound
from medfound.cli import main
from medfound.info import get_info


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"medfound {medfound.__version__}"


def test_installed_console_script_runs():
    # the script sits next to the interpreter of the environment medfound is installed in
    exe = Path(sys.executable).with_name("medfound")
    assert exe.is_file(), f"console script missing: {exe}"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "medfound 0.1.0"


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "medfound", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "medfound 0.1.0"


def test_info_lists_versions_and_optional_parts(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for label in ("medfound:", "MONAI:", "torch:", "ignite:", "pydicom:", "nibabel:", "SimpleITK:", "itk:",
                  "MONAI Label:", "highdicom:", "GPU:"):
        assert label in out, label
    import monai
    import torch

    assert f"MONAI:       {monai.__version__}" in out
    assert f"torch:       {torch.__version__}" in out
    assert ("yes," in out) == torch.cuda.is_available()


def test_info_json_matches_get_info(capsys):
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["versions"] == get_info()["versions"]
    assert data["versions"]["medfound"] == medfound.__version__
    assert set(data["optional"]) == {"monailabel", "highdicom", "gpu"}
    assert isinstance(data["optional"]["gpu"]["available"], bool)


def test_demo_data_command_writes_requested_dataset(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path), "--datasets", "scgm", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and str((tmp_path / "scgm").resolve()) in out
    index = json.loads((tmp_path / "demo_index.json").read_text())
    assert index == {"synthetic": True, "generator_version": index["generator_version"], "seed": 3,
                     "size": "small", "datasets": {"scgm": "scgm/manifest.json"}}
    assert not (tmp_path / "fundus").exists()


def test_demo_data_rejects_bad_size(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo-data", "out", "--size", "huge"])
    assert exc.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo-data" in capsys.readouterr().out
