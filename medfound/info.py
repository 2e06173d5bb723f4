"""Report the versions and optional capabilities of the running environment.

This is what ``medfound info`` prints; attach it to bug reports.

Example
-------
>>> from medfound.info import get_info
>>> info = get_info()
>>> sorted(info)
['optional', 'platform', 'versions']
>>> info["versions"]["medfound"]  # doctest: +SKIP
'0.1.0'
"""

from __future__ import annotations

import importlib.util
import json
import platform
from importlib import metadata
from typing import Any

__all__ = ["CORE_PACKAGES", "get_info", "format_info"]

#: distribution name -> label shown in the report
CORE_PACKAGES: dict[str, str] = {
    "medfound": "medfound",
    "monai": "MONAI",
    "torch": "torch",
    "pytorch-ignite": "ignite",
    "numpy": "numpy",
    "pydicom": "pydicom",
    "nibabel": "nibabel",
    "SimpleITK": "SimpleITK",
    "itk": "itk",
    "tifffile": "tifffile",
    "pillow": "pillow",
}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _gpu() -> dict[str, Any]:
    # torch is a hard dependency; import lazily so `medfound --version` stays fast.
    import torch

    available = torch.cuda.is_available()
    return {
        "available": available,
        "count": torch.cuda.device_count() if available else 0,
        "names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else [],
        "cuda_build": torch.version.cuda,
    }


def get_info() -> dict[str, Any]:
    """Collect versions of medfound and its dependencies, and which optional parts work.

    Returns
    -------
    dict
        ``versions``: distribution label -> version string (``None`` when missing);
        ``optional``: ``monailabel``, ``highdicom`` (installed version or ``None``) and ``gpu``;
        ``platform``: Python and OS.
    """
    versions = {label: _version(dist) for dist, label in CORE_PACKAGES.items()}
    optional = {
        "monailabel": _version("monailabel") if importlib.util.find_spec("monailabel") else None,
        "highdicom": _version("highdicom") if importlib.util.find_spec("highdicom") else None,
        "gpu": _gpu(),
    }
    return {
        "versions": versions,
        "optional": optional,
        "platform": {"python": platform.python_version(), "system": platform.platform()},
    }


def format_info(info: dict[str, Any] | None = None) -> str:
    """Human-readable form of :func:`get_info` (one ``name: value`` per line)."""
    info = get_info() if info is None else info
    lines = ["medfound environment", "--------------------"]
    for name, version in info["versions"].items():
        lines.append(f"{name + ':':<12} {version or 'not installed'}")
    lines += ["", "optional parts", "--------------"]
    opt = info["optional"]
    lines.append(f"{'MONAI Label:':<12} {opt['monailabel'] or 'not installed (pip install medfound[label])'}")
    lines.append(f"{'highdicom:':<12} {opt['highdicom'] or 'not installed (pip install medfound[dicomseg])'}")
    gpu = opt["gpu"]
    gpu_text = f"yes, {gpu['count']} x {', '.join(gpu['names'])}" if gpu["available"] else "no (CPU only)"
    lines.append(f"{'GPU:':<12} {gpu_text}")
    lines += ["", f"{'python:':<12} {info['platform']['python']}", f"{'system:':<12} {info['platform']['system']}"]
    return "\n".join(lines)


def info_json(info: dict[str, Any] | None = None) -> str:
    """:func:`get_info` as indented JSON."""
    return json.dumps(get_info() if info is None else info, indent=2)
