"""Orientation checks for volumes read through MONAI/nibabel/ITK (NIfTI, NRRD, MHA, DICOM).

NIfTI and NRRD need no reader of medfound's own: MONAI's ``NibabelReader``/``ITKReader`` read them
well. What they do not do is tell you that an affine is oblique, left-handed, sheared or has
disagreeing qform/sform, which silently breaks resampling and slice sampling. These helpers
report it, header-only, so a dataset can be screened before training.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.affines import obliquity
from nibabel.orientations import aff2axcodes

from medfound.errors import ConfigError, ImageReadError, OrientationError
from medfound.io._common import PathLike, affine_from_geometry, suffix_of
from medfound.io.dicom_series import DicomSeriesReader

__all__ = ["OrientationReport", "orientation_report", "read_affine", "check_orientation"]


@dataclass
class OrientationReport:
    """What an affine says about a grid's orientation.

    Attributes
    ----------
    axcodes
        Nearest RAS axis codes of the voxel axes, e.g. ``("L", "P", "S")``.
    spacing
        Voxel size per axis.
    obliquity_deg
        Largest angle (degrees) between a voxel axis and its nearest world axis.
    oblique
        ``obliquity_deg`` above the tolerance the report was made with.
    left_handed
        Negative determinant: the voxel axes form a left-handed system (e.g. radiological
        storage in NIfTI); not wrong, but a flip that must be kept consistent.
    sheared
        Voxel axes not orthogonal (e.g. a gantry-tilted CT read with ITK's geometry).
    degenerate
        A zero-length axis or a singular matrix.
    notes
        Further findings (qform/sform disagreement in NIfTI headers).
    """

    axcodes: tuple[str, ...]
    spacing: np.ndarray
    obliquity_deg: float
    oblique: bool
    left_handed: bool
    sheared: bool
    degenerate: bool
    notes: list[str] = field(default_factory=list)

    def issues(self) -> list[str]:
        """Findings as short sentences (empty when the affine is plain)."""
        out = []
        if self.degenerate:
            out.append("degenerate affine (zero-length axis or singular matrix)")
        if self.oblique:
            out.append(f"oblique by {self.obliquity_deg:.2f} degrees")
        if self.sheared:
            out.append("sheared (voxel axes not orthogonal)")
        if self.left_handed:
            out.append("left-handed voxel axes")
        return out + list(self.notes)


def orientation_report(affine: Any, oblique_tolerance_deg: float = 0.01) -> OrientationReport:
    """Report on a 3x3 (2D) or 4x4 (3D) affine.

    Example
    -------
    >>> import numpy as np
    >>> from medfound.io import orientation_report
    >>> r = orientation_report(np.diag([-1.0, 1.0, 2.0, 1.0]))
    >>> r.axcodes, r.left_handed, r.oblique
    (('L', 'A', 'S'), True, False)
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] not in (3, 4):
        raise ConfigError(f"affine must be 3x3 or 4x4, got shape {a.shape}")
    r = a.shape[0] - 1
    m = a[:r, :r]
    spacing = np.linalg.norm(m, axis=0)
    degenerate = bool(np.any(spacing <= 1e-12) or abs(np.linalg.det(m)) <= 1e-12)
    if degenerate:
        return OrientationReport(tuple("?" * r), spacing, float("nan"), False, False, False, True)
    unit = m / spacing
    gram = unit.T @ unit
    sheared = bool(np.max(np.abs(gram - np.eye(r))) > 1e-4)
    left = bool(np.linalg.det(m) < 0)
    full = np.eye(4)
    full[:r, :r], full[:r, 3] = m, a[:r, r]
    if r == 2:
        full[2, 2] = 1.0
    angle = float(np.degrees(np.max(np.abs(obliquity(full)))))
    codes = aff2axcodes(full)[:r]
    return OrientationReport(
        tuple(str(c) for c in codes), spacing, angle, angle > oblique_tolerance_deg, left, sheared, False
    )


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
    """Check an affine, a file/folder (header only) or a MetaTensor, and raise or warn on findings.

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
    if on_fail not in ("raise", "warn"):
        raise ConfigError(f"on_fail must be 'raise' or 'warn', got {on_fail!r}")
    notes: list[str] = []
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        affine, notes = read_affine(name)
    elif hasattr(source, "affine"):
        affine = np.asarray(source.affine)
        meta = getattr(source, "meta", {}) or {}
        name = str(meta.get("filename_or_obj", "image"))
    else:
        affine, name = np.asarray(source), "affine"
    report = orientation_report(affine, oblique_tolerance_deg)
    report.notes.extend(notes)
    bad = []
    if report.degenerate:
        bad.append("degenerate affine (zero-length axis or singular matrix)")
    if report.oblique and not allow_oblique:
        bad.append(f"oblique by {report.obliquity_deg:.2f} degrees")
    if report.sheared and not allow_sheared:
        bad.append("sheared (voxel axes not orthogonal)")
    if report.left_handed and not allow_left_handed:
        bad.append("left-handed voxel axes")
    bad.extend(n for n in notes if _HARD in n)
    if bad:
        msg = f"{name}: " + "; ".join(bad)
        if on_fail == "raise":
            raise OrientationError(msg)
        warnings.warn(msg, stacklevel=2)
    return report
