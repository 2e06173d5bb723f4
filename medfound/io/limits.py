"""How much memory one file may make medfound allocate: one limit, and checks against the file itself.

A header is a promise the file may not keep: a 4.5 KB NIfTI can declare 1500x1500x500
voxels, a 30 KB TIFF can point 1600 tiles at one compressed zero tile, a 642-byte tensor
record can ask for a billion elements with stride 0. Readers that believe such headers
allocate gigabytes before they find out. medfound's readers, :class:`~medfound.io.SafeLoadImage`
(and so the DAC data pipeline) and the UMedPT weight importer therefore check the size a file
asks for **before allocating**, in two ways:

1. **Against the file.** Decoded data cannot be larger than what its stored bytes can expand
   to: exactly the stored size for uncompressed data, and at most the codec's largest
   possible ratio (:data:`CODEC_RATIO`: deflate 1032:1, LZW 2731:1, PackBits/RLE 128:1,
   JPEG 4096:1; these are properties of the codecs, so no valid file is refused). Codecs
   without such a bound (JPEG 2000, JPEG-LS, zstd, LZMA, WebP, ...) are held by the limit alone.
2. **Against the limit.** No single decoded array (or weights record) may exceed
   :func:`max_bytes`: by default :data:`DEFAULT_MAX_BYTES` (1 GiB, far above any image the 2D
   models or the DAC pipeline use); set the environment variable ``MEDFOUND_MAX_BYTES``
   (``"8G"``, ``"512M"``, ``"2147483648"``, ``"none"`` for no limit) or pass ``limit=`` where a
   function takes it. Large whole-slide images are read by region
   (``MicroscopyReader(roi_start=..., roi_end=...)``): only the region counts.

The size counted is the decoded array as the file stores it (samples x bytes per sample);
MONAI's ``LoadImage`` then converts to float32 by default, up to four times more for 8-bit data.

Refusals raise :class:`~medfound.errors.TooLargeError`, which is both an
:class:`~medfound.errors.ImageReadError` and a :class:`~medfound.errors.WeightsError`.

Example
-------
>>> from medfound.io.limits import check_decoded_size, parse_bytes
>>> parse_bytes("2G"), parse_bytes("none")
(2147483648, None)
>>> check_decoded_size(1000, "a.png", stored=100, codec="deflate")
1000
>>> try:
...     check_decoded_size(4_500_000_000, "huge.nii", stored=4_352, codec="raw")
... except OSError as err:
...     print(type(err).__name__, str(err)[:61])
TooLargeError huge.nii: the header asks for 4.19 GiB of pixel data, but the
"""

from __future__ import annotations

import math
import os
import re
import struct
from typing import Any, NamedTuple

from medfound.errors import ConfigError, TooLargeError

__all__ = [
    "MAX_BYTES_ENV",
    "DEFAULT_MAX_BYTES",
    "CODEC_RATIO",
    "parse_bytes",
    "max_bytes",
    "format_bytes",
    "check_decoded_size",
    "Declared",
    "declared_size",
    "check_image_file",
]

#: environment variable holding the limit (bytes, or with a K/M/G/T suffix, or "none")
MAX_BYTES_ENV = "MEDFOUND_MAX_BYTES"
#: the limit when neither an argument nor the environment sets one: 1 GiB per decoded array
DEFAULT_MAX_BYTES = 1 << 30

#: largest decoded/stored ratio a valid stream of each codec can reach. deflate: a 258-byte match
#: in 2 bits (1032); LZW with 12-bit codes and a full table: 4094 bytes per code (2731); PackBits,
#: DICOM and BMP RLE: at most 128 bytes (or 255 pixels) per 2 bytes; JPEG: one bit per 8x8 block and
#: component at best, times chroma subsampling and 16-bit output (4096, generous).
CODEC_RATIO: dict[str, float] = {"raw": 1.0, "deflate": 1032.0, "lzw": 2731.0, "packbits": 128.0, "jpeg": 4096.0}

