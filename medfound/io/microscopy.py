"""Microscopy TIFF / OME-TIFF / ImageJ TIFF: :class:`MicroscopyReader` (tifffile).

Any axes tifffile reports (YX, CYX, YXS, ZYX, CZYX, TCZYX, ...) become MONAI's channel-first
layout ``(C, X, Y[, Z])`` (one channel: ``(X, Y[, Z])``, as MONAI's readers return grey images);
the physical pixel size (OME PhysicalSizeX/Y/Z, ImageJ calibration or
TIFF resolution) becomes the affine's spacing. A region of a large image is read tile by tile
(or strip by strip): only the segments that overlap the region are read and decoded.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile
from monai.data import ImageReader

from medfound.errors import (
    ConfigError,
    ImageReadError,
    NonFiniteImageError,
    UnsupportedImageError,
)
from medfound.io._common import (
    PathLike,
    as_names,
    base_meta,
    has_suffix,
    squeeze_single_channel,
)
from medfound.io.limits import TIFF_CODECS, check_decoded_size
from medfound.utils import check_bool, check_choice, check_int

__all__ = ["MicroscopyReader", "read_tiff_region", "TIFF_SUFFIXES"]

TIFF_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf", ".tf8", ".ome.btf")

#: length units -> micrometres
_UNITS_UM = {
    "pm": 1e-6, "å": 1e-4, "angstrom": 1e-4, "nm": 1e-3, "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0,
    "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0, "\\u00b5m": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6,
    "in": 25400.0, "inch": 25400.0,
}  # fmt: skip
_OUT_UNITS = {"nm": 1e-3, "um": 1.0, "mm": 1e3}


@dataclass
class _TiffSource:
    path: str
    tif: tifffile.TiffFile | None = None


def _unit_um(unit: Any) -> float | None:
    if unit is None:
        return 1.0
    return _UNITS_UM.get(str(unit).strip().lower())


def _ome_sizes(tif: tifffile.TiffFile, series: int) -> dict[str, float]:
    """PhysicalSizeX/Y/Z of OME Image ``series`` in micrometres (absent sizes left out)."""
    xml = tif.ome_metadata
    if not xml:
        return {}
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    images = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Image"]
    if series >= len(images):
        return {}
    pixels = next((el for el in images[series] if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    out = {}
    for ax in "XYZ":
        value = pixels.get(f"PhysicalSize{ax}") if pixels is not None else None
        scale = _unit_um(pixels.get(f"PhysicalSize{ax}Unit")) if pixels is not None else None
        try:
            if value is not None and scale is not None and float(value) > 0:
                out[ax] = float(value) * scale
        except ValueError:
            pass
    return out


def _resolution_sizes(tif: tifffile.TiffFile, page: Any) -> tuple[dict[str, float], str | None]:
    """Pixel sizes (um) from ImageJ calibration or TIFF resolution tags, and their source."""
    try:
        xres, yres = page.resolution
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return {}, None
    ij = tif.imagej_metadata or {}
    out: dict[str, float] = {}
    if ij and ij.get("unit") is not None:
        scale = _unit_um(ij.get("unit"))
        if scale is None:
            return {}, None
        if xres > 0 and yres > 0:
            out["X"], out["Y"] = scale / xres, scale / yres
        if ij.get("spacing"):
            out["Z"] = float(ij["spacing"]) * scale
        return out, "ImageJ"
    unit = int(getattr(page, "resolutionunit", 1) or 1)
    per_unit = {2: 25400.0, 3: 10000.0}.get(unit)  # inch, centimetre
    if per_unit is None or not (xres > 0 and yres > 0):
        return {}, None
    return {"X": per_unit / xres, "Y": per_unit / yres}, "TIFF resolution"


def _segment_grid(page: Any) -> tuple[str, tuple[int, ...]] | None:
    """How a page is cut into segments: ("tile", (th, tw, n_ty, n_tx)) or ("strip", (rps, n_strips))."""
    shaped = page.shaped  # (separate samples, depth, length, width, contig samples)
    if shaped[1] != 1:
        return None
    n_seg = len(page.dataoffsets)
    sep = shaped[0]
    if page.is_tiled:
        th, tw = page.tilelength, page.tilewidth
        n_ty, n_tx = math.ceil(shaped[2] / th), math.ceil(shaped[3] / tw)
        if n_seg != sep * n_ty * n_tx or getattr(page, "tiledepth", 1) not in (1, None):
            return None
        return "tile", (th, tw, n_ty, n_tx)
    rps = min(int(page.rowsperstrip or shaped[2]), shaped[2])
    n_strips = math.ceil(shaped[2] / rps)
    if n_seg != sep * n_strips:
        return None
    return "strip", (rps, n_strips)


def read_tiff_region(page: Any, y0: int, y1: int, x0: int, x1: int, fh: Any = None) -> np.ndarray:
    """Read rows ``y0:y1`` and columns ``x0:x1`` of a TIFF page, decoding only overlapping segments.

    Returns an array ``(samples, y1 - y0, x1 - x0)``. Falls back to decoding the whole page for
    layouts it does not handle (tiles with depth).

    Example
    -------
    >>> import tifffile
    >>> with tifffile.TiffFile("big.tif") as tif:  # doctest: +SKIP
    ...     crop = read_tiff_region(tif.pages[0], 1000, 1256, 2000, 2256)
    """
    keyframe = getattr(page, "keyframe", page)
    shaped = keyframe.shaped
    sep, contig = shaped[0], shaped[4]
    grid = _segment_grid(keyframe)
    if grid is None:
        full = page.asarray()
        full = full.reshape(shaped[0], shaped[2], shaped[3], shaped[4])
        return np.moveaxis(full, -1, 1).reshape(sep * contig, shaped[2], shaped[3])[:, y0:y1, x0:x1].copy()
    fh = fh if fh is not None else page.parent.filehandle
    decode = keyframe.decode
    out = np.zeros((sep, y1 - y0, x1 - x0, contig), dtype=keyframe.dtype)
    offsets, counts = page.dataoffsets, page.databytecounts
    kind, g = grid
    jpegtables = getattr(keyframe, "jpegtables", None)

    def place(index: int, top: int, left: int) -> None:
        data = None
        if counts[index]:
            fh.seek(offsets[index])
            data = fh.read(counts[index])
        seg, _, _ = decode(data, index, jpegtables=jpegtables)
        if seg is None:  # an empty segment keeps the fill value 0
            return
        seg = seg.reshape(seg.shape[-3], seg.shape[-2], seg.shape[-1])
        ys, xs = max(y0, top), max(x0, left)
        ye, xe = min(y1, top + seg.shape[0]), min(x1, left + seg.shape[1])
        if ye > ys and xe > xs:
            out[s, ys - y0 : ye - y0, xs - x0 : xe - x0] = seg[ys - top : ye - top, xs - left : xe - left]

    for s in range(sep):
        if kind == "tile":
            th, tw, n_ty, n_tx = g
            for ty in range(y0 // th, (y1 - 1) // th + 1):
                for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                    place((s * n_ty + ty) * n_tx + tx, ty * th, tx * tw)
        else:
            rps, n_strips = g
            for sy in range(y0 // rps, (y1 - 1) // rps + 1):
                place(s * n_strips + sy, sy * rps, 0)
    return np.moveaxis(out, -1, 1).reshape(sep * contig, y1 - y0, x1 - x0)


class MicroscopyReader(ImageReader):
    """Read microscopy TIFF / OME-TIFF / ImageJ hyperstacks into channel-first ``(C, X, Y[, Z])``.

    Channels (C) and samples (S, e.g. RGB) form the channel axis; a time axis (T) is reduced to
    one time point; Z stays a spatial axis. Several channels come channel-first with
    ``original_channel_dim`` 0; a single channel has no channel axis (``original_channel_dim``
    "no_channel", as MONAI's readers give grey images, and what MONAI's writers need);
    ``ensure_channel_first=True`` gives ``(1, X, Y[, Z])``. The affine holds the physical pixel size (default
    unit micrometres), taken from, in order: the ``pixel_size`` argument, OME PhysicalSizeX/Y/Z,
    ImageJ calibration, TIFF resolution tags with an inch/cm unit; else 1.0 (recorded as
    ``pixel_size_source="default"``).

    Parameters
    ----------
    series
        Index of the series (OME Image) to read.
    level
        Pyramid level (0 = full resolution); pixel sizes scale with the level.
    axes
        Override tifffile's axes string (same length), e.g. ``"ZYX"`` for a plain multi-page
        stack that tifffile calls ``"IYX"``. Unknown axes of size > 1 (I, Q) are read as Z with
        a warning unless Z exists.
    channels
        Channel index or list of indices to keep (default all).
    time_index
        Time point to read when there is a T axis.
    roi_start, roi_end
        Region to read, in output spatial order ``(x, y[, z])``, end exclusive; only the tiles
        or strips overlapping it are read. The affine's origin moves to the region's corner.
    pixel_size
        Physical pixel size ``(x, y[, z])`` in ``unit``, overriding the file.
    unit
        ``"um"`` (default), ``"nm"`` or ``"mm"``: unit of the affine.
    check_finite
        Raise :class:`NonFiniteImageError` when float data holds NaN/inf.

    Example
    -------
    >>> from monai.transforms import LoadImage
    >>> import medfound.io
    >>> load = LoadImage(reader="MicroscopyReader", roi_start=(0, 0), roi_end=(256, 256))
    >>> img = load("slide.ome.tif")  # doctest: +SKIP
    >>> img.shape, img.meta["pixel_size_source"]  # doctest: +SKIP
    (torch.Size([3, 256, 256]), 'OME')
    """

    def __init__(
        self,
        series: int = 0,
        level: int = 0,
        axes: str | None = None,
        channels: int | Sequence[int] | None = None,
        time_index: int = 0,
        roi_start: Sequence[int] | None = None,
        roi_end: Sequence[int] | None = None,
        pixel_size: Sequence[float] | None = None,
        unit: str = "um",
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        self.series = check_int(series, "series", low=0)
        self.level = check_int(level, "level", low=0)
        self.axes = axes.upper() if axes else None
        self.channels = (
            None if channels is None else ([int(channels)] if np.isscalar(channels) else [int(c) for c in channels])
        )
        self.time_index = check_int(time_index, "time_index", low=0)
        if (roi_start is None) != (roi_end is None):
            raise ConfigError("roi_start and roi_end must be given together")
        self.roi_start = None if roi_start is None else [int(v) for v in roi_start]
        self.roi_end = None if roi_end is None else [int(v) for v in roi_end]
        if self.roi_start is not None and len(self.roi_start) != len(self.roi_end):
            raise ConfigError(f"roi_start {roi_start} and roi_end {roi_end} differ in length")
        self.pixel_size = None if pixel_size is None else [float(v) for v in pixel_size]
        if self.pixel_size is not None and min(self.pixel_size) <= 0:
            raise ConfigError(f"pixel_size must be positive, got {pixel_size}")
        self.unit = check_choice(unit, tuple(_OUT_UNITS), "unit")
        self.check_finite = check_bool(check_finite, "check_finite")

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """True for ``.tif``, ``.tiff``, ``.ome.tif(f)``, ``.btf``, ``.tf8`` files."""
        return has_suffix(filename, TIFF_SUFFIXES)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs) -> _TiffSource | list[_TiffSource]:
        """Open the TIFF file(s) (structure only; pixels are read by :meth:`get_data`, which closes them).

        A list of files is stacked as channels. A file that is not a TIFF fails here, so that
        ``LoadImage`` moves on to its next reader.
        """
        names = as_names(data)
        if not names:
            raise ImageReadError("MicroscopyReader: no file given")
        out = []
        for n in names:
            if not os.path.isfile(n):
                raise ImageReadError(f"{n}: no such file")
            try:
                out.append(_TiffSource(n, tifffile.TiffFile(n)))
            except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError, EOFError, struct.error) as err:
                for o in out:
                    o.tif.close()
                raise ImageReadError(f"{n}: not a readable TIFF ({type(err).__name__}: {err})") from err
        return out if len(out) > 1 else out[0]

    def get_data(self, img: _TiffSource | Sequence[_TiffSource]) -> tuple[np.ndarray, dict]:
        """Array ``(C, X, Y[, Z])`` (one channel: ``(X, Y[, Z])``) in the stored dtype, and metadata."""
        items = [img] if isinstance(img, _TiffSource) else list(img)
        try:
            results = [self._read_one(i.path, i.tif) for i in items]
        finally:
            for i in items:
                if i.tif is not None:
                    i.tif.close()
        shape = results[0][0].shape[1:]
        for (arr, _), item in zip(results[1:], items[1:]):
            if arr.shape[1:] != shape:
                raise ImageReadError(
                    f"{item.path}: spatial shape {arr.shape[1:]} differs from {items[0].path} ({shape})"
                )
        arr = results[0][0] if len(results) == 1 else np.concatenate([a for a, _ in results], axis=0)
        return squeeze_single_channel(arr, dict(results[0][1]))

    # -- internals -------------------------------------------------------------------------
    def _read_one(self, path: str, tif: tifffile.TiffFile | None = None) -> tuple[np.ndarray, dict]:
        try:
            with tif if tif is not None else tifffile.TiffFile(path) as t:
                return self._read_tif(t, path)
        except (ImageReadError, ConfigError):
            raise
        except (KeyError, ValueError, NotImplementedError, ImportError) as err:
            msg = str(err)
            if "imagecodecs" in msg or "compression" in msg.lower() or isinstance(err, NotImplementedError):
                raise UnsupportedImageError(f"{path}: cannot decode this TIFF ({msg})") from err
            raise ImageReadError(f"{path}: cannot read the TIFF ({type(err).__name__}: {msg})") from err
        except (tifffile.TiffFileError, OSError, EOFError, IndexError, struct.error) as err:
            raise ImageReadError(f"{path}: not a readable TIFF ({type(err).__name__}: {err})") from err

    def _axes(self, series: Any, path: str) -> str:
        axes = series.axes.upper()
        if self.axes is not None:
            if len(self.axes) != len(axes):
                raise ConfigError(
                    f"{path}: axes override {self.axes!r} has {len(self.axes)} letters, the data {axes!r}"
                )
            return self.axes
        return axes

    def _read_tif(self, tif: tifffile.TiffFile, path: str) -> tuple[np.ndarray, dict]:
        if not tif.series:
            raise ImageReadError(f"{path}: the TIFF holds no image series")
        if self.series >= len(tif.series):
            raise ConfigError(f"{path}: series {self.series} requested, the file has {len(tif.series)}")
        base = tif.series[self.series]
        levels = getattr(base, "levels", [base]) or [base]
        if self.level >= len(levels):
            raise ConfigError(f"{path}: level {self.level} requested, the series has {len(levels)}")
        series = levels[self.level]
        axes = self._axes(series, path)
        shape = tuple(series.shape)
        # -- role of every axis: spatial (Z, Y, X), channel (C, S), time (T), other
        roles = {}
        has_z = "Z" in axes
        for i, a in enumerate(axes):
            if a in "YX":
                roles[i] = a
            elif a == "Z":
                roles[i] = "Z"
            elif a in "CS":
                roles[i] = "C"
            elif a == "T":
                roles[i] = "T"
            elif shape[i] == 1:
                roles[i] = "drop"
            elif not has_z:
                warnings.warn(
                    f"{path}: reading axis {a!r} (size {shape[i]}) as Z; pass axes=... to say otherwise", stacklevel=4
                )
                roles[i], has_z = "Z", True
            else:
                raise UnsupportedImageError(
                    f"{path}: axis {a!r} of size {shape[i]} in {axes!r} has no meaning here; pass axes=... to map it"
                )
        if list(roles.values()).count("Y") != 1 or list(roles.values()).count("X") != 1:
            raise UnsupportedImageError(f"{path}: axes {axes!r} lack a Y and an X axis")
        if list(roles.values()).count("T") > 1 or list(roles.values()).count("Z") > 1:
            raise UnsupportedImageError(f"{path}: axes {axes!r} have several T or Z axes")
        yi = next(k for k, v in roles.items() if v == "Y")
        xi = next(k for k, v in roles.items() if v == "X")
        zi = next((k for k, v in roles.items() if v == "Z"), None)
        ti = next((k for k, v in roles.items() if v == "T"), None)
        if ti is not None and not 0 <= self.time_index < shape[ti]:
            raise ConfigError(f"{path}: time_index {self.time_index}, the series has {shape[ti]} time points")

        # -- region in (x, y[, z]) -> per-axis slices
        size = {"X": shape[xi], "Y": shape[yi], "Z": shape[zi] if zi is not None else 1}
        start = {"X": 0, "Y": 0, "Z": 0}
        stop = dict(size)
        if self.roi_start is not None:
            nsp = 3 if zi is not None else 2
            if len(self.roi_start) not in (2, nsp):
                raise ConfigError(f"{path}: roi of {len(self.roi_start)} values for {nsp} spatial axes")
            for ax, s0, s1 in zip("XYZ", self.roi_start, self.roi_end):
                if not 0 <= s0 < s1 <= size[ax]:
                    raise ConfigError(f"{path}: roi [{s0}, {s1}) outside axis {ax} of size {size[ax]}")
                start[ax], stop[ax] = s0, s1

        self._check_size(series, path, shape, roles, xi, yi, zi, start, stop)
        data = self._read_array(tif, series, path, shape, roles, xi, yi, zi, ti, start, stop)
        # data is in file axis order with T reduced and dropped axes removed; build (C, X, Y[, Z])
        kept = [i for i in range(len(axes)) if roles[i] not in ("T", "drop")]
        order_c = [i for i in kept if roles[i] == "C"]
        spatial = [xi, yi] + ([zi] if zi is not None else [])
        perm = [kept.index(i) for i in order_c + spatial]
        arr = np.transpose(data, perm)
        n_c = int(np.prod([arr.shape[k] for k in range(len(order_c))])) if order_c else 1
        arr = arr.reshape((n_c,) + arr.shape[len(order_c) :])
        if self.channels is not None:
            bad = [c for c in self.channels if not -n_c <= c < n_c]
            if bad:
                raise ConfigError(f"{path}: channels {bad} requested, the image has {n_c}")
            arr = arr[self.channels]
        arr = np.ascontiguousarray(arr)
        if self.check_finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise NonFiniteImageError(f"{path}: the image holds {int((~np.isfinite(arr)).sum())} NaN/inf values")

        sizes, source = self._pixel_sizes(tif, base, series, path, xi, yi, zi is not None)
        spacing = [sizes[a] for a in ("XYZ" if zi is not None else "XY")]
        affine = np.diag(spacing + [1.0])
        affine[: len(spacing), -1] = [start[a] * sp for a, sp in zip("XYZ", spacing)]
        meta = base_meta(affine, arr.shape[1:], 0)  # single channels are squeezed in get_data
        meta.update(
            {
                "axes": axes,
                "pixel_size_source": source,
                "pixel_size_unit": self.unit,
                "series": self.series,
                "level": self.level,
                "roi_start": np.array([start[a] for a in ("XYZ" if zi is not None else "XY")]),
                "num_channels": int(arr.shape[0]),
            }
        )
        return arr, meta

    def _pixel_sizes(
        self, tif: tifffile.TiffFile, base: Any, series: Any, path: str, xi: int, yi: int, has_z: bool
    ) -> tuple[dict[str, float], str]:
        """Pixel size per axis in the output unit, and where it came from."""
        need = "XYZ" if has_z else "XY"
        if self.pixel_size is not None:
            if len(self.pixel_size) < len(need):
                raise ConfigError(f"{path}: pixel_size {self.pixel_size} has fewer values than spatial axes ({need})")
            return dict(zip("XYZ", self.pixel_size)), "user"
        sizes, source = _ome_sizes(tif, self.series), "OME"
        if "X" not in sizes or "Y" not in sizes:
            sizes, source = _resolution_sizes(tif, base.keyframe)
        if not sizes or "X" not in sizes or "Y" not in sizes:
            return {a: 1.0 for a in "XYZ"}, "default"
        # pyramid levels downsample X and Y
        sizes = dict(sizes)
        sizes["X"] *= base.shape[xi] / series.shape[xi]
        sizes["Y"] *= base.shape[yi] / series.shape[yi]
        scale = _OUT_UNITS[self.unit]
        out = {a: v / scale for a, v in sizes.items()}
        out.setdefault("Z", 1.0)
        return out, source

    def _check_size(self, series, path, shape, roles, xi, yi, zi, start, stop) -> None:
        """Refuse, before decoding, a series its file cannot hold or a read above the memory limit.

        The whole series is checked against the file (decoded bytes against what the stored
        bytes can expand to with the pages' compression, :mod:`medfound.io.limits`); the limit
        applies to what this read allocates: the whole series when the region is the whole image
        (tifffile decodes every time point before one is picked), else the region.
        """
        itemsize = np.dtype(series.dtype).itemsize
        key = series.keyframe
        full = math.prod(shape)
        check_decoded_size(full * itemsize, path, stored=os.path.getsize(path),
                           codec=TIFF_CODECS.get(int(key.compression)),
                           encoded_nbytes=math.ceil(full * int(key.bitspersample) / 8), limit=None)
        whole = (all(start[a] == 0 for a in "XYZ") and stop["X"] == shape[xi] and stop["Y"] == shape[yi]
                 and (zi is None or stop["Z"] == shape[zi]))
        region = full
        if not whole:
            region = 1
            for i, n in enumerate(shape):
                r = roles[i]
                region *= (stop[r] - start[r]) if r in ("X", "Y", "Z") else (1 if r in ("T", "drop") else n)
        check_decoded_size(region * itemsize, path, what="pixel data to read (large images: read a region "
                           "with roi_start/roi_end)")

    def _read_array(self, tif, series, path, shape, roles, xi, yi, zi, ti, start, stop) -> np.ndarray:
        """The (region of the) series in file axis order, T reduced, dropped axes removed."""
        full_region = (
            all(start[a] == 0 for a in "XYZ")
            and stop["X"] == shape[xi]
            and stop["Y"] == shape[yi]
            and (zi is None or stop["Z"] == shape[zi])
        )
        index: list[Any] = []
        for i in range(len(shape)):
            r = roles[i]
            if r == "T":
                index.append(self.time_index)
            elif r == "drop":
                index.append(0)
            elif r in "XYZ":
                index.append(slice(start[r], stop[r]))
            else:
                index.append(slice(None))
        index_t = tuple(index)
        if full_region:
            return np.asarray(series.asarray())[index_t]
        # region: pages hold the trailing page axes (YX, YXS or SYX); the leading axes index pages
        key = series.keyframe
        n_page_axes = len(key.shape)
        outer = shape[: len(shape) - n_page_axes]
        pages = series.pages
        if (
            len(pages) != int(np.prod(outer))
            or any(p is None for p in pages)
            or key.axes.upper().replace("S", "") != "YX"
        ):
            # contiguous ImageJ/shaped files or unusual layouts: a memory map reads only what is sliced
            try:
                mm = tifffile.memmap(path, series=self.series, level=self.level, mode="r")
            except ValueError:
                mm = series.asarray()  # compressed without page structure: decode all (rare)
            return np.asarray(mm[index_t])
        page_axes = key.axes.upper()
        y0, y1, x0, x1 = start["Y"], stop["Y"], start["X"], stop["X"]
        outer_index = index_t[: len(outer)]
        sel = np.arange(int(np.prod(outer))).reshape(outer)[outer_index] if outer else np.array(0)
        fh = tif.filehandle
        planes = [read_tiff_region(pages[int(k)], y0, y1, x0, x1, fh) for k in np.ravel(sel)]
        block = np.stack(planes, axis=0).reshape(np.shape(sel) + planes[0].shape)  # outer..., S, y, x
        # restore the page axes order (YX, YXS or SYX) after the outer axes
        if page_axes == "YXS":
            block = np.moveaxis(block, -3, -1)
        elif page_axes == "YX":
            block = block[..., 0, :, :]
        return block
