"""Adapter for the multi-site optic disc/cup fundus benchmark in the DoFE layout.

Layout (the DoFE release; :func:`medfound.data.synthetic.write_fundus_demo` writes the same)::

    ROOT/Domain1..4/{train,test}/ROIs/image/*.png   RGB region of interest around the disc
    ROOT/Domain1..4/{train,test}/ROIs/mask/*.png    mask: 0 cup, 128 rim, 255 background

Domains: Domain1 Drishti-GS, Domain2 RIM-ONE-r3, Domain3 REFUGE (train), Domain4 REFUGE
(validation). Masks are decoded once into class-index PNGs (0 background, 1 rim, 2 cup;
regions disc = {1, 2}, cup = {2}) in a cache folder; datalist items point at the original
images and the decoded labels, and keep the release's ``split`` (``train``/``test``),
which :func:`medfound.data.splits.make_cdssdg_split` uses: source domains train on their
``train`` folder, the held-out domain is tested on its ``test`` folder.

Masks are decoded with :class:`medfound.transforms.fundus.DecodeDiscCup` (``output="index"``);
:func:`decode_fundus_mask` adds the strict value check that names the offending file.

Example
-------
>>> import tempfile
>>> from medfound.data.synthetic import write_fundus_demo
>>> from medfound.data.fundus import fundus_datalist
>>> root = tempfile.mkdtemp()
>>> _ = write_fundus_demo(root, size="small", seed=0)
>>> datalist = fundus_datalist(root)
>>> datalist["domains"], datalist["regions"], datalist["synthetic"]
(['Domain1', 'Domain2', 'Domain3', 'Domain4'], {'disc': [1, 2], 'cup': [2]}, True)
>>> sorted(datalist["data"][0])
['case_id', 'domain', 'image', 'label', 'split']
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfound.data.adapter_utils import (
    LabelCache,
    check_shape,
    collect_cases,
    image_size,
    is_synthetic,
    options_version,
    pair_images_and_masks,
    read_mask,
)
from medfound.data.datalist import FUNDUS, make_datalist
from medfound.errors import ConfigError, DatasetLayoutError
from medfound.transforms.fundus import DecodeDiscCup

__all__ = ["FUNDUS_DOMAINS", "FUNDUS_SITES", "FUNDUS_SPLITS", "MASK_CODES", "decode_fundus_mask", "fundus_datalist"]

FUNDUS_DOMAINS = ("Domain1", "Domain2", "Domain3", "Domain4")
#: the public set each DoFE domain comes from
FUNDUS_SITES = {"Domain1": "Drishti-GS", "Domain2": "RIM-ONE-r3", "Domain3": "REFUGE (train)",
                "Domain4": "REFUGE (validation)"}
FUNDUS_SPLITS = ("train", "test")
#: grey level of each class in the release's masks -> class index
MASK_CODES = {0: 2, 128: 1, 255: 0}


def decode_fundus_mask(mask: np.ndarray, strict: bool = True, source: str = "mask") -> np.ndarray:
    """DoFE mask (0 cup, 128 rim, 255 background) -> class-index map (0 background, 1 rim, 2 cup).

    Parameters
    ----------
    mask : 2D uint8 grey levels.
    strict : only the three codes are allowed (the release's masks are clean); with
        ``False`` values are thresholded at the midpoints (< 64 cup, < 192 rim, else
        background), for masks that were resized or JPEG-compressed.
    source : the file name put in error messages.

    Example
    -------
    >>> decode_fundus_mask(np.array([[255, 128, 0]], np.uint8)).tolist()
    [[0, 1, 2]]
    """
    mask = np.asarray(mask)
    if strict:
        values = np.unique(mask)
        bad = [int(v) for v in values if int(v) not in MASK_CODES]
        if bad:
            raise DatasetLayoutError(
                f"{source}: mask values {bad[:8]} are not in {{0 cup, 128 rim, 255 background}} "
                "(pass strict_values=False to threshold resized or compressed masks)")
    # the decoding itself is the transforms' (nearest code: < 64 cup, < 192 rim), so both agree
    decoded = DecodeDiscCup(output="index", dtype=torch.uint8)(torch.from_numpy(np.ascontiguousarray(mask))[None])
    return np.asarray(decoded)[0]


def fundus_datalist(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    domains: Sequence[str] = FUNDUS_DOMAINS,
    splits: Sequence[str] = FUNDUS_SPLITS,
    strict_values: bool = True,
    on_error: str = "raise",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Validate a DoFE-layout folder, decode its masks and return its datalist.

    Parameters
    ----------
    root : the folder holding ``Domain1`` .. ``Domain4``.
    cache_dir : where decoded labels go (default ``ROOT/.medfound_cache/fundus``; pass another
        folder when ``root`` is read-only). Re-running reuses unchanged labels.
    domains, splits : which domain folders and splits to read (all by default).
    strict_values : see :func:`decode_fundus_mask`.
    on_error : ``"raise"`` (default) stops at the first bad case; ``"skip"`` leaves bad
        cases out and lists them under ``"skipped"`` (missing folders always raise).
    log : optional callback for one summary line.

    Returns
    -------
    dict
        A datalist (see :mod:`medfound.data.datalist`) with ``dataset="fundus"``,
        ``class_names``, ``regions``, ``domains``, ``sites``, ``synthetic``, ``skipped``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: fundus dataset folder not found")
    missing = [str(root / d) for d in domains if not (root / d).is_dir()]
    if missing:
        present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise DatasetLayoutError(f"{root}: missing domain folder(s) {missing} (found {present}); "
                                 "expected the DoFE layout Domain1..4/{train,test}/ROIs/{image,mask}")
    unknown = [s for s in splits if s not in FUNDUS_SPLITS]
    if unknown:
        raise ConfigError(f"unknown fundus split(s) {unknown}; choose from {FUNDUS_SPLITS}")
    cache = LabelCache(cache_dir if cache_dir is not None else root / ".medfound_cache" / "fundus",
                       options_version("fundus", strict=bool(strict_values)))

    cases = []
    for domain in domains:
        for split in splits:
            rois = root / domain / split / "ROIs"
            for image, mask in pair_images_and_masks(rois / "image", rois / "mask"):
                cases.append((domain, split, image, mask))

    def make_item(case: tuple[str, str, Path, Path]) -> dict[str, Any]:
        domain, split, image, mask_path = case
        hw = image_size(image)

        def decode() -> np.ndarray:
            mask = read_mask(mask_path)
            check_shape(mask, hw, mask_path, image)
            return decode_fundus_mask(mask, strict=strict_values, source=str(mask_path))

        label = cache.get(f"{domain}/{split}/{mask_path.stem}.png", (mask_path, image), decode)
        return {"image": str(image.resolve()), "label": str(label.resolve()), "domain": domain,
                "split": split, "case_id": f"{domain}/{split}/{image.stem}"}

    try:
        items, skipped = collect_cases(cases, make_item, on_error, describe=lambda c: str(c[2]))
    finally:
        cache.flush()
    if not items:
        raise DatasetLayoutError(f"{root}: no usable fundus cases ({len(skipped)} skipped)")
    if log is not None:
        log(f"fundus: {len(items)} cases from {len(domains)} domains, {len(skipped)} skipped; labels in {cache.root}")
    return make_datalist(
        FUNDUS, items, root=str(root.resolve()), synthetic=is_synthetic(root), skipped=skipped,
        sites={d: FUNDUS_SITES.get(d, d) for d in domains},
        label_encoding="class index: 0 background, 1 rim, 2 cup (decoded from 0 cup / 128 rim / 255 background)",
    )
