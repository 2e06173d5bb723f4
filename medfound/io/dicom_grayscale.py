"""The DICOM grayscale pipeline as plain functions (PS3.3 C.11.1, C.11.2).

stored values -> modality LUT (rescale slope/intercept, or Modality LUT Sequence) -> VOI LUT
(window with VOI LUT Function LINEAR / LINEAR_EXACT / SIGMOID, or VOI LUT Sequence) -> display.

:class:`~medfound.io.RadiographReader` composes them; they are public so the same formulas serve
code that windows a volume later.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from medfound.errors import ConfigError, ImageReadError

__all__ = ["VOI_FUNCTIONS", "apply_modality_lut", "lut_table", "apply_lut", "voi_window", "window_values", "minmax"]

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def voi_window(x: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Map values through a VOI window to [0, 1] by the formulas of DICOM PS3.3 C.11.2.1.2.

    - ``LINEAR`` (C.11.2.1.2.1): ``0`` for ``x <= c - 0.5 - (w - 1) / 2``, ``1`` for
      ``x > c - 0.5 + (w - 1) / 2``, else ``((x - (c - 0.5)) / (w - 1) + 0.5)``; needs ``w >= 1``.
    - ``LINEAR_EXACT`` (C.11.2.1.3.2): ``0`` for ``x <= c - w / 2``, ``1`` for ``x > c + w / 2``,
      else ``(x - c) / w + 0.5``; needs ``w > 0``.
    - ``SIGMOID`` (C.11.2.1.3.1): ``1 / (1 + exp(-4 (x - c) / w))``; needs ``w > 0``.

    The standard's output range ``[y_min, y_max]`` is ``[0, 1]`` here.

    Example
    -------
    >>> import numpy as np
    >>> from medfound.io import voi_window
    >>> voi_window(np.array([0.0, 40.0, 80.0]), center=40, width=80, function="LINEAR_EXACT").tolist()
    [0.0, 0.5, 1.0]
    """
    function = str(function or "LINEAR").upper()
    c, w = float(center), float(width)
    x = np.asarray(x)
    xf = x.astype(np.float64) if x.dtype != np.float64 else x
    if function == "LINEAR":
        if w < 1:
            raise ConfigError(f"LINEAR VOI window width must be >= 1, got {w}")
        if w == 1:  # the formula divides by w - 1: a unit window is a step at c - 0.5
            y = (xf > c - 0.5).astype(np.float64)
        else:
            y = np.clip((xf - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0)
            y[xf <= c - 0.5 - (w - 1) / 2] = 0.0
            y[xf > c - 0.5 + (w - 1) / 2] = 1.0
    elif function == "LINEAR_EXACT":
        if w <= 0:
            raise ConfigError(f"LINEAR_EXACT VOI window width must be > 0, got {w}")
        y = np.clip((xf - c) / w + 0.5, 0.0, 1.0)
        y[xf <= c - w / 2] = 0.0
        y[xf > c + w / 2] = 1.0
    elif function == "SIGMOID":
        if w <= 0:
            raise ConfigError(f"SIGMOID VOI window width must be > 0, got {w}")
        y = 1.0 / (1.0 + np.exp(np.clip(-4.0 * (xf - c) / w, -700, 700)))
    else:
        raise ConfigError(f"VOI LUT function must be one of {VOI_FUNCTIONS}, got {function!r}")
    return y.astype(np.float32)


def _little_endian(ds: Any) -> bool:
    enc = getattr(ds, "original_encoding", None)  # pydicom 3
    if enc is not None and enc[1] is not None:
        return bool(enc[1])
    le = getattr(ds, "is_little_endian", None)  # pydicom 2.4
    return True if le is None else bool(le)


def lut_table(item: Any, ds: Any, path: str = "", what: str = "LUT") -> tuple[int, np.ndarray, int]:
    """First mapped input value, table and bit depth of a Modality or VOI LUT Sequence item.

    Follows PS3.3 C.11.1.1 / C.11.2.1.1: a first descriptor value of 0 means 65536 entries; the
    first mapped value is signed when the pixel data is signed; OW LUT Data is unpacked with the
    dataset's byte order.
    """
    try:
        n, first, bits = (int(v) for v in item.LUTDescriptor)
        data = item.LUTData
    except (AttributeError, ValueError, TypeError) as err:
        raise ImageReadError(f"{path}: {what} item without a valid LUTDescriptor/LUTData ({err})") from err
    n = n or 65536
    if int(ds.get("PixelRepresentation", 0) or 0) == 1 and first >= 1 << 15:
        first -= 1 << 16
    if isinstance(data, (bytes, bytearray)):
        if bits <= 8 and len(data) == n:
            table = np.frombuffer(data, dtype=np.uint8)
        else:
            table = np.frombuffer(data, dtype="<u2" if _little_endian(ds) else ">u2")
    else:
        table = np.asarray(data if isinstance(data, (list, tuple)) or np.ndim(data) else [data])
    table = table.astype(np.float64)
    if table.size < n:
        raise ImageReadError(f"{path}: {what} has {table.size} entries, its descriptor says {n}")
    return first, table[:n], bits


def apply_lut(x: np.ndarray, first: int, table: np.ndarray) -> np.ndarray:
    """Look values up in a LUT: inputs below ``first`` map to the first entry, above the range to the last."""
    idx = np.clip(np.rint(x).astype(np.int64) - first, 0, table.size - 1)
    return table[idx]


def apply_modality_lut(stored: np.ndarray, ds: Any, path: str = "") -> np.ndarray:
    """Stored values -> modality values (float32): Modality LUT Sequence if present, else rescale.

    Example
    -------
    >>> import numpy as np
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    >>> apply_modality_lut(np.array([0, 512]), ds).tolist()
    [-1024.0, 0.0]
    """
    seq = ds.get("ModalityLUTSequence")
    if seq:
        first, table, _ = lut_table(seq[0], ds, path, "Modality LUT Sequence")
        return apply_lut(stored, first, table).astype(np.float32)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    out = stored.astype(np.float32)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def window_values(ds: Any) -> tuple[list[float], list[float]]:
    """All stored (WindowCenter, WindowWidth) pairs as lists of floats (empty when none)."""

    def as_list(v: Any) -> list[float]:
        if v is None or v == "":
            return []
        vals = list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else [v]
        out = []
        for x in vals:
            try:
                out.append(float(x))
            except (TypeError, ValueError):
                warnings.warn(f"ignoring a non-numeric window value {x!r}", stacklevel=3)
        return out

    centers, widths = as_list(ds.get("WindowCenter")), as_list(ds.get("WindowWidth"))
    n = min(len(centers), len(widths))
    return centers[:n], widths[:n]


def minmax(x: np.ndarray) -> np.ndarray:
    """Linear map of the image's own range to [0, 1] (a constant image maps to 0)."""
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.float32)
    return ((x.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)

