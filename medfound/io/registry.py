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
"""

from __future__ import annotations

from monai.transforms.io.array import SUPPORTED_READERS

from medfound.io.dicom_series import DicomSeriesReader
from medfound.io.microscopy import MicroscopyReader
from medfound.io.photo import PhotoReader
from medfound.io.radiograph import RadiographReader

__all__ = ["MEDFOUND_READERS", "register_readers", "unregister_readers"]

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
