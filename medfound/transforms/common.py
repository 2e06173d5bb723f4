"""Modality-independent transforms the per-modality pipelines share.

- :class:`ResizeWithPad`: aspect-preserving resize to fit a target size, then centred padding
  (letterboxing); invertible with ``Invertd``.
- :class:`ToEncoderInput`: the input contract of medfound's 2D encoders: float32, 3 channels,
  values in [0, 1].

Each comes in array form and dictionary form (``Foo`` and ``Food``/``FooD``/``FooDict``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import BorderPad, InvertibleTransform, MapTransform, Resize, SpatialCrop, Transform
from monai.utils import TraceKeys, TransformBackends, ensure_tuple_rep

from medfound.errors import ConfigError, InvalidImageError
from medfound.transforms._utils import check_finite, new_meta_like, source_of, spatial_tuple, to_tensor
from medfound.transforms.intensity import luma
from medfound.utils import check_bool, check_choice, check_float

__all__ = [
    "ResizeWithPad",
    "ResizeWithPadd",
    "ResizeWithPadD",
    "ResizeWithPadDict",
    "ToEncoderInput",
    "ToEncoderInputd",
    "ToEncoderInputD",
    "ToEncoderInputDict",
    "BinarizeMask",
    "BinarizeMaskd",
    "BinarizeMaskD",
    "BinarizeMaskDict",
    "SwapSpatialAxes",
    "SwapSpatialAxesd",
    "SwapSpatialAxesD",
    "SwapSpatialAxesDict",
]


# ------------------------------------------------------------------------------------------------
# percentile normalisation


# ------------------------------------------------------------------------------------------------
# aspect-preserving resize with padding


def _fit_size(in_shape: Sequence[int], target: Sequence[int]) -> tuple[int, ...]:
    """Largest size with ``in_shape``'s aspect ratio that fits inside ``target``."""
    scale = min(t / s for t, s in zip(target, in_shape))
    return tuple(max(1, min(t, int(round(s * scale)))) for s, t in zip(in_shape, target))


