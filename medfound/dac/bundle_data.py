"""The data a DAC bundle works on: a public release under ``dataset_dir``, or the synthetic demo.

The DAC bundles (``bundles/dac_*_segmentation``) read everything through two functions:

- :func:`prepare_split` gives the CD-SSDG split file the training reads (``split_file``):
  with ``dataset_dir`` set, the public release in its own layout through the dataset's
  adapter (:data:`DATASET_ADAPTERS`), decoded labels going to the cache folder; with
  ``dataset_dir`` unset, the **synthetic** demo data of :mod:`medfound.data.synthetic`,
  written on first use into ``cache_dir`` (and only there) and logged as synthetic. The
  split is :func:`medfound.data.splits.make_cdssdg_split` (leave ``test_domain`` out, labels
  from ``labeled_domain``), saved under ``cache_dir/splits``.
- :func:`inference_inputs` lists what the inference config segments: the image files of a
  folder (fundus, polyp), or the NIfTI volumes and DICOM series folders of a folder (SCGM);
  without ``dataset_dir``, the held-out domain's images of the demo data.

Under ``torchrun`` rank 0 writes and the other ranks wait and read (no two processes write
the same file).

Example
-------
>>> sorted(DATASET_ADAPTERS)
['fundus', 'polyp', 'scgm']
>>> path = prepare_split("polyp", None, "cache", test_domain="ETIS-LaribPolypDB")  # doctest: +SKIP
>>> load_split(path)["synthetic"], load_split(path)["labeled_domain"]  # doctest: +SKIP
(True, 'CVC-ClinicDB')
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist

from medfound.dac.distributed import barrier
from medfound.data.fundus import fundus_datalist
from medfound.data.polyp import polyp_datalist
from medfound.data.scgm import scgm_datalist
from medfound.data.splits import load_split, make_cdssdg_split, save_split, split_filename
from medfound.data.synthetic import write_demo_data
from medfound.errors import ConfigError, DatasetLayoutError
from medfound.io import scan_dicom_folder
from medfound.io.photo import PHOTO_SUFFIXES
from medfound.utils import check_choice, world_size
from medfound.utils.devices import rank

__all__ = ["DATASET_ADAPTERS", "VOLUME_SUFFIXES", "demo_folder", "prepare_split", "inference_inputs", "load_split"]

logger = logging.getLogger(__name__)

#: dataset name -> adapter reading its public layout into a datalist (root, cache_dir=...)
DATASET_ADAPTERS: dict[str, Callable[..., dict[str, Any]]] = {
    "fundus": fundus_datalist,
    "polyp": polyp_datalist,
    "scgm": scgm_datalist,
}
#: volume files the SCGM inference reads (DICOM series are folders)
VOLUME_SUFFIXES = (".nii", ".nii.gz")


def _on_rank0(make: Callable[[], str]) -> str:
    """``make()`` on rank 0; the other ranks wait for it and receive its result."""
    if world_size() == 1:
        return make()
    box: list[Any] = [make() if rank() == 0 else None]
    barrier()
    dist.broadcast_object_list(box, src=0)
    return box[0]


def demo_folder(dataset: str, cache_dir: str | os.PathLike, size: str = "small", seed: int = 0) -> Path:
    """The synthetic demo data of ``dataset`` under ``cache_dir``, written there on first use.

    Returns ``cache_dir/demo_<size>_seed<seed>/<dataset>`` (the layout of the public release).
    """
    check_choice(dataset, DATASET_ADAPTERS, "dataset")
    root = Path(cache_dir) / f"demo_{size}_seed{int(seed)}"
    folder = root / dataset
    if not (folder / "manifest.json").is_file():
        logger.warning("writing the SYNTHETIC %s demo data (%s, seed %d) into %s", dataset, size, seed, folder)
        write_demo_data(root, datasets=[dataset], size=size, seed=seed)
    return folder


def prepare_split(
    dataset: str,
    dataset_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    test_domain: str,
    labeled_domain: str | None = None,
    labeled_ratio: float = 1.0,
    val_ratio: float = 0.2,
    seed: int = 0,
    demo_size: str = "small",
    demo_seed: int = 0,
) -> str:
    """Write the CD-SSDG split of ``dataset`` and return its path.

    Parameters
    ----------
    dataset : ``"fundus"`` (DoFE layout), ``"polyp"`` (PraNet layout) or ``"scgm"`` (challenge layout).
    dataset_dir : the release's root folder; ``None`` (or ``""``) uses the synthetic demo data.
    cache_dir : where decoded labels, SCGM slices, the demo data and the split go.
    test_domain : the unseen domain (never used in training or model selection).
    labeled_domain, labeled_ratio, val_ratio, seed : see :func:`medfound.data.splits.make_cdssdg_split`.
    demo_size, demo_seed : the synthetic demo's size preset and seed.

    Raises
    ------
    DatasetLayoutError
        ``dataset_dir`` does not exist or does not follow the dataset's layout.
    """
    check_choice(dataset, DATASET_ADAPTERS, "dataset")
    cache = Path(cache_dir)

    def make() -> str:
        if dataset_dir:
            root = Path(dataset_dir)
            if not root.is_dir():
                raise DatasetLayoutError(f"dataset_dir {root} does not exist (the {dataset} release's root folder)")
            tag = "data"
        else:
            root = demo_folder(dataset, cache, demo_size, demo_seed)
            tag = f"demo_{demo_size}_seed{int(demo_seed)}"
        datalist = DATASET_ADAPTERS[dataset](root, cache_dir=cache / f"{tag}_{dataset}_labels")
        split = make_cdssdg_split(datalist, test_domain, labeled_domain, labeled_ratio=labeled_ratio,
                                  val_ratio=val_ratio, seed=seed)
        path = save_split(cache / "splits" / f"{tag}_{split_filename(split)}", split)
        kind = "SYNTHETIC demo data" if split.get("synthetic") else "data"
        logger.warning("split %s: %s %s, test domain %s, labelled domain %s (%s)", path, dataset, kind,
                       split["test_domain"], split["labeled_domain"],
                       ", ".join(f"{k} {v}" for k, v in split["counts"].items()))
        return str(path)

    return _on_rank0(make)


def _volume_inputs(folder: Path) -> list[str]:
    """NIfTI files and DICOM series folders (the folder itself, or its sub-folders) in ``folder``."""
    found = [str(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name.lower().endswith(VOLUME_SUFFIXES)]
    if scan_dicom_folder(folder):
        found.append(str(folder))
    found += [str(p) for p in sorted(folder.iterdir()) if p.is_dir() and scan_dicom_folder(p)]
    return found


def inference_inputs(
    dataset: str,
    dataset_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    test_domain: str | None = None,
    demo_size: str = "small",
    demo_seed: int = 0,
) -> list[dict[str, str]]:
    """Items ``{"image": path}`` for the inference config.

    Parameters
    ----------
    dataset : ``"fundus"``, ``"polyp"`` (2D photographs) or ``"scgm"`` (volumes).
    dataset_dir : a folder (its images, or for SCGM its ``.nii``/``.nii.gz`` volumes and DICOM
        series folders), or one file; ``None`` (or ``""``): the synthetic demo's images of
        ``test_domain`` (written into ``cache_dir`` on first use).
    cache_dir, demo_size, demo_seed : see :func:`prepare_split`.

    Raises
    ------
    DatasetLayoutError
        Nothing to segment there.
    """
    check_choice(dataset, DATASET_ADAPTERS, "dataset")
    if dataset_dir:
        source = Path(dataset_dir)
        if source.is_file():
            return [{"image": str(source)}]
        if not source.is_dir():
            raise DatasetLayoutError(f"dataset_dir {source} does not exist")
        if dataset == "scgm":
            paths = _volume_inputs(source)
        else:
            paths = [str(p) for p in sorted(source.iterdir()) if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES]
        what = "NIfTI volumes or DICOM series" if dataset == "scgm" else f"images ({', '.join(PHOTO_SUFFIXES)})"
    else:
        if not test_domain:
            raise ConfigError("test_domain is needed to pick the demo images when dataset_dir is not set")
        source = _on_rank0(lambda: str(demo_folder(dataset, cache_dir, demo_size, demo_seed)))
        source = Path(source)
        patterns = {"fundus": f"{test_domain}/test/ROIs/image/*.png", "polyp": f"{test_domain}/images/*",
                    "scgm": f"{test_domain}-sc*-image.nii.gz"}
        paths = [str(p) for p in sorted(source.glob(patterns[dataset]))]
        what = f"demo images of domain {test_domain!r}"
        logger.warning("dataset_dir is not set: segmenting the SYNTHETIC demo data in %s", source)
    if not paths:
        raise DatasetLayoutError(f"{source}: no {what} to segment")
    return [{"image": p} for p in paths]
