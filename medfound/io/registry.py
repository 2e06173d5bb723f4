"""Make medfound's readers known to MONAI's ``LoadImage`` by name, without changing auto-selection.

MONAI resolves ``LoadImage(reader="Name")`` through ``monai.transforms.io.array.SUPPORTED_READERS``
(lower-case keys), and a plain ``LoadImage()`` tries every entry of that dict from the *last* to
the first, taking the first whose ``verify_suffix`` accepts the file. So medfound inserts its
readers at the *front*: names resolve, while MONAI's own readers (``ITKReader`` accepts every
file) still win auto-selection, and ``import medfound.io`` does not change how a plain
``LoadImage()`` reads anybody's PNG, DICOM or TIFF files.

``register_readers(prefer=True)`` (or the environment variable ``MEDFOUND_PREFER_READERS=1`` at
import) opts in to the opposite: medfound's readers go to the end and are tried first by suffix
and content (DICOM folders and CT/MR files -> DicomSeriesReader, CR/DX/MG/XA/RF files ->
RadiographReader, TIFF -> MicroscopyReader, PNG/JPEG/BMP -> PhotoReader).

:func:`quiet_nvimgcodec_notice` silences the one MONAI notice that every ``LoadImage`` construction
prints when the optional GPU DICOM decoder is missing (``import medfound.io`` and the ``medfound``
command call it).
"""

from __future__ import annotations

import logging
import os
import warnings

from monai.transforms.io.array import SUPPORTED_READERS

from medfound.io.dicom_series import DicomSeriesReader
from medfound.io.microscopy import MicroscopyReader
from medfound.io.photo import PhotoReader
from medfound.io.radiograph import RadiographReader

__all__ = ["MEDFOUND_READERS", "register_readers", "unregister_readers", "quiet_nvimgcodec_notice"]

#: registry keys (MONAI looks names up lower-cased) -> reader classes; auto-selection tries the last first
MEDFOUND_READERS = {
    "photoreader": PhotoReader,
    "microscopyreader": MicroscopyReader,
    "dicomseriesreader": DicomSeriesReader,
    "radiographreader": RadiographReader,
}


def register_readers(prefer: bool = False) -> None:
    """Register medfound's readers in MONAI's reader registry (idempotent).

    Parameters
    ----------
    prefer
        ``False`` (what ``import medfound.io`` does): names resolve
        (``LoadImage(reader="RadiographReader")``), auto-selection is unchanged. ``True``: plain
        ``LoadImage()`` picks medfound's readers first for the files they claim.

    Example
    -------
    >>> from monai.transforms import LoadImage
    >>> from medfound.io import register_readers, RadiographReader
    >>> register_readers()
    >>> any(isinstance(r, RadiographReader) for r in LoadImage(reader="RadiographReader").readers)
    True
    """
    others = [(k, v) for k, v in SUPPORTED_READERS.items() if k not in MEDFOUND_READERS]
    SUPPORTED_READERS.clear()
    if prefer:
        SUPPORTED_READERS.update(others)
        SUPPORTED_READERS.update(MEDFOUND_READERS)
    else:
        SUPPORTED_READERS.update(MEDFOUND_READERS)
        SUPPORTED_READERS.update(others)


def unregister_readers() -> None:
    """Remove medfound's readers from MONAI's registry (names no longer resolve)."""
    for key in MEDFOUND_READERS:
        SUPPORTED_READERS.pop(key, None)


_NVIMGCODEC_LOGGER = "monai.data.nvimgcodec_pydicom_plugin"
_NVIMGCODEC_NOTICE = "nvImageCodec is not available"
_NVIMGCODEC_WARNING = "NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register"


class _NvImageCodecNotice(logging.Filter):
    """Drops MONAI's "nvImageCodec is not available" log record; passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_NVIMGCODEC_NOTICE)


def quiet_nvimgcodec_notice() -> None:
    """Silence MONAI's notice that the optional nvImageCodec GPU DICOM decoder is not installed.

    MONAI 1.6's ``LoadImage``/``LoadImaged`` construct every registered reader, also when a reader
    is named explicitly, and its ``NvImgCodecPydicomReader`` logs "nvImageCodec is not available;
    skipping pydicom decoder plugin registration." (and warns once) each time nvImageCodec is
    missing: a quarter of the output of a demo run. This drops exactly that log record and that
    warning, nothing else, and leaves both alone when ``MONAI_DICOM_READER=nvimgcodec`` asks for
    that reader. Idempotent.

    Example
    -------
    >>> import logging
    >>> quiet_nvimgcodec_notice()
    >>> any(isinstance(f, _NvImageCodecNotice) for f in logging.getLogger(_NVIMGCODEC_LOGGER).filters)
    True
    """
    if os.environ.get("MONAI_DICOM_READER", "").strip().lower() == "nvimgcodec":
        return
    logger = logging.getLogger(_NVIMGCODEC_LOGGER)
    if not any(isinstance(f, _NvImageCodecNotice) for f in logger.filters):
        logger.addFilter(_NvImageCodecNotice())
    warnings.filterwarnings("ignore", message=_NVIMGCODEC_WARNING, category=UserWarning)
