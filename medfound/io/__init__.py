"""medfound.io: native readers for medical images, as MONAI ``ImageReader`` subclasses.

- :class:`DicomSeriesReader`: CT/MR DICOM series -> 3D volume (sorted along the slice normal,
  SimpleITK's geometry, HU), fast.
- :class:`RadiographReader`: CR/DX/MG/XA radiographs through the full DICOM grayscale pipeline
  (modality LUT, VOI window/LUT, MONOCHROME1), compressed transfer syntaxes.
- :class:`MicroscopyReader`: TIFF/OME-TIFF/ImageJ, any axes -> channel-first, physical pixel
  size, regions of large images read tile by tile.
- :class:`PhotoReader`: PNG/JPEG photographs with EXIF orientation, channel-first.
- Checks and robustness: :func:`check_orientation`, :class:`CheckFinited`,
  :class:`CheckLabelMatchd`, :class:`SafeLoadImaged`, :class:`SkipBadCases`, :func:`scan_cases`.

Importing this package registers the reader names with MONAI, so ``LoadImage(reader=
"RadiographReader")`` works, without changing how a plain ``LoadImage()`` picks readers (see
:func:`register_readers`; set ``MEDFOUND_PREFER_READERS=1`` to opt in to auto-selection).

Example
-------
>>> from monai.transforms import LoadImaged
>>> import medfound.io
>>> load = LoadImaged("image", reader="RadiographReader", output="display")
"""

from __future__ import annotations

import os as _os

from medfound.io.checks import (
    CheckFinite,
    CheckFiniteD,
    CheckFinited,
    CheckFiniteDict,
    CheckLabelMatch,
    CheckLabelMatchD,
    CheckLabelMatchd,
    CheckLabelMatchDict,
    CheckOrientation,
    CheckOrientationD,
    CheckOrientationd,
    CheckOrientationDict,
)
from medfound.io.dicom_grayscale import (
    apply_lut,
    apply_modality_lut,
    lut_table,
    minmax,
    voi_window,
    window_values,
)
from medfound.io.dicom_series import (
    DicomSeries,
    DicomSeriesReader,
    read_series_header,
    scan_dicom_folder,
)
from medfound.io.dicom_writer import write_dicom_series
from medfound.io.microscopy import MicroscopyReader, read_tiff_region
from medfound.io.orientation import (
    OrientationReport,
    check_orientation,
    orientation_report,
    read_affine,
)
from medfound.io.photo import PhotoReader
from medfound.io.radiograph import RADIOGRAPH_MODALITIES, RadiographReader
from medfound.io.registry import MEDFOUND_READERS, register_readers, unregister_readers
from medfound.io.robust import (
    SafeLoadImage,
    SafeLoadImageD,
    SafeLoadImaged,
    SafeLoadImageDict,
    SkipBadCases,
    read_skip_report,
    root_cause,
    scan_cases,
)

register_readers(prefer=_os.environ.get("MEDFOUND_PREFER_READERS", "").strip().lower() in ("1", "true", "yes"))

__all__ = [
    "DicomSeriesReader", "DicomSeries", "scan_dicom_folder", "read_series_header", "write_dicom_series",
    "RadiographReader", "RADIOGRAPH_MODALITIES",
    "apply_modality_lut", "voi_window", "lut_table", "apply_lut", "window_values", "minmax",
    "MicroscopyReader", "read_tiff_region", "PhotoReader",
    "OrientationReport", "orientation_report", "read_affine", "check_orientation",
    "CheckFinite", "CheckFinited", "CheckFiniteD", "CheckFiniteDict",
    "CheckLabelMatch", "CheckLabelMatchd", "CheckLabelMatchD", "CheckLabelMatchDict",
    "CheckOrientation", "CheckOrientationd", "CheckOrientationD", "CheckOrientationDict",
    "SafeLoadImage", "SafeLoadImaged", "SafeLoadImageD", "SafeLoadImageDict",
    "SkipBadCases", "scan_cases", "read_skip_report", "root_cause",
    "MEDFOUND_READERS", "register_readers", "unregister_readers",
]  # fmt: skip
