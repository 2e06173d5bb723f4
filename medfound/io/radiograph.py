"""Projection radiographs (CR, DX, MG, XA, RF, ...): :class:`RadiographReader`.

MONAI's DICOM readers apply the rescale at most: they ignore the VOI LUT, and disagree with each
other on MONOCHROME1. This reader runs the whole DICOM grayscale pipeline on the first (or a
chosen) frame, so that a chest film comes out as a radiologist sees it. The modality LUT and the
VOI window are pydicom's (:mod:`medfound.io.dicom_grayscale`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.utils import MetaKeys

from medfound.errors import ConfigError, ImageReadError, UnsupportedImageError
from medfound.io._common import PathLike, as_names, base_meta
from medfound.io._dicom import (
    PYDICOM_MAJOR,
    RADIOGRAPH_MODALITIES,
    decode_frame,
    is_dicom_file,
    read_dataset,
    read_header,
)
from medfound.io.dicom_grayscale import VOI_FUNCTIONS, modality_values, voi_lut_to_unit, window_to_unit, window_values
from medfound.io.limits import check_decoded_size, declared_size
from medfound.utils import check_bool, check_choice, check_float, check_int

__all__ = ["RadiographReader", "RADIOGRAPH_MODALITIES"]


@dataclass
class _Radiograph:
    path: str
    ds: Any


def _minmax(x: np.ndarray) -> np.ndarray:
    """Linear map of the image's own range to [0, 1] (a constant image maps to 0)."""
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.float32)
    return ((x.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)


def _spacing_pair(value: Any) -> tuple[float, float] | None:
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(vals) != 2 or not all(np.isfinite(vals)) or min(vals) <= 0:
        return None
    return vals[0], vals[1]


def _check_declared_size(path: str) -> None:
    """Refuse, from the header, pixel data the file cannot hold, and a decoded frame above the limit.

    All frames are checked against the file; the limit applies to what decoding allocates: one
    frame with pydicom 3, every frame with pydicom 2.4 (its ``pixel_array`` decodes them all).
    """
    declared = declared_size(path)
    if declared is None:
        return
    check_decoded_size(declared.nbytes, path, stored=declared.stored, codec=declared.codec,
                       encoded_nbytes=declared.encoded_nbytes, limit=None)
    frames = max(1, declared.frames)
    check_decoded_size(declared.nbytes // frames if PYDICOM_MAJOR >= 3 else declared.nbytes, path,
                       what="pixel data to decode")


class RadiographReader(ImageReader):
    """Read a projection radiograph through the full DICOM grayscale pipeline.

    stored values -> modality LUT (RescaleSlope/Intercept, or Modality LUT Sequence) -> VOI
    (stored window with VOI LUT Function LINEAR / LINEAR_EXACT / SIGMOID, or VOI LUT Sequence,
    or the image's own min-max) -> polarity (MONOCHROME1 or Presentation LUT Shape INVERSE are
    inverted, so that higher output is always brighter on screen).

    The array is 2D, indexed ``(x, y)`` = (column, row) like MONAI's readers, float32, without a
    channel dimension. The affine is an explicit 2D (3x3) affine with the pixel spacing on its
    diagonal (projection images have no patient coordinate frame).

    Parameters
    ----------
    output
        ``"display"`` (default): VOI applied, values in [0, 1], higher = brighter on screen.
        ``"modality"``: modality LUT applied only (e.g. raw detector units); the windows stay
        in the metadata and ``invert_for_display`` says whether the values must be inverted.
    voi
        ``"auto"`` (default: VOI LUT Sequence if present, else the stored window, else min-max),
        ``"window"``, ``"lut"`` or ``"none"`` (min-max of the image). ``"window"`` and ``"lut"``
        raise :class:`ImageReadError` for a file that lacks them.
    window_index
        Which stored window (or VOI LUT Sequence item) to apply when there are several.
    invert
        ``None`` (default) decides from the file; ``True``/``False`` forces the polarity (for
        files known to carry a wrong Photometric Interpretation).
    spacing_tags
        Attributes tried in order for the pixel spacing; a missing or ``[0, 0]`` value moves on
        to the next; when none is usable the spacing is ``default_spacing`` with a warning.
    default_spacing
        Spacing (mm) used when the file has none.
    frame
        Frame of a multi-frame file (default the first).

    Metadata (besides MONAI's ``affine``, ``original_affine``, ``spatial_shape``,
    ``original_channel_dim``, ``spacing``): ``Modality``, ``PhotometricInterpretation`` (as stored),
    ``PresentationLUTShape``, ``VOILUTFunction`` (``"LINEAR"`` if absent), ``WindowCenter`` and
    ``WindowWidth`` (lists of all stored windows in modality units, empty when none),
    ``intensity_units`` (``"display"`` or ``"modality"``), ``invert_for_display`` (always False for
    display output), ``voi_applied`` (``"lut"``, ``"window"``, ``"minmax"`` or ``"none"``),
    ``pixel_spacing_source`` (``"PixelSpacing"``, ``"ImagerPixelSpacing"``, ... or ``"default"``).

    Polarity: MONOCHROME1 means the minimum value is white. Presentation LUT Shape INVERSE in an
    image (DX, MG, ...) is the standard's companion of MONOCHROME1 ("shall be used if MONOCHROME1",
    PS3.3 C.8.11.7), not a second inversion, so the image is inverted once when either says so.

    The window lists differ in length between files; drop them before batching mixed files
    (``LoadImaged(..., prune_meta_pattern="^Window")``) or consume them in a transform first.

    Example
    -------
    >>> from monai.transforms import LoadImage
    >>> import medfound.io  # registers the reader names
    >>> img = LoadImage(reader="RadiographReader", ensure_channel_first=True)("chest.dcm")  # doctest: +SKIP
    >>> float(img.min()) >= 0.0 and float(img.max()) <= 1.0  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        output: str = "display",
        voi: str = "auto",
        window_index: int = 0,
        invert: bool | None = None,
        spacing_tags: Sequence[str] = ("PixelSpacing", "ImagerPixelSpacing"),
        default_spacing: float = 1.0,
        frame: int = 0,
    ) -> None:
        super().__init__()
        self.output = check_choice(output, ("display", "modality"), "output")
        self.voi = check_choice(voi, ("auto", "window", "lut", "none"), "voi")
        self.window_index = check_int(window_index, "window_index", low=0)
        self.invert = None if invert is None else check_bool(invert, "invert")
        self.spacing_tags = tuple(spacing_tags)
        self.default_spacing = check_float(default_spacing, "default_spacing", low=0.0, low_open=True)
        self.frame = check_int(frame, "frame", low=0)

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """True for DICOM files whose Modality is a projection radiography one (reads the header).

        Only consulted when medfound's readers are preferred for auto-selection.
        """
        names = as_names(filename)
        if not names or not all(os.path.isfile(n) and is_dicom_file(n) for n in names):
            return False
        try:
            return all(
                str(read_header(n, ["Modality"])[0].get("Modality", "")).upper() in RADIOGRAPH_MODALITIES for n in names
            )
        except ImageReadError:
            return False

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs) -> _Radiograph | list[_Radiograph]:
        """Read the DICOM file(s); a list of files is stacked as channels by :meth:`get_data`."""
        names = as_names(data)
        if not names:
            raise ImageReadError("RadiographReader: no file given")
        out = []
        for n in names:
            if os.path.isdir(n):
                raise ImageReadError(f"{n}: RadiographReader reads files, not folders (use DicomSeriesReader)")
            if not os.path.isfile(n):
                raise ImageReadError(f"{n}: no such file")
            out.append(_Radiograph(n, read_dataset(n)))
        return out if len(out) > 1 else out[0]

    def get_data(self, img: _Radiograph | Sequence[_Radiograph]) -> tuple[np.ndarray, dict]:
        """Run the grayscale pipeline: array ``(x, y)`` float32 and metadata."""
        items = [img] if isinstance(img, _Radiograph) else list(img)
        for i in items:  # here, not in read(): LoadImage would fall back to MONAI's readers
            _check_declared_size(i.path)
        results = [self._process(i.path, i.ds) for i in items]
        if len(results) == 1:
            return results[0]
        shape = results[0][0].shape
        for (arr, _), item in zip(results[1:], items[1:]):
            if arr.shape != shape:
                raise ImageReadError(f"{item.path}: shape {arr.shape} differs from {items[0].path} ({shape})")
        meta = dict(results[0][1])
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack([a for a, _ in results], axis=0), meta

    # -- pipeline ----------------------------------------------------------------------------
    def _process(self, path: str, ds: Any) -> tuple[np.ndarray, dict]:
        if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise ImageReadError(f"{path}: the DICOM file has no pixel data")
        pi = str(ds.get("PhotometricInterpretation", "") or "").strip()
        if pi.upper() not in ("MONOCHROME1", "MONOCHROME2"):
            raise UnsupportedImageError(
                f"{path}: photometric interpretation {pi or '(missing)'!r} is not supported by RadiographReader, "
                "which reads grayscale MONOCHROME1/MONOCHROME2 images (colour DICOM: monai.data.PydicomReader)"
            )
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if self.frame >= frames:
            raise ConfigError(f"{path}: frame {self.frame} requested, the file has {frames} frame(s)")
        stored = decode_frame(ds, path, self.frame)
        if stored.ndim != 2:
            raise ImageReadError(f"{path}: expected a 2D grayscale frame, decoded shape {stored.shape}")
        values = modality_values(stored, ds, path)
        if not np.all(np.isfinite(values)):
            raise ImageReadError(f"{path}: the modality LUT produced NaN or infinite values")

        shape_lut = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
        invert = (pi.upper() == "MONOCHROME1" or shape_lut == "INVERSE") if self.invert is None else self.invert
        centers, widths = window_values(ds)
        function = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper() or "LINEAR"

        if self.output == "display":
            values, applied = self._voi(path, ds, values, centers, widths, function)
            if invert:
                values = 1.0 - values
            invert_for_display = False
        else:
            applied, invert_for_display = "none", bool(invert)

        sy, sx, source = self._spacing(path, ds)
        affine = np.diag([sx, sy, 1.0])
        arr = np.ascontiguousarray(values.T, dtype=np.float32)  # (rows, cols) -> MONAI's (x, y)
        meta = base_meta(affine, arr.shape, None)
        meta.update(
            {
                "Modality": str(ds.get("Modality", "") or ""),
                "PhotometricInterpretation": pi,
                "PresentationLUTShape": shape_lut,
                "VOILUTFunction": function,
                "WindowCenter": centers,
                "WindowWidth": widths,
                "intensity_units": self.output,
                "invert_for_display": invert_for_display,
                "voi_applied": applied,
                "pixel_spacing_source": source,
                "frame": self.frame,
            }
        )
        return arr, meta

    def _voi(
        self, path: str, ds: Any, x: np.ndarray, centers: list[float], widths: list[float], function: str
    ) -> tuple[np.ndarray, str]:
        seq = ds.get("VOILUTSequence")
        mode = self.voi
        if mode == "auto":
            mode = "lut" if seq else ("window" if centers else "none")
        if mode == "none":
            return _minmax(x), "minmax"
        if mode == "lut":
            if not seq:
                raise ImageReadError(f"{path}: voi='lut' but the file has no VOI LUT Sequence")
            if self.window_index >= len(seq):
                raise ConfigError(
                    f"{path}: window_index {self.window_index}, the VOI LUT Sequence has {len(seq)} item(s)"
                )
            return voi_lut_to_unit(x, ds, self.window_index, path), "lut"
        if not centers:
            raise ImageReadError(f"{path}: voi='window' but the file stores no WindowCenter/WindowWidth")
        if self.window_index >= len(centers):
            raise ConfigError(f"{path}: window_index {self.window_index}, the file stores {len(centers)} window(s)")
        if function not in VOI_FUNCTIONS:
            warnings.warn(f"{path}: unknown VOILUTFunction {function!r}; using LINEAR", stacklevel=4)
            ds.VOILUTFunction = "LINEAR"  # the reader's own copy of the header
        c, w = centers[self.window_index], widths[self.window_index]
        try:
            return window_to_unit(x, ds, self.window_index), "window"
        except (ValueError, TypeError, AttributeError, IndexError) as err:
            if self.voi == "window":
                raise ImageReadError(f"{path}: invalid stored window (center {c}, width {w}): {err}") from err
            warnings.warn(f"{path}: invalid stored window (center {c}, width {w}); using min-max", stacklevel=4)
            return _minmax(x), "minmax"

    def _spacing(self, path: str, ds: Any) -> tuple[float, float, str]:
        for tag in self.spacing_tags:
            pair = _spacing_pair(ds.get(tag)) if tag in ds else None
            if pair is not None:
                return pair[0], pair[1], tag
        found = {t: ds.get(t) for t in self.spacing_tags if t in ds and ds.get(t) is not None}
        msg = (
            f"{path}: no usable pixel spacing ("
            + (", ".join(f"{k} {v}" for k, v in found.items()) or "none stored")
            + f"); using {self.default_spacing} mm"
        )
        warnings.warn(msg, stacklevel=4)
        return self.default_spacing, self.default_spacing, "default"
