"""A small, fast DICOM header scanner for the tags a series reader needs.

pydicom parses and converts every element it reads, which costs about 1.5 ms per file and
dominates the time to read a CT series of a few hundred slices. This scanner walks the element
headers of an uncompressed (native) file, skips everything by its length (sequences of undefined
length included), decodes only the listed tags and records where the Pixel Data value starts.
Anything unusual (no preamble, deflated or compressed syntaxes, malformed elements) makes it
return ``None``, and the caller falls back to pydicom, so it is an accelerator, never the only
path. Tests check it against pydicom on every DICOM file pydicom and pydicom-data ship.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from medfound.io._dicom import NATIVE_SYNTAXES, PixelElement

__all__ = ["SERIES_TAGS", "scan_header"]

#: tag -> (keyword, VR) of what the series reader reads
SERIES_TAGS: dict[int, tuple[str, str]] = {
    0x00080060: ("Modality", "CS"),
    0x0008103E: ("SeriesDescription", "LO"),
    0x00180050: ("SliceThickness", "DS"),
    0x0020000D: ("StudyInstanceUID", "UI"),
    0x0020000E: ("SeriesInstanceUID", "UI"),
    0x00200011: ("SeriesNumber", "IS"),
    0x00200013: ("InstanceNumber", "IS"),
    0x00200032: ("ImagePositionPatient", "DS"),
    0x00200037: ("ImageOrientationPatient", "DS"),
    0x00200052: ("FrameOfReferenceUID", "UI"),
    0x00280002: ("SamplesPerPixel", "US"),
    0x00280004: ("PhotometricInterpretation", "CS"),
    0x00280008: ("NumberOfFrames", "IS"),
    0x00280010: ("Rows", "US"),
    0x00280011: ("Columns", "US"),
    0x00280030: ("PixelSpacing", "DS"),
    0x00280100: ("BitsAllocated", "US"),
    0x00280101: ("BitsStored", "US"),
    0x00280102: ("HighBit", "US"),
    0x00280103: ("PixelRepresentation", "US"),
    0x00281052: ("RescaleIntercept", "DS"),
    0x00281053: ("RescaleSlope", "DS"),
}

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_CHUNK = 16384
_MAX_ELEMENTS = 200_000


class _Malformed(Exception):
    """Raised inside the scanner for anything it does not handle; the caller falls back."""


class _Reader:
    """Random access to a file's bytes through one read-ahead buffer."""

    def __init__(self, f) -> None:
        self.f = f
        self.base = 0
        self.buf = b""
        self.size = os.fstat(f.fileno()).st_size

    def get(self, pos: int, n: int) -> bytes:
        end = self.base + len(self.buf)
        if pos < self.base or pos + n > end:
            self.f.seek(pos)
            self.base, self.buf = pos, self.f.read(max(n, _CHUNK))
        out = self.buf[pos - self.base : pos - self.base + n]
        if len(out) != n:
            raise EOFError
        return out


def _decode(raw: bytes, vr: str, e: str) -> Any:
    if vr == "US":
        if len(raw) < 2:
            return None
        return struct.unpack(e + "H", raw[:2])[0]
    text = raw.decode("utf-8", "replace").strip(" \x00")
    if vr in ("DS", "IS"):
        parts = [p.strip() for p in text.split("\\")]
        try:
            vals = [float(p) for p in parts if p]
        except ValueError as err:
            raise _Malformed(f"bad {vr} value {text!r}") from err
        if vr == "IS":
            vals = [int(v) for v in vals]
        if not vals:
            return None
        return vals if len(vals) > 1 else vals[0]
    return text


