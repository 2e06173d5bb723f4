"""Adapter for the Spinal Cord Grey Matter segmentation challenge (SCGM) release.

Layout (the challenge's flat layout; :func:`medfound.data.synthetic.write_scgm_demo` writes the same)::

    ROOT/siteK-scNN-image.nii.gz          3D T2*-weighted volume of subject NN at site K
    ROOT/siteK-scNN-mask-rR.nii.gz        rater R's mask: 0 background, 1 grey matter, 2 white matter

Each site is one domain. Per subject, once, into a cache folder:

1. the raters' masks are checked (same geometry as the image, values 0/1/2) and merged by
   :class:`~medfound.transforms.spinal.MajorityVote` (ties -> background by default);
2. image and consensus are reoriented to RAS (:class:`~medfound.transforms.spinal.AxialOrientation`),
   so the last axis is the cord's axis;
3. optionally resampled in plane (``spacing``) and cropped around the cord (``crop_size``);
4. each axial slice is normalised on its own (``normalize``, robust percentiles by default);
5. slices are written as 2D NIfTI (image float32, label uint8 class indices: 0 background,
   1 GM, 2 WM; regions gm = {1}, cord = {1, 2}) with their affines.

Items point at the slices and carry ``domain`` (the site), ``subject`` (so splits keep a
subject's slices together) and ``slice_index``. Writing is deterministic, and a second
call reuses the slices while the sources and options are unchanged.

Example
-------
>>> import tempfile
>>> from medfound.data.synthetic import write_scgm_demo
>>> from medfound.data.scgm import scgm_datalist
>>> root = tempfile.mkdtemp()
>>> _ = write_scgm_demo(root, size="small", seed=0)
>>> datalist = scgm_datalist(root)
>>> datalist["domains"], datalist["regions"]
(['site1', 'site2', 'site3', 'site4'], {'gm': [1], 'cord': [1, 2]})
>>> sorted(datalist["data"][0])
['case_id', 'domain', 'image', 'label', 'slice_index', 'subject']
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from medfound.data.adapter_utils import LabelCache, collect_cases, is_synthetic, options_version
from medfound.data.datalist import SCGM, make_datalist
from medfound.errors import ConfigError, DatasetLayoutError, ImageReadError, LabelMismatchError
from medfound.utils import atomic_path

__all__ = ["SCGM_SITES", "find_scgm_subjects", "process_scgm_subject", "scgm_datalist"]

#: the challenge's sites (centres)
SCGM_SITES = {"site1": "UCL", "site2": "Polytechnique Montreal", "site3": "UHZ Zurich", "site4": "Vanderbilt"}

_IMAGE_RE = re.compile(r"^(site\d+)-(sc\d+)-image\.nii(\.gz)?$")
_MASK_RE = re.compile(r"^(site\d+)-(sc\d+)-mask-r(\d+)\.nii(\.gz)?$")


def find_scgm_subjects(root: str | os.PathLike, sites: Sequence[str] | None = None,
                       missing_masks: str = "raise") -> list[dict[str, Any]]:
    """Subjects in an SCGM folder: ``{"site", "subject", "image", "masks": [rater files]}``.

    Raises :class:`DatasetLayoutError` naming the folder when it has no SCGM images, a
    requested site is absent, masks have no image, or (``missing_masks="raise"``) an
    image has no masks.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: SCGM dataset folder not found")
    images: dict[str, Path] = {}
    masks: dict[str, list[tuple[int, Path]]] = {}
    for p in sorted(root.iterdir()):
        if m := _IMAGE_RE.match(p.name):
            images[f"{m[1]}-{m[2]}"] = p
        elif m := _MASK_RE.match(p.name):
            masks.setdefault(f"{m[1]}-{m[2]}", []).append((int(m[3]), p))
    if not images:
        raise DatasetLayoutError(f"{root}: no SCGM images (siteK-scNN-image.nii.gz)")
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise DatasetLayoutError(f"{root}: masks without an image for subject(s) {orphans[:5]}")
    found_sites = sorted({s.split("-")[0] for s in images})
    if sites is not None:
        absent = [s for s in sites if s not in found_sites]
        if absent:
            raise DatasetLayoutError(f"{root}: no images of site(s) {absent} (found {found_sites})")
    no_masks = sorted(s for s in images if s not in masks)
    if no_masks and missing_masks == "raise":
        raise DatasetLayoutError(
            f"{root}: {len(no_masks)} image(s) without rater masks (siteK-scNN-mask-rR.nii.gz): "
            f"{[images[s].name for s in no_masks[:5]]} (missing_masks='unlabeled' keeps them without labels)")
    subjects = []
    for subject, image in sorted(images.items()):
        site = subject.split("-")[0]
        if sites is not None and site not in sites:
            continue
        raters = [p for _, p in sorted(masks.get(subject, []))]
        if not raters and missing_masks == "skip":
            continue
        subjects.append({"site": site, "subject": subject, "image": image, "masks": raters})
    return subjects


