"""Input checks as MONAI transforms: finite values, label/image agreement, orientation.

Each passes its input through unchanged, or raises a medfound error that names the file (from
the MetaTensor's ``filename_or_obj``) and the problem. Put them right after loading, so a bad
case fails early with a clear message, or is skipped by :class:`~medfound.io.SkipBadCases`.

:func:`orientation_report` and :func:`check_affine` judge an affine (oblique, left-handed,
sheared, degenerate); :func:`medfound.io.check_orientation` applies them to files, header only.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from nibabel.affines import obliquity
from nibabel.orientations import aff2axcodes

from medfound.errors import ConfigError, LabelMismatchError, NonFiniteImageError, OrientationError
from medfound.transforms._utils import non_finite_counts
from medfound.utils import check_bool, check_choice, check_float

__all__ = [
    "OrientationReport", "orientation_report", "check_affine",
    "CheckFinite", "CheckFinited", "CheckFiniteD", "CheckFiniteDict",
    "CheckLabelMatch", "CheckLabelMatchd", "CheckLabelMatchD", "CheckLabelMatchDict",
    "CheckOrientation", "CheckOrientationd", "CheckOrientationD", "CheckOrientationDict",
]  # fmt: skip


def _name(img: Any, fallback: str = "image") -> str:
    meta = getattr(img, "meta", None) or {}
    name = meta.get("filename_or_obj")
    return str(name) if name else fallback


# ------------------------------------------------------------------------------------------------
# orientation of an affine


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


def check_affine(
    affine: Any,
    name: str = "affine",
    allow_oblique: bool = True,
    allow_left_handed: bool = True,
    allow_sheared: bool = False,
    oblique_tolerance_deg: float = 0.01,
    on_fail: str = "raise",
    notes: Sequence[str] = (),
    fatal_notes: Sequence[str] = (),
) -> OrientationReport:
    """Judge an affine and raise (or warn) on the findings that are not allowed.

    Parameters
    ----------
    affine
        A 3x3/4x4 affine (array or tensor).
    name
        What the affine belongs to, for the message (a file name).
    allow_oblique, allow_left_handed, allow_sheared
        Which findings are acceptable. A degenerate affine never is.
    oblique_tolerance_deg
        Obliquity up to this angle counts as straight.
    on_fail
        ``"raise"`` (:class:`~medfound.errors.OrientationError` naming ``name``) or ``"warn"``.
    notes, fatal_notes
        Findings from elsewhere (e.g. a file header) added to the report; ``fatal_notes`` also fail.

    Example
    -------
    >>> import numpy as np
    >>> check_affine(np.diag([-1.0, 1.0, 1.0, 1.0]), allow_left_handed=False)
    Traceback (most recent call last):
    ...
    medfound.errors.OrientationError: affine: left-handed voxel axes
    """
    check_choice(on_fail, ("raise", "warn"), "on_fail")
    a = affine.detach().cpu().numpy() if isinstance(affine, torch.Tensor) else np.asarray(affine)
    report = orientation_report(a, oblique_tolerance_deg)
    report.notes.extend([*notes, *fatal_notes])
    bad = []
    if report.degenerate:
        bad.append("degenerate affine (zero-length axis or singular matrix)")
    if report.oblique and not allow_oblique:
        bad.append(f"oblique by {report.obliquity_deg:.2f} degrees")
    if report.sheared and not allow_sheared:
        bad.append("sheared (voxel axes not orthogonal)")
    if report.left_handed and not allow_left_handed:
        bad.append("left-handed voxel axes")
    bad.extend(fatal_notes)
    if bad:
        msg = f"{name}: " + "; ".join(bad)
        if on_fail == "raise":
            raise OrientationError(msg)
        warnings.warn(msg, stacklevel=3)
    return report


# ------------------------------------------------------------------------------------------------
# the check transforms


class CheckFinite(Transform):
    """Raise :class:`~medfound.errors.NonFiniteImageError` when an image holds NaN or inf; pass it through otherwise.

    Example
    -------
    >>> import torch
    >>> CheckFinite()(torch.tensor([1.0, float("nan")]))
    Traceback (most recent call last):
    ...
    medfound.errors.NonFiniteImageError: image: 1 NaN and 0 infinite values
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, img: Any) -> Any:
        t = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.asarray(img))
        n_nan, n_inf = non_finite_counts(t)
        if n_nan or n_inf:
            raise NonFiniteImageError(f"{_name(img)}: {n_nan} NaN and {n_inf} infinite values")
        return img


class CheckFinited(MapTransform):
    """Dictionary form of :class:`CheckFinite`.

    Example
    -------
    >>> import torch
    >>> CheckFinited("image")({"image": torch.ones(2)})["image"].tolist()
    [1.0, 1.0]
    """

    backend = CheckFinite.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckFinite()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                self.checker(d[key])
            except NonFiniteImageError as err:
                raise NonFiniteImageError(f"{err} (key {key!r})") from None
        return d


