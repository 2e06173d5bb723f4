"""Generic helpers of the tests (imported as a plain module: pytest puts tests/ on sys.path).

- :func:`cause_chain` / :func:`find_cause`: the one walk over an exception's ``__cause__`` chain
  (MONAI's ``Compose`` and ``LoadImage`` re-raise a transform's error with ``raise ... from``);
- :func:`load_script`: the one way the tests import a script that is not part of the package
  (``examples/``, the fixture recipes under ``tests/data/``) from its file.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

#: the repository's examples folder
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def cause_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` followed by its ``__cause__``, that one's cause, ..., the root cause last.

    >>> try:
    ...     try:
    ...         raise KeyError("deep")
    ...     except KeyError as err:
    ...         raise RuntimeError("wrapped") from err
    ... except RuntimeError as err:
    ...     chain = cause_chain(err)
    >>> [type(e).__name__ for e in chain]
    ['RuntimeError', 'KeyError']
    """
    chain: list[BaseException] = []
    while exc is not None and not any(exc is seen for seen in chain):  # a cycle ends the walk
        chain.append(exc)
        exc = exc.__cause__
    return chain


def find_cause(exc: BaseException, kind: type[BaseException]) -> BaseException:
    """The first exception of ``kind`` in :func:`cause_chain` of ``exc``; AssertionError naming the chain if none.

    >>> find_cause(RuntimeError("wrapped"), RuntimeError)
    RuntimeError('wrapped')
    """
    chain = cause_chain(exc)
    for err in chain:
        if isinstance(err, kind):
            return err
    raise AssertionError(f"no {kind.__name__} in the cause chain {[type(e).__name__ for e in chain]}: {exc!r}")


def load_script(path: str | os.PathLike) -> ModuleType:
    """Import the Python file ``path`` as a new module named after its stem, run afresh on each call.

    The module is not put in ``sys.modules``, so nothing outlives the caller's reference.

    >>> module = load_script(EXAMPLES / "benchmarks" / "torchvision_reference.py")
    >>> module.__name__, callable(module.import_torchvision_models)
    ('torchvision_reference', True)
    """
    path = Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
