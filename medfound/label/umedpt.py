"""MONAI Label inference with a UMedPT foundation model's task heads: segmentation and classification.

The served model is a UMedPT pre-training (or transfer) folder as
:func:`medfound.multitask.pretrain.pretrain` writes it: ``network.json`` (the ``UMedPT``
arguments and the task heads) and ``model.pt`` (the state dict: shared encoder, squeezer,
decoders and every head). The app's ``--conf umedpt_model <folder>`` with
``--conf umedpt_task <name>[,<name>...]`` (tasks of that folder) adds one model
``umedpt_<name>`` per task: the task head on the foundation encoder, the encoder unchanged
(frozen: the app does not train it). Inputs are scaled to [0, 1] as the published model
takes them (grey images repeated to three channels, RGBA without alpha).

- :class:`UMedPTSegmentation` (segmentation tasks):
  :class:`~medfound.networks.umedpt.UMedPTTaskOutput` gives the task's logits at the input's
  size (UMedPT pads to its size divisor and crops back), so the mask needs no resampling; the
  result is a class-index mask in the input's format
  (:func:`medfound.label.infer.save_mask`): PNG for photographs, NIfTI for NIfTI.
- :class:`UMedPTClassification` (classification and multilabel tasks): no mask; the JSON
  result (``output=json``; ``output=image`` gives the same JSON as a file) is
  :func:`classification_result`'s, e.g. ::

      {"format": "classification", "task": "fundus_cls", "kind": "classification",
       "class_names": ["healthy", "glaucoma"], "probabilities": {"healthy": 0.81, "glaucoma": 0.19},
       "prediction": "healthy", "prediction_index": 0, ...}

  ``probabilities`` are the softmax (classification) or per-class sigmoid (multilabel) of the
  head's logits; ``prediction`` is the arg-max class (classification) or the list of classes
  with probability >= 0.5 (multilabel). The whole image is classified at its own size (the
  encoder pools its features).

Inputs are taken as 8-bit images (values 0-255 scaled to [0, 1]): the modality-specific
preprocessing of pre-training (e.g. CT intensity windows) is not applied, so CT or MR volumes
in their physical units are not prepared as the heads saw them in training.

Needs the ``label`` extra.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import AsDiscreted, EnsureChannelFirstd, EnsureTyped, LoadImaged, ScaleIntensityRanged
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from medfound.errors import ConfigError, DatasetLayoutError, ImageReadError, WeightsError
from medfound.label.infer import result_format, save_mask
from medfound.multitask.tasks import load_tasks
from medfound.networks.umedpt import UMedPT, UMedPTTaskOutput
from medfound.utils import load_torch_file, read_config_file

__all__ = ["SERVED_KINDS", "UMedPTClassification", "UMedPTSegmentation", "classification_result",
           "load_umedpt_task", "umedpt_infer_task"]

logger = logging.getLogger(__name__)

#: task kinds the app serves (detection heads are not served: MONAI Label has no box result for 2D images)
SERVED_KINDS = ("segmentation", "classification", "multilabel")


def load_umedpt_task(folder: str | os.PathLike, task: str,
                     kinds: tuple[str, ...] = ("segmentation",)) -> tuple[UMedPTTaskOutput, list[str]]:
    """The output of ``task`` (one of ``kinds``) of a UMedPT folder (``network.json`` + ``model.pt``), weights loaded.

    Returns the network (eval mode, logits) and the task's class names: ``network.json``'s, else
    those of the task file the run's ``train.json`` names (``tasks.source``, when it is still
    there), else ``background, class_1, ...`` for segmentation and ``class_0, class_1, ...`` otherwise.

    Raises
    ------
    DatasetLayoutError
        A file is missing.
    ConfigError
        ``task`` is not a task of the folder of one of ``kinds``.
    WeightsError
        ``model.pt`` does not fit the recorded network.
    """
    root = Path(folder)
    for name in ("network.json", "model.pt"):
        if not (root / name).is_file():
            raise DatasetLayoutError(f"UMedPT folder {root}: no {name} (a folder medfound's pre-training wrote)")
    meta = read_config_file(root / "network.json", expect=dict, what="UMedPT network description")
    heads = {h["name"]: dict(h) for h in meta.get("tasks") or []}
    if task not in heads or heads[task].get("kind") not in kinds:
        fitting = sorted(n for n, h in heads.items() if h.get("kind") in kinds)
        raise ConfigError(f"umedpt_task {task!r}: not a {' or '.join(kinds)} task of {root}; choose from {fitting}")
    names = {n: h.pop("class_names", None) for n, h in heads.items()}  # not a head option
    model = UMedPT(**dict(meta.get("umedpt") or {}), tasks=list(heads.values()))
    state = load_torch_file(root / "model.pt", "cpu", what="UMedPT weights")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(f"{root / 'model.pt'} does not fit the network of {root / 'network.json'}: {err}") from None
    count = int(heads[task]["num_classes"])
    default = (["background", *(f"class_{k}" for k in range(1, count))] if heads[task]["kind"] == "segmentation"
               else [f"class_{k}" for k in range(count)])
    return UMedPTTaskOutput(model, task).eval(), [str(n) for n in (names[task] or _run_class_names(root, task, count)
                                                                   or default)]


def _run_class_names(root: Path, task: str, count: int) -> list[str] | None:
    """The class names of ``task`` in the task file of the run's ``train.json`` (``None`` when not found)."""
    try:
        source = read_config_file(root / "train.json", expect=dict, what="UMedPT run config")["tasks"]["source"]
        names = list(load_tasks(source, names=[task])[0].class_names)
    except Exception as err:  # noqa: BLE001 - optional metadata: any failure falls back to generic names
        logger.info("UMedPT %s: no class names for %s from train.json (%s): generic names", root, task, err)
        return None
    return names if len(names) == count else None


