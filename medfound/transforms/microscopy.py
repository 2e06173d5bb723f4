"""Transforms for microscopy: channel normalisation, tiling with blended re-assembly, instance masks.

- :class:`ChannelPercentileNormalize`: each channel's low/high percentiles to [0, 1] (the usual
  normalisation for fluorescence, e.g. 1 and 99.8 as in CSBDeep/StarDist).
- :class:`GridTile` + :class:`TileAssembler`: cut a large image into overlapping tiles that
  remember their position (items of a dataset, each invertible with ``Invertd``), and blend
  per-tile predictions made elsewhere back (Gaussian, linear-ramp or constant weights). To run a
  network over a whole image in tiles, use MONAI's ``SlidingWindowInferer`` (same grid, same
  Gaussian weights; ``sw_device`` / ``device`` keep the output on the CPU).
- :class:`InstanceMaskToBoxes`: instance label image to boxes, centroids, areas and the count,
  the labels of detection and counting tasks.

Box convention (the whole project): ``[x_min, y_min, x_max, y_max]`` in pixels of the array as
stored, x along the last (width) axis, y along the second-last (height) axis, corners on pixel
edges so the max is exclusive (pixel column ``i`` spans ``[i, i + 1)``). Centroids ``[x, y]`` use
the same continuous coordinates (a single pixel at column 3, row 5 has centroid ``[3.5, 5.5]``).
Boxes are measured on the mask as given, x along its last axis: give it rows first, as stored
(MONAI's readers return pictures as ``(C, X, Y)``; ``SwapSpatialAxes`` turns them rows first, and
:func:`~medfound.transforms.presets.get_preset` does so when it loads files).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from copy import deepcopy
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.data.utils import compute_importance_map
from monai.transforms import CropForeground, InvertibleTransform, MapTransform, Transform
from monai.transforms.traits import MultiSampleTrait
from monai.utils import TransformBackends

from medfound.errors import ConfigError, InvalidImageError, LabelMismatchError
from medfound.transforms._utils import source_of, spatial_tuple, to_tensor
from medfound.transforms.intensity import PercentileNormalize, PercentileNormalized
from medfound.utils import check_choice

__all__ = [
    "ChannelPercentileNormalize",
    "ChannelPercentileNormalized",
    "ChannelPercentileNormalizeD",
    "ChannelPercentileNormalizeDict",
    "tile_starts",
    "tile_positions",
    "GridTile",
    "GridTiled",
    "GridTileD",
    "GridTileDict",
    "TileAssembler",
    "instance_boxes",
    "InstanceMaskToBoxes",
    "InstanceMaskToBoxesd",
    "InstanceMaskToBoxesD",
    "InstanceMaskToBoxesDict",
]


class ChannelPercentileNormalize(PercentileNormalize):
    """Per-channel percentile normalisation of a microscopy image (defaults 1 and 99.8, clipped to [0, 1]).

    Stains and fluorophores differ in brightness by orders of magnitude, so each channel is
    scaled on its own: :class:`~medfound.transforms.intensity.PercentileNormalize` with microscopy defaults.

    Example
    -------
    >>> import torch
    >>> img = torch.stack([torch.arange(100.0), 1000 * torch.arange(100.0)]).reshape(2, 10, 10)
    >>> out = ChannelPercentileNormalize(lower=0, upper=100)(img)
    >>> out[:, 9, 9].tolist()
    [1.0, 1.0]
    """

    def __init__(
        self,
        lower: float = 1.0,
        upper: float = 99.8,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        nonzero: bool = False,
        dtype: torch.dtype | str = torch.float32,
    ) -> None:
        super().__init__(lower, upper, b_min, b_max, clip, channel_wise=True, nonzero=nonzero, dtype=dtype)


class ChannelPercentileNormalized(PercentileNormalized):
    """Dictionary form of :class:`ChannelPercentileNormalize`.

    Example
    -------
    >>> import torch
    >>> d = ChannelPercentileNormalized("image", lower=0, upper=100)({"image": torch.tensor([[1.0, 3.0], [0.0, 8.0]])})
    >>> d["image"].tolist()
    [[0.0, 1.0], [0.0, 1.0]]
    """

    def __init__(
        self,
        keys: KeysCollection,
        lower: float = 1.0,
        upper: float = 99.8,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        nonzero: bool = False,
        mask_key: str | None = None,
        dtype: torch.dtype | str = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, lower, upper, b_min, b_max, clip, True, nonzero, mask_key, dtype, allow_missing_keys)


# ------------------------------------------------------------------------------------------------
# tiling


def _stride(tile: int, overlap: float | int) -> int:
    """Step between tile starts: ``overlap`` < 1 is a fraction of the tile (MONAI's rule), >= 1 pixels."""
    if overlap < 0:
        raise ConfigError(f"tile overlap must be >= 0, got {overlap}")
    if overlap < 1:
        return max(1, int(tile * (1 - overlap)))
    if int(overlap) >= tile:
        raise ConfigError(f"tile overlap of {overlap} pixels must be smaller than the tile ({tile})")
    return tile - int(overlap)


def tile_starts(size: int, tile: int, overlap: float | int = 0.25) -> list[int]:
    """Tile start positions covering ``[0, size)``; the last tile ends at the border (same grid as
    ``monai.inferers.SlidingWindowInferer``). An image smaller than the tile gets one tile at 0.

    Example
    -------
    >>> tile_starts(10, 4, overlap=0.25), tile_starts(10, 4, overlap=2), tile_starts(3, 4)
    ([0, 3, 6], [0, 2, 4, 6], [0])
    """
    stride = _stride(tile, overlap)
    if size <= tile:
        return [0]
    return list(range(0, size - tile, stride)) + [size - tile]


def tile_positions(
    spatial_shape: Sequence[int], tile_size: int | Sequence[int], overlap: float | int | Sequence[float] = 0.25
) -> list[tuple[int, ...]]:
    """All tile start corners (row-major) for an image of ``spatial_shape``.

    Example
    -------
    >>> tile_positions((6, 10), 4, overlap=0.5)
    [(0, 0), (0, 2), (0, 4), (0, 6), (2, 0), (2, 2), (2, 4), (2, 6)]
    """
    nd = len(spatial_shape)
    tiles = spatial_tuple(tile_size, nd, "tile_size")
    overlaps = [overlap] * nd if isinstance(overlap, (int, float)) else list(overlap)
    if len(overlaps) != nd:
        raise ConfigError(f"overlap needs 1 or {nd} values, got {overlap!r}")
    axes = [tile_starts(int(s), t, o) for s, t, o in zip(spatial_shape, tiles, overlaps)]
    grids = np.meshgrid(*axes, indexing="ij")
    return [tuple(int(v) for v in p) for p in np.stack([g.ravel() for g in grids], 1)]


class GridTile(InvertibleTransform, MultiSampleTrait):
    """Cut a channel-first image into overlapping tiles of ``tile_size`` on a regular grid.

    Each tile is a MetaTensor whose metadata holds ``tile_start`` (corner, array order),
    ``tile_index``, ``tile_count`` and ``tile_image_shape``; tiles reaching beyond a small image are
    padded (``pad_mode``). Feed predictions to :class:`TileAssembler` (it reads ``tile_start``), or
    invert a single tile with ``Invertd`` to place it in an image-sized canvas.

    Parameters
    ----------
    tile_size : tile size (int: the same on every axis).
    overlap : fraction of the tile (< 1) or pixels (>= 1) shared by neighbouring tiles.
    pad_mode : padding beyond the image (``"constant"``, ``"reflect"``, ``"replicate"``, ...).

    Example
    -------
    >>> import torch
    >>> tiles = GridTile(tile_size=4, overlap=0.5)(torch.arange(36.0).reshape(1, 6, 6))
    >>> len(tiles), tiles[1].meta["tile_start"], float(tiles[1][0, 0, 0])
    (4, [0, 2], 2.0)
    """

    backend = CropForeground.backend

    def __init__(self, tile_size: int | Sequence[int] = 512, overlap: float | int = 0.25,
                 pad_mode: str = "constant", **pad_kwargs: Any) -> None:
        self.tile_size = tile_size
        self.overlap = overlap
        self._cropper = CropForeground(mode=pad_mode, allow_smaller=False, **pad_kwargs)

    def tiles_for(self, img: torch.Tensor, positions: Sequence[Sequence[int]] | None = None) -> list[torch.Tensor]:
        nd = img.ndim - 1
        size = spatial_tuple(self.tile_size, nd, "tile_size")
        shape = [int(s) for s in img.shape[1:]]
        positions = tile_positions(shape, size, self.overlap) if positions is None else positions
        out = []
        for i, start in enumerate(positions):
            src = img
            if isinstance(img, MetaTensor) and get_track_meta():
                # each tile gets its own history so inverting one never disturbs another
                src = MetaTensor(img.as_tensor(), meta=dict(img.meta),
                                 applied_operations=deepcopy(img.applied_operations))
            begin = np.asarray(start, dtype=np.int64)
            tile = self._cropper.crop_pad(src, begin, begin + np.asarray(size))
            if isinstance(tile, MetaTensor):
                tile.meta.update({"tile_start": [int(v) for v in start], "tile_index": i,
                                  "tile_count": len(positions), "tile_image_shape": shape})
            out.append(tile)
        return out

    def __call__(self, img: NdarrayOrTensor) -> list[torch.Tensor]:
        img_t = to_tensor(img)
        if img_t.ndim < 2:
            raise InvalidImageError(f"GridTile expects a channel-first image, got shape {tuple(img_t.shape)}")
        return self.tiles_for(img_t)

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        out = self._cropper.inverse(data)
        if isinstance(out, MetaTensor):
            for key in ("tile_start", "tile_index", "tile_count", "tile_image_shape"):
                out.meta.pop(key, None)
        return out


class GridTiled(MapTransform, InvertibleTransform, MultiSampleTrait):
    """Dictionary form of :class:`GridTile`: one item per tile, the same tile of every key.

    Example
    -------
    >>> import torch
    >>> items = GridTiled(("image", "label"), tile_size=4, overlap=0)({"image": torch.rand(1, 8, 8),
    ...                                                             "label": torch.ones(1, 8, 8)})
    >>> len(items), items[3]["label"].meta["tile_start"]
    (4, [4, 4])
    """

    backend = GridTile.backend

    def __init__(self, keys: KeysCollection, tile_size: int | Sequence[int] = 512, overlap: float | int = 0.25,
                 pad_mode: str = "constant", allow_missing_keys: bool = False, **pad_kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.tiler = GridTile(tile_size, overlap, pad_mode, **pad_kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        present = list(self.key_iterator(d))
        if not present:
            return [d]
        first = to_tensor(d[present[0]])
        shape = [int(s) for s in first.shape[1:]]
        for key in present[1:]:
            if [int(s) for s in d[key].shape[1:]] != shape:
                raise LabelMismatchError(f"GridTiled: '{key}' has spatial shape {tuple(d[key].shape[1:])}, "
                                         f"'{present[0]}' has {tuple(shape)}{source_of(first)}")
        positions = tile_positions(shape, spatial_tuple(self.tiler.tile_size, len(shape), "tile_size"),
                                   self.tiler.overlap)
        per_key = {key: self.tiler.tiles_for(to_tensor(d[key]), positions) for key in present}
        others = [k for k in d if k not in per_key]
        return [{**{k: deepcopy(d[k]) for k in others}, **{k: per_key[k][i] for k in present}}
                for i in range(len(positions))]

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.tiler.inverse(d[key])
        return d


class TileAssembler:
    """Blend overlapping tile predictions back into one image.

    Every pixel's value is the weighted mean of the tiles covering it; weights are a per-tile map
    (``"gaussian"``: MONAI's importance map, ``sigma_scale`` times the tile size, so tile borders
    count little; ``"linear"``: a ramp rising over ``ramp`` pixels from each tile border;
    ``"constant"``: plain mean). Weights are positive everywhere, so re-assembling unmodified
    tiles reproduces the image up to float rounding.

    Own code because MONAI has no weighted merger: its ``PatchInferer`` mergers (``AvgMerger``)
    average with equal weights, and Gaussian weighting exists only inside
    ``sliding_window_inference``, which needs the network and the whole image in one call. With
    ``GridTile`` tiles and Gaussian weights the result equals ``SlidingWindowInferer``'s
    (``tests/test_transforms_microscopy.py``).

    Parameters
    ----------
    spatial_shape : size of the full image.
    tile_size : tile size the predictions have.
    blend : ``"gaussian"``, ``"linear"`` or ``"constant"``.
    sigma_scale : Gaussian sigma relative to the tile size.
    ramp : linear ramp length in pixels (default a quarter of the tile).
    device, dtype : where and how the accumulators live (keep large images on the CPU).

    Example
    -------
    >>> import torch
    >>> img = torch.rand(1, 10, 12)
    >>> asm = TileAssembler(img.shape[1:], tile_size=6)
    >>> for tile in GridTile(tile_size=6, overlap=0.5)(img):
    ...     asm.add(tile)
    >>> bool(torch.allclose(asm.result(), img, atol=1e-6))
    True
    """

    _BLENDS = ("gaussian", "linear", "constant")

    def __init__(
        self,
        spatial_shape: Sequence[int],
        tile_size: int | Sequence[int],
        blend: str = "gaussian",
        sigma_scale: float = 0.125,
        ramp: int | None = None,
        device: torch.device | str | None = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        check_choice(blend, self._BLENDS, "blend")
        self.spatial_shape = tuple(int(s) for s in spatial_shape)
        self.tile_size = spatial_tuple(tile_size, len(self.spatial_shape), "tile_size")
        self.device = torch.device(device) if device is not None else None
        self.dtype = dtype
        self.weight = self._weight_map(blend, sigma_scale, ramp).to(self.device or "cpu", dtype)
        self._sum: torch.Tensor | None = None
        self._done = False
        self._norm = torch.zeros(self.spatial_shape, device=self.device, dtype=dtype)

    def _weight_map(self, blend: str, sigma_scale: float, ramp: int | None) -> torch.Tensor:
        if blend in ("gaussian", "constant"):
            return compute_importance_map(self.tile_size, mode=blend, sigma_scale=sigma_scale)
        w = torch.ones(())
        for n in self.tile_size:
            r = max(1, int(ramp) if ramp is not None else n // 4)
            i = torch.arange(n, dtype=torch.float32)
            axis = torch.minimum(torch.minimum(i + 1, n - i), torch.tensor(float(r))) / r
            w = w.unsqueeze(-1) * axis
        return w

    def add(self, tile: torch.Tensor, start: Sequence[int] | None = None) -> None:
        """Add one prediction ``(C, *tile_size)`` whose corner is ``start`` (default: its ``tile_start`` metadata)."""
        if start is None:
            if not isinstance(tile, MetaTensor) or "tile_start" not in tile.meta:
                raise ConfigError("TileAssembler.add needs start= unless the tile carries 'tile_start' metadata")
            start = tile.meta["tile_start"]
        if self._done:
            raise ConfigError("TileAssembler.add after result(): start a new assembler for a new image")
        start = [int(s) for s in (start.tolist() if isinstance(start, torch.Tensor) else start)]
        data = tile.as_tensor() if isinstance(tile, MetaTensor) else torch.as_tensor(tile)
        if tuple(data.shape[1:]) != self.tile_size:
            raise InvalidImageError(
                f"TileAssembler: tile of spatial shape {tuple(data.shape[1:])}, expected {self.tile_size}"
            )
        if self._sum is None:
            self._sum = torch.zeros((data.shape[0], *self.spatial_shape), device=self.device, dtype=self.dtype)
        elif data.shape[0] != self._sum.shape[0]:
            raise InvalidImageError(
                f"TileAssembler: tile has {data.shape[0]} channels, earlier tiles {self._sum.shape[0]}"
            )
        # the part of the tile inside the image (tiles of small images reach into padding)
        dst = tuple(slice(s, min(s + t, n)) for s, t, n in zip(start, self.tile_size, self.spatial_shape))
        src = tuple(slice(0, d.stop - d.start) for d in dst)
        w = self.weight[src]
        self._sum[(slice(None), *dst)].addcmul_(data[(slice(None), *src)].to(self._sum.device, self.dtype), w)
        self._norm[dst] += w

    def add_batch(self, tiles: torch.Tensor, starts: Sequence[Sequence[int]]) -> None:
        """Add a batch ``(B, C, *tile_size)`` of predictions with their corners."""
        for tile, start in zip(tiles, starts):
            self.add(tile, start)

    def result(self) -> torch.Tensor:
        """The blended image ``(C, *spatial_shape)``; every pixel must have been covered by a tile.
        Call it once, after the last tile (the accumulator is normalised in place)."""
        if self._done:
            return self._sum
        if self._sum is None:
            raise ConfigError("TileAssembler.result called before any tile was added")
        if bool((self._norm <= 0).any()):
            raise ConfigError(f"TileAssembler: {int((self._norm <= 0).sum())} pixels are covered by no tile")
        self._done = True  # the accumulator becomes the result (no second full-size buffer)
        return self._sum.div_(self._norm)


# ------------------------------------------------------------------------------------------------
# instance masks -> detection and counting labels


def instance_boxes(
    mask: NdarrayOrTensor, semantic: NdarrayOrTensor | None = None, min_area: int = 0
) -> dict[str, np.ndarray]:
    """Boxes, centroids, areas and classes of the instances of a 2D instance mask.

    Parameters
    ----------
    mask : ``(H, W)`` or ``(1, H, W)`` integer array; 0 is background, each positive id one instance.
    semantic : optional class map of the same shape; an instance's class is its most common value there.
    min_area : instances with fewer pixels are dropped.

    Returns
    -------
    dict with ``"instance_id"`` (N,), ``"box"`` (N, 4) ``[x_min, y_min, x_max, y_max]`` (max
    exclusive), ``"centroid"`` (N, 2) ``[x, y]``, ``"area"`` (N,), ``"class"`` (N,; 0 without
    ``semantic``), sorted by id.

    Own code: MONAI's ``BoundingRect`` needs the mask one-hot (one channel per instance) and took
    14-45 times as long on the 125 nuclei of the committed stardist mask, with identical boxes
    (``examples/benchmarks/transforms_bench.py``); it gives no centroids, areas or classes.

    Example
    -------
    >>> import numpy as np
    >>> m = np.zeros((5, 6), int); m[1:3, 2:5] = 7
    >>> r = instance_boxes(m)
    >>> r["box"].tolist(), r["centroid"].tolist(), r["area"].tolist()
    ([[2.0, 1.0, 5.0, 3.0]], [[3.5, 2.0]], [6])
    """
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise InvalidImageError(f"instance mask must be 2D (H, W) or (1, H, W), got shape {arr.shape}{source_of(mask)}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise LabelMismatchError(f"instance mask holds non-integer values{source_of(mask)}")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iub":
        raise LabelMismatchError(f"instance mask must hold integer ids, got dtype {arr.dtype}{source_of(mask)}")
    width = arr.shape[1]
    flat = arr.reshape(-1).astype(np.int64)
    pos = np.flatnonzero(flat > 0)
    ids_all = flat[pos]
    order = np.argsort(ids_all, kind="stable")
    ids_sorted, pos = ids_all[order], pos[order]
    empty = {"instance_id": np.zeros(0, np.int64), "box": np.zeros((0, 4), np.float32),
             "centroid": np.zeros((0, 2), np.float32), "area": np.zeros(0, np.int64), "class": np.zeros(0, np.int64)}
    if ids_sorted.size == 0:
        return empty
    ids, starts, areas = np.unique(ids_sorted, return_index=True, return_counts=True)
    rows, cols = pos // width, pos % width
    boxes = np.stack([np.minimum.reduceat(cols, starts), np.minimum.reduceat(rows, starts),
                      np.maximum.reduceat(cols, starts) + 1, np.maximum.reduceat(rows, starts) + 1], 1)
    centroids = np.stack([np.add.reduceat(cols, starts) / areas + 0.5, np.add.reduceat(rows, starts) / areas + 0.5], 1)
    classes = np.zeros(len(ids), np.int64)
    if semantic is not None:
        sem = semantic.detach().cpu().numpy() if isinstance(semantic, torch.Tensor) else np.asarray(semantic)
        sem = sem.reshape(-1) if sem.size == flat.size else None
        if sem is None:
            raise LabelMismatchError(
                f"semantic map of shape {np.shape(semantic)} does not match the instance mask {arr.shape}"
            )
        vals = sem[pos].astype(np.int64)
        owner = np.repeat(np.arange(len(ids)), areas)
        pairs, counts = np.unique(np.stack([owner, vals], 1), axis=0, return_counts=True)
        # per instance, the class with the highest count (ties: the smaller class value)
        best = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
        first = np.unique(pairs[best, 0], return_index=True)[1]
        classes = pairs[best[first], 1]
    keep = areas >= int(min_area)
    return {"instance_id": ids[keep], "box": boxes[keep].astype(np.float32),
            "centroid": centroids[keep].astype(np.float32), "area": areas[keep].astype(np.int64),
            "class": classes[keep]}


class InstanceMaskToBoxes(Transform):
    """Instance mask to detection and counting labels (see :func:`instance_boxes`).

    Returns a dict of tensors: ``box`` (N, 4) float32, ``label`` (N,) int64 (``class_value`` for
    every instance, or the majority class of ``semantic``), ``centroid`` (N, 2), ``area`` (N,),
    ``instance_id`` (N,) and ``count`` (0-dim int64).

    Example
    -------
    >>> import torch
    >>> m = torch.zeros(1, 8, 8, dtype=torch.int32); m[0, :2, :3] = 1; m[0, 5:, 6:] = 2
    >>> out = InstanceMaskToBoxes()(m)
    >>> out["box"].tolist(), int(out["count"])
    ([[0.0, 0.0, 3.0, 2.0], [6.0, 5.0, 8.0, 8.0]], 2)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, class_value: int = 0, min_area: int = 0) -> None:
        self.class_value = int(class_value)
        self.min_area = int(min_area)

    def __call__(self, mask: NdarrayOrTensor, semantic: NdarrayOrTensor | None = None) -> dict[str, torch.Tensor]:
        r = instance_boxes(mask, semantic, self.min_area)
        labels = r["class"] if semantic is not None else np.full(len(r["instance_id"]), self.class_value, np.int64)
        return {
            "box": torch.from_numpy(r["box"]),
            "label": torch.from_numpy(labels.astype(np.int64)),
            "centroid": torch.from_numpy(r["centroid"]),
            "area": torch.from_numpy(r["area"]),
            "instance_id": torch.from_numpy(r["instance_id"].astype(np.int64)),
            "count": torch.tensor(len(r["instance_id"]), dtype=torch.int64),
        }


class InstanceMaskToBoxesd(MapTransform):
    """Dictionary form of :class:`InstanceMaskToBoxes` for one instance-mask key.

    Writes ``box_key`` (default ``"box"``), ``label_key`` (``"label"``), ``centroid_key``
    (``"centroid"``) and ``count_key`` (``"count"``) - the names the synthetic multitask
    datalists use; a key set to ``None`` is not written. ``semantic_key`` names an optional class map.

    Example
    -------
    >>> import torch
    >>> m = torch.zeros(1, 4, 4, dtype=torch.int64); m[0, 1, 1] = 3
    >>> d = InstanceMaskToBoxesd("instances")({"instances": m})
    >>> d["box"].tolist(), d["centroid"].tolist(), int(d["count"])
    ([[1.0, 1.0, 2.0, 2.0]], [[1.5, 1.5]], 1)
    """

    backend = InstanceMaskToBoxes.backend

    def __init__(
        self,
        keys: KeysCollection,
        box_key: str | None = "box",
        label_key: str | None = "label",
        centroid_key: str | None = "centroid",
        count_key: str | None = "count",
        semantic_key: str | None = None,
        class_value: int = 0,
        min_area: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ConfigError(f"InstanceMaskToBoxesd takes one instance-mask key, got {self.keys}")
        self.converter = InstanceMaskToBoxes(class_value, min_area)
        self.out_keys = {"box": box_key, "label": label_key, "centroid": centroid_key, "count": count_key}
        self.semantic_key = semantic_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            semantic = d[self.semantic_key] if self.semantic_key is not None else None
            result = self.converter(d[key], semantic)
            for name, out_key in self.out_keys.items():
                if out_key is not None:
                    d[out_key] = result[name]
        return d


ChannelPercentileNormalizeD = ChannelPercentileNormalizeDict = ChannelPercentileNormalized
GridTileD = GridTileDict = GridTiled
InstanceMaskToBoxesD = InstanceMaskToBoxesDict = InstanceMaskToBoxesd
