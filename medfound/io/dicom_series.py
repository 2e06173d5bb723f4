"""DICOM series (CT/MR) -> 3D volume: :class:`DicomSeriesReader`.

The reader scans headers only (``stop_before_pixels`` with the tags it needs), groups the files by
SeriesInstanceUID, sorts the chosen series along the slice normal (never by file name or
InstanceNumber), derives the geometry exactly as ITK's ``ImageSeriesReader`` does, and then reads
the pixel data: native (uncompressed) files straight from the file, compressed ones through
pydicom's pixel handlers, in blocks of slices on threads, each block transposed into MONAI's
``(x, y, z)`` layout while it is in cache. Rescale slope/intercept is applied per slice.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.utils import MetaKeys

from medfound.errors import (
    ImageReadError,
    MedfoundError,
    SeriesGeometryError,
    UnsupportedImageError,
)
from medfound.io._common import (
    PathLike,
    affine_from_geometry,
    as_names,
    base_meta,
)
from medfound.io._dicom import (
    RADIOGRAPH_MODALITIES,
    PixelElement,
    correct_unused_bits,
    decode_frame,
    is_dicom_file,
    read_dataset,
    read_header,
)
from medfound.io._dicom_header import SERIES_TAGS, scan_header
from medfound.io.limits import check_decoded_size
from medfound.utils import check_bool, check_choice, check_float, check_int

__all__ = ["DicomSeriesReader", "DicomSeries", "scan_dicom_folder"]


@dataclass
class _Slice:
    path: str
    series_uid: str
    position: np.ndarray | None
    orientation: np.ndarray | None
    rows: int
    cols: int
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float
    dtype: np.dtype
    bits_stored: int
    signed: bool
    frames: int
    pixel: PixelElement | None
    header: Any


@dataclass
class DicomSeries:
    """A sorted DICOM series: what :meth:`DicomSeriesReader.read` returns (pixels not read yet).

    Attributes
    ----------
    source
        The folder or first file the series came from.
    slices
        Slice records sorted along the slice normal.
    direction, spacing, origin
        ITK geometry (LPS): direction columns are the x, y, z axes.
    series_uid
        The SeriesInstanceUID.
    others
        The other series found next to it: ``{uid: number of files}``.
    irregular
        True when slice spacing is irregular or slices are missing.
    missing_slices
        Estimated number of missing slices (gaps that are multiples of the usual spacing).
    """

    source: str
    slices: list[_Slice]
    direction: np.ndarray
    spacing: np.ndarray
    origin: np.ndarray
    series_uid: str
    others: dict[str, int]
    irregular: bool = False
    missing_slices: int = 0


def _float(v: Any, default: float) -> float:
    if isinstance(v, list):
        v = v[0] if v else None
    try:
        return float(v) if v is not None and v != "" else default
    except (TypeError, ValueError):
        return default


def _plain(value: Any) -> Any:
    """pydicom value -> the plain Python value the fast scanner gives (float/int/str or list)."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        vals = [_plain(v) for v in value]
        return vals if len(vals) > 1 else (vals[0] if vals else None)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    return str(value)


def read_series_header(path: str) -> tuple[dict[str, Any], PixelElement | None]:
    """The header values a series reader needs, by keyword, and the native pixel element.

    The fast scanner handles native files; everything else goes through pydicom, with the same
    result types (numbers as float/int, several values as a list).
    """
    fast = scan_header(path)
    if fast is not None:
        return fast[0], fast[1]
    ds, pix = read_header(path, [kw for kw, _ in SERIES_TAGS.values()])
    return {kw: _plain(ds[kw].value) for kw, _ in SERIES_TAGS.values() if kw in ds}, pix


def _floats(v: Any, n: int) -> np.ndarray | None:
    vals = v if isinstance(v, list) else [v]
    if v is None or len(vals) != n or any(x is None for x in vals):
        return None
    return np.array(vals, dtype=np.float64)