def umedpt_infer_task(folder: str | os.PathLike, task: str) -> BasicInferTask:
    """The infer task serving ``task`` of a UMedPT folder :class:`UMedPTSegmentation` or :class:`UMedPTClassification`.

    The task's kind comes from ``network.json``; a folder or task that does not fit raises the
    errors of :func:`load_umedpt_task`.
    """
    meta_file = Path(folder) / "network.json"
    meta = read_config_file(meta_file, expect=dict, what="UMedPT network description") if meta_file.is_file() else {}
    kind = next((h.get("kind") for h in meta.get("tasks") or [] if h.get("name") == task), "segmentation")
    if kind in ("classification", "multilabel"):
        return UMedPTClassification(folder, task)
    return UMedPTSegmentation(folder, task)


def classification_result(logits: torch.Tensor, class_names: list[str], kind: str = "classification") -> dict[str, Any]:
    """The JSON result of a classification (softmax, arg-max) or multilabel (sigmoid, >= 0.5) head.

    Example
    -------
    >>> r = classification_result(torch.tensor([0.0, 2.0]), ["healthy", "glaucoma"])
    >>> r["prediction"], r["prediction_index"], round(r["probabilities"]["glaucoma"], 4)
    ('glaucoma', 1, 0.8808)
    >>> classification_result(torch.tensor([1.0, -1.0]), ["a", "b"], "multilabel")["prediction"]
    ['a']
    """
    logits = torch.as_tensor(logits, dtype=torch.float64).reshape(-1)
    if logits.numel() != len(class_names):
        raise ValueError(f"{logits.numel()} logits for {len(class_names)} classes {class_names}")
    probs = torch.sigmoid(logits) if kind == "multilabel" else torch.softmax(logits, dim=0)
    result: dict[str, Any] = {"format": "classification", "kind": kind, "class_names": list(class_names),
                              "probabilities": {n: float(p) for n, p in zip(class_names, probs.tolist(), strict=True)}}
    if kind == "multilabel":
        result["prediction"] = [n for n, p in zip(class_names, probs.tolist(), strict=True) if p >= 0.5]
    else:
        index = int(probs.argmax())
        result.update(prediction=class_names[index], prediction_index=index)
    return result


