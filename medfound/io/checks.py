"""Input checks as MONAI transforms: finite values, label/image agreement, orientation.

Each passes its input through unchanged, or raises a medfound error that names the file (from
the MetaTensor's ``filename_or_obj``) and the problem. Put them right after loading, so a bad
case fails early with a clear message, or is skipped by :class:`~medfound.io.SkipBadCases`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from medfound.errors import ConfigError, LabelMismatchError, NonFiniteImageError
from medfound.io.orientation import check_orientation

__all__ = [
    "CheckFinite", "CheckFinited", "CheckFiniteD", "CheckFiniteDict",
    "CheckLabelMatch", "CheckLabelMatchd", "CheckLabelMatchD", "CheckLabelMatchDict",
    "CheckOrientation", "CheckOrientationd", "CheckOrientationD", "CheckOrientationDict",
]  # fmt: skip


def _name(img: Any, fallback: str = "image") -> str:
    meta = getattr(img, "meta", None) or {}
    name = meta.get("filename_or_obj")
    return str(name) if name else fallback


class CheckFinite(Transform):
    """Raise :class:`NonFiniteImageError` when an image holds NaN or inf; pass it through otherwise.

    Example
    -------
    >>> import torch
    >>> from medfound.io import CheckFinite
    >>> CheckFinite()(torch.tensor([1.0, float("nan")]))
    Traceback (most recent call last):
    ...
    medfound.errors.NonFiniteImageError: image: 1 NaN and 0 infinite values
    """

    def __call__(self, img: Any) -> Any:
        t = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.asarray(img))
        if t.is_floating_point() or t.is_complex():
            finite = torch.isfinite(t)
            if not bool(finite.all()):
                n_nan = int(torch.isnan(t).sum())
                raise NonFiniteImageError(
                    f"{_name(img)}: {n_nan} NaN and {int((~finite).sum()) - n_nan} infinite values"
                )
        return img


class CheckFinited(MapTransform):
    """Dictionary form of :class:`CheckFinite`."""

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
    """Raise :class:`LabelMismatchError` when a label's spatial shape (and affine) differ from its image.

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
    >>> from medfound.io import CheckLabelMatch
    >>> CheckLabelMatch()(torch.zeros(1, 4, 5), torch.zeros(1, 4, 4))  # (label, image)
    Traceback (most recent call last):
    ...
    medfound.errors.LabelMismatchError: label: spatial shape (4, 5) does not match image (4, 4)
    """

    def __init__(self, check_affine: bool = True, atol: float = 1e-3, channel_first: bool = True) -> None:
        self.check_affine = bool(check_affine)
        self.atol = float(atol)
        self.channel_first = bool(channel_first)

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
    """Dictionary form of :class:`CheckLabelMatch`: every key in ``keys`` is checked against ``image_key``."""

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
    """Check a MetaTensor's affine with :func:`~medfound.io.check_orientation`; pass it through.

    Parameters are those of :func:`~medfound.io.check_orientation`.
    """

    def __init__(
        self,
        allow_oblique: bool = True,
        allow_left_handed: bool = True,
        allow_sheared: bool = False,
        oblique_tolerance_deg: float = 0.01,
        on_fail: str = "raise",
    ) -> None:
        self.kwargs = {
            "allow_oblique": allow_oblique,
            "allow_left_handed": allow_left_handed,
            "allow_sheared": allow_sheared,
            "oblique_tolerance_deg": oblique_tolerance_deg,
            "on_fail": on_fail,
        }
        if on_fail not in ("raise", "warn"):
            raise ConfigError(f"on_fail must be 'raise' or 'warn', got {on_fail!r}")

    def __call__(self, img: Any) -> Any:
        if not isinstance(img, MetaTensor):
            raise ConfigError("CheckOrientation needs a MetaTensor (load with LoadImage/LoadImaged)")
        check_orientation(img, **self.kwargs)
        return img


class CheckOrientationd(MapTransform):
    """Dictionary form of :class:`CheckOrientation`."""

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
