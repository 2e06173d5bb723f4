"""pydicom helpers that behave the same with pydicom 2.4 and 3.x.

Everything medfound does with pydicom goes through here, so the two majors differ in one place:
header reading with the pixel-data offset, decoding one frame through pydicom's pixel handlers
(and its pylibjpeg plugins for JPEG 2000, JPEG lossless and RLE), pydicom's modality LUT and VOI
window functions (``pydicom.pixels`` in 3.x, ``pydicom.pixel_data_handlers.util`` in 2.4), and
writing files.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medfound.errors import ImageReadError, UnsupportedImageError

__all__ = [
    "PYDICOM_MAJOR",
    "apply_modality_lut",
    "apply_windowing",
    "RADIOGRAPH_MODALITIES",
    "NATIVE_SYNTAXES",
    "PixelElement",
    "is_dicom_file",
    "read_header",
    "read_dataset",
    "decode_frame",
    "correct_unused_bits",
    "write_dataset",
]

PYDICOM_MAJOR = int(pydicom.__version__.split(".")[0])

if PYDICOM_MAJOR >= 3:
    from pydicom.pixels import apply_modality_lut, apply_windowing
else:  # pragma: no cover - exercised by the pydicom 2.4 CI run
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_windowing

#: projection radiography modalities (DR is not a DICOM modality but appears in the wild)
RADIOGRAPH_MODALITIES = ("CR", "DX", "DR", "MG", "XA", "RF", "IO", "PX", "RG")

#: uncompressed transfer syntaxes whose pixel bytes medfound reads directly: uid -> little endian
NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": True,  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1": True,  # Explicit VR Little Endian
    "1.2.840.10008.1.2.2": False,  # Explicit VR Big Endian (retired, still seen)
}
_IMPLICIT = "1.2.840.10008.1.2"
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True)
class PixelElement:
    """Where a native (uncompressed) Pixel Data value starts in a file and how long it is."""

    offset: int
    length: int
    little_endian: bool


def is_dicom_file(path: str) -> bool:
    """True for a file with the DICOM preamble (``DICM`` at byte 128), or a ``.dcm`` file."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            if f.read(4) == b"DICM":
                return True
    except OSError:
        return False
    return path.lower().endswith((".dcm", ".dicom"))


def _pixel_element(fp, transfer_syntax: str | None) -> PixelElement | None:
    """Parse the Pixel Data element header at the file position ``stop_before_pixels`` left.

    Returns ``None`` when there is no native Pixel Data element (compressed, absent, float data).
    """
    if transfer_syntax not in NATIVE_SYNTAXES:
        return None
    little = NATIVE_SYNTAXES[transfer_syntax]
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return None
    e = "<" if little else ">"
    group, elem = struct.unpack(e + "HH", head[:4])
    if (group, elem) != (0x7FE0, 0x0010):
        return None
    if transfer_syntax == _IMPLICIT:
        (length,) = struct.unpack(e + "I", head[4:8])
        value_offset = start + 8
    else:
        if len(head) < 12 or head[4:6] not in (b"OW", b"OB"):
            return None
        (length,) = struct.unpack(e + "I", head[8:12])
        value_offset = start + 12
    if length == _UNDEFINED_LENGTH:
        return None
    return PixelElement(value_offset, length, little)


def read_header(path: str, tags: list[str] | None = None) -> tuple[Dataset, PixelElement | None]:
    """Read a DICOM header without pixel data, and locate native pixel data for direct reading.

    Parameters
    ----------
    path
        The file.
    tags
        Keywords to read (``specific_tags``); ``None`` reads the whole header.

    Raises
    ------
    ImageReadError
        When the file is not DICOM or its header is truncated or corrupt.
    """
    try:
        with open(path, "rb") as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=tags)
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            pix = _pixel_element(fp, str(ts) if ts is not None else None)
    except InvalidDicomError as err:
        raise ImageReadError(f"{path}: not a DICOM file ({err})") from err
    except (EOFError, OSError, ValueError, KeyError, struct.error, TypeError) as err:
        raise ImageReadError(f"{path}: cannot read the DICOM header ({type(err).__name__}: {err})") from err
    return ds, pix