class ResizeWithPad(InvertibleTransform):
    """Resize so the image fits ``spatial_size`` with its aspect ratio kept, then pad the rest symmetrically.

    Radiographs, fundus photographs and endoscopy frames come in many shapes; stretching them
    to a square distorts anatomy, so they are letterboxed instead. The padding is split evenly
    (the extra pixel after). ``Invertd`` undoes both steps (crop the padding, resize back).

    Parameters
    ----------
    spatial_size : target size; an int means the same for every spatial axis.
    mode : interpolation (``"area"``, ``"bilinear"``, ``"bicubic"``, ``"nearest"``, ``"nearest-exact"``, ...,
        as :class:`monai.transforms.Resize`); use ``"nearest"`` for label maps.
    align_corners : as :class:`monai.transforms.Resize`.
    anti_aliasing : Gaussian smoothing before downsampling (as :class:`monai.transforms.Resize`).
    pad_mode : padding mode (``"constant"``, ``"edge"``/``"replicate"``, ``"reflect"``, ...).
    value : constant padding value.

    Example
    -------
    >>> import torch
    >>> out = ResizeWithPad(spatial_size=64, mode="nearest")(torch.ones(1, 40, 80))
    >>> tuple(out.shape), float(out[0, 0, 0]), float(out[0, 32, 32])
    ((1, 64, 64), 0.0, 1.0)
    """

    backend = Resize.backend

    def __init__(
        self,
        spatial_size: int | Sequence[int],
        mode: str = "area",
        align_corners: bool | None = None,
        anti_aliasing: bool = False,
        pad_mode: str = "constant",
        value: float = 0.0,
    ) -> None:
        self.spatial_size = spatial_size
        self.mode = mode
        self.align_corners = align_corners
        self.anti_aliasing = anti_aliasing
        self.pad_mode = pad_mode
        self.value = value

    def __call__(self, img: NdarrayOrTensor, mode: str | None = None) -> torch.Tensor:
        img_t = to_tensor(img)
        if img_t.ndim < 2:
            raise InvalidImageError(f"ResizeWithPad expects a channel-first image, got shape {tuple(img_t.shape)}")
        nd = img_t.ndim - 1
        target = spatial_tuple(self.spatial_size, nd, "ResizeWithPad spatial_size")
        in_shape = tuple(int(s) for s in img_t.shape[1:])
        if min(in_shape) < 1:
            raise InvalidImageError(f"ResizeWithPad: empty image of shape {tuple(img_t.shape)}{source_of(img_t)}")
        mode = self.mode if mode is None else mode
        new = _fit_size(in_shape, target)
        # the inner steps update the affine but are recorded as one operation of this transform
        resizer = Resize(spatial_size=new, mode=mode, align_corners=self.align_corners,
                         anti_aliasing=self.anti_aliasing)
        with resizer.trace_transform(False):
            out = resizer(img_t) if new != in_shape else img_t
        pads = [(t - n) // 2 for t, n in zip(target, new)]
        border = [b for p, t, n in zip(pads, target, new) for b in (p, t - n - p)]
        kwargs = {"value": self.value} if self.pad_mode == "constant" else {}
        padder = BorderPad(spatial_border=border, mode=self.pad_mode, **kwargs)
        with padder.trace_transform(False):
            out = padder(out) if any(border) else out
        if isinstance(out, MetaTensor):
            self.push_transform(
                out,
                orig_size=in_shape,
                extra_info={
                    "resized": list(new),
                    "pad_before": pads,
                    "mode": mode,
                    "align_corners": self.align_corners if self.align_corners is not None else TraceKeys.NONE,
                },
            )
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        transform = self.pop_transform(data)
        extra = transform[TraceKeys.EXTRA_INFO]
        orig_size = [int(s) for s in transform[TraceKeys.ORIG_SIZE]]
        resized = [int(s) for s in extra["resized"]]
        start = [int(s) for s in extra["pad_before"]]
        cropper = SpatialCrop(roi_start=start, roi_end=[s + r for s, r in zip(start, resized)])
        with cropper.trace_transform(False):
            out = cropper(data)
        if resized != orig_size:
            mode = extra["mode"]
            if mode == "area":  # area is a downsampling filter; undo with linear interpolation
                mode = "bilinear" if len(orig_size) == 2 else "trilinear"
            align = extra["align_corners"]
            resizer = Resize(spatial_size=orig_size, mode=mode,
                             align_corners=None if align == TraceKeys.NONE else align)
            with resizer.trace_transform(False):
                out = resizer(out)
        return out


class ResizeWithPadd(MapTransform, InvertibleTransform):
    """Dictionary form of :class:`ResizeWithPad`; ``mode`` may be given per key (e.g. ``("area", "nearest")``).

    Example
    -------
    >>> import torch
    >>> t = ResizeWithPadd(keys=("image", "label"), spatial_size=32, mode=("bilinear", "nearest"))
    >>> d = t({"image": torch.rand(1, 16, 8), "label": torch.ones(1, 16, 8)})
    >>> tuple(d["label"].shape), float(d["label"].sum())
    ((1, 32, 32), 512.0)
    """

    backend = ResizeWithPad.backend

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: int | Sequence[int],
        mode: str | Sequence[str] = "area",
        align_corners: bool | None = None,
        anti_aliasing: bool = False,
        pad_mode: str = "constant",
        value: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.resizer = ResizeWithPad(spatial_size, self.mode[0], align_corners, anti_aliasing, pad_mode, value)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, mode in self.key_iterator(d, self.mode):
            d[key] = self.resizer(d[key], mode=mode)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.resizer.inverse(d[key])
        return d


# ------------------------------------------------------------------------------------------------
# encoder input contract


class ToEncoderInput(Transform):
    """Make an image what medfound's 2D encoders take: float32, ``num_channels`` channels, values in [0, 1].

    Channels: 1 is repeated; 2 gets a zero third channel (a two-stain microscopy image shown as
    red/green); 3 is kept; 4 (RGBA) loses its alpha channel when ``drop_alpha``; more is an error
    (select channels first). Values: ``scale="dtype"`` divides integer images by their type's
    maximum (uint8 by 255) and keeps floats; ``"minmax"`` stretches each image to [0, 1];
    ``"none"`` keeps values. ``clip`` then clips to [0, 1].

    Example
    -------
    >>> import torch
    >>> out = ToEncoderInput()(torch.tensor([[[0, 255]]], dtype=torch.uint8))
    >>> tuple(out.shape), out[:, 0, 1].tolist()
    ((3, 1, 2), [1.0, 1.0, 1.0])
    """

    backend = [TransformBackends.TORCH]
    _SCALES = ("dtype", "minmax", "none")

    def __init__(self, num_channels: int = 3, scale: str = "dtype", clip: bool = True, drop_alpha: bool = True) -> None:
        self.num_channels = check_choice(num_channels, (1, 3), "num_channels")
        self.scale = check_choice(scale, self._SCALES, "scale")
        self.clip = check_bool(clip, "clip")
        self.drop_alpha = check_bool(drop_alpha, "drop_alpha")

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        img_t = to_tensor(img)
        if img_t.ndim < 3:
            raise InvalidImageError(
                f"ToEncoderInput expects a channel-first image (C, H, W), got shape {tuple(img_t.shape)}"
                f"{source_of(img_t)}"
            )
        data = img_t.as_tensor() if isinstance(img_t, MetaTensor) else img_t
        if self.scale == "dtype" and not torch.is_floating_point(data):
            peak = 1.0 if data.dtype == torch.bool else float(torch.iinfo(data.dtype).max)
            data = data.to(torch.float32) / peak
        data = data.to(torch.float32)
        check_finite(data, "ToEncoderInput")
        if self.scale == "minmax":
            lo, hi = data.min(), data.max()
            data = (data - lo) / (hi - lo) if hi > lo else torch.zeros_like(data)
        c = data.shape[0]
        if self.num_channels == 1:
            if c == 3 or (c == 4 and self.drop_alpha):
                data = luma(data, dim=0, keepdim=True)
            elif c != 1:
                raise InvalidImageError(f"ToEncoderInput: cannot make 1 channel from {c}{source_of(img_t)}")
        else:
            if c == 1:
                data = data.repeat(3, *([1] * (data.ndim - 1)))
            elif c == 2:
                data = torch.cat([data, torch.zeros_like(data[:1])], 0)
            elif c == 4 and self.drop_alpha:
                data = data[:3]
            elif c != 3:
                raise InvalidImageError(
                    f"ToEncoderInput: {c} channels cannot be mapped to 3; select channels first{source_of(img_t)}"
                )
        if self.clip:
            data = data.clamp(0.0, 1.0)
        return new_meta_like(data.contiguous(), img_t)


class ToEncoderInputd(MapTransform):
    """Dictionary form of :class:`ToEncoderInput`.

    Example
    -------
    >>> import torch
    >>> d = ToEncoderInputd(keys="image")({"image": torch.zeros(1, 4, 4, dtype=torch.uint8)})
    >>> tuple(d["image"].shape), d["image"].dtype
    ((3, 4, 4), torch.float32)
    """

    backend = ToEncoderInput.backend

    def __init__(
        self,
        keys: KeysCollection,
        num_channels: int = 3,
        scale: str = "dtype",
        clip: bool = True,
        drop_alpha: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ToEncoderInput(num_channels, scale, clip, drop_alpha)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


# ------------------------------------------------------------------------------------------------
# binary masks


class BinarizeMask(Transform):
    """Turn a stored binary mask (0/255 PNG, possibly RGB or JPEG-noisy) into one 0/1 channel.

    A pixel is foreground when any channel (``reduce="any"``) or the mean over channels
    (``reduce="mean"``) exceeds ``threshold`` (default: half the dtype's maximum for integer
    masks, 0.5 for float masks).

    Example
    -------
    >>> import torch
    >>> BinarizeMask()(torch.tensor([[[0, 130, 255]], [[0, 120, 255]]], dtype=torch.uint8)).tolist()
    [[[0.0, 1.0, 1.0]]]
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self, threshold: float | None = None, reduce: str = "any", dtype: torch.dtype | str = torch.float32
    ) -> None:
        self.threshold = check_float(threshold, "threshold", allow_none=True)
        self.reduce = check_choice(reduce, ("any", "mean"), "reduce")
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        img_t = to_tensor(img)
        if img_t.ndim < 2:
            raise InvalidImageError(f"BinarizeMask expects a channel-first mask, got shape {tuple(img_t.shape)}")
        x = img_t.as_tensor() if isinstance(img_t, MetaTensor) else img_t
        if self.threshold is not None:
            thr = float(self.threshold)
        elif torch.is_floating_point(x) or x.dtype == torch.bool:
            thr = 0.5
        else:
            thr = float(torch.iinfo(x.dtype).max) / 2
        xf = x.to(torch.float32)
        fg = (xf > thr).any(0, keepdim=True) if self.reduce == "any" else (xf.mean(0, keepdim=True) > thr)
        return new_meta_like(fg.to(self.dtype), img_t)


class BinarizeMaskd(MapTransform):
    """Dictionary form of :class:`BinarizeMask`.

    Example
    -------
    >>> import torch
    >>> BinarizeMaskd("label")({"label": torch.tensor([[0.0, 0.7]])})["label"].tolist()
    [[0.0, 1.0]]
    """

    backend = BinarizeMask.backend

    def __init__(self, keys: KeysCollection, threshold: float | None = None, reduce: str = "any",
                 dtype: torch.dtype | str = torch.float32, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.binarizer = BinarizeMask(threshold, reduce, dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.binarizer(d[key])
        return d


# ------------------------------------------------------------------------------------------------
# layout


class SwapSpatialAxes(InvertibleTransform):
    """Swap two spatial axes (default the first two) and the matching affine columns; inverts with ``Invertd``.

    MONAI's readers (and ``medfound.io``'s) return 2D pictures as ``(C, X, Y)``: columns first.
    The project's box convention and 2D networks use the array as stored, ``(C, rows, columns)``
    with x along the last axis; this transform converts between the two, keeping the affine
    right (the world position of every pixel is unchanged).

    Example
    -------
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> img = MetaTensor(torch.arange(6.0).reshape(1, 2, 3), affine=torch.diag(torch.tensor([0.5, 2.0, 1.0, 1.0])))
    >>> out = SwapSpatialAxes()(img)
    >>> tuple(out.shape), out[0, :, 0].tolist(), out.affine[:2, :2].tolist()
    ((1, 3, 2), [0.0, 1.0, 2.0], [[0.0, 0.5], [2.0, 0.0]])
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, axes: Sequence[int] = (0, 1)) -> None:
        if len(axes) != 2 or axes[0] == axes[1] or min(axes) < 0:
            raise ConfigError(f"SwapSpatialAxes needs two different spatial axes, got {axes!r}")
        self.axes = (int(axes[0]), int(axes[1]))

    def _swap(self, img: torch.Tensor) -> torch.Tensor:
        a, b = self.axes
        if img.ndim - 1 <= max(a, b):
            raise InvalidImageError(f"SwapSpatialAxes{self.axes}: image of shape {tuple(img.shape)} has too few "
                                    f"spatial axes{source_of(img)}")
        raw = img.as_tensor() if isinstance(img, MetaTensor) else img
        out = new_meta_like(raw.transpose(a + 1, b + 1).contiguous(), img)
        if isinstance(out, MetaTensor):
            affine = out.affine.clone()
            affine[:, [a, b]] = affine[:, [b, a]]
            out.affine = affine
        return out

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        out = self._swap(to_tensor(img))
        if isinstance(out, MetaTensor):
            self.push_transform(out, extra_info={"axes": list(self.axes)})
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        self.pop_transform(data)
        return self._swap(data)


class SwapSpatialAxesd(MapTransform, InvertibleTransform):
    """Dictionary form of :class:`SwapSpatialAxes`.

    Example
    -------
    >>> import torch
    >>> tuple(SwapSpatialAxesd("image")({"image": torch.zeros(3, 4, 5)})["image"].shape)
    (3, 5, 4)
    """

    backend = SwapSpatialAxes.backend

    def __init__(self, keys: KeysCollection, axes: Sequence[int] = (0, 1), allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.swapper = SwapSpatialAxes(axes)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.swapper(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.swapper.inverse(d[key])
        return d


ResizeWithPadD = ResizeWithPadDict = ResizeWithPadd
ToEncoderInputD = ToEncoderInputDict = ToEncoderInputd
BinarizeMaskD = BinarizeMaskDict = BinarizeMaskd
SwapSpatialAxesD = SwapSpatialAxesDict = SwapSpatialAxesd