def _check_rater_values(raters: np.ndarray, files: Sequence[Path]) -> None:
    for r, path in enumerate(files):
        valid = np.isin(raters[r], (0, 1, 2))
        if not valid.all():
            bad = [int(v) if float(v).is_integer() else float(v) for v in np.unique(raters[r][~valid])]
            raise DatasetLayoutError(f"{path}: mask values {bad[:8]} are not 0/1/2 "
                                     "(background / grey matter / white matter)")


@functools.lru_cache(maxsize=1)
def _loader() -> Callable:
    from monai.transforms import LoadImage

    return LoadImage(reader="NibabelReader", image_only=True, ensure_channel_first=True)  # construction is slow


def _read(path: Path) -> Any:
    try:
        return _loader()(str(path))
    except Exception as err:  # MONAI wraps reader errors; name the file
        raise ImageReadError(f"{path}: cannot read NIfTI ({type(err).__name__}: {err})") from err


def _load(subject: dict[str, Any]) -> dict[str, Any]:
    """Image ``(1, X, Y, Z)`` and the raters stacked ``(R, X, Y, Z)``, each checked against the image grid."""
    from monai.data import MetaTensor

    image = _read(subject["image"])
    data = {"image": image}
    raters = []
    for path in subject["masks"]:
        mask = _read(path)
        if tuple(mask.shape[1:]) != tuple(image.shape[1:]):
            raise LabelMismatchError(f"{path}: mask is {tuple(mask.shape[1:])} but the image "
                                     f"{subject['image'].name} is {tuple(image.shape[1:])}")
        if not np.allclose(np.asarray(mask.affine), np.asarray(image.affine), atol=1e-3):
            raise LabelMismatchError(f"{path}: mask affine differs from the image's ({subject['image'].name}); "
                                     "masks must share the image grid")
        raters.append(mask)
    if raters:
        stacked = torch.cat([r.as_tensor() for r in raters], dim=0)
        data["label"] = MetaTensor(stacked, meta=dict(raters[0].meta))
        data["label"].meta["filename_or_obj"] = [str(p) for p in subject["masks"]]
    return data


def process_scgm_subject(
    subject: dict[str, Any],
    out_dir: str | os.PathLike,
    normalize: str | None = "percentile",
    spacing: float | None = None,
    crop_size: int | None = None,
    tie: str = "background",
) -> list[dict[str, Any]]:
    """Consensus, reorientation, optional resampling/crop, per-slice normalisation, 2D slices.

    Writes ``out_dir/zKKK_image.nii.gz`` (and ``zKKK_label.nii.gz`` when the subject has
    masks) and returns one record per slice: ``slice_index``, ``image``, ``label``
    (absolute paths) and ``has_cord``.
    """
    from monai.transforms import Spacingd

    from medfound.transforms.spinal import (
        AxialOrientationd,
        AxialSlicesd,
        CordCenteredCropd,
        MajorityVoted,
        NormalizePerSliced,
    )

    data = _load(subject)
    labelled = bool(subject["masks"])
    keys = ["image", "label"] if labelled else ["image"]
    image = data["image"]
    if not np.isfinite(image.as_tensor().numpy()).all():
        raise ImageReadError(f"{subject['image']}: NaN or infinite voxel values")
    if labelled:
        raters = data["label"]
        _check_rater_values(raters.as_tensor().numpy(), subject["masks"])
        data = MajorityVoted(keys="label", tie=tie)(data)
    data = AxialOrientationd(keys=keys)(data)
    if spacing is not None:
        data = Spacingd(keys=keys, pixdim=(float(spacing), float(spacing), -1.0),
                        mode=["bilinear", "nearest"][: len(keys)])(data)
    if crop_size is not None:
        roi = (int(crop_size), int(crop_size), -1)
        if labelled:
            data = CordCenteredCropd(keys=keys, source_key="label", roi_size=roi)(data)
        else:  # no label: the image centre
            from medfound.transforms.spinal import CordCenteredCrop

            data["image"] = CordCenteredCrop(roi, select_fn=lambda x: torch.zeros_like(x, dtype=torch.bool))(
                data["image"])
    if normalize is not None:
        data = NormalizePerSliced(keys="image", axis=-1, mode=normalize)(data)
    slices = AxialSlicesd(keys=keys)(data)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for s in slices:
        k = int(s["slice_index"])
        record: dict[str, Any] = {"slice_index": k}
        for key, dtype in (("image", np.float32), ("label", np.uint8)):
            if key not in s:
                continue
            t = s[key]
            arr = np.asarray(torch.as_tensor(t)[0].cpu().numpy(), dtype=dtype)
            affine = np.asarray(t.affine, dtype=np.float64)
            path = out_dir / f"z{k:03d}_{key}.nii.gz"
            _save_nifti(path, arr, affine)
            record[key] = str(path.resolve())
        record["has_cord"] = bool(labelled and (torch.as_tensor(s["label"]) > 0).any())
        records.append(record)
    return records


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path, keep_suffix=True) as tmp:
        nib.save(img, tmp)  # nibabel's gzip has no timestamp: identical bytes for identical input


