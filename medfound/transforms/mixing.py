"""Mixing transforms for DAC: CutMix box masks and region rotation by k x 90 degrees.

Two augmentations supply the self-supervised auxiliary tasks of DAC co-training
(:mod:`medfound.dac`) and the strong view of cross pseudo supervision:

- **CutMix** pastes one or more random boxes of a *source* image into an image. The
  mixed-region mask (1 where the pixel came from the source) is returned, because sub-model
  A learns to predict it. Labels are mixed with the same mask (nearest: a pixel takes the
  label of the image it came from).
- **Region rotation** rotates a random square region of the image by ``k`` x 90 degrees
  (``k`` in {0, 1, 2, 3}, counter-clockwise as :func:`torch.rot90` over the last two axes);
  ``k`` and the region are returned, because sub-model B learns to predict ``k``.

Three forms, all 2D (channel-first ``(C, H, W)`` items or ``(B, C, H, W)`` batches):

- functional batch forms for the training step on GPU tensors (:func:`cutmix_masks`,
  :func:`cutmix`, :func:`sample_square_regions`, :func:`rotate_regions`,
  :func:`square_region_masks`); randomness comes from a ``numpy.random.RandomState`` so a step is
  reproducible from its seed, whatever the device;
- array transforms :class:`RandCutMix`, :class:`RegionRotate90`, :class:`RandRegionRotate90`;
- dictionary transforms :class:`RandCutMixd`, :class:`RandRegionRotate90d`
  (aliases ``...D`` and ``...Dict``).

Random transforms are MONAI ``RandomizableTransform`` s and honour ``set_random_state``;
region rotation is invertible (``inverse``, ``Invertd``) and records ``k`` and the box in
``applied_operations``. CutMix is not invertible (the pasted pixels replace the original).

Boxes are ``(y0, x0, y1, x1)`` (end exclusive) for CutMix and ``(y0, x0, side)`` for the
rotated square.

Example
-------
>>> import torch
>>> from medfound.transforms.mixing import RandCutMix
>>> mixer = RandCutMix(area_range=(0.25, 0.5)).set_random_state(0)
>>> img, src = torch.zeros(3, 32, 32), torch.ones(3, 32, 32)
>>> mixed, mask = mixer(img, src)
>>> bool(((mixed[0] == 1) == (mask[0] == 1)).all()), 0.25 <= float(mask.mean()) <= 0.5
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.meta_obj import get_track_meta
from monai.transforms import InvertibleTransform, MapTransform, RandomizableTransform
from monai.utils import TraceKeys, TransformBackends, convert_to_dst_type, convert_to_tensor

from medfound.errors import ConfigError, LabelMismatchError
from medfound.utils import check_int, check_pair, check_probability

__all__ = [
    "sample_cutmix_boxes",
    "boxes_to_mask",
    "cutmix_masks",
    "cutmix",
    "sample_square_regions",
    "rotate_regions",
    "square_region_masks",
    "amplitude_mix",
    "CUTMIX_PROB",
    "CUTMIX_NUM_BOXES",
    "CUTMIX_AREA_RANGE",
    "CUTMIX_ASPECT_RATIO_RANGE",
    "REGION_SIDE_RANGE",
    "RandCutMix",
    "RegionRotate90",
    "RandRegionRotate90",
    "RandCutMixd",
    "RandCutMixD",
    "RandCutMixDict",
    "RandRegionRotate90d",
    "RandRegionRotate90D",
    "RandRegionRotate90Dict",
]

Box = tuple[int, int, int, int]

# ---------------------------------------------------------------------------------------------
# defaults: the one definition every form here and the DAC config (medfound.dac.config) use
# ---------------------------------------------------------------------------------------------
#: probability that an image is mixed: every unlabelled image (CPS, UniMatch)
CUTMIX_PROB = 1.0
#: boxes pasted per image: one, as in CPS
CUTMIX_NUM_BOXES = 1
#: area of each box as a fraction of the image: the box-mask proportions of CPS (from French
#: et al. 2020, "Semi-supervised semantic segmentation needs strong, varied perturbations")
CUTMIX_AREA_RANGE = (0.25, 0.5)
#: height / width of a box, sampled log-uniformly: 0.3-3.3 as in UniMatch
CUTMIX_ASPECT_RATIO_RANGE = (0.3, 1 / 0.3)
#: side of a rotated square region as a fraction of the shorter image side: large enough to
#: carry orientation cues, small enough to leave most of the image as context
REGION_SIDE_RANGE = (0.25, 0.5)


def _spatial_2d(shape: Sequence[int], what: str) -> tuple[int, int]:
    if len(shape) != 2:
        raise LabelMismatchError(f"{what}: mixing transforms are 2D, got spatial shape {tuple(shape)}")
    return int(shape[0]), int(shape[1])


# ---------------------------------------------------------------------------------------------
# functional forms (batches, any device)
# ---------------------------------------------------------------------------------------------
def sample_cutmix_boxes(
    rng: np.random.RandomState,
    spatial_size: Sequence[int],
    num_boxes: int = CUTMIX_NUM_BOXES,
    area_range: Sequence[float] = CUTMIX_AREA_RANGE,
    aspect_ratio_range: Sequence[float] = CUTMIX_ASPECT_RATIO_RANGE,
) -> list[Box]:
    """Draw ``num_boxes`` CutMix boxes, each covering a fraction of the image in ``area_range``.

    Parameters
    ----------
    rng : source of randomness.
    spatial_size : ``(H, W)``.
    num_boxes : boxes per image; their union is the mixed region (boxes may overlap).
    area_range : ``(min, max)`` box area as a fraction of ``H * W`` (each box, after rounding
        to whole pixels, lies in this range whenever the image is large enough to allow it).
    aspect_ratio_range : ``(min, max)`` of height / width, sampled log-uniformly.

    Returns
    -------
    list of ``(y0, x0, y1, x1)``, end exclusive.

    Example
    -------
    >>> import numpy as np
    >>> (y0, x0, y1, x1), = sample_cutmix_boxes(np.random.RandomState(0), (100, 100), area_range=(0.2, 0.3))
    >>> 0.2 <= (y1 - y0) * (x1 - x0) / 100**2 <= 0.3
    True
    """
    h_img, w_img = _spatial_2d(spatial_size, "cutmix")
    lo, hi = check_pair(area_range, "area_range", low=0.0, high=1.0)
    a_lo, a_hi = check_pair(aspect_ratio_range, "aspect_ratio_range", low=1e-6, high=float("inf"))
    num_boxes = check_int(num_boxes, "num_boxes", low=1)
    total = h_img * w_img
    min_px, max_px = math.ceil(lo * total - 1e-9), math.floor(hi * total + 1e-9)
    boxes = []
    for _ in range(int(num_boxes)):
        for _attempt in range(50):
            area = rng.uniform(lo, hi) * total
            ratio = math.exp(rng.uniform(math.log(a_lo), math.log(a_hi)))
            h = int(np.clip(round(math.sqrt(area * ratio)), 1, h_img))
            w = int(np.clip(round(math.sqrt(area / ratio)), 1, w_img))
            if min_px <= h * w <= max_px:
                break
            # rounding or clipping left the range: fix the width for this height
            w = int(np.clip(round(area / h), max(1, math.ceil(min_px / h)), min(w_img, max(1, max_px // h))))
            if min_px <= h * w <= max_px:
                break
        y0 = int(rng.randint(0, h_img - h + 1))
        x0 = int(rng.randint(0, w_img - w + 1))
        boxes.append((y0, x0, y0 + h, x0 + w))
    return boxes


def boxes_to_mask(
    boxes: Sequence[Sequence[int]], spatial_size: Sequence[int], device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean ``(H, W)`` mask of the union of ``(y0, x0, y1, x1)`` boxes.

    Example
    -------
    >>> int(boxes_to_mask([(0, 0, 2, 3)], (4, 4)).sum())
    6
    """
    h, w = _spatial_2d(spatial_size, "boxes_to_mask")
    mask = torch.zeros((h, w), dtype=torch.bool, device=device)
    for y0, x0, y1, x1 in boxes:
        mask[int(y0):int(y1), int(x0):int(x1)] = True
    return mask


