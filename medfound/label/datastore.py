"""MONAI Label's local datastore, with DICOM series folders as images: :class:`SeriesDatastore`.

MONAI Label's :class:`~monailabel.datastore.local.LocalDatastore` lists the files of the
studies folder that match its extensions; a DICOM series is a folder of slice files, which
it does not list (MONAI Label serves series through a DICOMweb server). This subclass also
lists each sub-folder holding DICOM files (other than ``labels/`` and hidden folders) as one
image whose id is the folder name; ``get_image_uri`` then gives the folder, which the
bundles' readers load as a volume and for which the infer task returns a DICOM-SEG.

It overrides the one listing method of ``LocalDatastore`` (``_list_files``); everything else
(labels, image info, reconciling, the datastore JSON file) is MONAI Label's.
"""

from __future__ import annotations

import os

from monailabel.datastore.local import LocalDatastore

__all__ = ["SeriesDatastore", "is_dicom_folder"]

_PREAMBLE_OFFSET = 128


def _is_dicom_file(path: str) -> bool:
    if path.lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(_PREAMBLE_OFFSET)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder whose first file (in name order) is DICOM (``.dcm`` or a ``DICM`` preamble).

    Example
    -------
    >>> import tempfile
    >>> is_dicom_folder(tempfile.mkdtemp())
    False
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        return False
    files = sorted(e.path for e in os.scandir(path) if e.is_file() and not e.name.startswith("."))
    return bool(files) and _is_dicom_file(files[0])


class SeriesDatastore(LocalDatastore):
    """A :class:`LocalDatastore` that also lists DICOM series folders of the studies folder as images."""

    def _list_files(self, path, patterns):
        found = super()._list_files(path, patterns)
        labels = os.path.basename(os.path.normpath(self._datastore.label_path(None)))
        for entry in os.scandir(path):
            if entry.is_dir() and not entry.name.startswith(".") and entry.name != labels \
                    and entry.name not in found and is_dicom_folder(entry.path):
                found[entry.name] = entry.name
        return found