class _UMedPTTask(BasicInferTask):
    """What both UMedPT infer tasks share: reading and scaling the input, the frozen network."""

    def pre_transforms(self, data=None) -> list:
        return [
            LoadImaged(keys="image"),
            EnsureChannelFirstd(keys="image"),
            ScaleIntensityRanged(keys="image", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True),
            EnsureTyped(keys="image", dtype=torch.float32),
        ]

    def is_valid(self) -> bool:
        return True

    def run_pre_transforms(self, data: dict[str, Any], transforms):
        try:
            data = super().run_pre_transforms(data, transforms)
        except Exception as err:  # noqa: BLE001 - any failure to read the input is the input's fault
            raise ImageReadError(f"{data.get('image_path', 'the input')}: cannot be read for UMedPT "
                                 f"({type(err).__name__}: {err})") from err
        image = data["image"]
        if image.shape[0] == 1:  # grey images: the encoder takes three channels
            data["image"] = image.repeat(3, *([1] * (image.ndim - 1)))
        elif image.shape[0] == 4:  # RGBA photographs: drop alpha
            data["image"] = image[:3]
        return data

    def _get_network(self, device, data):
        cached = self._networks.get(device)
        if cached is None:
            cached = (self.network.to(torch.device(device)), None)
            self._networks[device] = cached
        return cached[0]


class UMedPTSegmentation(_UMedPTTask):
    """Segmentation with one task head of a UMedPT foundation model (see the module docstring).

    Parameters
    ----------
    folder : the UMedPT folder (``network.json``, ``model.pt``).
    task : its segmentation task to serve.
    dimension : 2 (photographs).
    """

    def __init__(self, folder: str | os.PathLike, task: str, dimension: int = 2) -> None:
        network, names = load_umedpt_task(folder, task)
        self.folder, self.task, self.class_names = str(folder), task, names
        super().__init__(
            path=None, network=network, type=InferType.SEGMENTATION,
            labels={name: k for k, name in enumerate(names) if k > 0}, dimension=dimension,
            description=f"UMedPT foundation encoder + {task!r} segmentation head ({', '.join(names[1:])})",
            load_strict=True,
        )

    def post_transforms(self, data=None) -> list:
        return [AsDiscreted(keys=self.output_label_key, argmax=True)]

    def writer(self, data: dict[str, Any], extension=None, dtype=None) -> tuple[Any, dict[str, Any]]:
        pred = data[self.output_label_key]
        kind = result_format(data.get("image_path"))
        kind = ".nii.gz" if kind == "dicom_seg" else kind
        present = [int(v) for v in np.unique(np.asarray(torch.as_tensor(pred).cpu())).tolist()]
        return save_mask(pred, kind), {"format": kind, "classes_present": present}


class UMedPTClassification(_UMedPTTask):
    """Whole-image classification with one classification or multilabel head of a UMedPT foundation model.

    The answer is :func:`classification_result`'s JSON plus the task name: ``output=json`` gives
    it, ``output=image`` gives the same JSON as a ``.json`` file (there is no mask).

    Parameters
    ----------
    folder : the UMedPT folder (``network.json``, ``model.pt``).
    task : its classification or multilabel task to serve.
    dimension : 2 (photographs).
    """

    def __init__(self, folder: str | os.PathLike, task: str, dimension: int = 2) -> None:
        network, names = load_umedpt_task(folder, task, kinds=("classification", "multilabel"))
        self.folder, self.task, self.class_names, self.kind = str(folder), task, names, network.kind
        super().__init__(
            path=None, network=network, type=InferType.CLASSIFICATION,
            labels={name: k for k, name in enumerate(names)}, dimension=dimension,
            description=f"UMedPT foundation encoder + {task!r} {network.kind} head ({', '.join(names)})",
            load_strict=True,
        )

    def post_transforms(self, data=None) -> list:
        return []  # the logits go to the writer, which turns them into probabilities

    def writer(self, data: dict[str, Any], extension=None, dtype=None) -> tuple[Any, dict[str, Any]]:
        logits = torch.as_tensor(data[self.output_label_key]).detach().cpu()
        result = {**classification_result(logits, self.class_names, self.kind), "task": self.task}
        # the same JSON as the result file, so that output=image answers it too (MONAI Label's endpoint
        # fails with a bare 500 when a model has no result file); MONAI Label deletes it after sending
        fd, path = tempfile.mkstemp(suffix=".json", prefix="medfound_label_")
        with os.fdopen(fd, "w") as f:
            json.dump(result, f)
        return path, result
