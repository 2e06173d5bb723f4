"""Installation metadata: version, entry point, extras, dependencies, licence."""

from __future__ import annotations

import configparser
import re
from importlib import metadata
from pathlib import Path

import medfound

ROOT = Path(__file__).resolve().parents[1]


def _requirement_names(requires: list[str]) -> set[str]:
    return {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in requires}


def test_version_matches_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["version"] == "0.1.0"
    assert medfound.__version__ == metadata.version("medfound") == "0.1.0"


def test_console_script_entry_point():
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts.get("medfound") == "medfound.cli:main"


def test_extras_declared():
    extras = set(metadata.metadata("medfound").get_all("Provides-Extra"))
    assert {"test", "label", "dicomseg", "all"} <= extras


def test_core_requirements_and_no_torchvision():
    requires = metadata.requires("medfound")
    core = [r for r in requires if "extra ==" not in r]
    names = _requirement_names(core)
    for needed in ("torch", "monai", "pytorch-ignite", "numpy", "nibabel", "pydicom", "simpleitk", "itk",
                   "tifffile", "pillow"):
        assert needed in names, needed
    assert "torch>=2.4" in [r.replace(" ", "") for r in core]
    all_names = _requirement_names(requires)
    assert not {"torchvision", "timm", "segmentation-models-pytorch"} & all_names


def test_label_extra_pins_monailabel_working_set():
    label = [r.split(";")[0].replace(" ", "") for r in metadata.requires("medfound") if 'extra == "label"' in r]
    assert "monailabel==0.8.5" in label and "pydicom==2.4.4" in label


def test_python_requires_and_license():
    meta = metadata.metadata("medfound")
    assert meta["Requires-Python"] == ">=3.10"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "[build-system]" in pyproject and "[project]" not in pyproject