#: compressed streams decoding to less than this are never refused for their ratio (headers, tables)
_SLACK = 1 << 20

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(value: Any, what: str = MAX_BYTES_ENV) -> int | None:
    """A byte count from ``123``, ``"123"``, ``"512M"``, ``"2G"``, ``"1.5GiB"``; ``"none"`` / ``"off"`` give ``None``.

    Example
    -------
    >>> parse_bytes("512M"), parse_bytes(1024), parse_bytes("1.5GiB")
    (536870912, 1024, 1610612736)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a size in bytes (e.g. 2G) or 'none', got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        text = str(value).strip().lower()
        if text in ("none", "off", "unlimited", "inf"):
            return None
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?", text)
        if m is None:
            raise ConfigError(f"{what} must be a size in bytes (e.g. 2G, 512M, 1073741824) or 'none', got {value!r}")
        number, unit = float(m.group(1)), m.group(2)
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{what} must be a positive size or 'none', got {value!r}")
    return int(number * _UNITS[unit])


def max_bytes(limit: Any = "env") -> int | None:
    """The limit in force: ``limit`` when given (a size, or ``None`` for none), else ``MEDFOUND_MAX_BYTES``,
    else :data:`DEFAULT_MAX_BYTES`.

    Example
    -------
    >>> max_bytes("64M"), max_bytes(None)
    (67108864, None)
    """
    if isinstance(limit, str) and limit == "env":
        env = os.environ.get(MAX_BYTES_ENV, "").strip()
        return parse_bytes(env, MAX_BYTES_ENV) if env else DEFAULT_MAX_BYTES
    return parse_bytes(limit, "limit")


def format_bytes(n: float) -> str:
    """``4500000000`` -> ``'4.19 GiB'``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} bytes"


def check_decoded_size(
    nbytes: int,
    source: Any,
    *,
    stored: int | None = None,
    codec: str | None = None,
    encoded_nbytes: int | None = None,
    limit: Any = "env",
    what: str = "pixel data",
    holder: str = "the file",
) -> int:
    """Refuse a decoded size the file cannot hold or the limit does not allow; returns ``nbytes``.

    Parameters
    ----------
    nbytes : bytes of the array the reader would allocate.
    source : the file (or ``archive:member``) for the message.
    stored : bytes the file holds for this data (``None``: not checked against the file).
    codec : key of :data:`CODEC_RATIO` (``"raw"``, ``"deflate"``, ...) or ``None`` / unknown (no ratio check).
    encoded_nbytes : bytes the codec must produce, when they differ from ``nbytes`` (packed 1-bit data).
    limit : ``"env"`` (``MEDFOUND_MAX_BYTES`` or the default), a size, or ``None`` (no limit).
    what : what the bytes are, for the message.
    holder : what holds the stored bytes, for the message (``"the file"``, ``"its storage"``).

    Raises
    ------
    TooLargeError
        The stored bytes cannot expand to ``nbytes``, or ``nbytes`` exceeds the limit.
    """
    nbytes = int(nbytes)
    encoded = int(nbytes if encoded_nbytes is None else encoded_nbytes)
    ratio = CODEC_RATIO.get(codec) if codec is not None else None
    if stored is not None and ratio is not None:
        stored = max(int(stored), 0)
        if codec == "raw":
            if encoded > stored:
                raise TooLargeError(
                    f"{source}: the header asks for {format_bytes(encoded)} of {what}, but {holder} holds only "
                    f"{format_bytes(stored)}: truncated or forged"
                )
        elif encoded > _SLACK and encoded > ratio * stored:
            raise TooLargeError(
                f"{source}: the header asks for {format_bytes(encoded)} of {what}, but the "
                f"{format_bytes(stored)} of {codec} data in {holder} can expand to at most "
                f"{format_bytes(ratio * stored)}: truncated or forged"
            )
    cap = max_bytes(limit)
    if cap is not None and nbytes > cap:
        raise TooLargeError(
            f"{source}: {what} of {format_bytes(nbytes)} exceeds medfound's limit of {format_bytes(cap)} per array "
            f"(set {MAX_BYTES_ENV}, e.g. {MAX_BYTES_ENV}=8G, to allow more)"
        )
    return nbytes


