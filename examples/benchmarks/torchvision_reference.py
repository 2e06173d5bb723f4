"""Import torchvision's pure-Python model code as a parity/speed reference, without its compiled ops.

Benchmark and fixture tooling, not part of the medfound package: medfound does not depend on
torchvision. The benchmarks in this folder (which import it as a sibling module when run as
scripts) and the scripts that regenerate the parity fixtures (``tests/data/networks/make_*.py``,
which put this folder on ``sys.path``) compare against torchvision's model code, which is
plain Python; only
``torchvision.extension`` loads compiled operators, and on machines whose torchvision build does
not match torch (see the project's PLATFORM notes) that import fails. Point ``folder`` at an
unpacked torchvision (``pip install --no-deps --target DIR torchvision==X``) and the package is
imported from there with a stand-in ``torchvision.extension`` that reports no compiled ops; the
model modules (``resnet``, ``swin_transformer``, ...) need none.

Example
-------
>>> try:
...     import_torchvision_models("resnet", folder="/nonexistent")
... except ImportError as err:
...     print("no reference:", type(err).__name__)
no reference: ModuleNotFoundError
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from types import ModuleType

__all__ = ["import_torchvision_models"]


def import_torchvision_models(module: str, folder: str | Path | None = None) -> ModuleType:
    """``torchvision.models.<module>`` (e.g. ``"resnet"``, ``"swin_transformer"``).

    ``folder``: a directory holding the ``torchvision`` package, imported with a stand-in for
    its compiled extension; ``None``: the installed torchvision. Raises ``ImportError`` when the
    module cannot be imported, leaving no half-imported ``torchvision`` modules behind.
    """
    before = set(sys.modules)
    if folder is not None:
        pkg = types.ModuleType("torchvision")
        pkg.__path__ = [str(Path(folder) / "torchvision")]
        sys.modules["torchvision"] = pkg
        ext = types.ModuleType("torchvision.extension")
        ext._has_ops = lambda: False
        ext._assert_has_ops = lambda: None
        sys.modules["torchvision.extension"] = ext
    try:
        return importlib.import_module(f"torchvision.models.{module}")
    except Exception as err:
        for name in set(sys.modules) - before:
            del sys.modules[name]
        if isinstance(err, ImportError):
            raise
        raise ImportError(f"torchvision.models.{module} could not be imported: {type(err).__name__}: {err}") from err
