"""Orientation checks of image files (NIfTI, NRRD, MHA, DICOM), from their headers only.

NIfTI and NRRD need no reader of medfound's own: MONAI's ``NibabelReader``/``ITKReader`` read them
well. What they do not do is tell you that an affine is oblique, left-handed, sheared or has
disagreeing qform/sform, which silently breaks resampling and slice sampling. :func:`read_affine`
reads a file's affine header-only and :func:`check_orientation` judges it with
:func:`medfound.transforms.checks.check_affine`, so a dataset can be screened before training.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import nibabel as nib
import numpy as np

from medfound.errors import ImageReadError
from medfound.io._common import PathLike, affine_from_geometry, suffix_of
from medfound.io.dicom_series import DicomSeriesReader
from medfound.transforms.checks import OrientationReport, check_affine
from medfound.utils import check_choice

__all__ = ["read_affine", "check_orientation"]


_HARD = "disagree"  # header notes that fail a check (the others are informational)


def read_affine(path: PathLike) -> tuple[np.ndarray, list[str]]:
    """RAS affine of an image file or DICOM folder from its header only, plus header notes.

    NIfTI goes through nibabel (also reporting qform/sform disagreement), DICOM folders and
    ``.dcm`` files through :class:`~medfound.io.DicomSeriesReader` (headers only), everything
    else (NRRD, MHA, ...) through SimpleITK's ``ReadImageInformation``.
    """
    name = os.fspath(path)
    notes: list[str] = []
    if os.path.isdir(name) or suffix_of(name) == ".dcm":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = DicomSeriesReader().read(name)
        return affine_from_geometry(s.direction, s.spacing, s.origin), notes
    if not os.path.isfile(name):
        raise ImageReadError(f"{name}: no such file")
    if suffix_of(name) in (".nii", ".nii.gz", ".hdr", ".img"):
        try:
            img = nib.load(name)
        except Exception as err:  # nibabel raises several unrelated types for bad headers
            raise ImageReadError(f"{name}: cannot read the NIfTI header ({type(err).__name__}: {err})") from err
        hdr = img.header
        q, qcode = hdr.get_qform(coded=True)
        s, scode = hdr.get_sform(coded=True)
        if qcode and scode and not np.allclose(q, s, atol=1e-3):
            notes.append(f"qform (code {int(qcode)}) and sform (code {int(scode)}) disagree")
        if not qcode and not scode:
            notes.append("neither qform nor sform is set: the affine is a guess from pixdim")
        return np.asarray(img.affine, dtype=np.float64), notes
    import SimpleITK as sitk  # imported here: only this branch needs it

    reader = sitk.ImageFileReader()
    reader.SetFileName(name)
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise ImageReadError(f"{name}: cannot read the image header ({err})") from err
    dim = reader.GetDimension()
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(dim, dim)
    return affine_from_geometry(direction[:3, :3], reader.GetSpacing()[:3], reader.GetOrigin()[:3]), notes


def check_orientation(
    source: Any,
    allow_oblique: bool = True,
    allow_left_handed: bool = True,
    allow_sheared: bool = False,
    oblique_tolerance_deg: float = 0.01,
    on_fail: str = "raise",
) -> OrientationReport:
    """Check a file/folder (header only), a MetaTensor or an affine; raise or warn on findings.

    The affine is judged by :func:`medfound.transforms.checks.check_affine`; this adds reading it
    from a file header, and NIfTI qform/sform disagreement as a failing finding.

    Parameters
    ----------
    source
        A 3x3/4x4 affine, a path, or an object with ``.affine`` (MetaTensor).
    allow_oblique, allow_left_handed, allow_sheared
        Which findings are acceptable. Degenerate affines and NIfTI qform/sform disagreement
        are never acceptable; other header notes are only reported.
    on_fail
        ``"raise"`` (:class:`OrientationError` naming the source) or ``"warn"``.

    Example
    -------
    >>> import numpy as np
    >>> from medfound.io import check_orientation
    >>> check_orientation(np.diag([-1.0, 1.0, 1.0, 1.0]), allow_left_handed=False)
    Traceback (most recent call last):
    ...
    medfound.errors.OrientationError: affine: left-handed voxel axes
    """
    check_choice(on_fail, ("raise", "warn"), "on_fail")
    notes: list[str] = []
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        affine, notes = read_affine(name)
    elif hasattr(source, "affine"):
        affine = source.affine
        meta = getattr(source, "meta", {}) or {}
        name = str(meta.get("filename_or_obj", "image"))
    else:
        affine, name = source, "affine"
    return check_affine(
        affine, name, allow_oblique, allow_left_handed, allow_sheared, oblique_tolerance_deg, on_fail,
        notes=[n for n in notes if _HARD not in n], fatal_notes=[n for n in notes if _HARD in n],
    )
