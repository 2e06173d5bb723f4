"""medfound.io: native readers for medical images, as MONAI ``ImageReader`` subclasses.

- :class:`DicomSeriesReader`: CT/MR DICOM series -> 3D volume (sorted along the slice normal,
  SimpleITK's geometry, HU), fast.
- :class:`RadiographReader`: CR/DX/MG/XA radiographs through the full DICOM grayscale pipeline
  (modality LUT, VOI window/LUT, MONOCHROME1), compressed transfer syntaxes.
- :class:`MicroscopyReader`: TIFF/OME-TIFF/ImageJ, any axes -> channel-first, physical pixel
  size, regions of large images read tile by tile.
- :class:`PhotoReader`: PNG/JPEG photographs with EXIF orientation, channel-first.
- Robustness: :func:`check_orientation` (files, header only), :class:`SafeLoadImaged`,
  :class:`SkipBadCases`, :func:`scan_cases`; the check transforms (``CheckFinited``,
  ``CheckLabelMatchd``, ``CheckOrientationd``) are in :mod:`medfound.transforms.checks`.

Importing this package registers the reader names with MONAI, so ``LoadImage(reader=
"RadiographReader")`` works, without changing how a plain ``LoadImage()`` picks readers (see
:func:`register_readers`; set ``MEDFOUND_PREFER_READERS=1`` to opt in to auto-selection), and
silences MONAI's "nvImageCodec is not available" notice (:func:`quiet_nvimgcodec_notice`).

Example
-------
>>> from monai.transforms import LoadImaged
>>> import medfound.io
>>> load = LoadImaged("image", reader="RadiographReader", output="display")
"""

from __future__ import annotations

import os as _os

from medfound.io.dicom_grayscale import modality_values, voi_lut_to_unit, window_to_unit, window_values
from medfound.io.dicom_series import (
    DicomSeries,
    DicomSeriesReader,
    read_series_header,
    scan_dicom_folder,
)
from medfound.io.dicom_writer import write_dicom_series
from medfound.io.microscopy import MicroscopyReader, read_tiff_region
from medfound.io.orientation import check_orientation, read_affine
from medfound.io.photo import PhotoReader
from medfound.io.radiograph import RADIOGRAPH_MODALITIES, RadiographReader
from medfound.io.registry import MEDFOUND_READERS, quiet_nvimgcodec_notice, register_readers, unregister_readers
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
quiet_nvimgcodec_notice()

__all__ = [
    "DicomSeriesReader", "DicomSeries", "scan_dicom_folder", "read_series_header", "write_dicom_series",
    "RadiographReader", "RADIOGRAPH_MODALITIES",
    "modality_values", "window_to_unit", "voi_lut_to_unit", "window_values",
    "MicroscopyReader", "read_tiff_region", "PhotoReader",
    "read_affine", "check_orientation",
    "SafeLoadImage", "SafeLoadImaged", "SafeLoadImageD", "SafeLoadImageDict",
    "SkipBadCases", "scan_cases", "read_skip_report", "root_cause",
    "MEDFOUND_READERS", "register_readers", "unregister_readers", "quiet_nvimgcodec_notice",
]  # fmt: skip