@dataclass
class _Refused:
    """What :meth:`DicomSeriesReader.read` returns for a series it refuses: the error, raised by ``get_data``."""

    error: MedfoundError


class _NotAnImage(ImageReadError):
    """A DICOM object without image attributes (DICOMDIR, structured report, presentation state)."""


def _slice_record(path: str) -> _Slice:
    h, pix = read_series_header(path)
    if h.get("Rows") is None or h.get("Columns") is None:
        raise _NotAnImage(f"{path}: DICOM file without image attributes (Rows/Columns): no pixel data to read")
    samples = int(h.get("SamplesPerPixel") or 1)
    if samples != 1:
        raise UnsupportedImageError(
            f"{path}: {samples} samples per pixel ({h.get('PhotometricInterpretation', '')}); "
            "DicomSeriesReader reads grayscale CT/MR series"
        )
    allocated = int(h.get("BitsAllocated") or 16)
    if allocated not in (8, 16, 32):
        raise UnsupportedImageError(f"{path}: BitsAllocated {allocated} is not supported")
    signed = int(h.get("PixelRepresentation") or 0) == 1
    dtype = np.dtype(f"{'i' if signed else 'u'}{allocated // 8}")
    if pix is not None:
        dtype = dtype.newbyteorder("<" if pix.little_endian else ">")
    ps = _floats(h.get("PixelSpacing"), 2)
    return _Slice(
        path=path,
        series_uid=str(h.get("SeriesInstanceUID") or ""),
        position=_floats(h.get("ImagePositionPatient"), 3),
        orientation=_floats(h.get("ImageOrientationPatient"), 6),
        rows=int(h["Rows"]),
        cols=int(h["Columns"]),
        pixel_spacing=(float(ps[0]), float(ps[1])) if ps is not None else None,
        slope=_float(h.get("RescaleSlope"), 1.0),
        intercept=_float(h.get("RescaleIntercept"), 0.0),
        dtype=dtype,
        bits_stored=int(h.get("BitsStored") or allocated),
        signed=signed,
        frames=int(_float(h.get("NumberOfFrames"), 1.0)),
        pixel=pix,
        header=h,
    )


def _list_folder(folder: str, recursive: bool) -> list[str]:
    if recursive:
        names = [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs]
    else:
        names = [e.path for e in os.scandir(folder) if e.is_file()]
    return sorted(n for n in names if is_dicom_file(n))


def scan_dicom_folder(folder: PathLike, recursive: bool = False) -> dict[str, list[str]]:
    """Group the DICOM files of a folder by SeriesInstanceUID (headers only).

    Unreadable files are skipped with a warning.

    Example
    -------
    >>> from medfound.io import scan_dicom_folder
    >>> scan_dicom_folder("ct_study/")  # doctest: +SKIP
    {'1.2.826...': ['ct_study/IM00001.dcm', ...]}
    """
    groups: dict[str, list[str]] = {}
    for name in _list_folder(os.fspath(folder), recursive):
        try:
            ds, _ = read_header(name, ["SeriesInstanceUID"])
        except ImageReadError as err:
            warnings.warn(f"skipping {err}", stacklevel=2)
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(name)
    return groups