class CheckLabelMatch(Transform):
    """Raise :class:`~medfound.errors.LabelMismatchError` when a label's spatial shape (and affine)
    differ from its image.

    Parameters
    ----------
    check_affine
        Also compare affines (MetaTensors only), with tolerance ``atol``.
    atol
        Absolute tolerance for the affine comparison (mm).
    channel_first
        Inputs are channel-first (after ``EnsureChannelFirst``): compare ``shape[1:]``; otherwise
        compare the full shapes.

    Example
    -------
    >>> import torch
    >>> CheckLabelMatch()(torch.zeros(1, 4, 5), torch.zeros(1, 4, 4))  # (label, image)
    Traceback (most recent call last):
    ...
    medfound.errors.LabelMismatchError: label: spatial shape (4, 5) does not match image (4, 4)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, check_affine: bool = True, atol: float = 1e-3, channel_first: bool = True) -> None:
        self.check_affine = check_bool(check_affine, "check_affine")
        self.atol = check_float(atol, "atol", low=0.0)
        self.channel_first = check_bool(channel_first, "channel_first")

    def __call__(self, label: Any, image: Any) -> Any:
        ls = tuple(label.shape[1:] if self.channel_first else label.shape)
        ims = tuple(image.shape[1:] if self.channel_first else image.shape)
        lname, iname = _name(label, "label"), _name(image, "image")
        if ls != ims:
            raise LabelMismatchError(f"{lname}: spatial shape {ls} does not match {iname} {ims}")
        if self.check_affine and isinstance(label, MetaTensor) and isinstance(image, MetaTensor):
            la, ia = label.affine.detach().cpu().numpy(), image.affine.detach().cpu().numpy()
            if la.shape != ia.shape or not np.allclose(la, ia, atol=self.atol):
                raise LabelMismatchError(
                    f"{lname}: affine does not match {iname} (largest difference "
                    f"{float(np.abs(la - ia).max()) if la.shape == ia.shape else 'shape'}); "
                    "the mask is not on the image grid"
                )
        return label


class CheckLabelMatchd(MapTransform):
    """Dictionary form of :class:`CheckLabelMatch`: every key in ``keys`` is checked against ``image_key``.

    Example
    -------
    >>> import torch
    >>> d = CheckLabelMatchd("label")({"image": torch.zeros(1, 4, 4), "label": torch.ones(1, 4, 4)})
    >>> float(d["label"].sum())
    16.0
    """

    backend = CheckLabelMatch.backend

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str = "image",
        check_affine: bool = True,
        atol: float = 1e-3,
        channel_first: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.checker = CheckLabelMatch(check_affine, atol, channel_first)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.image_key not in d:
            raise ConfigError(f"CheckLabelMatchd: image key {self.image_key!r} not in the data (keys {list(d)})")
        for key in self.key_iterator(d):
            self.checker(d[key], d[self.image_key])
        return d


class CheckOrientation(Transform):
    """Check a MetaTensor's affine with :func:`check_affine`, naming its file; pass it through.

    Parameters are those of :func:`check_affine`.

    Example
    -------
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> img = MetaTensor(torch.zeros(1, 2, 2, 2), meta={"filename_or_obj": "ct.nii.gz"})
    >>> CheckOrientation(allow_left_handed=False)(img) is img
    True
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        allow_oblique: bool = True,
        allow_left_handed: bool = True,
        allow_sheared: bool = False,
        oblique_tolerance_deg: float = 0.01,
        on_fail: str = "raise",
    ) -> None:
        self.kwargs = {
            "allow_oblique": check_bool(allow_oblique, "allow_oblique"),
            "allow_left_handed": check_bool(allow_left_handed, "allow_left_handed"),
            "allow_sheared": check_bool(allow_sheared, "allow_sheared"),
            "oblique_tolerance_deg": check_float(oblique_tolerance_deg, "oblique_tolerance_deg", low=0.0),
            "on_fail": check_choice(on_fail, ("raise", "warn"), "on_fail"),
        }

    def __call__(self, img: Any) -> Any:
        if not isinstance(img, MetaTensor):
            raise ConfigError("CheckOrientation needs a MetaTensor (load with LoadImage/LoadImaged)")
        check_affine(img.affine, _name(img), **self.kwargs)
        return img


class CheckOrientationd(MapTransform):
    """Dictionary form of :class:`CheckOrientation`.

    Example
    -------
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> d = {"image": MetaTensor(torch.zeros(1, 2, 2, 2))}
    >>> CheckOrientationd("image")(d)["image"] is d["image"]
    True
    """

    backend = CheckOrientation.backend

    def __init__(
        self,
        keys: KeysCollection,
        allow_oblique: bool = True,
        allow_left_handed: bool = True,
        allow_sheared: bool = False,
        oblique_tolerance_deg: float = 0.01,
        on_fail: str = "raise",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckOrientation(allow_oblique, allow_left_handed, allow_sheared, oblique_tolerance_deg, on_fail)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            self.checker(d[key])
        return d


CheckFiniteD = CheckFiniteDict = CheckFinited
CheckLabelMatchD = CheckLabelMatchDict = CheckLabelMatchd
CheckOrientationD = CheckOrientationDict = CheckOrientationd
