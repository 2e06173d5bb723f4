"""A MONAI Label studies folder from a DAC dataset: some images labelled, the others not.

MONAI Label's local datastore is a folder of images with their final labels under
``labels/final/`` (same file name). :func:`write_studies` fills one from a dataset adapter's
datalist (the synthetic demo data or a public release): per domain, the first
``labeled_per_domain`` cases get their class-index label, the next ``unlabeled_per_domain``
cases come without one. File names are ``<domain>_<case>.<ext>``, so the app's default
domain rule (the name up to the first ``_``) recovers each image's domain.

This module needs no MONAI Label: the studies folder can be prepared anywhere.

Example
-------
>>> import tempfile
>>> from medfound.data.synthetic import write_demo_data
>>> demo = tempfile.mkdtemp(); _ = write_demo_data(demo, datasets=["fundus"], size="small", seed=0)
>>> out = write_studies(demo + "/fundus", tempfile.mkdtemp(), "fundus", labeled_per_domain=2,
...                     unlabeled_per_domain=1, domains=["Domain1", "Domain2"])
>>> out["labeled"], out["unlabeled"], sorted(out["domains"])
(4, 2, ['Domain1', 'Domain2'])
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medfound.data.fundus import fundus_datalist
from medfound.data.polyp import polyp_datalist
from medfound.errors import ConfigError
from medfound.utils import atomic_write_json, check_int, safe_filename

__all__ = ["LABELS_FOLDER", "STUDY_DATASETS", "write_studies"]

#: where MONAI Label's local datastore keeps the final labels, relative to the studies folder
LABELS_FOLDER = os.path.join("labels", "final")
#: 2D datasets whose adapters give class-index labels the DAC bundles train on
STUDY_DATASETS = {"fundus": fundus_datalist, "polyp": polyp_datalist}


def write_studies(
    dataset_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    dataset: str,
    labeled_per_domain: int = 4,
    unlabeled_per_domain: int = 4,
    domains: Sequence[str] | None = None,
    split: str | None = "train",
) -> dict[str, Any]:
    """Copy images (and some labels) of ``dataset`` into a MONAI Label studies folder.

    Parameters
    ----------
    dataset_root : the dataset in its public layout (e.g. ``demo_data/fundus``).
    out_dir : the studies folder (created; labels go to ``labels/final``).
    dataset : ``"fundus"`` or ``"polyp"``.
    labeled_per_domain, unlabeled_per_domain : cases per domain with and without a label.
    domains : domains to take (default: all).
    split : the release's predefined split to draw from (fundus: ``"train"``); ``None``: any.

    Returns
    -------
    dict
        ``labeled``, ``unlabeled`` (counts), ``domains``, ``images`` (file name -> domain,
        labelled or not); also written to ``out_dir/studies.json``.
    """
    if dataset not in STUDY_DATASETS:
        raise ConfigError(f"dataset must be one of {sorted(STUDY_DATASETS)}, got {dataset!r}")
    n_lab = check_int(labeled_per_domain, "labeled_per_domain", low=0)
    n_unl = check_int(unlabeled_per_domain, "unlabeled_per_domain", low=0)
    out = Path(out_dir)
    datalist = STUDY_DATASETS[dataset](dataset_root, cache_dir=out / ".medfound_cache")
    items = [it for it in datalist["data"] if split is None or it.get("split", split) == split]
    names = sorted({it["domain"] for it in items}) if domains is None else list(domains)
    (out / LABELS_FOLDER).mkdir(parents=True, exist_ok=True)
    images: dict[str, dict[str, Any]] = {}
    for domain in names:
        cases = sorted((it for it in items if it["domain"] == domain), key=lambda it: it["case_id"])
        if not cases:
            raise ConfigError(f"{dataset_root}: no {dataset} cases of domain {domain!r}")
        for k, item in enumerate(cases[: n_lab + n_unl]):
            src = Path(item["image"])
            name = safe_filename(f"{domain}_{src.stem}") + src.suffix.lower()
            shutil.copyfile(src, out / name)
            labeled = k < n_lab
            if labeled:  # the adapter's decoded class-index label, under the image's name
                shutil.copyfile(item["label"], out / LABELS_FOLDER / (Path(name).stem + Path(item["label"]).suffix))
            images[name] = {"domain": domain, "labeled": labeled}
    summary = {"dataset": dataset, "class_names": datalist["class_names"],
               "labeled": sum(v["labeled"] for v in images.values()),
               "unlabeled": sum(not v["labeled"] for v in images.values()),
               "domains": names, "images": images, "synthetic": bool(datalist.get("synthetic", False))}
    atomic_write_json(out / "studies.json", summary, sort_keys=True)
    shutil.rmtree(out / ".medfound_cache", ignore_errors=True)
    return summary
