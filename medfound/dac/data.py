"""Data for DAC training: split files, MONAI pipelines, and the reproducible co-training loader.

- :func:`load_split` reads a CD-SSDG split JSON (as written by ``medfound dac split``: keys
  ``labeled``, ``unlabeled``, ``validation``, ``test`` holding MONAI datalist items with
  ``image``, optional ``label`` and ``domain``, plus ``class_names`` and ``regions``; labels of
  unlabelled items, when kept for diagnostics, sit under ``hidden_label``); relative
  ``image`` / ``label`` / ``hidden_label`` paths are resolved against the JSON's folder (as
  MONAI's ``load_decathlon_datalist`` does). Any datalist with these keys works, not only
  the three benchmarks.
- :func:`build_transforms` gives the deterministic part (load, channels, label values,
  intensity, resize, normalisation) and the random weak augmentation (flips, rotation,
  scaling) of the MONAI pipeline.
- :func:`prepare_items` runs the deterministic part once per item, keeps the results in
  memory (``cache=True``) and **skips unreadable or malformed items, reporting them**, so a
  long run does not die on one bad file.
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

import json
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

from medfound.dac.config import AugmentConfig, DataConfig
from medfound.errors import ConfigError, DatasetLayoutError, LabelMismatchError

__all__ = [
    "SPLIT_PARTS",
    "load_split",
    "ChannelsToD",
    "CheckLabelValuesd",
    "build_transforms",
    "prepare_items",
    "SeededItemDataset",
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
    try:
        split = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetLayoutError(f"split file {path} cannot be read as JSON: {err}") from err
    if not isinstance(split, dict):
        raise ConfigError(f"split file {path}: expected a JSON object, got {type(split).__name__}")
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


def build_transforms(
    data: DataConfig,
    num_classes: int,
    augment: AugmentConfig | None = None,
    with_label: bool = True,
    resize: bool = True,
) -> tuple[Compose, Compose | None]:
    """The deterministic and the random part of the pipeline for one split part.

    Parameters
    ----------
    data : data section of the config (size, channels, intensity, label values, normalisation).
    num_classes : classes of the label maps (values are checked).
    augment : weak augmentation for training parts; ``None`` for validation and test.
    with_label : whether items carry a ``label`` (missing labels are allowed either way).
    resize : resize image and label to ``data.spatial_size`` (training, validation); ``False``
        keeps both at their native size (evaluation, where
        :class:`~medfound.dac.evaluation.ResizedPredictor` resizes for the network).

    Returns
    -------
    (deterministic, random) : two ``Compose``; ``random`` is ``None`` without ``augment``.
    """
    keys = ["image", "label"] if with_label else ["image"]
    det: list = [
        LoadImaged(keys, image_only=True, ensure_channel_first=True, allow_missing_keys=True),
        ChannelsToD("image", data.in_channels),
    ]
    if with_label:
        det.append(ChannelsToD("label", 1, allow_missing_keys=True))
        if data.label_values is not None:
            det.append(MapLabelValued("label", list(data.label_values), list(range(len(data.label_values))),
                                      allow_missing_keys=True))
        det.append(CheckLabelValuesd("label", num_classes, allow_missing_keys=True))
    if data.intensity == "uint8":
        det.append(ScaleIntensityRanged("image", 0.0, 255.0, 0.0, 1.0))
    elif data.intensity == "minmax":
        det.append(ScaleIntensityd("image"))
    det.append(EnsureTyped("image", dtype=torch.float32))
    if resize:
        size = [int(s) for s in data.spatial_size]
        det.append(Resized("image", size, mode="bilinear", anti_aliasing=True))
        if with_label:
            det.append(Resized("label", size, mode="nearest", allow_missing_keys=True))
    if data.normalize_mean is not None:
        det.append(NormalizeIntensityd("image", subtrahend=list(data.normalize_mean),
                                       divisor=list(data.normalize_std), channel_wise=True))
    rand = None
    if augment is not None:
        mode = ["bilinear", "nearest"] if with_label else ["bilinear"]
        rand = Compose([
            RandFlipd(keys, prob=augment.flip_prob, spatial_axis=0, allow_missing_keys=True),
            RandFlipd(keys, prob=augment.flip_prob, spatial_axis=1, allow_missing_keys=True),
            RandAffined(
                keys,
                prob=augment.affine_prob,
                rotate_range=float(np.deg2rad(augment.rotate_degrees)),
                scale_range=[float(augment.scale_range[0]) - 1.0, float(augment.scale_range[1]) - 1.0],
                mode=mode,
                padding_mode="zeros",
                allow_missing_keys=True,
            ),
        ])
    return Compose(det), rand


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


def _seed(*values: int) -> int:
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1)[0])


class StreamBatchSampler:
    """Endless batches of ``(index, item_seed)`` over ``n`` items, a function of ``(seed, stream)`` only.

    Pass ``q`` over the items uses the permutation seeded by ``(seed, stream, q)``; the item
    at stream position ``p`` gets the transform seed ``(seed, stream, p)``. Batch ``t`` holds
    positions ``t * batch_size ... (t + 1) * batch_size - 1`` (batches run across passes).
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, stream: int = 0, start_batch: int = 0) -> None:
        if n < 1:
            raise ConfigError("cannot sample batches from an empty part of the split")
        self.n, self.batch_size, self.seed, self.stream = int(n), int(batch_size), int(seed), int(stream)
        self.start_batch = int(start_batch)

    def _order(self, q: int) -> np.ndarray:
        return np.random.RandomState(_seed(self.seed, self.stream, q, 1)).permutation(self.n)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        pos = self.start_batch * self.batch_size
        q, order = -1, None
        while True:
            batch = []
            for p in range(pos, pos + self.batch_size):
                if p // self.n != q:
                    q = p // self.n
                    order = self._order(q)
                batch.append((int(order[p % self.n]), _seed(self.seed, self.stream, 2, p)))
            yield batch
            pos += self.batch_size


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

    Iteration starts at batch :meth:`start_at` (default 0) or, once :meth:`attach` ed to an
    ignite engine, at the engine's iteration count when the iterator is first advanced, which
    is what makes a resumed run continue with the right batches.
    """

    def __init__(
        self,
        labeled: Sequence[Mapping] | SeededItemDataset,
        unlabeled: Sequence[Mapping] | SeededItemDataset | None,
        batch_size_labeled: int = 8,
        batch_size_unlabeled: int = 8,
        seed: int = 0,
        transform_labeled: Callable | None = None,
        transform_unlabeled: Callable | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
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
        self.batch_size_labeled, self.batch_size_unlabeled = int(batch_size_labeled), int(batch_size_unlabeled)
        self.seed, self.num_workers, self.pin_memory = int(seed), int(num_workers), bool(pin_memory)
        self._start = 0
        self._engine = None

    def start_at(self, iteration: int) -> None:
        """Make the next iterator start with batch ``iteration`` (0-based)."""
        self._start = int(iteration)

    def attach(self, engine) -> None:
        """Start each new iterator at ``engine.state.iteration`` (read when the first batch is drawn)."""
        self._engine = engine

    def _loader(self, dataset: SeededItemDataset, batch_size: int, stream: int, start: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=StreamBatchSampler(len(dataset), batch_size, self.seed, stream, start),
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