class Declared(NamedTuple):
    """What a file's header declares: decoded bytes, bytes the codec must produce, bytes stored, codec, frames."""

    nbytes: int
    encoded_nbytes: int
    stored: int | None
    codec: str | None
    frames: int = 1


# ---------------------------------------------------------------------------------------------
# header peeks: the decoded size a file declares, without decoding it
# ---------------------------------------------------------------------------------------------
#: TIFF Compression tag -> codec key of CODEC_RATIO
TIFF_CODECS = {1: "raw", 5: "lzw", 6: "jpeg", 7: "jpeg", 8: "deflate", 32946: "deflate", 34933: "deflate",
               32773: "packbits"}
#: DICOM transfer syntax -> codec key (those with an unbounded ratio are left out)
DICOM_CODECS = {
    "1.2.840.10008.1.2": "raw", "1.2.840.10008.1.2.1": "raw", "1.2.840.10008.1.2.2": "raw",
    "1.2.840.10008.1.2.1.99": "deflate", "1.2.840.10008.1.2.5": "packbits",
    "1.2.840.10008.1.2.4.50": "jpeg", "1.2.840.10008.1.2.4.51": "jpeg", "1.2.840.10008.1.2.4.57": "jpeg",
    "1.2.840.10008.1.2.4.70": "jpeg",
}  # fmt: skip


