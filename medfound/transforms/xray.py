"""Transforms for projection radiographs (CR, DX, DR, MG, XA).

- :class:`XRayWindow`: window/level to [0, 1]: the window stored in the file (DICOM VOI LUT
  functions LINEAR, LINEAR_EXACT, SIGMOID), a named percentile preset, or an explicit centre and
  width; optionally inverts MONOCHROME1 images so that higher always means brighter.
- :class:`XRayInvert`: inversion, forced or ``"auto"`` from the reader's metadata.

Aspect-preserving resizing with padding (:class:`~medfound.transforms.common.ResizeWithPad`) and
the 3-channel [0, 1] encoder input (:class:`~medfound.transforms.common.ToEncoderInput`) are
modality-independent and live in :mod:`medfound.transforms.common`;
:func:`medfound.transforms.presets.get_preset` chains them for radiographs.

Metadata contract (set by ``medfound.io.RadiographReader``; any MetaTensor with these keys works):
``"PhotometricInterpretation"``, ``"VOILUTFunction"`` (``"LINEAR"`` if absent), ``"WindowCenter"``
and ``"WindowWidth"`` (lists of floats in modality units, empty if none), ``"intensity_units"``
(``"display"``: VOI already applied, [0, 1], higher = brighter; or ``"modality"``) and
``"invert_for_display"`` (True when values must be inverted to show higher = brighter). After
these transforms the metadata says what the values now are: :class:`XRayWindow` sets
``intensity_units`` to ``"display"`` (or ``"windowed"`` when it was told not to invert an image
that still needs it) and :class:`XRayInvert` flips ``invert_for_display``, so applying either
twice never inverts twice.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, ensure_tuple

from medfound.errors import ConfigError, InvalidImageError
from medfound.transforms._utils import as_float, check_finite, new_meta_like, source_of, to_tensor
from medfound.transforms.intensity import PercentileNormalize
from medfound.utils import check_choice, check_int, check_pair

__all__ = [
    "XRAY_WINDOW_PRESETS",
    "VOI_FUNCTIONS",
    "apply_voi_window",
    "XRayWindow",
    "XRayWindowd",
    "XRayWindowD",
    "XRayWindowDict",
    "XRayInvert",
    "XRayInvertd",
    "XRayInvertD",
    "XRayInvertDict",
]

#: Named windows for radiographs, as (lower, upper) percentiles of the image's own values.
#: Raw detector values have no fixed scale (unlike Hounsfield units), so presets are relative.
XRAY_WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "full": (0.0, 100.0),
    "robust": (0.5, 99.5),
    "high_contrast": (2.0, 98.0),
}

#: DICOM VOI LUT functions (PS3.3 C.11.2.1.2)
VOI_FUNCTIONS = ("linear", "linear_exact", "sigmoid")


def apply_voi_window(x: torch.Tensor, center: float, width: float, function: str = "linear") -> torch.Tensor:
    """DICOM VOI window to [0, 1] (PS3.3 C.11.2.1.2), for ``function`` LINEAR, LINEAR_EXACT or SIGMOID.

    LINEAR follows the standard's off-by-half convention: with ``c`` and ``w`` the output is 0 up
    to ``c - 0.5 - (w - 1) / 2``, 1 above ``c - 0.5 + (w - 1) / 2`` and linear in between.

    Example
    -------
    >>> import torch
    >>> x = torch.tensor([0.0, 1.0, 2.0, 3.0])
    >>> apply_voi_window(x, center=2.0, width=2.0, function="linear_exact").tolist()
    [0.0, 0.0, 0.5, 1.0]
    >>> apply_voi_window(x, center=2.0, width=3.0).tolist()
    [0.0, 0.25, 0.75, 1.0]
    """
    fn = function.lower()
    if fn == "linear":
        if width < 1:
            raise ConfigError(f"a LINEAR VOI window needs width >= 1, got {width}")
        if width == 1:  # the standard's formula degenerates to a threshold
            return (x > center - 0.5).to(x.dtype)
        return ((x - (center - 0.5)) / (width - 1) + 0.5).clamp(0.0, 1.0)
    if width <= 0:
        raise ConfigError(f"a VOI window needs a positive width, got {width}")
    if fn == "linear_exact":
        return ((x - center) / width + 0.5).clamp(0.0, 1.0)
    if fn == "sigmoid":
        return torch.sigmoid(4.0 * (x - center) / width)
    raise ConfigError(f"unknown VOI LUT function {function!r}; use one of {', '.join(VOI_FUNCTIONS)}")


def _meta(img: torch.Tensor) -> dict:
    return img.meta if isinstance(img, MetaTensor) else {}


def _needs_inversion(meta: Mapping) -> bool:
    """The reader's ``invert_for_display``; without it, MONOCHROME1 data not yet in display units."""
    flag = meta.get("invert_for_display")
    if flag is not None:
        return bool(flag.item() if isinstance(flag, torch.Tensor) else flag)
    photometric = str(meta.get("PhotometricInterpretation", "")).upper()
    return photometric == "MONOCHROME1" and meta.get("intensity_units") != "display"


