"""MONAI Label inference with a UMedPT foundation model's segmentation head: :class:`UMedPTSegmentation`.

The served model is a UMedPT pre-training (or transfer) folder as
:func:`medfound.multitask.pretrain.pretrain` writes it: ``network.json`` (the ``UMedPT``
arguments and the task heads) and ``model.pt`` (the state dict: shared encoder, squeezer,
decoders and every head). The app's ``--conf umedpt_model <folder>`` with
``--conf umedpt_task <name>`` (a segmentation task of that folder) adds the model
``umedpt_<name>``: the task head on the foundation encoder, the encoder unchanged (frozen:
the app does not train it). :class:`~medfound.networks.umedpt.UMedPTTaskOutput` gives the
task's logits at the input's size (UMedPT pads to its size divisor and crops back), so the
mask needs no resampling; inputs are scaled to [0, 1] as the published model takes them.

Results have the input's format (:func:`medfound.label.infer.save_mask`): PNG for
photographs, NIfTI for NIfTI. Needs the ``label`` extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import AsDiscreted, EnsureChannelFirstd, EnsureTyped, LoadImaged, ScaleIntensityRanged
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from medfound.errors import ConfigError, DatasetLayoutError, ImageReadError, WeightsError
from medfound.label.infer import result_format, save_mask
from medfound.networks.umedpt import UMedPT, UMedPTTaskOutput
from medfound.utils import load_torch_file, read_config_file

__all__ = ["UMedPTSegmentation", "load_umedpt_task"]


def load_umedpt_task(folder: str | os.PathLike, task: str) -> tuple[UMedPTTaskOutput, list[str]]:
    """The segmentation output of ``task`` of a UMedPT folder (``network.json`` + ``model.pt``), weights loaded.

    Returns the network (eval mode) and the task's class names (``network.json``'s, else
    ``background, class_1, ...``).

    Raises
    ------
    DatasetLayoutError
        A file is missing.
    ConfigError
        ``task`` is not a segmentation task of the folder.
    WeightsError
        ``model.pt`` does not fit the recorded network.
    """
    root = Path(folder)
    for name in ("network.json", "model.pt"):
        if not (root / name).is_file():
            raise DatasetLayoutError(f"UMedPT folder {root}: no {name} (a folder medfound's pre-training wrote)")
    meta = read_config_file(root / "network.json", expect=dict, what="UMedPT network description")
    heads = {h["name"]: h for h in meta.get("tasks") or []}
    if task not in heads or heads[task].get("kind") != "segmentation":
        segmentation = sorted(n for n, h in heads.items() if h.get("kind") == "segmentation")
        raise ConfigError(f"umedpt_task {task!r}: not a segmentation task of {root}; choose from {segmentation}")
    model = UMedPT(**dict(meta.get("umedpt") or {}), tasks=list(heads.values()))
    state = load_torch_file(root / "model.pt", "cpu", what="UMedPT weights")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(f"{root / 'model.pt'} does not fit the network of {root / 'network.json'}: {err}") from None
    names = heads[task].get("class_names") or [
        "background", *(f"class_{k}" for k in range(1, int(heads[task]["num_classes"])))]
    return UMedPTTaskOutput(model, task).eval(), [str(n) for n in names]


class UMedPTSegmentation(BasicInferTask):
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

    def is_valid(self) -> bool:
        return True

    def pre_transforms(self, data=None) -> list:
        return [
            LoadImaged(keys="image"),
            EnsureChannelFirstd(keys="image"),
            ScaleIntensityRanged(keys="image", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True),
            EnsureTyped(keys="image", dtype=torch.float32),
        ]

    def post_transforms(self, data=None) -> list:
        return [AsDiscreted(keys=self.output_label_key, argmax=True)]

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

    def writer(self, data: dict[str, Any], extension=None, dtype=None) -> tuple[Any, dict[str, Any]]:
        pred = data[self.output_label_key]
        kind = result_format(data.get("image_path"))
        kind = ".nii.gz" if kind == "dicom_seg" else kind
        present = [int(v) for v in np.unique(np.asarray(torch.as_tensor(pred).cpu())).tolist()]
        return save_mask(pred, kind), {"format": kind, "classes_present": present}