def scgm_datalist(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    sites: Sequence[str] | None = None,
    normalize: str | None = "percentile",
    spacing: float | None = None,
    crop_size: int | None = None,
    tie: str = "background",
    labelled_only: bool = False,
    missing_masks: str = "raise",
    on_error: str = "raise",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Validate an SCGM folder, write axial 2D slices once, and return their datalist.

    Parameters
    ----------
    root : the folder with ``siteK-scNN-image.nii.gz`` and ``siteK-scNN-mask-rR.nii.gz``.
    cache_dir : where slices go (default ``ROOT/.medfound_cache/scgm``).
    sites : sites to read (default all found).
    normalize : per-slice normalisation (``"percentile"``, ``"zscore"``, ``"minmax"``) or ``None``.
    spacing : in-plane resampling (mm) or ``None`` (default: native resolution, as released).
    crop_size : in-plane cord-centred crop size (pixels) or ``None`` (default: whole slices).
    tie : majority-vote tie rule, see :class:`~medfound.transforms.spinal.MajorityVote`.
    labelled_only : keep only slices with cord in the consensus.
    missing_masks : images without rater masks: ``"raise"`` (default), ``"skip"``, or
        ``"unlabeled"`` (slices without ``label``, e.g. the challenge's test subjects as
        unlabelled data).
    on_error : ``"raise"`` or ``"skip"`` (bad subjects listed under ``"skipped"``).
    log : optional progress callback.

    Returns
    -------
    dict
        A datalist (see :mod:`medfound.data.datalist`) with ``dataset="scgm"``, one item per slice.
    """
    if missing_masks not in ("raise", "skip", "unlabeled"):
        raise ConfigError(f"missing_masks must be 'raise', 'skip' or 'unlabeled', got {missing_masks!r}")
    if normalize is not None and normalize not in ("percentile", "zscore", "minmax"):
        raise ConfigError(f"normalize must be 'percentile', 'zscore', 'minmax' or None, got {normalize!r}")
    root = Path(root)
    subjects = find_scgm_subjects(root, sites, missing_masks)
    options = {"normalize": normalize, "spacing": spacing, "crop_size": crop_size, "tie": tie}
    cache = LabelCache(cache_dir if cache_dir is not None else root / ".medfound_cache" / "scgm",
                       options_version("scgm", **options))

    def make_items(subject: dict[str, Any]) -> list[dict[str, Any]]:
        sources = [subject["image"], *subject["masks"]]
        out_dir = cache.root / subject["site"] / subject["subject"]
        records = cache.lookup(subject["subject"], sources)
        if records is None or not all(Path(r[k]).is_file() for r in records for k in ("image", "label") if k in r):
            records = process_scgm_subject(subject, out_dir, **options)
            cache.store(subject["subject"], sources, records)
        items = []
        for r in records:
            if labelled_only and not r["has_cord"]:
                continue
            item = {"image": r["image"], "domain": subject["site"], "subject": subject["subject"],
                    "case_id": f"{subject['subject']}/z{r['slice_index']:03d}", "slice_index": r["slice_index"]}
            if "label" in r:
                item["label"] = r["label"]
            items.append(item)
        return items

    try:
        nested, skipped = collect_cases(subjects, lambda s: {"items": make_items(s)}, on_error,
                                        describe=lambda s: s["subject"])
    finally:
        cache.flush()
    items = [it for n in nested for it in n["items"]]
    if not items:
        raise DatasetLayoutError(f"{root}: no usable SCGM slices ({len(skipped)} subject(s) skipped)")
    if log is not None:
        log(f"scgm: {len(items)} slices of {len(nested)} subjects, {len(skipped)} skipped; slices in {cache.root}")
    found = sorted({s["site"] for s in subjects})
    return make_datalist(
        SCGM, items, root=str(root.resolve()), synthetic=is_synthetic(root), skipped=skipped,
        sites={s: SCGM_SITES.get(s, s) for s in found}, preprocessing=options,
        label_encoding="class index: 0 background, 1 grey matter, 2 white matter (majority vote of raters)",
    )
