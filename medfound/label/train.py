"""Semi-supervised DAC training from a MONAI Label datastore: :class:`DACDatastoreTrainTask`.

MONAI Label's trainers (``BasicTrainTask``, ``BundleTrainTask``) train on
``datastore.datalist()``, i.e. on **labelled images only**. This task is a
:class:`~monailabel.tasks.train.basic_train.BasicTrainTask` (MONAI Label's request handling,
run ids, device choice, statistics file and ``/info`` statistics are kept) whose data and
training are DAC's:

1. :meth:`pre_process` turns the datastore into a CD-SSDG-style split
   (:func:`datastore_split`): the labelled images (final labels) are DAC's labelled set
   (a seeded ``val_split`` part of them held out for model selection), the images **without**
   a label are its unlabelled set; each image's domain comes from an image-info field
   (``domain_field``, default ``"domain"``) or, failing that, from its name
   (``domain_pattern``, default: the name up to the first ``_``).
2. :meth:`train` writes that split into a new run folder and runs the bundle's
   ``train.json`` (:func:`medfound.label.bundle.training_parser`, same overlays as the
   served network) with ``split_file``, ``output_dir`` and ``ckpt_dir`` set by the app, the
   way ``python -m monai.bundle run`` runs it (``initialize``, ``run``, ``finalize``). The
   bundle's last step publishes the selected network (``best_model.pt``, else ``model.pt``)
   atomically to ``ckpt_dir/model.pt``, the file the infer task serves: the trained model
   replaces the served one, and the infer task reloads it at its next request.

Each run starts from the bundle's initialisation (two different seeds for A and B, as the
method needs), not from the served weights, which would make A and B equal.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.tasks.train.basic_train import BasicTrainTask, Context
from monailabel.tasks.train.handler import prepare_stats

from medfound.dac.workflow import run_workflow
from medfound.data.scgm import process_scgm_subject
from medfound.errors import ConfigError
from medfound.label.bundle import InferenceBundle, training_parser
from medfound.utils import atomic_write_json, check_float, check_int, make_rng, safe_filename

__all__ = ["DEFAULT_DOMAIN_PATTERN", "domain_rule", "datastore_split", "slice_volumes", "DACDatastoreTrainTask"]

logger = logging.getLogger(__name__)

#: image name -> domain: everything before the first "_" (``Domain1_0003.png`` -> ``Domain1``)
DEFAULT_DOMAIN_PATTERN = r"^([^_]+)_"


def domain_rule(field: str = "domain", pattern: str | None = DEFAULT_DOMAIN_PATTERN,
                default: str = "datastore") -> Callable[[str, Mapping[str, Any]], str]:
    """``(image_id, image_info) -> domain``: the info field if set, else the pattern's first group, else ``default``.

    Example
    -------
    >>> rule = domain_rule()
    >>> rule("Domain2_0001", {}), rule("x", {"domain": "siteB"}), rule("plain", {})
    ('Domain2', 'siteB', 'datastore')
    """
    regex = re.compile(pattern) if pattern else None

    def domain(image_id: str, info: Mapping[str, Any]) -> str:
        value = info.get(field) if field else None
        if value:
            return str(value)
        match = regex.search(image_id) if regex is not None else None
        return match.group(1) if match and match.groups() else default

    return domain


def datastore_split(
    labeled: Sequence[Mapping[str, Any]],
    unlabeled: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    val_split: float = 0.2,
    seed: int = 0,
    regions: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """A CD-SSDG-style split (the format :func:`medfound.dac.data.load_split` reads) from datastore items.

    Parameters
    ----------
    labeled : ``{"image", "label", "domain", "case_id"}`` items (images with a final label).
    unlabeled : ``{"image", "domain", "case_id"}`` items (images without a label).
    class_names : the bundle's classes, background first.
    val_split : fraction of the labelled items held out for model selection (seeded; at least
        one when the fraction is positive and two or more items are labelled).
    seed : seed of that choice.
    regions : named unions of classes the validation scores (default: one per class).

    Example
    -------
    >>> lab = [{"image": f"/s/A_{i}.png", "label": f"/s/l/A_{i}.png", "domain": "A", "case_id": f"A_{i}"}
    ...        for i in range(5)]
    >>> unl = [{"image": "/s/B_0.png", "domain": "B", "case_id": "B_0"}]
    >>> s = datastore_split(lab, unl, ["background", "disc"])
    >>> s["counts"], s["unlabeled_domains"]
    ({'labeled': 4, 'unlabeled': 1, 'validation': 1, 'test': 0}, ['B'])
    """
    val_split = check_float(val_split, "val_split", low=0.0, high=1.0, high_open=True)
    labeled = sorted((dict(it) for it in labeled), key=lambda it: it["case_id"])
    if not labeled:
        raise ConfigError("the datastore has no labelled image: label at least one before training")
    n_val = int(round(val_split * len(labeled)))
    if val_split > 0 and len(labeled) >= 2:
        n_val = min(max(n_val, 1), len(labeled) - 1)
    else:
        n_val = 0
    order = make_rng(check_int(seed, "seed"), "datastore_split", "validation").permutation(len(labeled))
    held = set(order[:n_val].tolist())
    parts = {
        "labeled": [it for k, it in enumerate(labeled) if k not in held],
        "unlabeled": sorted((dict(it) for it in unlabeled), key=lambda it: it["case_id"]),
        "validation": [it for k, it in enumerate(labeled) if k in held],
        "test": [],
    }
    return {
        "format_version": 1,
        "dataset": "monailabel-datastore",
        "source": "MONAI Label datastore",
        "class_names": list(class_names),
        **({"regions": {str(k): [int(c) for c in v] for k, v in regions.items()}} if regions else {}),
        "test_domain": None,
        "labeled_domain": sorted({it["domain"] for it in labeled}),
        "unlabeled_domains": sorted({it["domain"] for it in parts["unlabeled"]}),
        "val_ratio": val_split,
        "seed": int(seed),
        "counts": {k: len(v) for k, v in parts.items()},
        **parts,
    }


def slice_volumes(split: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Any]:
    """The split of datastore **volumes** turned into the split of their 2D axial slices the SCGM bundle trains on.

    Each volume (NIfTI; its final label a class-index volume 0/1/2 on the same grid) goes
    through :func:`medfound.data.scgm.process_scgm_subject` with the SCGM adapter's defaults
    (reoriented so the cord runs along the last axis, each slice normalised on its own, 2D
    NIfTI slices under ``out_dir/<case_id>/``), the label as its one "rater". Slice items keep
    the volume's ``domain`` and name it as ``subject``; the parts stay as the volume split made
    them (validation volumes, not slices, are held out). The volume counts move to
    ``volume_counts``; a DICOM series folder cannot be sliced this way and raises.

    Raises
    ------
    ConfigError
        An item is a DICOM series folder (label the volume as NIfTI).
    """
    out = Path(out_dir)
    parts: dict[str, list[dict[str, Any]]] = {}
    for part in ("labeled", "unlabeled", "validation", "test"):
        items = []
        for volume in split.get(part, []):
            if os.path.isdir(volume["image"]):
                raise ConfigError(f"{volume['case_id']}: a DICOM series; training from the app slices NIfTI volumes "
                                  "only (store the volume and its label as NIfTI)")
            subject = {"image": Path(volume["image"]), "masks": [Path(volume["label"])] if "label" in volume else [],
                       "subject": volume["case_id"]}
            for record in process_scgm_subject(subject, out / safe_filename(volume["case_id"])):
                k = record["slice_index"]
                item = {"image": record["image"], "domain": volume["domain"], "subject": volume["case_id"],
                        "slice_index": k, "case_id": f"{volume['case_id']}/z{k:03d}"}
                if "label" in record:
                    item["label"] = record["label"]
                items.append(item)
        parts[part] = items
    return {**split, **parts, "volume_counts": dict(split["counts"]), "counts": {k: len(v) for k, v in parts.items()},
            "volumes": {part: [v["case_id"] for v in split.get(part, [])] for part in parts}}


class DACDatastoreTrainTask(BasicTrainTask):
    """DAC co-training on a datastore's labelled **and** unlabelled images, with a bundle's ``train.json``.

    Parameters
    ----------
    bundle : the served bundle (its ``class_names``, root and overlays are used).
    model_dir : this model's folder in the app: runs go to ``model_dir/runs/<run id>``, the
        statistics to ``model_dir/train_stats.json``.
    publish_dir : where the trained network is published (``model.pt``), the infer task's
        trained path.
    domain : ``(image_id, info) -> domain`` (see :func:`domain_rule`).
    config : request defaults shown by ``/info`` (``max_epochs``, ``iterations_per_epoch``,
        ``val_split``, ``method``, ``seed``, ``bundle_overrides``); a request overrides them.
    volumes : the datastore holds volumes (the spinal-cord bundle): the volume split is turned
        into the split of their axial slices (:func:`slice_volumes`) in the run folder.
    regions : named unions of classes the validation scores (default: one per class).
    """

    def __init__(self, bundle: InferenceBundle, model_dir: str, publish_dir: str,
                 domain: Callable[[str, Mapping[str, Any]], str] | None = None,
                 config: Mapping[str, Any] | None = None, description: str | None = None,
                 volumes: bool = False, regions: Mapping[str, Sequence[int]] | None = None) -> None:
        defaults = {"max_epochs": 100, "iterations_per_epoch": 200, "val_split": 0.2, "method": "dac", "seed": 0,
                    "bundle_overrides": {}, "multi_gpu": False}
        defaults.update(config or {})
        super().__init__(model_dir=model_dir, description=description or
                         f"DAC co-training ({bundle.name}) on the datastore's labelled and unlabelled images",
                         config=defaults, labels=bundle.class_names[1:], tracking=None)
        self.bundle = bundle
        self.publish_dir = str(publish_dir)
        self.domain = domain or domain_rule()
        self.volumes = bool(volumes)
        self.regions = dict(regions) if regions else None

    # -- the parts of SupervisedTrainer-based training that DAC replaces ------------------------
    # BasicTrainTask declares them abstract; DAC builds all of them from the bundle's train.json
    # inside :meth:`train`, so they give the same objects, from a parsed training config.
    def _parsed(self, context: Context, id: str) -> Any:
        return context.request["_parser"].get_parsed_content(id)

    def network(self, context: Context):
        return self._parsed(context, "network")

    def optimizer(self, context: Context):
        return self._parsed(context, "train#trainer").optimizer

    def loss_function(self, context: Context):
        return self._parsed(context, "objective")

    def train_pre_transforms(self, context: Context):
        return self._parsed(context, "train#preprocessing")

    def train_post_transforms(self, context: Context):
        return []

    def val_inferer(self, context: Context):
        return self._parsed(context, "validate#evaluator").inferer

    # -- datastore -> split -> bundle training --------------------------------------------------
    def pre_process(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """The split of the datastore (labelled final labels vs images without one), per :func:`datastore_split`."""
        labeled, unlabeled = [], []
        for image_id in sorted(datastore.list_images()):
            info = datastore.get_image_info(image_id)
            item = {"image": datastore.get_image_uri(image_id), "case_id": image_id,
                    "domain": self.domain(image_id, info)}
            label_id = datastore.get_label_by_image_id(image_id, DefaultLabelTag.FINAL)
            if label_id:
                labeled.append({**item, "label": datastore.get_label_uri(label_id, DefaultLabelTag.FINAL)})
            else:
                unlabeled.append(item)
        split = datastore_split(labeled, unlabeled, self.bundle.class_names, request.get("val_split", 0.2),
                                request.get("seed", 0), regions=self.regions)
        logger.info("datastore split: %d labelled (domains %s), %d validation, %d unlabelled (domains %s)",
                    split["counts"]["labeled"], split["labeled_domain"], split["counts"]["validation"],
                    split["counts"]["unlabeled"], split["unlabeled_domains"])
        return split

    def train(self, rank: int, world_size: int, request: dict[str, Any], datalist: dict[str, Any]):
        start = time.time()
        run_dir = Path(self._model_dir) / "runs" / str(request["run_id"])
        if self.volumes:
            datalist = slice_volumes(datalist, run_dir / "slices")
            logger.info("volumes sliced: %s volumes -> %s slices", datalist["volume_counts"], datalist["counts"])
        split_file = atomic_write_json(run_dir / "split.json", datalist, sort_keys=True)
        overrides = {
            "split_file": str(split_file), "output_dir": str(run_dir), "ckpt_dir": self.publish_dir,
            "device#device": str(request.get("device", "auto")), "method": request.get("method", "dac"),
            "max_epochs": check_int(request.get("max_epochs"), "max_epochs", low=1),
            "iterations_per_epoch": check_int(request.get("iterations_per_epoch"), "iterations_per_epoch", low=1),
            "seed": check_int(request.get("seed", 0), "seed"),
            **dict(request.get("bundle_overrides") or {}),
        }
        parser = training_parser(self.bundle.root, self.bundle.overlays, overrides)
        context = Context()
        context.request = {**request, "_parser": parser}
        logger.info("DAC training %s: %d labelled + %d unlabelled images (unlabelled domains %s) -> %s",
                    request.get("model"), datalist["counts"]["labeled"], datalist["counts"]["unlabeled"],
                    datalist["unlabeled_domains"], run_dir)
        run_workflow(parser)
        trainer = self._parsed(context, "train#trainer")
        evaluator = self._parsed(context, "validate#evaluator") if "validate#evaluator" in parser else None
        stats = prepare_stats(start, trainer, evaluator)
        stats.update({
            "run_dir": str(run_dir), "split_file": str(split_file), "counts": datalist["counts"],
            "unlabeled_images": (datalist["volumes"]["unlabeled"] if self.volumes
                                 else [it["case_id"] for it in datalist["unlabeled"]]),
            "published": str(Path(self.publish_dir) / "model.pt"), "method": overrides["method"],
            "iterations": int(trainer.state.iteration),
        })
        atomic_write_json(self._stats_path, stats, default=str)
        atomic_write_json(run_dir / "train_stats.json", stats, default=str)
        logger.info("DAC training done: %d iterations; published %s", stats["iterations"], stats["published"])
        return stats