def _read_start(path: str, n: int = 512) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _peek_png(path: str, head: bytes, size: int) -> Declared | None:
    if len(head) < 33 or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 4)
    encoded = height * (1 + math.ceil(width * channels * depth / 8))  # filter byte per row
    nbytes = width * height * channels * max(1, depth // 8)
    return Declared(nbytes, encoded, size, "deflate")


def _peek_pil(path: str, size: int) -> Declared | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            fmt, mode, (w, h), info = im.format, im.mode, im.size, dict(im.info)
    except Image.DecompressionBombError as err:
        raise TooLargeError(f"{path}: {err}") from None
    except Exception:  # noqa: BLE001 - not an image Pillow knows: the reader reports it
        return None
    bits = {"1": 1, "L": 8, "P": 8, "LA": 16, "PA": 16, "RGB": 24, "YCbCr": 24, "LAB": 24, "HSV": 24,
            "RGBA": 32, "RGBX": 32, "CMYK": 32, "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}.get(mode, 32)
    nbytes = w * h * max(1, math.ceil(bits / 8))
    encoded = math.ceil(w * h * bits / 8)
    codec = {"JPEG": "jpeg", "MPO": "jpeg", "GIF": "lzw", "PNG": "deflate"}.get(fmt)
    if fmt == "BMP":
        codec = "packbits" if info.get("compression", 0) in (1, 2) else "raw"
    return Declared(nbytes, encoded, size, codec)


def _peek_nifti(path: str, size: int) -> Declared | None:
    import nibabel as nib

    try:
        img = nib.load(path)  # header only: the data stay on disk until asked for
        header = img.header
        shape = tuple(int(s) for s in header.get_data_shape())
        itemsize = header.get_data_dtype().itemsize
    except Exception:  # noqa: BLE001 - a broken header: the reader reports it
        return None
    nbytes = math.prod(shape) * itemsize
    files = [f for f in (img.file_map.get("image"),) if f is not None and f.filename]
    data_file = files[0].filename if files else path
    data_size = os.path.getsize(data_file) if os.path.isfile(data_file) else size
    if str(data_file).lower().endswith(".gz"):
        return Declared(nbytes, nbytes, data_size, "deflate")
    offset = int(header.get_data_offset()) if data_file == path else 0
    return Declared(nbytes, nbytes, max(data_size - offset, 0), "raw")


def _peek_tiff(path: str, size: int) -> Declared | None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                return None
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
            key = series.keyframe
            compression, bits = int(key.compression), int(key.bitspersample)
    except Exception:  # noqa: BLE001 - not a readable TIFF: the reader reports it
        return None
    n = math.prod(shape)
    nbytes = n * (dtype.itemsize if dtype is not None else 1)
    return Declared(nbytes, math.ceil(n * bits / 8), size, TIFF_CODECS.get(compression))


def _peek_dicom(path: str, size: int) -> Declared | None:
    from medfound.io._dicom import read_header

    try:
        ds, pixel = read_header(path, ["Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated"])
    except Exception:  # noqa: BLE001
        return None
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if not rows or not cols:
        return None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    n = rows * cols * frames * spp
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    stored = pixel.length if pixel is not None else size
    return Declared(n * max(1, math.ceil(bits / 8)), math.ceil(n * bits / 8), stored, DICOM_CODECS.get(ts), frames)


def _peek_npy(path: str, size: int) -> Declared | None:
    import numpy as np

    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            shape, _, dtype = np.lib.format._read_array_header(f, version)  # noqa: SLF001 - header only
            offset = f.tell()
    except Exception:  # noqa: BLE001
        return None
    nbytes = math.prod(shape) * dtype.itemsize
    return Declared(nbytes, nbytes, size - offset, "raw")


def _peek_itk(path: str) -> Declared | None:
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
        n = math.prod(reader.GetSize()) * reader.GetNumberOfComponents()
        itemsize = sitk.Image([1] * reader.GetDimension(), reader.GetPixelID()).GetSizeOfPixelComponent()
    except Exception:  # noqa: BLE001 - ITK does not know the format either
        return None
    return Declared(n * itemsize, n * itemsize, None, None)


def declared_size(path: str | os.PathLike) -> Declared | None:
    """What a file's header declares (:class:`Declared`), read without decoding; ``None`` when unknown.

    Raises :class:`~medfound.errors.TooLargeError` only where the format's own library refuses
    the header (Pillow's decompression-bomb check).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return None
    size = os.path.getsize(path)
    head = _read_start(path)
    name = path.lower()
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _peek_png(path, head, size)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _peek_tiff(path, size)
    if len(head) >= 132 and head[128:132] == b"DICM" or name.endswith((".dcm", ".dicom")):
        return _peek_dicom(path, size)
    if head.startswith(b"\x93NUMPY"):
        return _peek_npy(path, size)
    if name.endswith((".nii", ".nii.gz", ".hdr", ".img", ".img.gz")):
        return _peek_nifti(path, size)
    if head[:3] == b"\xff\xd8\xff" or head[:2] == b"BM" or head[:4] == b"GIF8" or head[8:12] == b"WEBP":
        return _peek_pil(path, size)
    return _peek_itk(path)


def check_image_file(path: str | os.PathLike, limit: Any = "env") -> int | None:
    """Check the decoded size an image file declares (header only) against the file and the limit.

    Knows PNG, JPEG, BMP, GIF, WebP, TIFF, DICOM, NIfTI (``.nii``, ``.nii.gz``, ``.hdr/.img``),
    NumPy ``.npy``, and (limit only) every format SimpleITK reads a header of (NRRD, MHA, ...).
    Folders, missing files and unknown formats pass (``None``): the reader reports them.

    Returns
    -------
    int or None
        The decoded size in bytes, when the header told it.

    Raises
    ------
    TooLargeError
        The file cannot hold what its header declares, or it exceeds the limit.

    Example
    -------
    >>> import os, struct, tempfile, zlib
    >>> path = os.path.join(tempfile.mkdtemp(), "bomb.png")
    >>> ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)  # 60000 x 60000 RGB declared
    >>> chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    >>> _ = open(path, "wb").write(b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    >>> try:
    ...     check_image_file(path)
    ... except OSError as err:
    ...     print(type(err).__name__, "bomb.png" in str(err), "forged" in str(err))
    TooLargeError True True
    """
    declared = declared_size(path)
    if declared is None:
        return None
    return check_decoded_size(declared.nbytes, os.fspath(path), stored=declared.stored, codec=declared.codec,
                              encoded_nbytes=declared.encoded_nbytes, limit=limit)
