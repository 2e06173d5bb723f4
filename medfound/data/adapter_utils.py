"""Helpers shared by the dataset adapters: file pairing, mask reading, the label cache, skipping.

Kept apart from the adapters so each adapter module only says what its layout is and how
its masks are encoded.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from medfound.errors import ConfigError, DatasetLayoutError, ImageReadError, LabelMismatchError
from medfound.utils import atomic_path, atomic_write_json

__all__ = [
    "IMAGE_EXTENSIONS",
    "ON_ERROR",
    "list_images",
    "pair_images_and_masks",
    "image_size",
    "read_mask",
    "LabelCache",
    "collect_cases",
    "is_synthetic",
    "options_version",
    "check_shape",
]

#: photograph/mask file suffixes the 2D adapters accept (lower case)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: what an adapter does with a bad case: stop with the error, or leave it out and report it
ON_ERROR = ("raise", "skip")


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetLayoutError(f"{path}: missing {what} folder")
    return path


def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder`` (not recursive), sorted by name; hidden files ignored."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def pair_images_and_masks(image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    """Pair images with masks of the same stem (suffixes may differ, e.g. ``.jpg`` and ``.png``).

    Raises :class:`DatasetLayoutError` naming the folders when a folder is missing or empty,
    an image has no mask, a mask has no image, or a stem is ambiguous.
    """
    _require_dir(image_dir, "image")
    _require_dir(mask_dir, "mask")
    images, masks = list_images(image_dir), list_images(mask_dir)
    if not images:
        raise DatasetLayoutError(f"{image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    by_stem: dict[str, list[Path]] = {}
    for m in masks:
        by_stem.setdefault(m.stem, []).append(m)
    ambiguous = sorted(s for s, v in by_stem.items() if len(v) > 1)
    if ambiguous:
        raise DatasetLayoutError(f"{mask_dir}: several masks share the stem(s) {ambiguous[:5]}")
    no_mask = [p.name for p in images if p.stem not in by_stem]
    if no_mask:
        raise DatasetLayoutError(
            f"{image_dir}: {len(no_mask)} image(s) without a mask in {mask_dir}: {no_mask[:5]}")
    image_stems = {p.stem for p in images}
    orphans = [m.name for m in masks if m.stem not in image_stems]
    if orphans:
        raise DatasetLayoutError(f"{mask_dir}: {len(orphans)} mask(s) without an image in {image_dir}: {orphans[:5]}")
    return [(p, by_stem[p.stem][0]) for p in images]


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the file header (no full decode); :class:`ImageReadError` if unreadable."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageReadError(f"{path}: cannot read image ({err})") from err
    return height, width


def read_mask(path: Path) -> np.ndarray:
    """A mask as a 2D uint8 array; RGB(A) masks must have equal colour channels.

    Raises :class:`ImageReadError` for unreadable files and :class:`DatasetLayoutError`
    for colour masks or unexpected bit depths.
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageReadError(f"{path}: cannot read mask ({err})") from err
    if mode == "P":
        raise DatasetLayoutError(f"{path}: palette mask; expected grey-level values (save it as L or RGB)")
    if arr.ndim == 3:
        rgb = arr[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise DatasetLayoutError(f"{path}: colour mask (R, G, B differ); expected grey levels")
        arr = rgb[..., 0]
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise DatasetLayoutError(f"{path}: mask of type {arr.dtype}; expected 8-bit grey levels")
    return arr


class LabelCache:
    """Files derived from a dataset (decoded label PNGs, slices), made once and reused while their sources
    are unchanged.

    Each cached file is recorded in ``cache_index.json`` with the size and modification
    time of its source files and a ``version`` string (the decoder and its options), so a
    changed mask or option re-decodes only what changed. PNG writing is deterministic.

    Parameters
    ----------
    cache_dir : folder for the labels and the index.
    version : identifies decoder and options; a different version invalidates entries.
    """

    def __init__(self, cache_dir: str | os.PathLike, version: str) -> None:
        self.root = Path(cache_dir)
        self.version = version
        self._index_path = self.root / "cache_index.json"
        self._index: dict[str, Any] = {}
        if self._index_path.is_file():
            try:
                self._index = json.loads(self._index_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                self._index = {}  # a damaged index only costs a re-decode
        self._dirty = False

    @staticmethod
    def _fingerprint(sources: Sequence[Path]) -> list[list[Any]]:
        return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in sources]

    def lookup(self, rel: str, sources: Sequence[Path]) -> Any:
        """The value stored for ``rel`` if its sources and version are unchanged, else ``None``."""
        entry = self._index.get(rel)
        if entry and entry.get("sources") == self._fingerprint(sources) and entry.get("version") == self.version:
            return entry.get("value", True)
        return None

    def store(self, rel: str, sources: Sequence[Path], value: Any = True) -> None:
        """Record that ``rel`` was made from ``sources`` (``value``: anything JSON-able to keep)."""
        self._index[rel] = {"sources": self._fingerprint(sources), "version": self.version, "value": value}
        self._dirty = True

    def get(self, rel: str, sources: Sequence[Path], decode: Callable[[], np.ndarray]) -> Path:
        """Path of the cached label PNG ``rel`` made from ``sources``; calls ``decode`` only when stale.

        ``sources`` are the files the label depends on (mask, and the image its size is
        checked against); a change in any of them re-decodes.
        """
        target = self.root / rel
        if self.lookup(rel, sources) is not None and target.is_file():
            return target
        label = decode()
        try:
            with atomic_path(target) as tmp:
                Image.fromarray(np.ascontiguousarray(label.astype(np.uint8))).save(tmp, format="PNG", optimize=False,
                                                                                   compress_level=6)
        except OSError as err:
            raise ConfigError(f"cannot write the label cache {target} ({err}); pass another cache_dir") from err
        self.store(rel, sources)
        return target

    def flush(self) -> None:
        """Write the index (atomically) if anything changed."""
        if self._dirty:
            atomic_write_json(self._index_path, self._index, sort_keys=True)
            self._dirty = False


def collect_cases(
    cases: Iterable[Any],
    make_item: Callable[[Any], dict[str, Any]],
    on_error: str,
    describe: Callable[[Any], str] = str,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Run ``make_item`` on every case; with ``on_error="skip"`` bad cases are reported, not fatal.

    Returns ``(items, skipped)`` where ``skipped`` lists ``{"case": ..., "error": ...}``.
    Only medfound's input errors are skipped; anything else is a bug and propagates.
    """
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    items, skipped = [], []
    for case in cases:
        try:
            items.append(make_item(case))
        except (DatasetLayoutError, ImageReadError, LabelMismatchError) as err:
            if on_error == "raise":
                raise
            skipped.append({"case": describe(case), "error": f"{type(err).__name__}: {err}"})
    return items, skipped


def is_synthetic(root: Path) -> bool:
    """Whether ``root`` holds medfound's synthetic demo data (its ``manifest.json`` says so)."""
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        return bool(json.loads(manifest.read_text()).get("synthetic", False))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def options_version(name: str, **options: Any) -> str:
    """A short, stable string for a decoder name and its options (cache invalidation)."""
    text = json.dumps({"decoder": name, **options}, sort_keys=True)
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def check_shape(mask: np.ndarray, image_hw: Sequence[int], mask_path: Path, image_path: Path) -> None:
    """Raise :class:`LabelMismatchError` when a mask's size differs from its image's."""
    if tuple(mask.shape[:2]) != tuple(image_hw):
        raise LabelMismatchError(
            f"{mask_path}: mask is {mask.shape[0]}x{mask.shape[1]} but its image {image_path.name} is "
            f"{image_hw[0]}x{image_hw[1]} (height x width)")
