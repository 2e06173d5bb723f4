"""The DICOM grayscale pipeline (PS3.3 C.11.1, C.11.2), on pydicom's functions where they are right.

stored values -> modality LUT (:func:`modality_values`: pydicom's ``apply_modality_lut``, rescale
slope/intercept or Modality LUT Sequence) -> VOI (:func:`window_to_unit`: pydicom's
``apply_windowing`` with VOI LUT Function LINEAR / LINEAR_EXACT / SIGMOID; or
:func:`voi_lut_to_unit`: the VOI LUT Sequence) -> display values in [0, 1].

The VOI LUT Sequence is looked up here, not with pydicom's ``apply_voi``: pydicom (2.4.4 and
3.0.2) keeps the table index in the type of the table's entries, so with 8-bit entries every
input above 255 wraps around (input 300 reads entry 44), although a 12-bit image with an 8-bit
display LUT is ordinary (``tests/test_io_radiograph.py::test_voi_lut_with_8_bit_entries``).

:class:`~medfound.io.RadiographReader` composes these; the same window on tensors, from the
reader's metadata, is :func:`medfound.transforms.xray.apply_voi_window`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from medfound.errors import ImageReadError
from medfound.io._dicom import apply_modality_lut, apply_windowing

__all__ = ["VOI_FUNCTIONS", "modality_values", "window_to_unit", "voi_lut_to_unit", "window_values"]

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def modality_values(stored: np.ndarray, ds: Any, path: str = "") -> np.ndarray:
    """Stored values -> modality values as float32, by pydicom's ``apply_modality_lut``.

    Example
    -------
    >>> import numpy as np
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    >>> modality_values(np.array([0, 512]), ds).tolist()
    [-1024.0, 0.0]
    """
    try:
        out = apply_modality_lut(stored, ds)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as err:
        raise ImageReadError(f"{path}: invalid modality LUT or rescale ({type(err).__name__}: {err})") from err
    return np.asarray(out, dtype=np.float32)


def window_to_unit(values: np.ndarray, ds: Any, index: int = 0) -> np.ndarray:
    """The stored window ``index`` applied by pydicom's ``apply_windowing``, rescaled to [0, 1] (float32).

    pydicom maps the window to the range the modality LUT can produce (from BitsStored, the
    rescale or the Modality LUT's depth); its ends are read off by windowing ``-inf`` and ``inf``
    and mapped to 0 and 1. Raises ``ValueError`` (pydicom's) for an invalid window or VOI LUT
    Function.

    Example
    -------
    >>> import numpy as np
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.PhotometricInterpretation = "MONOCHROME2"; ds.BitsStored = 12
    >>> ds.PixelRepresentation = 0; ds.WindowCenter, ds.WindowWidth = 40, 80
    >>> ds.VOILUTFunction = "LINEAR_EXACT"
    >>> window_to_unit(np.array([0.0, 40.0, 80.0]), ds).tolist()
    [0.0, 0.5, 1.0]
    """
    with np.errstate(over="ignore"):  # SIGMOID far outside the window: exp overflows to the right limit
        y = apply_windowing(np.asarray(values), ds, index)
        lo, hi = apply_windowing(np.array([-np.inf, np.inf]), ds, index)
    return ((y - lo) / (hi - lo)).astype(np.float32)


def _little_endian(ds: Any) -> bool:
    enc = getattr(ds, "original_encoding", None)  # pydicom 3
    if enc is not None and enc[1] is not None:
        return bool(enc[1])
    le = getattr(ds, "is_little_endian", None)  # pydicom 2.4
    return True if le is None else bool(le)


def voi_lut_to_unit(values: np.ndarray, ds: Any, index: int = 0, path: str = "") -> np.ndarray:
    """Item ``index`` of the VOI LUT Sequence applied to modality values, scaled to [0, 1] (float32).

    PS3.3 C.11.2.1.1: a first descriptor value of 0 means 65536 entries; the first mapped value is
    signed when the pixel data is signed; inputs below it map to the first entry, inputs past the
    table to the last; OW LUT Data is unpacked with the dataset's byte order; values are rounded
    to the nearest input. Entries are scaled by the descriptor's bit depth, or by the depth the
    entries really use when they exceed it (descriptors that understate the depth exist).

    Example
    -------
    >>> import numpy as np
    >>> from pydicom.dataset import Dataset
    >>> item = Dataset(); item.LUTDescriptor = [4, 10, 8]; item.LUTData = [0, 85, 170, 255]
    >>> ds = Dataset(); ds.VOILUTSequence = [item]
    >>> voi_lut_to_unit(np.array([0, 11, 12, 500]), ds).tolist()
    [0.0, 0.3333333432674408, 0.6666666865348816, 1.0]
    """
    item = ds.VOILUTSequence[index]
    try:
        n, first, bits = (int(v) for v in item.LUTDescriptor)
        data = item.LUTData
    except (AttributeError, ValueError, TypeError) as err:
        raise ImageReadError(f"{path}: VOI LUT Sequence item without a valid LUTDescriptor/LUTData ({err})") from err
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
        raise ImageReadError(f"{path}: VOI LUT Sequence has {table.size} entries, its descriptor says {n}")
    table = table[:n]
    top = float((1 << bits) - 1)
    if table.max() > top:
        real = int(np.ceil(np.log2(table.max() + 1)))
        warnings.warn(f"{path}: VOI LUT entries exceed {bits} bits; scaling by {real} bits", stacklevel=3)
        top = float((1 << real) - 1)
    idx = np.clip(np.rint(values).astype(np.int64) - first, 0, n - 1)
    return (table[idx] / top).astype(np.float32)


def window_values(ds: Any) -> tuple[list[float], list[float]]:
    """All stored (WindowCenter, WindowWidth) pairs as lists of floats (empty when none).

    Example
    -------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.WindowCenter, ds.WindowWidth = ["40", "300"], ["400", "1500"]
    >>> window_values(ds)
    ([40.0, 300.0], [400.0, 1500.0])
    """

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