def cutmix_masks(
    rng: np.random.RandomState,
    batch_size: int,
    spatial_size: Sequence[int],
    num_boxes: int = CUTMIX_NUM_BOXES,
    area_range: Sequence[float] = CUTMIX_AREA_RANGE,
    aspect_ratio_range: Sequence[float] = CUTMIX_ASPECT_RATIO_RANGE,
    prob: float = CUTMIX_PROB,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Mixed-region masks for a batch: ``(B, 1, H, W)`` float, 1 where the source is pasted.

    Each sample is mixed with probability ``prob`` (its mask is all zero otherwise).

    Example
    -------
    >>> import numpy as np
    >>> m = cutmix_masks(np.random.RandomState(0), 4, (32, 32), area_range=(0.25, 0.5))
    >>> m.shape, bool(((m.mean((1, 2, 3)) >= 0.25) & (m.mean((1, 2, 3)) <= 0.5)).all())
    (torch.Size([4, 1, 32, 32]), True)
    """
    prob = check_probability(prob, "prob")
    masks = torch.zeros((int(batch_size), 1, *_spatial_2d(spatial_size, "cutmix_masks")), device=device)
    for i in range(int(batch_size)):
        if rng.rand() < prob:
            boxes = sample_cutmix_boxes(rng, spatial_size, num_boxes, area_range, aspect_ratio_range)
            masks[i, 0] = boxes_to_mask(boxes, spatial_size, device=device)
    return masks


def cutmix(x: torch.Tensor, mask: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
    """Paste ``source`` into ``x`` where ``mask`` is 1 (per pixel, exact: no blending).

    Parameters
    ----------
    x : ``(B, C, H, W)`` images, ``(B, H, W)`` label maps, or any ``(B, ..., H, W)`` tensor.
    mask : ``(B, 1, H, W)`` (or ``(B, H, W)``) mixed-region masks from :func:`cutmix_masks`.
    source : tensor shaped like ``x``; default ``x.roll(1, 0)``, i.e. sample ``i`` receives
        the region from sample ``i - 1`` (a different image whenever ``B >= 2``).

    Example
    -------
    >>> import torch
    >>> x = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 2, 2)
    >>> m = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2).expand(2, 1, 2, 2)
    >>> cutmix(x, m)[0, 0].tolist()
    [[1.0, 0.0], [0.0, 0.0]]
    """
    src = x.roll(1, 0) if source is None else source
    if src.shape != x.shape:
        raise LabelMismatchError(f"cutmix: source shape {tuple(src.shape)} differs from {tuple(x.shape)}")
    m = mask
    if m.dim() == 3:
        m = m[:, None]
    if m.shape[0] != x.shape[0] or m.shape[-2:] != x.shape[-2:]:
        raise LabelMismatchError(f"cutmix: mask shape {tuple(mask.shape)} does not fit {tuple(x.shape)}")
    m = m.to(device=x.device) > 0.5
    # broadcast the (B, 1, H, W) mask over whatever sits between batch and spatial axes
    m = m.reshape(m.shape[0], *([1] * (x.dim() - 3)), *m.shape[-2:])
    return torch.where(m, src, x)


def sample_square_regions(
    rng: np.random.RandomState,
    batch_size: int,
    spatial_size: Sequence[int],
    side_range: Sequence[float] = REGION_SIDE_RANGE,
    align: int = 1,
    rotate: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Random square regions and rotation counts for a batch.

    Parameters
    ----------
    rng : source of randomness.
    batch_size : number of regions.
    spatial_size : ``(H, W)``.
    side_range : ``(min, max)`` side length as a fraction of ``min(H, W)``.
    align : corners and side are multiples of ``align`` (use the feature stride, e.g. 16, so
        the region maps exactly onto feature maps of a strided network).
    rotate : draw ``k`` uniformly in {0, 1, 2, 3}; when False every ``k`` is 0.

    Returns
    -------
    boxes : int64 ``(B, 3)`` array of ``(y0, x0, side)``.
    ks : int64 ``(B,)`` array of quarter turns.

    Example
    -------
    >>> import numpy as np
    >>> boxes, ks = sample_square_regions(np.random.RandomState(0), 2, (64, 64), align=16)
    >>> bool((boxes % 16 == 0).all()), ks.tolist()
    (True, [0, 2])
    """
    h, w = _spatial_2d(spatial_size, "region rotation")
    lo, hi = check_pair(side_range, "side_range", low=0.0, high=1.0)
    align = check_int(align, "align", low=1)
    short = min(h, w)
    s_min = max(1, math.ceil(lo * short / align))
    s_max = math.floor(hi * short / align)
    if s_max < s_min:
        raise ConfigError(
            f"no square side in {side_range} x {short} px is a multiple of align={align}; "
            "use larger images, a wider side_range or a smaller align"
        )
    boxes = np.zeros((int(batch_size), 3), dtype=np.int64)
    ks = np.zeros((int(batch_size),), dtype=np.int64)
    for i in range(int(batch_size)):
        side = int(rng.randint(s_min, s_max + 1)) * align
        y0 = int(rng.randint(0, (h - side) // align + 1)) * align
        x0 = int(rng.randint(0, (w - side) // align + 1)) * align
        boxes[i] = (y0, x0, side)
        ks[i] = int(rng.randint(0, 4)) if rotate else 0
    return boxes, ks


def _scaled_boxes(boxes: np.ndarray | torch.Tensor, scale: int) -> np.ndarray:
    b = np.asarray(boxes.cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.int64).reshape(-1, 3)
    if scale != 1:
        if (b % scale).any():
            raise ConfigError(
                f"region boxes {b.tolist()} are not multiples of the feature stride {scale}; "
                f"sample them with align={scale} (or a multiple of it)"
            )
        b = b // scale
    return b


def rotate_regions(
    x: torch.Tensor, boxes: np.ndarray | torch.Tensor, ks: np.ndarray | torch.Tensor | Sequence[int], scale: int = 1
) -> torch.Tensor:
    """Rotate one square region per sample by ``k`` x 90 degrees (as :func:`torch.rot90`).

    Parameters
    ----------
    x : ``(B, ..., H, W)`` tensor (images, label maps or feature maps).
    boxes : ``(B, 3)`` regions ``(y0, x0, side)`` in input pixels.
    ks : ``(B,)`` quarter turns.
    scale : stride of ``x`` relative to the input (boxes are divided by it; they must be
        multiples of it).

    Example
    -------
    >>> import torch
    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> rotate_regions(x, [[0, 0, 2]], [1])[0, 0, :2, :2].tolist()
    [[1.0, 5.0], [0.0, 4.0]]
    """
    b = _scaled_boxes(boxes, int(scale))
    k_list = [int(k) for k in (ks.tolist() if hasattr(ks, "tolist") else ks)]
    if len(b) != x.shape[0] or len(k_list) != x.shape[0]:
        raise LabelMismatchError(f"rotate_regions: {len(b)} boxes / {len(k_list)} ks for a batch of {x.shape[0]}")
    out = x.clone()
    for i, ((y0, x0, s), k) in enumerate(zip(b.tolist(), k_list)):
        if k % 4 == 0 or s == 0:
            continue
        if y0 + s > x.shape[-2] or x0 + s > x.shape[-1]:
            raise LabelMismatchError(f"rotate_regions: region {(y0, x0, s)} exceeds spatial size {tuple(x.shape[-2:])}")
        out[i, ..., y0:y0 + s, x0:x0 + s] = torch.rot90(x[i, ..., y0:y0 + s, x0:x0 + s], k, dims=(-2, -1))
    return out


def square_region_masks(
    boxes: np.ndarray | torch.Tensor,
    spatial_size: Sequence[int],
    scale: int = 1,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``(B, 1, H, W)`` float masks, 1 inside each sample's square region.

    Example
    -------
    >>> int(square_region_masks([[0, 0, 2]], (4, 4)).sum())
    4
    """
    b = _scaled_boxes(boxes, int(scale))
    h, w = _spatial_2d(spatial_size, "square_region_masks")
    masks = torch.zeros((len(b), 1, h, w), device=device)
    for i, (y0, x0, s) in enumerate(b.tolist()):
        masks[i, 0, y0:y0 + s, x0:x0 + s] = 1.0
    return masks


def amplitude_mix(
    x: torch.Tensor, source: torch.Tensor, ratio: torch.Tensor | Sequence[float], window: float = 0.1
) -> torch.Tensor:
    """Fourier style mixing: blend the low-frequency amplitude spectrum of ``source`` into ``x``.

    Per image and channel, the 2D FFT amplitude inside the centred window of ``window`` x
    each side around the zero frequency becomes ``(1 - r) A_x + r A_source``; the phase,
    which carries the structures (hence the labels), stays that of ``x``. The low-frequency
    amplitude holds the appearance of an acquisition site (colour balance, contrast,
    illumination), so ``x`` takes on the other site's appearance with its own content (FDA,
    Yang & Soatto 2020; the amplitude mixing of EPL, Yao et al. 2022). No clipping: the
    output stays in the value space of the inputs.

    Parameters
    ----------
    x, source : ``(B, C, H, W)`` images of one shape.
    ratio : ``(B,)`` mixing weights ``r`` (0 keeps ``x``, 1 takes the window's amplitude of ``source``).
    window : fraction in ``(0, 1]`` of each spectrum side that is mixed (1: the whole amplitude).

    Example
    -------
    >>> import torch
    >>> x, src = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    >>> torch.allclose(amplitude_mix(x, src, [0.0, 0.0]), x, atol=1e-5)
    True
    >>> x = 0.3 + 0.4 * torch.rand(2, 3, 16, 16)
    >>> y = amplitude_mix(x, x.flip(-1) + 0.1, [1.0, 1.0], window=1.0 / 16)  # the zero frequency only
    >>> torch.allclose(y, x + 0.1, atol=1e-5)                                # takes the source's mean
    True
    """
    if x.dim() != 4 or source.shape != x.shape:
        raise LabelMismatchError(f"amplitude_mix needs two (B, C, H, W) batches of one shape, got "
                                 f"{tuple(x.shape)} and {tuple(source.shape)}")
    if not 0.0 < float(window) <= 1.0:
        raise ConfigError(f"window must be in (0, 1], got {window!r}")
    h, w = x.shape[-2:]
    r = torch.as_tensor(ratio, dtype=torch.float32, device=x.device).view(-1, 1, 1, 1)
    fx = torch.fft.fftshift(torch.fft.fft2(x.float()), dim=(-2, -1))
    fs = torch.fft.fftshift(torch.fft.fft2(source.float()), dim=(-2, -1))
    amp_x, phase = fx.abs(), fx.angle()
    bh, bw = max(1, round(window * h)), max(1, round(window * w))
    y0, x0 = h // 2 - bh // 2, w // 2 - bw // 2  # fftshift puts the zero frequency at (h // 2, w // 2)
    inside = torch.zeros((h, w), dtype=torch.bool, device=x.device)
    inside[y0:y0 + bh, x0:x0 + bw] = True
    amp = torch.where(inside, (1 - r) * amp_x + r * fs.abs(), amp_x)
    out = torch.fft.ifft2(torch.fft.ifftshift(torch.polar(amp, phase), dim=(-2, -1))).real
    return out.to(x.dtype)


# ---------------------------------------------------------------------------------------------
# array transforms
# ---------------------------------------------------------------------------------------------
def _like(data: torch.Tensor, ref, dtype=None) -> torch.Tensor:
    """``data`` as the type of ``ref`` (MetaTensor in -> MetaTensor out, metadata of ``ref``)."""
    return convert_to_dst_type(data, dst=ref, dtype=dtype)[0]


class RandCutMix(RandomizableTransform):
    """Paste random boxes of a source into an image; return the image and the mixed-region mask.

    Two modes:

    - ``mixer(img, source)``: ``img`` and ``source`` are channel-first items ``(C, H, W)``;
      returns ``(mixed, mask)`` with ``mask`` of shape ``(1, H, W)``;
    - ``mixer(batch)``: a batch ``(B, C, H, W)``, sample ``i`` receives boxes of sample
      ``i - 1``; returns ``(mixed, mask)`` with ``mask`` of shape ``(B, 1, H, W)``.

    Call again with ``randomize=False`` to mix the labels with the same boxes. Pixels are
    copied, never blended, so integer label maps stay valid. MetaTensor in, MetaTensor out
    (metadata and ``applied_operations`` of ``img``; the mask carries them too).

    Parameters
    ----------
    prob : probability that an item (each item of a batch separately) is mixed.
    num_boxes : boxes pasted per item.
    area_range : per-box area as a fraction of the image, ``(min, max)``.
    aspect_ratio_range : height / width range, sampled log-uniformly.

    Example
    -------
    >>> import torch
    >>> mixer = RandCutMix(area_range=(0.3, 0.3)).set_random_state(1)
    >>> mixed, mask = mixer(torch.zeros(1, 10, 10), torch.ones(1, 10, 10))
    >>> float(mask.sum()), torch.equal(mixed, mask)
    (30.0, True)
    >>> label_mixed, _ = mixer(torch.zeros(1, 10, 10), torch.full((1, 10, 10), 2.0), randomize=False)
    >>> float(label_mixed.sum())
    60.0
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        prob: float = CUTMIX_PROB,
        num_boxes: int = CUTMIX_NUM_BOXES,
        area_range: Sequence[float] = CUTMIX_AREA_RANGE,
        aspect_ratio_range: Sequence[float] = CUTMIX_ASPECT_RATIO_RANGE,
    ) -> None:
        RandomizableTransform.__init__(self, check_probability(prob, "prob"))
        self.num_boxes = check_int(num_boxes, "num_boxes", low=1)
        self.area_range = check_pair(area_range, "area_range", low=0.0, high=1.0)
        self.aspect_ratio_range = check_pair(aspect_ratio_range, "aspect_ratio_range", low=1e-6, high=float("inf"))
        self.boxes: list[list[Box]] = []
        self._spatial: tuple[int, int] | None = None

    def randomize(self, spatial_size: Sequence[int], batch_size: int = 1) -> None:  # type: ignore[override]
        """Draw the boxes for ``batch_size`` items of size ``spatial_size`` (empty list = not mixed)."""
        self._spatial = _spatial_2d(spatial_size, type(self).__name__)
        self.boxes = []
        for _ in range(int(batch_size)):
            super().randomize(None)
            self.boxes.append(
                sample_cutmix_boxes(self.R, self._spatial, self.num_boxes, self.area_range, self.aspect_ratio_range)
                if self._do_transform
                else []
            )

    def mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The masks of the last draw: ``(B, 1, H, W)`` float."""
        if self._spatial is None:
            raise RuntimeError("RandCutMix: call randomize() (or the transform) first")
        return torch.stack([boxes_to_mask(b, self._spatial, device)[None] for b in self.boxes]).float()

    def __call__(  # type: ignore[override]
        self, img: torch.Tensor, source: torch.Tensor | None = None, randomize: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        img_t = convert_to_tensor(img, track_meta=False)
        batched = source is None
        if batched:
            if img_t.dim() != 4:
                raise LabelMismatchError(
                    f"RandCutMix without a source needs a batch (B, C, H, W), got shape {tuple(img_t.shape)}"
                )
            src_t = img_t.roll(1, 0)
        else:
            src_t = convert_to_tensor(source, track_meta=False)
            if img_t.dim() != 3 or src_t.shape[-2:] != img_t.shape[-2:]:
                raise LabelMismatchError(
                    f"RandCutMix needs channel-first 2D items of equal size, got {tuple(img_t.shape)} "
                    f"and {tuple(src_t.shape)}"
                )
            if src_t.shape != img_t.shape:
                src_t = src_t.expand_as(img_t) if src_t.shape[0] == 1 else src_t
        n = img_t.shape[0] if batched else 1
        if randomize:
            self.randomize(img_t.shape[-2:], n)
        elif self._spatial != tuple(img_t.shape[-2:]) or len(self.boxes) != n:
            raise LabelMismatchError(
                f"RandCutMix(randomize=False): shape {tuple(img_t.shape)} does not match the last draw "
                f"({len(self.boxes)} item(s) of {self._spatial})"
            )
        mask = self.mask(img_t.device)
        if batched:
            mixed = cutmix(img_t, mask, src_t)
        else:
            mixed = cutmix(img_t[None], mask, src_t.to(img_t.dtype)[None])[0]
            mask = mask[0]
        return _like(mixed, img), _like(mask, img, dtype=torch.float32)


class RegionRotate90(InvertibleTransform):
    """Rotate the square region ``box = (y0, x0, side)`` of a ``(C, H, W)`` item by ``k`` x 90 degrees.

    Invertible: the inverse rotates the region back (``k`` and ``box`` are kept in
    ``applied_operations``).

    Example
    -------
    >>> import torch
    >>> x = torch.arange(16.0).view(1, 4, 4)
    >>> rot = RegionRotate90(k=2, box=(0, 0, 2))
    >>> y = rot(x)
    >>> y[0, :2, :2].tolist(), torch.equal(rot.inverse(y), x)
    ([[5.0, 4.0], [1.0, 0.0]], True)
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, k: int = 1, box: Sequence[int] = (0, 0, 0)) -> None:
        self.k = int(k) % 4
        self.box = tuple(int(v) for v in box)
        if len(self.box) != 3 or min(self.box) < 0:
            raise ConfigError(f"box must be (y0, x0, side) with non-negative entries, got {box!r}")

    @staticmethod
    def _apply(img: torch.Tensor, k: int, box: Sequence[int]) -> torch.Tensor:
        img_t = convert_to_tensor(img, track_meta=False)
        if img_t.dim() != 3:
            raise LabelMismatchError(
                f"RegionRotate90 needs a channel-first 2D item (C, H, W), got {tuple(img_t.shape)}"
            )
        return rotate_regions(img_t[None], np.asarray([box]), [k])[0]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        out = _like(self._apply(img, self.k, self.box), img)
        out = convert_to_tensor(out, track_meta=get_track_meta())
        self.push_transform(out, extra_info={"k": self.k, "box": list(self.box)})
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        info = self.pop_transform(data)
        return self.inverse_transform(data, info)

    def inverse_transform(self, data: torch.Tensor, info: Mapping) -> torch.Tensor:
        extra = info[TraceKeys.EXTRA_INFO]
        return _like(self._apply(data, (4 - int(extra["k"])) % 4, extra["box"]), data)


class RandRegionRotate90(RandomizableTransform, InvertibleTransform):
    """With probability ``prob``, rotate a random square region of a ``(C, H, W)`` item by ``k`` x 90 degrees.

    ``k`` is uniform in {0, 1, 2, 3} (0 is a class of the rotation task: the region is drawn
    but left as is). After a call, :attr:`k` and :attr:`box` (``(y0, x0, side)``) describe
    what was done; when the transform was skipped, ``k == 0`` and ``box == (0, 0, 0)``.

    Parameters
    ----------
    prob : probability of drawing a region.
    side_range : region side as a fraction of ``min(H, W)``.
    align : region corners and side are multiples of ``align`` (e.g. a network's stride).

    Example
    -------
    >>> import torch
    >>> rot = RandRegionRotate90(side_range=(0.5, 0.5)).set_random_state(3)
    >>> x = torch.rand(1, 8, 8)
    >>> y = rot(x)
    >>> (y0, x0, s), k = rot.box, rot.k
    >>> torch.equal(y[:, y0:y0 + s, x0:x0 + s], torch.rot90(x[:, y0:y0 + s, x0:x0 + s], k, (1, 2)))
    True
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, prob: float = 1.0, side_range: Sequence[float] = REGION_SIDE_RANGE, align: int = 1) -> None:
        RandomizableTransform.__init__(self, check_probability(prob, "prob"))
        self.side_range = check_pair(side_range, "side_range", low=0.0, high=1.0)
        self.align = int(align)
        self.k = 0
        self.box: tuple[int, int, int] = (0, 0, 0)

    def randomize(self, spatial_size: Sequence[int]) -> None:  # type: ignore[override]
        """Draw ``k`` and the region for an image of size ``spatial_size``."""
        super().randomize(None)
        if not self._do_transform:
            self.k, self.box = 0, (0, 0, 0)
            return
        boxes, ks = sample_square_regions(self.R, 1, spatial_size, self.side_range, self.align)
        self.k, self.box = int(ks[0]), tuple(int(v) for v in boxes[0])  # type: ignore[assignment]

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:  # type: ignore[override]
        if randomize:
            self.randomize(_spatial_2d(img.shape[1:], type(self).__name__))
        out = _like(RegionRotate90._apply(img, self.k, self.box), img)
        out = convert_to_tensor(out, track_meta=get_track_meta())
        self.push_transform(out, extra_info={"k": self.k, "box": list(self.box)})
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        info = self.pop_transform(data)
        if not info[TraceKeys.DO_TRANSFORM]:
            return data
        return RegionRotate90().inverse_transform(data, info)


# ---------------------------------------------------------------------------------------------
# dictionary transforms
# ---------------------------------------------------------------------------------------------
class RandCutMixd(RandomizableTransform, MapTransform):
    """Dictionary form of :class:`RandCutMix`: the same boxes for every key; the mask goes to ``mask_key``.

    - With ``source_keys``: ``d[key]`` receives the boxes of ``d[source_key]`` (two items in one
      dictionary, e.g. ``image`` / ``image_2`` of a paired dataset; items are ``(C, H, W)``).
    - Without: each ``d[key]`` is a batch ``(B, C, H, W)`` and sample ``i`` receives the boxes
      of sample ``i - 1``.

    Parameters
    ----------
    keys : keys to mix (images and labels alike; pixels are copied, never blended).
    source_keys : one source key per key, or ``None`` for in-batch mixing.
    mask_key : where to store the mixed-region mask (``(1, H, W)`` or ``(B, 1, H, W)``).
    prob, num_boxes, area_range, aspect_ratio_range : as :class:`RandCutMix`.
    allow_missing_keys : skip keys (and their sources) that are absent.

    Example
    -------
    >>> import torch
    >>> t = RandCutMixd(["image", "label"], ["image_2", "label_2"]).set_random_state(0)
    >>> d = t({"image": torch.zeros(3, 16, 16), "image_2": torch.ones(3, 16, 16),
    ...        "label": torch.zeros(1, 16, 16), "label_2": torch.ones(1, 16, 16)})
    >>> torch.equal(d["label"], d["cutmix_mask"]), torch.equal(d["image"][0:1], d["cutmix_mask"])
    (True, True)
    """

    backend = RandCutMix.backend

    def __init__(
        self,
        keys: KeysCollection,
        source_keys: KeysCollection | None = None,
        mask_key: str = "cutmix_mask",
        prob: float = CUTMIX_PROB,
        num_boxes: int = CUTMIX_NUM_BOXES,
        area_range: Sequence[float] = CUTMIX_AREA_RANGE,
        aspect_ratio_range: Sequence[float] = CUTMIX_ASPECT_RATIO_RANGE,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)  # the per-item probability lives in the mixer
        if source_keys is not None:
            src = [source_keys] if isinstance(source_keys, (str, int)) else list(source_keys)
            if len(src) != len(self.keys):
                raise ConfigError(f"source_keys {src} must have one entry per key {list(self.keys)}")
            self.source_keys: tuple | None = tuple(src)
        else:
            self.source_keys = None
        self.mask_key = mask_key
        self.mixer = RandCutMix(prob, num_boxes, area_range, aspect_ratio_range)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandCutMixd:
        super().set_random_state(seed, state)
        self.mixer.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        pairs = list(zip(self.keys, self.source_keys or [None] * len(self.keys)))
        present = [(k, s) for k, s in pairs if k in d and (s is None or s in d)]
        missing = [k if k not in d else s for k, s in pairs if (k, s) not in present]
        if missing and not self.allow_missing_keys:
            raise KeyError(f"RandCutMixd: key(s) {missing} not in the data (keys present: {list(d)})")
        first = True
        for key, src in present:
            mixed, mask = self.mixer(d[key], None if src is None else d[src], randomize=first)
            d[key] = mixed
            if first:
                d[self.mask_key] = mask
            first = False
        return d


class RandRegionRotate90d(RandomizableTransform, MapTransform, InvertibleTransform):
    """Dictionary form of :class:`RandRegionRotate90`: one region and ``k`` for all keys.

    ``k`` goes to ``d[k_key]`` (int) and the region to ``d[box_key]`` (``[y0, x0, side]``), the
    labels of the rotation auxiliary task. Invertible per key with ``Invertd``.

    Example
    -------
    >>> import torch
    >>> t = RandRegionRotate90d(["image", "label"], side_range=(0.5, 0.5)).set_random_state(0)
    >>> d = t({"image": torch.rand(3, 8, 8), "label": torch.rand(1, 8, 8)})
    >>> d["rotation_k"] in (0, 1, 2, 3), len(d["rotation_box"])
    (True, 3)
    """

    backend = RandRegionRotate90.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 1.0,
        side_range: Sequence[float] = REGION_SIDE_RANGE,
        align: int = 1,
        k_key: str = "rotation_k",
        box_key: str = "rotation_box",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)
        self.rotator = RandRegionRotate90(prob, side_range, align)
        self.k_key, self.box_key = k_key, box_key

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandRegionRotate90d:
        super().set_random_state(seed, state)
        self.rotator.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        first = True
        for key in self.key_iterator(d):
            if first:
                self.rotator.randomize(_spatial_2d(d[key].shape[1:], type(self).__name__))
                first = False
            d[key] = self.rotator(d[key], randomize=False)
        d[self.k_key] = self.rotator.k
        d[self.box_key] = list(self.rotator.box)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.rotator.inverse(d[key])
        return d


RandCutMixD = RandCutMixDict = RandCutMixd
RandRegionRotate90D = RandRegionRotate90Dict = RandRegionRotate90d