class _Scanner:
    def __init__(self, reader: _Reader, little: bool, implicit: bool, tags: dict[int, tuple[str, str]]) -> None:
        self.r = reader
        self.e = "<" if little else ">"
        self.implicit = implicit
        self.tags = tags
        self.count = 0

    def element(self, pos: int, implicit: bool, e: str) -> tuple[int, bytes | None, int, int]:
        """Tag, VR (explicit only), header size and value length of the element at ``pos``."""
        self.count += 1
        if self.count > _MAX_ELEMENTS:
            raise _Malformed("too many elements")
        head = self.r.get(pos, 8)
        group, elem = struct.unpack(e + "HH", head[:4])
        tag = (group << 16) | elem
        if implicit or group == 0xFFFE:
            return tag, None, 8, struct.unpack(e + "I", head[4:8])[0]
        vr = head[4:6]
        if vr in _LONG_VRS:
            return tag, vr, 12, struct.unpack(e + "I", self.r.get(pos + 8, 4))[0]
        if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
            raise _Malformed(f"bad VR {vr!r}")
        return tag, vr, 8, struct.unpack(e + "H", head[6:8])[0]

    def skip_sequence(self, pos: int, implicit: bool, e: str, depth: int) -> int:
        """Skip the items of an undefined-length sequence starting at ``pos``; return the end position."""
        if depth > 32:
            raise _Malformed("sequences nested too deep")
        while True:
            tag, _, hdr, length = self.element(pos, True, e)
            pos += hdr
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                raise _Malformed(f"expected an item, found tag {tag:08X}")
            if length != _UNDEFINED:
                pos += length
                continue
            while True:  # elements of an undefined-length item, up to its delimiter
                tag, vr, hdr, length = self.element(pos, implicit, e)
                if tag == _ITEM_END:
                    pos += hdr
                    break
                pos += hdr
                if length == _UNDEFINED:
                    # an undefined-length UN element holds implicit VR little endian data
                    pos = self.skip_sequence(pos, implicit or vr == b"UN", "<" if vr == b"UN" else e, depth + 1)
                else:
                    pos += length

    def run(self, pos: int) -> tuple[dict[str, Any], PixelElement | None]:
        out: dict[str, Any] = {}
        e = self.e
        while True:
            try:
                tag, vr, hdr, length = self.element(pos, self.implicit, e)
            except EOFError:
                if pos == self.r.size:
                    return out, None  # the file ends cleanly without pixel data
                raise _Malformed("truncated element") from None
            if tag == _PIXEL_DATA:
                if length == _UNDEFINED:
                    raise _Malformed("encapsulated pixel data in a native transfer syntax")
                return out, PixelElement(pos + hdr, length, e == "<")
            if tag > _PIXEL_DATA:
                return out, None
            if length == _UNDEFINED:
                pos = self.skip_sequence(pos + hdr, self.implicit or vr == b"UN", "<" if vr == b"UN" else e, 0)
                continue
            want = self.tags.get(tag)
            if want is not None:
                out[want[0]] = _decode(self.r.get(pos + hdr, length), want[1], e) if length else None
            pos += hdr + length


def scan_header(
    path: str, tags: dict[int, tuple[str, str]] = SERIES_TAGS
) -> tuple[dict[str, Any], PixelElement | None, str] | None:
    """Scan a native DICOM file: ``(values by keyword, pixel element, transfer syntax)`` or ``None``.

    ``None`` means "use pydicom": no preamble, a compressed or deflated transfer syntax, or
    anything malformed. Absent tags are absent from the dict; empty values are ``None``.
    """
    try:
        with open(path, "rb") as f:
            r = _Reader(f)
            if r.get(128, 4) != b"DICM":
                return None
            pos, ts = 132, None
            while True:  # file meta information: always explicit VR little endian
                head = r.get(pos, 8)
                group, elem = struct.unpack("<HH", head[:4])
                if group != 0x0002:
                    break
                vr = head[4:6]
                if vr in _LONG_VRS:
                    length, hdr = struct.unpack("<I", r.get(pos + 8, 4))[0], 12
                else:
                    length, hdr = struct.unpack("<H", head[6:8])[0], 8
                if length == _UNDEFINED:
                    return None
                if elem == 0x0010:
                    ts = r.get(pos + hdr, length).decode("ascii", "replace").strip(" \x00")
                pos += hdr + length
            if ts not in NATIVE_SYNTAXES:
                return None
            scanner = _Scanner(r, NATIVE_SYNTAXES[ts], ts == "1.2.840.10008.1.2", tags)
            values, pixel = scanner.run(pos)
            return values, pixel, ts
    except (_Malformed, EOFError, struct.error, OSError, UnicodeError, ValueError):
        return None