def read_dataset(path: str) -> Dataset:
    """Read a whole DICOM file (header and pixel data)."""
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise ImageReadError(f"{path}: not a DICOM file ({err})") from err
    except (EOFError, OSError, ValueError, KeyError, struct.error, TypeError) as err:
        raise ImageReadError(f"{path}: cannot read the DICOM file ({type(err).__name__}: {err})") from err


def _has_pixels(ds: Dataset) -> bool:
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def decode_frame(ds: Dataset, path: str, index: int = 0) -> np.ndarray:
    """Decode frame ``index`` of a dataset to stored values (no modality or VOI LUT applied).

    Compressed transfer syntaxes go through pydicom's pixel handlers (pydicom 3: its decoders with
    the pylibjpeg plugins; pydicom 2.4: its pixel data handlers). Unused high bits are zeroed for
    unsigned data and sign-extended for signed data.

    Raises
    ------
    ImageReadError
        No pixel data, or truncated/corrupt pixel data.
    UnsupportedImageError
        No installed plugin decodes the transfer syntax.
    """
    if not _has_pixels(ds):
        raise ImageReadError(f"{path}: the DICOM file has no pixel data")
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown"))
    try:
        if PYDICOM_MAJOR >= 3:
            from pydicom.pixels import pixel_array

            frames = int(ds.get("NumberOfFrames", 1) or 1)
            arr = pixel_array(ds, index=index if frames > 1 else None)
        else:
            arr = ds.pixel_array
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            if frames > 1:
                arr = arr[index]
    except NotImplementedError as err:
        raise UnsupportedImageError(
            f"{path}: no installed decoder handles transfer syntax {ts} ({err}); "
            "install medfound's DICOM plugins (pylibjpeg, pylibjpeg-openjpeg, pylibjpeg-libjpeg, pylibjpeg-rle)"
        ) from err
    except RuntimeError as err:
        msg = str(err)
        if "plugin" in msg.lower() or "handler" in msg.lower() or "decoder" in msg.lower():
            raise UnsupportedImageError(f"{path}: cannot decode transfer syntax {ts}: {msg}") from err
        raise ImageReadError(f"{path}: cannot decode the pixel data ({msg})") from err
    except (ValueError, EOFError, OSError, struct.error, IndexError, TypeError, AttributeError) as err:
        raise ImageReadError(f"{path}: cannot decode the pixel data ({type(err).__name__}: {err})") from err
    return correct_unused_bits(np.asarray(arr), ds)


def correct_unused_bits(arr: np.ndarray, ds: Any) -> np.ndarray:
    """Zero (unsigned) or sign-extend (signed) the bits above BitsStored, in place where possible."""
    allocated = int(ds.get("BitsAllocated", arr.dtype.itemsize * 8) or arr.dtype.itemsize * 8)
    stored = int(ds.get("BitsStored", allocated) or allocated)
    if arr.dtype.kind not in "iu" or stored >= allocated or stored >= arr.dtype.itemsize * 8:
        return arr
    if not arr.flags.writeable:
        arr = arr.copy()
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        shift = arr.dtype.itemsize * 8 - stored
        signed = arr.view(arr.dtype.str.replace("u", "i"))
        np.left_shift(signed, shift, out=signed)
        np.right_shift(signed, shift, out=signed)
        return signed
    np.bitwise_and(arr, (1 << stored) - 1, out=arr, casting="unsafe")
    return arr


def write_dataset(ds: Dataset, path: str | os.PathLike) -> None:
    """Write a dataset as a DICOM file (preamble + file meta), explicit VR little endian.

    ``ds.file_meta.TransferSyntaxUID`` must be set; the call is the same for pydicom 2.4 and 3.x.
    """
    if PYDICOM_MAJOR >= 3:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    else:  # pragma: no cover - exercised by the pydicom 2.4 CI run
        ds.is_little_endian = True
        ds.is_implicit_VR = str(ds.file_meta.TransferSyntaxUID) == _IMPLICIT
        ds.save_as(path, write_like_original=False)
