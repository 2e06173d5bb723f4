"""The torchvision-reference importer used by the benchmarks and the fixture generators.

It is tooling, not part of the package: it lives in ``examples/benchmarks/`` and is loaded
here from its file.
"""

from __future__ import annotations

import doctest
import sys

import pytest
from _helpers import EXAMPLES, load_script

torchvision_reference = load_script(EXAMPLES / "benchmarks" / "torchvision_reference.py")
import_torchvision_models = torchvision_reference.import_torchvision_models


def test_docstring_example():
    result = doctest.testmod(torchvision_reference)
    assert result.attempted > 0 and result.failed == 0


def test_stand_in_package_imports_plain_model_code_and_failures_leave_nothing_behind(tmp_path, monkeypatch):
    models = tmp_path / "torchvision" / "models"
    models.mkdir(parents=True)
    (tmp_path / "torchvision" / "__init__.py").write_text("")
    (models / "__init__.py").write_text("")
    (models / "tiny.py").write_text("from torchvision.extension import _has_ops\nHAS_OPS = _has_ops()\n")
    (models / "broken.py").write_text("raise RuntimeError('compiled op missing')\n")
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    tiny = import_torchvision_models("tiny", tmp_path)
    assert tiny.HAS_OPS is False and sys.modules["torchvision"].__path__ == [str(tmp_path / "torchvision")]
    for name in [m for m in sys.modules if m.startswith("torchvision")]:
        del sys.modules[name]
    with pytest.raises(ImportError, match="RuntimeError: compiled op missing"):
        import_torchvision_models("broken", tmp_path)
    assert not [m for m in sys.modules if m.startswith("torchvision")]
