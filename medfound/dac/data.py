"""Data for DAC training: split files, MONAI pipelines, and the reproducible co-training loader.

- :func:`load_split` reads a CD-SSDG split JSON (as written by ``medfound dac split``: keys
  ``labeled``, ``unlabeled``, ``validation``, ``test`` holding MONAI datalist items with
  ``image``, optional ``label`` and ``domain``, plus ``class_names`` and ``regions``; labels of
  unlabelled items, when kept for diagnostics, sit under ``hidden_label``); relative
  ``image`` / ``label`` / ``hidden_label`` paths are resolved against the JSON's folder (as
  MONAI's ``load_decathlon_datalist`` does). Any datalist with these keys works, not only
  the three benchmarks.
- :func:`preprocessing` gives the deterministic part of the MONAI pipeline (load, channels,
  label values, intensity, resize, normalisation), :func:`weak_augmentation` the random weak
  view (flips, rotation, scaling);
- :class:`PreparedDataset` runs the deterministic part once per item (:func:`prepare_items`),
  keeps the results in memory (``cache=True``) and **skips unreadable or malformed items,
  listing them** (:func:`write_skipped_items`), so a long run does not die on one bad file.
- :class:`CoTrainingLoader` yields ``{"labeled": batch, "unlabeled": batch}`` for ever. Which
  items form batch ``t`` and every random number their augmentation uses are functions of
  ``(seed, t)`` only (seeded permutations per pass over each part, one transform seed per
  item), so a run resumed at iteration ``t`` sees exactly the batches an uninterrupted run
  sees, whatever the number of workers.

Example
-------
>>> import torch
>>> from medfound.dac.data import CoTrainingLoader
>>> lab = [{"image": torch.full((1, 2, 2), float(i))} for i in range(3)]
>>> unl = [{"image": torch.full((1, 2, 2), 10.0 + i)} for i in range(5)]
>>> loader = CoTrainingLoader(lab, unl, batch_size_labeled=2, batch_size_unlabeled=2, seed=0)
>>> first = next(iter(loader))
>>> first["labeled"]["image"].shape, first["unlabeled"]["image"].shape
(torch.Size([2, 1, 2, 2]), torch.Size([2, 1, 2, 2]))
>>> sixth = [b for _, b in zip(range(6), CoTrainingLoader(lab, unl, 2, 2, seed=0))][5]
>>> loader.start_at(5)
>>> torch.equal(next(iter(loader))["labeled"]["image"], sixth["labeled"]["image"])
True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import list_data_collate
from monai.transforms import (
    Compose,
    EnsureTyped,
    LoadImaged,
    MapLabelValued,
    MapTransform,
    NormalizeIntensityd,
    RandAffined,
    RandFlipd,
    Randomizable,
    Resized,
    ScaleIntensityd,
    ScaleIntensityRanged,
)
from torch.utils.data import DataLoader, Dataset

from medfound.dac.config import AugmentConfig, DataConfig, default
from medfound.errors import ConfigError, DatasetLayoutError, LabelMismatchError
from medfound.utils import atomic_write_json, check_int, derive_seed, make_rng, read_config_file
from medfound.utils import world_size as utils_world_size
from medfound.utils.devices import rank as utils_rank

__all__ = [
    "SPLIT_PARTS",
    "load_split",
    "ChannelsToD",
    "CheckLabelValuesd",
    "preprocessing",
    "weak_augmentation",
    "prepare_items",
    "SeededItemDataset",
    "PreparedDataset",
    "unlabeled_items",
    "labels_available",
    "write_skipped_items",
    "StreamBatchSampler",
    "CoTrainingLoader",
]

logger = logging.getLogger(__name__)

SPLIT_PARTS = ("labeled", "unlabeled", "validation", "test")


# ---------------------------------------------------------------------------------------------
# split files
# ---------------------------------------------------------------------------------------------
def _resolve(base: Path, value: Any) -> Any:
    if isinstance(value, str):
        return value if os.path.isabs(value) else os.path.normpath(os.path.join(base, value))
    if isinstance(value, (list, tuple)):
        return [_resolve(base, v) for v in value]
    return value


def load_split(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a split JSON; returns it with absolute ``image`` / ``label`` paths.

    Raises
    ------
    DatasetLayoutError
        The file is missing or unreadable.
    ConfigError
        Required keys are missing or malformed (the message names the file and the key).

    Example
    -------
    >>> import json, tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "split.json")
    >>> _ = open(p, "w").write(json.dumps({"labeled": [{"image": "a.png", "label": "a_m.png", "domain": "S"}],
    ...     "unlabeled": [], "validation": [], "test": [], "class_names": ["background", "fg"],
    ...     "regions": {"fg": [1]}}))
    >>> s = load_split(p); s["labeled"][0]["image"] == os.path.join(d, "a.png"), s["num_classes"]
    (True, 2)
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"split file {path} does not exist (write one with `medfound dac split`)")
    split = read_config_file(path, expect=dict, what="split file")
    for part in ("labeled", "validation"):
        if part not in split:
            raise ConfigError(f"split file {path}: missing the {part!r} list")
    base = path.parent
    for part in SPLIT_PARTS:
        items = split.get(part, [])
        if not isinstance(items, list):
            raise ConfigError(f"split file {path}: {part!r} must be a list of items")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "image" not in item:
                raise ConfigError(f"split file {path}: {part}[{i}] must be an object with an 'image' key")
            if part != "unlabeled" and part != "test" and "label" not in item:
                raise ConfigError(f"split file {path}: {part}[{i}] ({item['image']}) has no 'label'")
            for key in ("image", "label", "hidden_label"):
                if key in item:
                    item[key] = _resolve(base, item[key])
            item.setdefault("domain", "unknown")
        split[part] = items
    if not split["labeled"]:
        raise ConfigError(f"split file {path}: the 'labeled' list is empty")
    names = split.get("class_names")
    if not isinstance(names, list) or len(names) < 2:
        raise ConfigError(f"split file {path}: 'class_names' must list at least two classes (background first)")
    regions = split.get("regions") or {n: [i] for i, n in enumerate(names) if i > 0}
    def valid_region(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(c, int) and 0 < c < len(names) for c in v)

    if not isinstance(regions, dict) or not all(valid_region(v) for v in regions.values()):
        raise ConfigError(f"split file {path}: 'regions' must map names to lists of class indices 1..{len(names) - 1}")
    split["regions"] = {str(k): [int(c) for c in v] for k, v in regions.items()}
    split["num_classes"] = len(names)
    split["path"] = str(path)
    return split


# ---------------------------------------------------------------------------------------------
# transforms
# ---------------------------------------------------------------------------------------------
class ChannelsToD(MapTransform):
    """Make an image have ``channels`` channels: repeat a single channel, or keep the first ones.

    Grey images become 3-channel for RGB networks; RGBA PNGs lose alpha; an RGB-encoded label
    map (equal channels) keeps one channel with ``channels=1``.

    Example
    -------
    >>> import torch
    >>> ChannelsToD("x", 3)({"x": torch.zeros(1, 2, 2)})["x"].shape
    torch.Size([3, 2, 2])
    """

    def __init__(self, keys, channels: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channels = int(channels)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            if x.shape[0] == self.channels:
                continue
            if x.shape[0] == 1:
                d[key] = x.repeat(self.channels, *([1] * (x.dim() - 1)))
            elif x.shape[0] > self.channels:
                d[key] = x[: self.channels]
            else:
                raise LabelMismatchError(
                    f"{_source(x)}: {key} has {x.shape[0]} channels, cannot make {self.channels}"
                )
        return d


def _source(x: Any) -> str:
    meta = getattr(x, "meta", None) or {}
    return str(meta.get("filename_or_obj", "<in-memory item>"))


class CheckLabelValuesd(MapTransform):
    """Raise :class:`LabelMismatchError` naming the file when label values fall outside ``0..num_classes-1``.

    Example
    -------
    >>> import torch
    >>> CheckLabelValuesd("label", 3)({"label": torch.tensor([[[0.0, 2.0]]])})["label"].tolist()
    [[[0.0, 2.0]]]
    """

    def __init__(self, keys, num_classes: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_classes = int(num_classes)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            values = torch.unique(torch.as_tensor(d[key]))
            bad = [v for v in values.tolist() if v != int(v) or not 0 <= v < self.num_classes]
            bad = [int(v) if v == int(v) else v for v in bad]
            if bad:
                raise LabelMismatchError(
                    f"{_source(d[key])}: label values {bad[:8]} are not class indices 0..{self.num_classes - 1} "
                    "(set data.label_values to map raw mask values to classes)"
                )
        return d


def preprocessing(
    num_classes: int,
    spatial_size: Sequence[int] | None,
    in_channels: int = default(DataConfig, "in_channels"),
    intensity: str = default(DataConfig, "intensity"),
    normalize_mean: Sequence[float] | None = default(DataConfig, "normalize_mean"),
    normalize_std: Sequence[float] | None = default(DataConfig, "normalize_std"),
    label_values: Sequence[int] | None = default(DataConfig, "label_values"),
    with_label: bool = True,
) -> Compose:
    """The deterministic part of the pipeline: load, channels, label values, intensity, resize, normalisation.

    Defaults are those of :class:`~medfound.dac.config.DataConfig` (one definition).

    Parameters
    ----------
    num_classes : classes of the label maps (values are checked).
    spatial_size : working size ``(H, W)`` of image and label (training, validation); ``None``
        keeps both at their native size (evaluation, where
        :class:`~medfound.dac.evaluation.ResizedPredictor` resizes for the network).
    in_channels : channels of the network input (grey images are repeated, RGBA loses alpha).
    intensity : ``"uint8"`` (divide by 255), ``"minmax"`` (per image) or ``"none"``.
    normalize_mean, normalize_std : per-channel normalisation after scaling (``None``: none).
    label_values : raw label values in class order (e.g. ``[255, 128, 0]``); ``None``: indices.
    with_label : whether items carry a ``label`` (missing labels are allowed either way).

    Example
    -------
    >>> [type(t).__name__ for t in preprocessing(3, (64, 64)).transforms][-2:]
    ['Resized', 'NormalizeIntensityd']
    """
    keys = ["image", "label"] if with_label else ["image"]
    det: list = [
        LoadImaged(keys, image_only=True, ensure_channel_first=True, allow_missing_keys=True),
        ChannelsToD("image", in_channels),
    ]
    if with_label:
        det.append(ChannelsToD("label", 1, allow_missing_keys=True))
        if label_values is not None:
            det.append(MapLabelValued("label", list(label_values), list(range(len(label_values))),
                                      allow_missing_keys=True))
        det.append(CheckLabelValuesd("label", num_classes, allow_missing_keys=True))
    if intensity == "uint8":
        det.append(ScaleIntensityRanged("image", 0.0, 255.0, 0.0, 1.0))
    elif intensity == "minmax":
        det.append(ScaleIntensityd("image"))
    det.append(EnsureTyped("image", dtype=torch.float32))
    if spatial_size is not None:
        size = [int(v) for v in spatial_size]
        det.append(Resized("image", size, mode="bilinear", anti_aliasing=True))
        if with_label:
            det.append(Resized("label", size, mode="nearest", allow_missing_keys=True))
    if normalize_mean is not None:
        det.append(NormalizeIntensityd("image", subtrahend=list(normalize_mean), divisor=list(normalize_std),
                                       channel_wise=True))
    return Compose(det)


def weak_augmentation(
    flip_prob: float = default(AugmentConfig, "flip_prob"),
    rotate_degrees: float = default(AugmentConfig, "rotate_degrees"),
    scale_range: Sequence[float] = default(AugmentConfig, "scale_range"),
    affine_prob: float = default(AugmentConfig, "affine_prob"),
    with_label: bool = True,
) -> Compose:
    """The random weak view of training items: flips on both axes, rotation and scaling (image and label alike).

    Defaults are those of :class:`~medfound.dac.config.AugmentConfig`. Re-seeded per item by
    :class:`SeededItemDataset`.

    Example
    -------
    >>> [type(t).__name__ for t in weak_augmentation().transforms]
    ['RandFlipd', 'RandFlipd', 'RandAffined']
    """
    keys = ["image", "label"] if with_label else ["image"]
    mode = ["bilinear", "nearest"] if with_label else ["bilinear"]
    return Compose([
        RandFlipd(keys, prob=flip_prob, spatial_axis=0, allow_missing_keys=True),
        RandFlipd(keys, prob=flip_prob, spatial_axis=1, allow_missing_keys=True),
        RandAffined(
            keys,
            prob=affine_prob,
            rotate_range=float(np.deg2rad(rotate_degrees)),
            scale_range=[float(scale_range[0]) - 1.0, float(scale_range[1]) - 1.0],
            mode=mode,
            padding_mode="zeros",
            allow_missing_keys=True,
        ),
    ])


def prepare_items(
    items: Sequence[Mapping[str, Any]],
    transform: Callable,
    cache: bool = True,
    part: str = "data",
    log: Callable[[str], None] | None = None,
) -> tuple[list, list[dict[str, str]]]:
    """Run ``transform`` on every item; keep the results (``cache``) or the good raw items, and report bad ones.

    Returns
    -------
    prepared : transformed items (``cache=True``) or the readable raw items.
    skipped : ``{"image": ..., "error": ...}`` for every item that failed.
    """
    log = log or logger.warning
    prepared, skipped = [], []
    for item in items:
        try:
            out = transform(dict(item))
        except Exception as err:  # noqa: BLE001 - any failure of one item must not stop the run
            cause = err
            while cause.__cause__ is not None:  # MONAI wraps transform errors; report the root
                cause = cause.__cause__
            skipped.append({"part": part, "image": str(item.get("image")), "label": str(item.get("label", "")),
                            "error": f"{type(cause).__name__}: {cause}"})
            log(f"skipping {part} item {item.get('image')}: {type(cause).__name__}: {cause}")
            continue
        prepared.append(out if cache else dict(item))
    if items and not prepared:
        # every item failing is a configuration problem, not a few bad files: stop with the cause
        raise ConfigError(f"none of the {len(items)} {part} items could be prepared; first error: "
                          f"{skipped[0]['image']}: {skipped[0]['error']}")
    return prepared, skipped


def _copy_item(item: Mapping) -> dict:
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in item.items()}


class SeededItemDataset(Dataset):
    """Items with per-item seeded augmentation: ``ds[(index, seed)]``.

    Parameters
    ----------
    items : prepared items (dicts of tensors) or raw items.
    transform : random part, re-seeded with ``seed`` before each item (may be ``None``).
    pre_transform : deterministic part to run first (when items were not cached).
    """

    def __init__(self, items: Sequence[Mapping], transform: Callable | None = None,
                 pre_transform: Callable | None = None) -> None:
        self.items = list(items)
        self.transform = transform
        self.pre_transform = pre_transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        index, seed = key if isinstance(key, tuple) else (key, None)
        item = _copy_item(self.items[index])
        if self.pre_transform is not None:
            item = self.pre_transform(item)
        if self.transform is None:
            return item
        if seed is not None and isinstance(self.transform, Randomizable):
            self.transform.set_random_state(seed=int(seed))
        return self.transform(item)


class PreparedDataset(SeededItemDataset):
    """One part of a split, ready for training or validation: its deterministic pipeline run once
    per item, unreadable or malformed items skipped and listed in :attr:`skipped`.

    Parameters
    ----------
    data : datalist items of the part (e.g. ``split["labeled"]``; ``data`` as MONAI's datasets
        call it, so a bundle's ``train#dataset#data`` is the training datalist).
    transform : the deterministic pipeline (:func:`preprocessing`).
    random_transform : the random part, re-seeded per item (:func:`weak_augmentation`), or ``None``.
    cache : keep the prepared items in memory (``True``), or keep the readable raw items and
        run ``transform`` again on every access.
    part : the part's name, for the report.

    Example
    -------
    >>> import torch
    >>> ds = PreparedDataset([{"image": torch.ones(1, 2, 2)}, {"image": "missing.png"}],
    ...                      transform=lambda d: {"image": torch.as_tensor(d["image"]) * 2}, part="demo")
    >>> len(ds), ds.skipped[0]["image"], float(ds[0]["image"].sum())
    (1, 'missing.png', 8.0)
    """

    def __init__(self, data: Sequence[Mapping[str, Any]], transform: Callable,
                 random_transform: Callable | None = None, cache: bool = True, part: str = "data") -> None:
        prepared, self.skipped = prepare_items(data, transform, cache, part)
        super().__init__(prepared, random_transform, None if cache else transform)
        self.part = part


def unlabeled_items(items: Sequence[Mapping[str, Any]], keep_labels: bool = False) -> list[dict[str, Any]]:
    """The unlabelled part as the loader should see it: labels removed, or, with ``keep_labels``,
    ``hidden_label`` (or ``label``) kept as ``label`` for the pseudo-label diagnostics only.

    Example
    -------
    >>> unlabeled_items([{"image": "a.png", "hidden_label": "a_m.png"}], keep_labels=True)
    [{'image': 'a.png', 'label': 'a_m.png'}]
    """
    out = []
    for it in items:
        item = {k: v for k, v in it.items() if k not in ("label", "hidden_label")}
        hidden = it.get("hidden_label", it.get("label"))
        if keep_labels and hidden is not None:
            item["label"] = hidden
        out.append(item)
    return out


def labels_available(items: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every item carries a ``label`` or ``hidden_label`` (pseudo labels can then be scored)."""
    return bool(items) and all("hidden_label" in it or "label" in it for it in items)


def write_skipped_items(path: str | os.PathLike, datasets: Sequence[PreparedDataset | None]) -> list[dict[str, str]]:
    """Write the items the ``datasets`` skipped to ``path`` (JSON, atomically); returns them."""
    skipped = [entry for ds in datasets if ds is not None for entry in ds.skipped]
    atomic_write_json(path, skipped)
    return skipped


class StreamBatchSampler:
    """Endless batches of ``(index, item_seed)`` over ``n`` items, a function of ``(seed, stream)`` only.

    Pass ``q`` over the items uses the permutation drawn from ``make_rng(seed, "order", stream, q)``;
    the item at stream position ``p`` gets the transform seed ``derive_seed(seed, "item", stream, p)``
    (:mod:`medfound.utils.seeding`). Batch ``t`` holds
    positions ``t * batch_size ... (t + 1) * batch_size - 1`` (batches run across passes).
    Sharded (``world_size`` processes), rank ``r``'s batch ``t`` is the ``r``-th slice of the
    global batch ``t`` of ``world_size * batch_size`` positions, so the ranks together see
    what one process with the global batch size sees.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, stream: int = 0, start_batch: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if n < 1:
            raise ConfigError("cannot sample batches from an empty part of the split")
        self.n, self.batch_size, self.seed, self.stream = int(n), int(batch_size), int(seed), int(stream)
        self.start_batch = int(start_batch)
        self.world_size = check_int(world_size, "world_size", low=1)
        self.rank = check_int(rank, "rank", low=0, high=self.world_size - 1)

    def _order(self, q: int) -> np.ndarray:
        return make_rng(self.seed, "order", self.stream, q).permutation(self.n)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        pos = (self.start_batch * self.world_size + self.rank) * self.batch_size
        q, order = -1, None
        while True:
            batch = []
            for p in range(pos, pos + self.batch_size):
                if p // self.n != q:
                    q = p // self.n
                    order = self._order(q)
                batch.append((int(order[p % self.n]), derive_seed(self.seed, "item", self.stream, p)))
            yield batch
            pos += self.world_size * self.batch_size


class CoTrainingLoader:
    """Endless ``{"labeled": batch, "unlabeled": batch}`` pairs; batch ``t`` depends on ``(seed, t)`` only.

    Parameters
    ----------
    labeled, unlabeled : prepared items (or :class:`SeededItemDataset`); ``unlabeled`` may be
        ``None`` (supervised training), then ``"unlabeled"`` is ``None``.
    batch_size_labeled, batch_size_unlabeled : batch sizes.
    transform_labeled, transform_unlabeled : random parts (weak augmentation), re-seeded per item.
    seed : seed of the item order and of the augmentation.
    num_workers : DataLoader workers per part.
    pin_memory : pin batches (GPU training).
    rank, world_size : this process's shard of each global batch (:class:`StreamBatchSampler`);
        ``None``: from ``torch.distributed`` when it is initialised, else one process.

    Iteration starts at batch :meth:`start_at` (default 0) or, once :meth:`attach` ed to an
    ignite engine, at the engine's iteration count when the iterator is first advanced, which
    is what makes a resumed run continue with the right batches.
    """

    def __init__(
        self,
        labeled: Sequence[Mapping] | SeededItemDataset,
        unlabeled: Sequence[Mapping] | SeededItemDataset | None,
        batch_size_labeled: int = default(DataConfig, "batch_size_labeled"),
        batch_size_unlabeled: int = default(DataConfig, "batch_size_unlabeled"),
        seed: int = 0,
        transform_labeled: Callable | None = None,
        transform_unlabeled: Callable | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if not isinstance(labeled, SeededItemDataset):
            labeled = SeededItemDataset(labeled, transform_labeled)
        self.labeled = labeled
        self.unlabeled = None
        if unlabeled is not None:
            self.unlabeled = (unlabeled if isinstance(unlabeled, SeededItemDataset)
                              else SeededItemDataset(unlabeled, transform_unlabeled))
            if len(self.unlabeled) == 0:
                raise ConfigError("the 'unlabeled' part of the split is empty; semi-supervised methods need it")
        self.batch_size_labeled = check_int(batch_size_labeled, "batch_size_labeled", low=1)
        self.batch_size_unlabeled = check_int(batch_size_unlabeled, "batch_size_unlabeled", low=1)
        self.seed = check_int(seed, "seed")
        self.num_workers = check_int(num_workers, "num_workers", low=0)
        self.pin_memory = bool(pin_memory)
        self._rank, self._world_size = rank, world_size
        self._start = 0
        self._engine = None

    @property
    def world_size(self) -> int:
        """Processes the batches are sharded over."""
        return int(self._world_size) if self._world_size is not None else utils_world_size()

    @property
    def rank(self) -> int:
        """This process's shard."""
        return int(self._rank) if self._rank is not None else utils_rank()

    def start_at(self, iteration: int) -> None:
        """Make the next iterator start with batch ``iteration`` (0-based)."""
        self._start = int(iteration)

    def attach(self, engine) -> None:
        """Start each new iterator at ``engine.state.iteration`` (read when the first batch is drawn)."""
        self._engine = engine

    def _loader(self, dataset: SeededItemDataset, batch_size: int, stream: int, start: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=StreamBatchSampler(len(dataset), batch_size, self.seed, stream, start, self.rank,
                                             self.world_size),
            num_workers=self.num_workers,
            collate_fn=list_data_collate,
            pin_memory=self.pin_memory,
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._generate()

    def _generate(self) -> Iterator[dict[str, Any]]:
        # a generator: this body runs at the first next(), after a checkpoint was restored
        start = int(self._engine.state.iteration) if self._engine is not None else self._start
        lab = iter(self._loader(self.labeled, self.batch_size_labeled, 0, start))
        unl = None
        if self.unlabeled is not None:
            unl = iter(self._loader(self.unlabeled, self.batch_size_unlabeled, 1, start))
        while True:
            yield {"labeled": next(lab), "unlabeled": None if unl is None else next(unl)}
