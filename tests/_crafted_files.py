"""Hostile files for the bad-input and memory tests: tiny on disk, huge in what their headers declare.

Each writer takes a folder and returns the path it wrote. Nothing here needs more than a few
megabytes of memory to build: the bombs are assembled from their on-disk structures (repeated
compressed blocks, one tile referenced many times, a stride-0 tensor record).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np


def nifti_header_bomb(folder: Path, shape=(1500, 1500, 500)) -> Path:
    """A 4.4 KB ``.nii`` whose header declares ``shape`` float32 voxels (4.2 GiB for the default)."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    header["magic"] = b"n+1"
    path = Path(folder) / "header_bomb.nii"
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 4096)
    return path


def tiff_tile_bomb(folder: Path, side: int = 40000, tile: int = 1024, dtype=np.uint16) -> Path:
    """A ~30 KB tiled TIFF of ``side`` x ``side`` pixels whose tiles all point at one deflated zero tile.

    Decoded: ``side**2 * itemsize`` bytes (3.0 GiB for the default); tifffile allocates it all
    for a whole-image read.
    """
    itemsize = np.dtype(dtype).itemsize
    data = zlib.compress(bytes(tile * tile * itemsize), 9)
    n = (-(-side // tile)) ** 2
    offsets_at = 8 + len(data)
    counts_at = offsets_at + 4 * n
    ifd_at = counts_at + 4 * n
    entries = [  # (tag, type, count, value or offset); types: 3 SHORT, 4 LONG
        (256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8 * itemsize), (259, 3, 1, 8), (262, 3, 1, 1),
        (277, 3, 1, 1), (322, 3, 1, tile), (323, 3, 1, tile), (324, 4, n, offsets_at), (325, 4, n, counts_at),
        (339, 3, 1, 1),
    ]  # fmt: skip
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3 and count == 1
                                                         else struct.pack("<I", value))
    ifd += struct.pack("<I", 0)
    path = Path(folder) / "tile_bomb.tif"
    with open(path, "wb") as f:
        f.write(b"II*\x00" + struct.pack("<I", ifd_at) + data)
        f.write(struct.pack(f"<{n}I", *([8] * n)))
        f.write(struct.pack(f"<{n}I", *([len(data)] * n)))
        f.write(ifd)
    return path


def png_header_bomb(folder: Path, width: int = 13000, height: int = 13000) -> Path:
    """A 60-byte-ish PNG declaring ``width x height`` RGB pixels (just under Pillow's own bomb limit)
    with one tiny IDAT."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(1 + 3 * width))  # one row
    path = Path(folder) / "png_bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def dicom_header_bomb(folder: Path, rows: int = 40000, cols: int = 40000, modality: str = "DX") -> Path:
    """An uncompressed DICOM radiograph declaring ``rows x cols`` 16-bit pixels with 64 bytes of pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from medfound.io._dicom import write_dataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation = modality, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(64)
    path = Path(folder) / "dicom_bomb.dcm"
    write_dataset(ds, path)
    return path


def umedpt_stride0(folder: Path, elements: int = 1_000_000_000) -> Path:
    """A UMedPT-style ``.pt.zip`` whose ``encoder.pt`` holds one tensor record of ``elements`` float32
    values with stride 0 over a 1-element storage (about 1 KB; 3.7 GiB once materialised)."""
    import torch

    inner = io.BytesIO()
    torch.save({"weight": torch.zeros(1).expand(elements)}, inner)
    path = Path(folder) / "stride0.pt.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("encoder.pt", inner.getvalue())
    return path


def umedpt_deflate_bomb(folder: Path, size: int = 1536 << 20) -> Path:
    """A UMedPT-style ``.pt.zip`` whose ``encoder.pt`` member inflates to ``size`` zero bytes
    (1.5 GiB from about 1.5 MB: deflate's best ratio); a valid zip, CRC included."""
    chunk_size = 1 << 20
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(chunk_size)) + comp.flush(zlib.Z_FULL_FLUSH)  # independent of what precedes it
    count = size // chunk_size
    tail = comp.flush(zlib.Z_FINISH)
    crc = 0
    zero = bytes(chunk_size)
    for _ in range(count):
        crc = zlib.crc32(zero, crc)
    compressed = len(block) * count + len(tail)
    name = b"encoder.pt"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, compressed, count * chunk_size,
                        len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, compressed,
                          count * chunk_size, len(name), 0, 0, 0, 0, 0, 0) + name
    path = Path(folder) / "deflate_bomb.pt.zip"
    with open(path, "wb") as f:
        f.write(local)
        for _ in range(count):
            f.write(block)
        f.write(tail)
        cd_at = f.tell()
        f.write(central)
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), cd_at, 0))
    return path


#: name -> writer, for tests that run every crafted file through its entry point
WRITERS = {
    "nifti_header_bomb": nifti_header_bomb,
    "tiff_tile_bomb": tiff_tile_bomb,
    "png_header_bomb": png_header_bomb,
    "dicom_header_bomb": dicom_header_bomb,
    "umedpt_stride0": umedpt_stride0,
    "umedpt_deflate_bomb": umedpt_deflate_bomb,
}
