"""Adapter for the multi-centre colonoscopy polyp benchmark in the PraNet layout.

Layout (PraNet's distribution of the public sets; :func:`medfound.data.synthetic.write_polyp_demo`
writes the same)::

    ROOT/{Kvasir,CVC-ClinicDB,CVC-ColonDB,ETIS-LaribPolypDB,CVC-300}/images/*.png|jpg
    ROOT/{...}/masks/*.png                                  grey mask: 255 polyp, 0 background

Each centre folder is one domain. Masks are binarised at grey level 128, as PraNet's own
loader does (some released masks carry interpolated edge values), and cached as
class-index PNGs (0 background, 1 polyp; region polyp = {1}).

Example
-------
>>> import tempfile
>>> from medfound.data.synthetic import write_polyp_demo
>>> from medfound.data.polyp import polyp_datalist
>>> root = tempfile.mkdtemp()
>>> _ = write_polyp_demo(root, size="small", seed=0)
>>> polyp_datalist(root)["domains"]
['CVC-ClinicDB', 'CVC-ColonDB', 'ETIS-LaribPolypDB', 'Kvasir']
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
from medfound.data.datalist import POLYP, make_datalist
from medfound.errors import DatasetLayoutError

__all__ = ["POLYP_DOMAINS", "decode_polyp_mask", "polyp_datalist"]

#: the centres of PraNet's test sets (CVC-300 is the EndoScene test part)
POLYP_DOMAINS = ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "CVC-300")


def decode_polyp_mask(mask: np.ndarray, threshold: int = 128, source: str = "mask") -> np.ndarray:
    """Grey mask (255 polyp) -> class-index map (1 polyp, 0 background), ``mask >= threshold``.

    A mask whose values are only 0 and 1 is refused (it is a 0/1-encoded mask that the
    threshold would turn into an empty one) with a :class:`DatasetLayoutError` naming ``source``.

    Example
    -------
    >>> decode_polyp_mask(np.array([[0, 90, 200, 255]], np.uint8)).tolist()
    [[0, 0, 1, 1]]
    """
    mask = np.asarray(mask)
    top = int(mask.max()) if mask.size else 0
    if 0 < top < threshold:
        raise DatasetLayoutError(
            f"{source}: mask values stay below {threshold} (max {top}); polyp masks must use 255 for polyp "
            "(a 0/1 mask would decode as empty)")
    return (mask >= threshold).astype(np.uint8)


def _find_domains(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and (p / "images").is_dir() and (p / "masks").is_dir())


def polyp_datalist(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    domains: Sequence[str] | None = None,
    threshold: int = 128,
    on_error: str = "raise",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Validate a PraNet-layout folder, decode its masks and return its datalist.

    Parameters
    ----------
    root : folder holding one sub-folder per centre, each with ``images/`` and ``masks/``.
    cache_dir : where decoded labels go (default ``ROOT/.medfound_cache/polyp``).
    domains : centre folders to read; ``None`` reads every sub-folder that has
        ``images/`` and ``masks/``.
    threshold : grey level from which a mask pixel is polyp.
    on_error : ``"raise"`` or ``"skip"`` (bad cases listed under ``"skipped"``).
    log : optional callback for one summary line.

    Returns
    -------
    dict
        A datalist (see :mod:`medfound.data.datalist`) with ``dataset="polyp"``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: polyp dataset folder not found")
    if domains is None:
        domains = _find_domains(root)
        if not domains:
            raise DatasetLayoutError(
                f"{root}: no centre folders with images/ and masks/ (expected e.g. {', '.join(POLYP_DOMAINS)})")
    else:
        missing = [str(root / d) for d in domains if not (root / d).is_dir()]
        if missing:
            raise DatasetLayoutError(f"{root}: missing domain folder(s) {missing} (found {_find_domains(root)})")
    cache = LabelCache(cache_dir if cache_dir is not None else root / ".medfound_cache" / "polyp",
                       options_version("polyp", threshold=int(threshold)))

    cases = [(d, image, mask) for d in domains for image, mask in pair_images_and_masks(root / d / "images",
                                                                                        root / d / "masks")]

    def make_item(case: tuple[str, Path, Path]) -> dict[str, Any]:
        domain, image, mask_path = case
        hw = image_size(image)

        def decode() -> np.ndarray:
            mask = read_mask(mask_path)
            check_shape(mask, hw, mask_path, image)
            return decode_polyp_mask(mask, threshold, source=str(mask_path))

        label = cache.get(f"{domain}/{mask_path.stem}.png", (mask_path, image), decode)
        return {"image": str(image.resolve()), "label": str(label.resolve()), "domain": domain,
                "case_id": f"{domain}/{image.stem}"}

    try:
        items, skipped = collect_cases(cases, make_item, on_error, describe=lambda c: str(c[1]))
    finally:
        cache.flush()
    if not items:
        raise DatasetLayoutError(f"{root}: no usable polyp cases ({len(skipped)} skipped)")
    if log is not None:
        log(f"polyp: {len(items)} cases from {len(domains)} centres, {len(skipped)} skipped; labels in {cache.root}")
    return make_datalist(POLYP, items, root=str(root.resolve()), synthetic=is_synthetic(root), skipped=skipped,
                         label_encoding=f"class index: 0 background, 1 polyp (mask >= {threshold})")
