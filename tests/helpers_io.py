"""Helpers shared by the io tests (imported as a plain module: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

IO_DATA = Path(__file__).parent / "data" / "io"


def dicom_testfile(name: str) -> str:
    """Path of a real DICOM file shipped by pydicom or by pydicom-data (the `test` extra), no network.

    ``pydicom.data.get_testdata_file`` is avoided: it may try to download, and with pydicom 2.4
    it needs ``pkg_resources``.
    """
    import pydicom

    dirs = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # the package pydicom-data installs

        dirs.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    for d in dirs:
        p = d / name
        if p.is_file():
            return str(p)
    raise FileNotFoundError(f"{name} not found in {dirs}; install the test extra (pydicom-data)")


def lung_crop() -> tuple[np.ndarray, np.ndarray]:
    """The committed real CT crop: volume (x, y, z) float32 in HU and its RAS affine."""
    import nibabel as nib

    img = nib.load(str(IO_DATA / "lung1_ct_crop.nii.gz"))
    return np.asarray(img.dataobj).astype(np.float32), np.asarray(img.affine, dtype=np.float64)


def oblique_affine(spacing=(0.57, 0.6, 2.5), origin=(10.0, -20.0, 30.0), deg=(20.0, 10.0)) -> np.ndarray:
    """A rotated (oblique) RAS affine with the given spacing."""
    a, b = np.deg2rad(deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    out = np.eye(4)
    out[:3, :3] = rz @ rx @ np.diag(spacing)
    out[:3, 3] = origin
    return out


def sitk_series(folder: str):
    """SimpleITK's reading of a DICOM series folder (the geometry reference)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(os.fspath(folder)))
    return reader.Execute()
