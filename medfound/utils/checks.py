"""Option checks: one line each at the top of a constructor, one error format everywhere.

Each check returns the value (converted where that is safe: an ``int`` option given as
``3.0`` becomes ``3``; strings are never converted, so ``"0.01"`` or ``"two"`` in a JSON
config is an error, not a silent parse) or raises :class:`~medfound.errors.ConfigError`
whose message names the option and shows the value::

    lr must be a number > 0, got -0.1
    method.name must be one of ['cps', 'dac'], got 'dca'

Example
-------
>>> check_int(4, "batch_size", low=1)
4
>>> try:
...     check_int("four", "trainer.batch_size", low=1)
... except ValueError as err:
...     print(err)
trainer.batch_size must be an integer >= 1, got 'four'
>>> check_pair([0.25, 0.5], "area_range", low=0, high=1)
(0.25, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from numbers import Integral, Real
from typing import Any

from medfound.errors import ConfigError

__all__ = [
    "check_int",
    "check_float",
    "check_probability",
    "check_choice",
    "check_bool",
    "check_pair",
    "check_mapping",
    "check_module",
]


def _bounds_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}" if isinstance(low, float) else
                     f"{'>' if low_open else '>='} {low}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}" if isinstance(high, float) else
                     f"{'<' if high_open else '<='} {high}")
    return " and ".join(parts)


def _in_bounds(v: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if low is not None and (v <= low if low_open else v < low):
        return False
    return not (high is not None and (v >= high if high_open else v > high))


def check_int(value: Any, name: str, low: int | None = None, high: int | None = None,
              allow_none: bool = False) -> int | None:
    """An integer in ``[low, high]`` (bounds optional); whole floats pass, bools and strings do not."""
    if value is None and allow_none:
        return None
    bounds = _bounds_text(low, high, False, False)
    expected = f"an integer{' ' + bounds if bounds else ''}{' or null' if allow_none else ''}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
    if not isinstance(value, Integral):
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise ConfigError(f"{name} must be {expected}, got {value!r}")
    v = int(value)
    if not _in_bounds(v, low, high, False, False):
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
    return v


def check_float(value: Any, name: str, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> float | None:
    """A finite number in the given bounds (``low_open``/``high_open``: strict); returned as ``float``."""
    if value is None and allow_none:
        return None
    bounds = _bounds_text(low, high, low_open, high_open)
    expected = f"a number{' ' + bounds if bounds else ''}{' or null' if allow_none else ''}"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
    v = float(value)
    if not _in_bounds(v, low, high, low_open, high_open):
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
    return v


def check_probability(value: Any, name: str) -> float:
    """A number in ``[0, 1]``."""
    return check_float(value, name, low=0.0, high=1.0)


def check_choice(value: Any, choices: Collection[Any], name: str) -> Any:
    """One of ``choices`` (compared with ``==``)."""
    try:
        ok = value in choices
    except TypeError:  # unhashable value against a set
        ok = False
    if not ok:
        shown = sorted(choices, key=str) if not isinstance(choices, (list, tuple)) else list(choices)
        raise ConfigError(f"{name} must be one of {shown}, got {value!r}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """``True`` or ``False`` (not ``"true"``, not ``1``)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def check_pair(value: Any, name: str, low: float | None = None, high: float | None = None,
               integer: bool = False, ordered: bool = True) -> tuple:
    """Two numbers ``(a, b)`` within the bounds, with ``a <= b`` when ``ordered``."""
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a pair (min, max), got {value!r}") from None
    check = check_int if integer else check_float
    a, b = check(a, f"{name}[0]", low, high), check(b, f"{name}[1]", low, high)
    if ordered and a > b:
        raise ConfigError(f"{name} must be a pair (min, max) with min <= max, got {value!r}")
    return a, b


def check_mapping(value: Any, name: str, known: Collection[str] | None = None) -> dict:
    """A mapping; with ``known``, unknown keys are an error (a typo never falls back to a default)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping, got {type(value).__name__}")
    if known is not None:
        unknown = sorted(set(map(str, value)) - set(known))
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown} in {name}; known: {sorted(known)}")
    return dict(value)


def check_module(module: str, name: str, package: str | None = None) -> None:
    """Raise :class:`~medfound.errors.ConfigError` naming the option ``name`` when ``module``
    cannot be imported: an option that needs an optional package (``tensorboard``, ``tqdm``) fails
    before the run with one line, not with a traceback from the component that imports it.

    Example
    -------
    >>> check_module("json", "train.log_json")
    >>> try:
    ...     check_module("no_such_module", "train.tensorboard", package="no-such-package")
    ... except ValueError as err:
    ...     print(err)  # doctest: +ELLIPSIS
    train.tensorboard = true needs the no-such-package package, which cannot be imported here (No module ...
    """
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as err:
        package = package or module.split(".")[0]
        raise ConfigError(
            f"{name} = true needs the {package} package, which cannot be imported here ({err}); install it "
            f"(pip install {package}) or set {name} to false"
        ) from None
