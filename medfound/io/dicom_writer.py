"""Write a volume as a DICOM series (one file per slice), the inverse of :class:`DicomSeriesReader`.

Used to turn NIfTI/NRRD volumes into DICOM for tests, benchmarks and demos, and for users who
must hand DICOM to a PACS-facing tool. The files are CT or MR Image Storage instances with
explicit VR little endian pixel data and the geometry of the given RAS affine.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data.utils import orientation_ras_lps
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from medfound.errors import ConfigError
from medfound.io._dicom import write_dataset
from medfound.utils import check_choice, make_rng

__all__ = ["write_dicom_series"]

_SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}


def _geometry(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Direction (columns = unit axes, LPS), spacing and origin (LPS) of a RAS affine."""
    lps = orientation_ras_lps(np.asarray(affine, dtype=np.float64))
    cols = lps[:3, :3]
    spacing = np.linalg.norm(cols, axis=0)
    if np.any(spacing <= 0):
        raise ConfigError(f"affine has a zero-length axis: {np.asarray(affine).tolist()}")
    direction = cols / spacing
    gram = direction.T @ direction
    if not np.allclose(gram, np.eye(3), atol=1e-4):
        raise ConfigError("affine axes are not orthogonal; a DICOM series cannot hold a sheared grid")
    return direction, spacing, lps[:3, 3]


def write_dicom_series(
    volume: np.ndarray,
    folder: str | os.PathLike,
    affine: np.ndarray | Sequence[Sequence[float]] | None = None,
    *,
    modality: str = "CT",
    rescale_slope: float = 1.0,
    rescale_intercept: float = 0.0,
    stored_dtype: str = "int16",
    bits_stored: int | None = None,
    order: str = "position",
    seed: int = 0,
    series_instance_uid: str | None = None,
    study_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_description: str = "written by medfound",
    series_number: int = 1,
    patient_id: str = "MEDFOUND",
    window: tuple[float, float] | None = None,
    file_prefix: str = "IM",
) -> list[Path]:
    """Write a 3D volume as a DICOM series, one file per slice.

    Parameters
    ----------
    volume
        Array of shape ``(X, Y, Z)`` in MONAI's index order (as :class:`DicomSeriesReader`,
        ``ITKReader`` and ``NibabelReader`` return it), in output units (e.g. HU).
    folder
        Destination folder (created if needed).
    affine
        4x4 RAS affine (MONAI convention); default identity (1 mm isotropic). Its axes must be
        orthogonal.
    modality
        ``"CT"`` or ``"MR"`` (sets the SOP class).
    rescale_slope, rescale_intercept
        Stored values are ``round((volume - intercept) / slope)``.
    stored_dtype
        ``"int16"`` or ``"uint16"`` (PixelRepresentation 1 or 0); values out of range raise.
    bits_stored
        BitsStored (default 16).
    order
        Instance numbers and file names follow slice ``"position"``, ``"reverse"`` order or a
        ``"shuffle"`` (seeded by ``seed``): readers must not rely on them.
    window
        Optional (center, width) stored as WindowCenter/WindowWidth.

    Returns
    -------
    list of Path
        The files, in slice-index order (``volume[..., k]`` went to the k-th path).

    Example
    -------
    >>> import numpy as np, tempfile
    >>> from medfound.io import write_dicom_series, DicomSeriesReader
    >>> vol = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2) - 1000
    >>> d = tempfile.mkdtemp()
    >>> _ = write_dicom_series(vol, d, np.diag([0.5, 0.5, 2.0, 1.0]))
    >>> r = DicomSeriesReader()
    >>> arr, meta = r.get_data(r.read(d))
    >>> bool((arr == vol).all()), meta["spacing"].tolist()
    (True, [0.5, 0.5, 2.0])
    """
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ConfigError(f"volume must be 3D (X, Y, Z), got shape {vol.shape}")
    if not np.all(np.isfinite(vol)):
        raise ConfigError("volume holds NaN or infinite values")
    modality = check_choice(modality, tuple(_SOP_CLASS), "modality")
    check_choice(stored_dtype, ("int16", "uint16"), "stored_dtype")
    check_choice(order, ("position", "reverse", "shuffle"), "order")
    if rescale_slope == 0:
        raise ConfigError("rescale_slope must not be 0")
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    direction, spacing, origin = _geometry(affine)

    info = np.iinfo(stored_dtype)
    bits = int(bits_stored or 16)
    lo, hi = (info.min, info.max) if bits == 16 else ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
                                                       if stored_dtype == "int16" else (0, (1 << bits) - 1))
    stored = np.rint((vol.astype(np.float64) - rescale_intercept) / rescale_slope)
    if stored.min() < lo or stored.max() > hi:
        raise ConfigError(
            f"volume range [{vol.min()}, {vol.max()}] does not fit {stored_dtype} with {bits} bits stored "
            f"after rescale (slope {rescale_slope}, intercept {rescale_intercept})"
        )
    stored = stored.astype(stored_dtype)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nx, ny, nz = vol.shape
    study = study_instance_uid or generate_uid()
    series = series_instance_uid or generate_uid()
    frame_ref = frame_of_reference_uid or generate_uid()
    now = datetime.datetime.now()
    numbers = np.arange(1, nz + 1)
    if order == "reverse":
        numbers = numbers[::-1]
    elif order == "shuffle":
        numbers = make_rng(seed, "write_dicom_series", "order").permutation(numbers)

    paths = []
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = _SOP_CLASS[modality]
        sop_uid = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = _SOP_CLASS[modality]
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame_ref
        ds.Modality = modality
        ds.PatientName = "medfound^written"
        ds.PatientID = patient_id
        ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
        ds.SeriesDescription = series_description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = int(numbers[k])
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in origin + k * spacing[2] * direction[:, 2]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([direction[:, 0], direction[:, 1]])]
        # PixelSpacing is (between rows, between columns) = (y spacing, x spacing)
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 1 if stored_dtype == "int16" else 0
        ds.RescaleIntercept = f"{rescale_intercept:g}"
        ds.RescaleSlope = f"{rescale_slope:g}"
        if modality == "CT":
            ds.RescaleType = "HU"
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
        # DICOM rows run along y, columns along x: the slice is stored (Y, X) in C order
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).astype("<" + np.dtype(stored_dtype).str[1:]).tobytes()
        path = folder / f"{file_prefix}{int(numbers[k]):05d}.dcm"
        write_dataset(ds, path)
        paths.append(path)
    return paths