class XRayWindow(Transform):
    """Window/level a radiograph to [0, 1] with higher = brighter.

    Parameters
    ----------
    window : ``"file"``: the window stored in the metadata (``WindowCenter``/``WindowWidth`` at
        ``window_index``, with the file's ``VOILUTFunction``); if the reader already applied it
        (``intensity_units == "display"``) values are only clipped to [0, 1]. A name from
        :data:`XRAY_WINDOW_PRESETS` (percentiles of the image itself). Or an explicit window as
        ``{"center": c, "width": w}`` / ``[c, w]`` in the image's units.
    window_index : which stored window to use when the file has several.
    voi_function : ``"auto"`` (the file's ``VOILUTFunction`` for stored windows, LINEAR_EXACT
        otherwise) or one of :data:`VOI_FUNCTIONS`.
    invert : ``"auto"`` inverts when the metadata says the image must be inverted for display
        (MONOCHROME1); ``True``/``False`` force it.
    fallback : what ``window="file"`` does when the file stores no window: a preset name
        (default ``"robust"``) or ``"raise"``.

    Example
    -------
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> img = MetaTensor(torch.tensor([[[0.0, 1000.0, 2000.0]]]), meta={
    ...     "WindowCenter": [1000.0], "WindowWidth": [2000.0], "VOILUTFunction": "LINEAR_EXACT",
    ...     "intensity_units": "modality", "invert_for_display": True})
    >>> out = XRayWindow("file")(img)
    >>> out[0, 0].tolist(), out.meta["intensity_units"], out.meta["invert_for_display"]
    ([1.0, 0.5, 0.0], 'display', False)
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        window: str | Mapping[str, float] | Sequence[float] = "file",
        window_index: int = 0,
        voi_function: str = "auto",
        invert: bool | str = "auto",
        fallback: str = "robust",
    ) -> None:
        if isinstance(window, str) and window != "file" and window not in XRAY_WINDOW_PRESETS:
            raise ConfigError(f"unknown X-ray window {window!r}; use 'file', {', '.join(XRAY_WINDOW_PRESETS)} "
                              "or {'center': c, 'width': w}")
        if isinstance(window, Mapping):
            if "center" not in window or "width" not in window:
                raise ConfigError(f"an explicit X-ray window needs 'center' and 'width', got {dict(window)}")
            window = (float(window["center"]), float(window["width"]))
        elif not isinstance(window, str):
            window = tuple(float(v) for v in window)
            if len(window) != 2:
                raise ConfigError(f"an explicit X-ray window is [center, width], got {list(window)}")
        if voi_function != "auto":
            voi_function = check_choice(str(voi_function).lower(), VOI_FUNCTIONS, "voi_function")
        self.window = window
        self.window_index = check_int(window_index, "window_index", low=0)
        self.voi_function = voi_function
        self.invert = check_choice(invert, ("auto", True, False), "invert")
        self.fallback = check_choice(fallback, ("raise", *XRAY_WINDOW_PRESETS), "fallback")

    def _percentile_window(self, x: torch.Tensor, preset: str) -> torch.Tensor:
        lower, upper = XRAY_WINDOW_PRESETS[preset]
        return PercentileNormalize(lower, upper, 0.0, 1.0, clip=True)(x)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        img_t = to_tensor(img)
        if img_t.ndim < 2:
            raise InvalidImageError(f"XRayWindow expects a channel-first image, got shape {tuple(img_t.shape)}")
        check_finite(img_t, "XRayWindow")
        meta = _meta(img_t)
        x = as_float(img_t.as_tensor() if isinstance(img_t, MetaTensor) else img_t).to(torch.float32)
        window = self.window
        if window == "file":
            centers = [float(v) for v in ensure_tuple(meta.get("WindowCenter", []) or [])]
            widths = [float(v) for v in ensure_tuple(meta.get("WindowWidth", []) or [])]
            if meta.get("intensity_units") == "display":
                out = x.clamp(0.0, 1.0)  # the reader applied the VOI LUT already
            elif self.window_index < min(len(centers), len(widths)):
                fn = self.voi_function
                if fn == "auto":
                    fn = str(meta.get("VOILUTFunction") or "LINEAR").lower()
                out = apply_voi_window(x, centers[self.window_index], widths[self.window_index], fn)
            elif self.fallback == "raise":
                raise InvalidImageError(
                    f"XRayWindow: no stored window {self.window_index} (the file has {len(centers)}){source_of(img_t)}"
                )
            else:
                out = self._percentile_window(x, self.fallback)
        elif isinstance(window, str):
            out = self._percentile_window(x, window)
        else:
            fn = "linear_exact" if self.voi_function == "auto" else self.voi_function
            out = apply_voi_window(x, window[0], window[1], fn)
        needs = _needs_inversion(meta)
        do_invert = needs if self.invert == "auto" else bool(self.invert)
        if do_invert:
            out = 1.0 - out
        still_needs = needs != do_invert
        out = new_meta_like(out, img_t)
        if isinstance(out, MetaTensor):
            out.meta["intensity_units"] = "windowed" if still_needs else "display"
            out.meta["invert_for_display"] = still_needs
        return out


class XRayWindowd(MapTransform):
    """Dictionary form of :class:`XRayWindow`.

    Example
    -------
    >>> import torch
    >>> d = XRayWindowd("image", window={"center": 50, "width": 100})({"image": torch.tensor([[0.0, 50.0, 100.0]])})
    >>> d["image"].tolist()
    [[0.0, 0.5, 1.0]]
    """

    backend = XRayWindow.backend

    def __init__(
        self,
        keys: KeysCollection,
        window: str | Mapping[str, float] | Sequence[float] = "file",
        window_index: int = 0,
        voi_function: str = "auto",
        invert: bool | str = "auto",
        fallback: str = "robust",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.windower = XRayWindow(window, window_index, voi_function, invert, fallback)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.windower(d[key])
        return d


class XRayInvert(Transform):
    """Invert a radiograph's grey levels: ``lo + hi - x`` over ``value_range`` (data min/max if ``None``).

    ``invert="auto"`` inverts only when the metadata says so (``invert_for_display``, or
    MONOCHROME1 not yet in display units); ``True`` always inverts. The output's
    ``invert_for_display`` is flipped accordingly, so ``"auto"`` is idempotent.

    Example
    -------
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> img = MetaTensor(torch.tensor([[0.0, 0.25, 1.0]]), meta={"invert_for_display": True})
    >>> out = XRayInvert()(img)
    >>> out.tolist(), XRayInvert()(out).tolist()
    ([[1.0, 0.75, 0.0]], [[1.0, 0.75, 0.0]])
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, invert: bool | str = "auto", value_range: Sequence[float] | None = (0.0, 1.0)) -> None:
        self.invert = check_choice(invert, ("auto", True, False), "invert")
        self.value_range = None if value_range is None else check_pair(value_range, "value_range", ordered=False)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        img_t = to_tensor(img)
        meta = _meta(img_t)
        needs = _needs_inversion(meta)
        do_invert = needs if self.invert == "auto" else bool(self.invert)
        if not do_invert:
            return img_t
        x = img_t.as_tensor() if isinstance(img_t, MetaTensor) else img_t
        if self.value_range is None:
            lo, hi = x.min(), x.max()
        else:
            lo, hi = self.value_range
        out = new_meta_like((lo + hi) - as_float(x), img_t)
        if isinstance(out, MetaTensor):
            out.meta["invert_for_display"] = not needs
            if out.meta.get("intensity_units") == "windowed" and needs:
                out.meta["intensity_units"] = "display"
        return out


class XRayInvertd(MapTransform):
    """Dictionary form of :class:`XRayInvert`.

    Example
    -------
    >>> import torch
    >>> XRayInvertd("image", invert=True)({"image": torch.tensor([[0.0, 1.0]])})["image"].tolist()
    [[1.0, 0.0]]
    """

    backend = XRayInvert.backend

    def __init__(
        self,
        keys: KeysCollection,
        invert: bool | str = "auto",
        value_range: Sequence[float] | None = (0.0, 1.0),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.inverter = XRayInvert(invert, value_range)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.inverter(d[key])
        return d


XRayWindowD = XRayWindowDict = XRayWindowd
XRayInvertD = XRayInvertDict = XRayInvertd