class DicomSeriesReader(ImageReader):
    """Read a CT/MR DICOM series (a folder or a list of slice files) into one 3D volume.

    Slices are sorted by their position along the slice normal (ImagePositionPatient projected on
    the cross product of the ImageOrientationPatient cosines); the geometry (shape, spacing,
    origin, direction) equals SimpleITK's ``ImageSeriesReader`` on the same files, and the RAS
    affine equals MONAI's ``ITKReader``. Rescale slope/intercept are applied per slice, so CT
    comes out in HU. The array is indexed ``(x, y, z)`` like MONAI's readers, C-contiguous, and
    carries no channel dimension (``original_channel_dim`` is ``"no_channel"``).

    The rescale is done here, in blocks of slices in the output type, not with pydicom's
    ``apply_modality_lut`` (which the radiograph reader uses): that returns a new float64 array
    per slice, and this reader's speed against SimpleITK (``examples/benchmarks/io_bench.py``)
    comes from reading native pixel data straight into the output volume.

    Parameters
    ----------
    series_uid
        SeriesInstanceUID to read when a folder holds several series. Default: the series with the
        most files, with a warning that lists the others; when several series share the largest
        number of files, :class:`SeriesGeometryError` lists their SeriesInstanceUIDs (the choice
        is yours, never the file system's listing order).
    on_irregular
        What to do when slices are missing or their spacing is irregular: ``"warn"`` (default;
        the volume uses the mean spacing as ITK does), ``"raise"`` (:class:`SeriesGeometryError`)
        or ``"ignore"``.
    spacing_tolerance
        Relative deviation of a slice gap from the median gap above which spacing counts as
        irregular (default 0.05; 5%).
    recursive
        Also look into sub-folders of a folder.
    workers
        Threads for reading pixel data (default ``min(8, cpu count)``; 1 disables threads).
    affine_lps_to_ras
        Return a RAS affine (default, like MONAI's readers) or keep DICOM's LPS.
    dtype
        ``"auto"`` (default): the smallest integer type that holds the rescaled values exactly
        when all slopes and intercepts are integers (int16 for most CT, as ITK gives), else
        float32; ``"float32"``: always float32. ``LoadImage`` casts to its own ``dtype``
        (float32 by default) afterwards, as with MONAI's readers.

    A list of files is one series (files of several series raise :class:`SeriesGeometryError`
    unless ``series_uid`` picks one). A list of folders gives one series per folder, stacked as
    channels (their geometry must agree), like MONAI's readers stack a list of files.

    Example
    -------
    >>> from monai.transforms import LoadImage
    >>> import medfound.io  # registers the reader names
    >>> img = LoadImage(reader="DicomSeriesReader", ensure_channel_first=True)("ct_series/")  # doctest: +SKIP
    >>> img.shape, img.pixdim  # doctest: +SKIP
    (torch.Size([1, 512, 512, 200]), tensor([0.7, 0.7, 1.25]))
    """

    def __init__(
        self,
        series_uid: str | None = None,
        on_irregular: str = "warn",
        spacing_tolerance: float = 0.05,
        recursive: bool = False,
        workers: int | None = None,
        affine_lps_to_ras: bool = True,
        dtype: str = "auto",
    ) -> None:
        super().__init__()
        self.dtype = check_choice(dtype, ("auto", "float32"), "dtype")
        self.series_uid = series_uid
        self.on_irregular = check_choice(on_irregular, ("warn", "raise", "ignore"), "on_irregular")
        self.spacing_tolerance = check_float(spacing_tolerance, "spacing_tolerance", low=0.0, low_open=True)
        self.recursive = check_bool(recursive, "recursive")
        workers = check_int(workers, "workers", low=1, allow_none=True)
        self.workers = workers if workers is not None else min(8, os.cpu_count() or 1)
        self.affine_lps_to_ras = check_bool(affine_lps_to_ras, "affine_lps_to_ras")

    # -- ImageReader API -------------------------------------------------------------------
    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """True for a folder, a list of DICOM files, or a single non-radiograph DICOM file.

        Only consulted when this reader is preferred for auto-selection
        (:func:`medfound.io.register_readers` with ``prefer=True``).
        """
        names = as_names(filename)
        if not names:
            return False
        if all(os.path.isdir(n) for n in names):
            return True
        if not all(os.path.isfile(n) and is_dicom_file(n) for n in names):
            return False
        if len(names) > 1:
            return True
        try:
            ds, _ = read_header(names[0], ["Modality", "NumberOfFrames"])
        except ImageReadError:
            return False
        return str(ds.get("Modality", "")).upper() not in RADIOGRAPH_MODALITIES

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs) -> DicomSeries | list[DicomSeries] | _Refused:
        """Scan and sort the series (headers only); pixel data is read by :meth:`get_data`.

        ``kwargs`` may override ``series_uid``. A DICOM series this reader refuses for its
        geometry (several candidate series, misplaced slices) is not an error here but in
        :meth:`get_data`: MONAI's ``LoadImage`` moves on to its other readers when ``read`` fails,
        and ITKReader would read the refused series anyway (one of several series, or with the
        spacing of misplaced slices). Files that are not DICOM still fail here, so ``LoadImage``
        tries its other readers on them.
        """
        try:
            return self._read(data, **kwargs)
        except SeriesGeometryError as err:
            return _Refused(err)

    def _read(self, data: Sequence[PathLike] | PathLike, **kwargs) -> DicomSeries | list[DicomSeries]:
        names = as_names(data)
        if not names:
            raise ImageReadError("DicomSeriesReader: no file or folder given")
        series_uid = kwargs.get("series_uid", self.series_uid)
        dirs = [os.path.isdir(n) for n in names]
        if all(dirs):
            out = [self._read_series(_list_folder(n, self.recursive), n, series_uid, folder=True) for n in names]
            return out if len(out) > 1 else out[0]
        if any(dirs):
            raise ImageReadError(f"DicomSeriesReader: mix of folders and files given: {list(names)}")
        missing = [n for n in names if not os.path.isfile(n)]
        if missing:
            raise ImageReadError(f"{missing[0]}: no such file")
        return self._read_series(list(names), names[0], series_uid)

    def get_data(self, img: DicomSeries | Sequence[DicomSeries]) -> tuple[np.ndarray, dict]:
        """Read the pixel data: array ``(x, y, z)`` in output units (see ``dtype``), and the metadata."""
        if isinstance(img, _Refused):
            raise img.error
        series = [img] if isinstance(img, DicomSeries) else list(img)
        arrays, metas = [], []
        for s in series:
            vol = self._read_pixels(s)
            arrays.append(vol)
            metas.append(self._meta(s, vol.shape))
        if len(arrays) == 1:
            return arrays[0], metas[0]
        ref = metas[0]
        for s, m in zip(series[1:], metas[1:]):
            if tuple(m[MetaKeys.SPATIAL_SHAPE]) != tuple(ref[MetaKeys.SPATIAL_SHAPE]) or not np.allclose(
                m[MetaKeys.AFFINE], ref[MetaKeys.AFFINE], atol=1e-3
            ):
                raise SeriesGeometryError(
                    f"{s.source}: geometry differs from {series[0].source}; series stacked as channels must share "
                    "shape and affine"
                )
        meta = dict(ref)
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays, axis=0), meta

    # -- internals -------------------------------------------------------------------------
    def _read_series(self, files: list[str], source: str, series_uid: str | None, folder: bool = False) -> DicomSeries:
        if not files:
            raise ImageReadError(f"{source}: no DICOM files found")
        records, skipped = [], []
        for f in files:
            try:
                records.append(_slice_record(f))
            except _NotAnImage:
                if not folder:  # files named explicitly must be images
                    raise
                skipped.append(Path(f).name)  # DICOMDIR, reports, presentation states live in study folders
        if skipped:
            warnings.warn(
                f"{source}: skipped {len(skipped)} DICOM file(s) without image data: {', '.join(skipped[:5])}"
                + (" ..." if len(skipped) > 5 else ""),
                stacklevel=4,
            )
        if not records:
            raise ImageReadError(f"{source}: no DICOM images found (only non-image DICOM objects)")
        groups: dict[str, list[_Slice]] = {}
        for r in records:
            groups.setdefault(r.series_uid, []).append(r)
        if series_uid is not None:
            if series_uid not in groups:
                raise ImageReadError(
                    f"{source}: no series with SeriesInstanceUID {series_uid}; found "
                    + ", ".join(f"{u} ({len(g)} files)" for u, g in groups.items())
                )
            uid = series_uid
        else:
            uid = max(groups, key=lambda u: len(groups[u]))
            tied = sorted(u for u, g in groups.items() if len(g) == len(groups[uid]))
            if len(tied) > 1:  # no largest series: which one is meant is not ours to guess
                raise SeriesGeometryError(
                    f"{source}: {len(tied)} DICOM series with {len(groups[uid])} files each (SeriesInstanceUID "
                    f"{', '.join(tied)}); choose one with series_uid=..."
                )
            if len(groups) > 1 and not folder:
                odd = next(g[0] for u, g in groups.items() if u != uid)
                raise SeriesGeometryError(
                    f"{odd.path}: belongs to series {odd.series_uid}, the other files to {uid}; "
                    "a list of files must be "
                    f"one series ({len(groups)} found; choose one with series_uid=...)"
                )
            if len(groups) > 1:
                others = ", ".join(
                    f"{u} ({len(g)} files, '{g[0].header.get('SeriesDescription') or ''}')"
                    for u, g in groups.items()
                    if u != uid
                )
                msg = (
                    f"{source}: {len(groups)} DICOM series found; reading the largest, {uid} ({len(groups[uid])} "
                    f"files); others: {others}. Choose one with series_uid=..."
                )
                warnings.warn(msg, stacklevel=3)
        chosen = groups[uid]
        others = {u: len(g) for u, g in groups.items() if u != uid}
        return self._sort(chosen, source, uid, others)

    def _sort(self, slices: list[_Slice], source: str, uid: str, others: dict[str, int]) -> DicomSeries:
        first = slices[0]
        for s in slices:
            if s.frames > 1:
                raise UnsupportedImageError(
                    f"{s.path}: multi-frame DICOM ({s.frames} frames); DicomSeriesReader reads single-frame "
                    "series (use monai.data.ITKReader for enhanced multi-frame CT/MR)"
                )
            if (s.rows, s.cols) != (first.rows, first.cols):
                raise SeriesGeometryError(
                    f"{s.path}: slice size {s.rows}x{s.cols} differs from {first.path} ({first.rows}x{first.cols}) "
                    f"in series {uid}"
                )
        oriented = [s for s in slices if s.position is not None and s.orientation is not None]
        if len(oriented) != len(slices):
            if len(slices) > 1:
                bad = next(s for s in slices if s.position is None or s.orientation is None)
                raise SeriesGeometryError(
                    f"{bad.path}: no ImagePositionPatient/ImageOrientationPatient; slices cannot be placed"
                )
            warnings.warn(
                f"{first.path}: no ImagePositionPatient/ImageOrientationPatient; identity geometry", stacklevel=4
            )
        ori = first.orientation if first.orientation is not None else np.array([1.0, 0, 0, 0, 1, 0])
        for s in oriented:
            if not np.allclose(s.orientation, ori, atol=1e-4):
                raise SeriesGeometryError(
                    f"{s.path}: ImageOrientationPatient {s.orientation.tolist()} differs from {first.path} "
                    f"({ori.tolist()}) in series {uid}"
                )
        row, col = ori[:3], ori[3:]
        normal = np.cross(row, col)
        if len(slices) > 1:
            dist = np.array([s.position @ normal for s in slices])
            order = np.argsort(dist, kind="stable")
            slices = [slices[i] for i in order]
            dist = dist[order]
            gaps = np.diff(dist)
            dup = np.flatnonzero(gaps < 1e-4 * max(1.0, float(np.abs(dist).max())))
            if dup.size:
                a, b = slices[dup[0]], slices[dup[0] + 1]
                raise SeriesGeometryError(
                    f"{b.path}: same slice position as {a.path} ({dist[dup[0]]:.4f} mm along the normal) in series "
                    f"{uid}; the series holds several acquisitions or duplicate files"
                )
        ps = first.pixel_spacing
        if ps is None:
            warnings.warn(f"{first.path}: no PixelSpacing; using 1.0 mm", stacklevel=4)
            ps = (1.0, 1.0)
        for s in slices:
            if s.pixel_spacing is not None and not np.allclose(s.pixel_spacing, ps, rtol=1e-4):
                raise SeriesGeometryError(f"{s.path}: PixelSpacing {s.pixel_spacing} differs from {first.path} ({ps})")
        origin = slices[0].position if slices[0].position is not None else np.zeros(3)
        direction = np.eye(3)
        direction[:, 0], direction[:, 1], direction[:, 2] = row, col, normal
        irregular, missing = False, 0
        if len(slices) > 1:
            # as ITK: z axis and spacing from the first and last slice positions
            zvec = slices[-1].position - slices[0].position
            zlen = float(np.linalg.norm(zvec))
            direction[:, 2] = zvec / zlen
            zspacing = zlen / (len(slices) - 1)
            median = float(np.median(gaps))
            ratio = gaps / median
            steps = np.rint(ratio)
            off = np.abs(gaps - median) > self.spacing_tolerance * median
            if off.any():
                irregular = True
                missing = int(np.sum(np.where(np.abs(ratio - steps) <= self.spacing_tolerance, steps - 1, 0)))
                worst = int(np.argmax(np.abs(gaps - median)))
                msg = (
                    f"{source}: series {uid} has irregular slice spacing (median {median:.4g} mm, gap of "
                    f"{gaps[worst]:.4g} mm between {Path(slices[worst].path).name} and "
                    f"{Path(slices[worst + 1].path).name}; about {missing} slice(s) missing); "
                    f"the volume uses the mean spacing {zspacing:.4g} mm"
                )
                if self.on_irregular == "raise":
                    raise SeriesGeometryError(msg)
                if self.on_irregular == "warn":
                    warnings.warn(msg, stacklevel=4)
        else:
            zspacing = _float(first.header.get("SliceThickness"), 1.0) or 1.0
        spacing = np.array([ps[1], ps[0], zspacing], dtype=np.float64)
        return DicomSeries(source, slices, direction, spacing, origin, uid, others, irregular, missing)

    #: bytes of one output z-run per block (a cache line) and rows per copy of the block transpose
    BLOCK_BYTES = 64
    ROWS = 8

    def _output_dtype(self, slices: list[_Slice]) -> np.dtype:
        """Integer type holding every rescaled value exactly, or float32."""
        if self.dtype == "float32":
            return np.dtype(np.float32)
        lo, hi = np.inf, -np.inf
        for s in slices:
            if s.slope != int(s.slope) or s.intercept != int(s.intercept):
                return np.dtype(np.float32)
            bits = min(s.bits_stored, s.dtype.itemsize * 8)
            smin, smax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if s.signed else (0, (1 << bits) - 1)
            ends = (smin * s.slope + s.intercept, smax * s.slope + s.intercept)
            lo, hi = min(lo, *ends), max(hi, *ends)
        for t in (np.int16, np.int32):
            if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
                return np.dtype(t)
        return np.dtype(np.float32)

    def _read_pixels(self, series: DicomSeries) -> np.ndarray:
        """The volume as a C-contiguous array indexed (x, y, z).

        Slices are (rows, cols) = (y, x) in the files; MONAI wants x first and contiguous memory
        (it copies anything else, slowly). Threads read blocks of slices into a small buffer and
        transpose each block into its z-range of the output, where it is still in cache.
        """
        slices = series.slices
        n, rows, cols = len(slices), slices[0].rows, slices[0].cols
        out_dtype = self._output_dtype(slices)
        # before allocating: every native slice must hold its pixels, the volume must fit the limit
        for s in slices:
            if s.pixel is not None:
                check_decoded_size(rows * cols * s.dtype.itemsize, s.path, stored=s.pixel.length, codec="raw",
                                   limit=None)
        check_decoded_size(rows * cols * n * out_dtype.itemsize, series.source, what=f"volume ({cols}x{rows}x{n})")
        out = np.empty((cols, rows, n), dtype=out_dtype)
        buf_dtype = np.result_type(*[s.dtype.newbyteorder("=") for s in slices])
        slopes = np.array([s.slope for s in slices]).astype(out_dtype)
        intercepts = np.array([s.intercept for s in slices]).astype(out_dtype)
        scale, shift = bool(np.any(slopes != 1)), bool(np.any(intercepts != 0))

        def load(k: int, dst: np.ndarray) -> None:
            s = slices[k]
            if s.pixel is not None:
                raw = dst if dst.dtype == s.dtype.newbyteorder("=") else np.empty((rows, cols), dtype=s.dtype)
                if s.pixel.length < raw.nbytes:
                    raise ImageReadError(
                        f"{s.path}: pixel data holds {s.pixel.length} bytes, {rows}x{cols} pixels of "
                        f"{s.dtype.itemsize} bytes need {raw.nbytes}"
                    )
                with open(s.path, "rb", buffering=0) as f:
                    f.seek(s.pixel.offset)
                    got = f.readinto(raw.reshape(-1).view(np.uint8))
                if got != raw.nbytes:
                    raise ImageReadError(f"{s.path}: truncated pixel data ({got} of {raw.nbytes} bytes)")
                if not s.dtype.isnative:
                    raw.byteswap(inplace=True)
                    raw = raw.view(raw.dtype.newbyteorder("="))
                raw = correct_unused_bits(raw, s.header)
            else:
                raw = decode_frame(read_dataset(s.path), s.path)
                if raw.shape != (rows, cols):
                    raise ImageReadError(f"{s.path}: decoded pixel data has shape {raw.shape}, expected {(rows, cols)}")
            if raw is not dst:
                np.copyto(dst, raw, casting="unsafe")

        step = max(8, self.BLOCK_BYTES // out.itemsize)

        def block(z0: int) -> None:
            z1 = min(n, z0 + step)
            buf = np.empty((z1 - z0, rows, cols), dtype=buf_dtype)
            for k in range(z0, z1):
                load(k, buf[k - z0])
            dst = out[:, :, z0:z1]
            for y0 in range(0, rows, self.ROWS):  # a few rows at a time: source and target stay in L1/L2
                np.copyto(dst[:, y0 : y0 + self.ROWS], buf[:, y0 : y0 + self.ROWS].transpose(2, 1, 0), casting="unsafe")
            if scale:
                dst *= slopes[z0:z1]
            if shift:
                dst += intercepts[z0:z1]

        starts = range(0, n, step)
        if self.workers > 1 and len(starts) > 1:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(starts))) as pool:
                list(pool.map(block, starts))
        else:
            for z0 in starts:
                block(z0)
        return out

    def _meta(self, s: DicomSeries, shape_xyz: tuple[int, ...]) -> dict:
        affine = affine_from_geometry(s.direction, s.spacing, s.origin, self.affine_lps_to_ras)
        meta = base_meta(affine, shape_xyz, None, "RAS" if self.affine_lps_to_ras else "LPS")
        meta["spacing"] = s.spacing.copy()
        h = s.slices[0].header
        meta.update(
            {
                "SeriesInstanceUID": s.series_uid,
                "StudyInstanceUID": str(h.get("StudyInstanceUID") or ""),
                "Modality": str(h.get("Modality") or ""),
                "SeriesDescription": str(h.get("SeriesDescription") or ""),
                "num_slices": len(s.slices),
                "slice_spacing_irregular": bool(s.irregular),
                "missing_slices": int(s.missing_slices),
                "other_series": len(s.others),
            }
        )
        return meta
