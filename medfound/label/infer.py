"""MONAI Label inference task serving a DAC bundle's network: :class:`BundleSegmentation`.

A :class:`monailabel.tasks.infer.basic_infer.BasicInferTask` (MONAI Label's own bundle
tasks import torchvision, which does not work with the CPU torch build; see PLATFORM notes
in the README) whose pieces all come from the bundle's ``inference.json``
(:class:`~medfound.label.bundle.InferenceBundle`): the network (``network_def``), the
pre-transforms (``preprocessing``), the inferer and the post-transforms (``postprocessing``
without its ``SaveImaged``; its ``Invertd`` brings the mask back to the input's geometry).

Weights: the last existing file of ``[bundle models/model.pt, app-trained model.pt]`` (the
app's training publishes the second, so a trained model replaces the served one; the
network is reloaded when the file's modification time changes). They are loaded with
:func:`medfound.dac.evaluation.load_trained_network` (``weights_only``, strict, a
:class:`~medfound.errors.WeightsError` naming the file); without any weights file the
request fails with a message saying how to train them, it never runs an untrained network.

The result has the input's format: a PNG/JPEG photograph gives a PNG mask, a NIfTI volume
a NIfTI mask, a DICOM series (a folder) a DICOM-SEG referencing that series
(:func:`medfound.label.dicom_seg.write_dicom_seg`). Mask values are class indices
(``labels`` of the task map names to them).
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Activationsd, SaveImage
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from medfound.dac.evaluation import load_trained_network
from medfound.errors import DatasetLayoutError, ImageReadError
from medfound.label.bundle import InferenceBundle
from medfound.label.dicom_seg import write_dicom_seg

__all__ = ["BundleSegmentation", "mc_dropout_mode", "result_format", "save_mask"]

logger = logging.getLogger(__name__)

_NIFTI = (".nii.gz", ".nii")


def result_format(image_path: str | os.PathLike | None) -> str:
    """Result format for an input: ``"dicom_seg"`` (a folder: a DICOM series), ``".nii.gz"`` or ``".png"``.

    Example
    -------
    >>> result_format("a/b.png"), result_format("c.nii.gz"), result_format("d.jpg")
    ('.png', '.nii.gz', '.png')
    """
    if image_path is None:
        return ".nii.gz"
    path = str(image_path)
    if os.path.isdir(path):
        return "dicom_seg"
    lower = path.lower()
    return ".nii.gz" if lower.endswith(_NIFTI) or lower.endswith((".nrrd", ".mha", ".mhd")) else ".png"


def save_mask(mask: Any, ext: str) -> str:
    """Write a class-index mask (channel-first MetaTensor in the input's geometry) to a new temporary file."""
    with tempfile.TemporaryDirectory(prefix="medfound_label_") as folder:
        SaveImage(output_dir=folder, output_ext=ext, output_postfix="", separate_folder=False,
                  output_dtype=np.uint8, resample=False, print_log=False,
                  output_name_formatter=lambda meta, saver: {"subject": "mask", "idx": None})(mask)
        written = next(Path(folder).iterdir())
        fd, out = tempfile.mkstemp(suffix=ext, prefix="medfound_label_")
        os.close(fd)
        shutil.move(str(written), out)
    return out


def mc_dropout_mode(network: torch.nn.Module) -> torch.nn.Module:
    """Monte-Carlo dropout: the network in eval mode except its dropout layers, which keep sampling.

    Normalisation layers use their running statistics, as at inference; returns the network.

    Example
    -------
    >>> net = mc_dropout_mode(torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.Dropout(0.5)))
    >>> net[0].training, net[1].training
    (False, True)
    """
    network.eval()
    for module in network.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.train()
    return network


class BundleSegmentation(BasicInferTask):
    """Segmentation with a DAC bundle's network, pre- and post-processing.

    Parameters
    ----------
    bundle : the parsed bundle.
    trained_path : where the app's training publishes its network (served once it exists).
    dimension : 2 (photographs) or 3 (volumes, segmented slice by slice by the bundle).
    description : shown by ``/info``.
    probabilities : return the class probabilities at the network's working size instead of a
        mask file (softmax replaces the bundle's post-processing, no writer), with dropout on:
        the Monte-Carlo dropout samples MONAI Label's ``EpistemicScoring`` averages. Only the
        dropout layers sample (:func:`mc_dropout_mode`); MONAI Label's own ``train_mode``
        (``network.train()``) would also put BatchNorm in training mode, which normalises a
        single image by its own statistics (other outputs than the served model's) and fails
        in DeepLabV3+'s image-pooling branch on a batch of one.
    """

    def __init__(self, bundle: InferenceBundle, trained_path: str, dimension: int = 2,
                 description: str | None = None, probabilities: bool = False) -> None:
        names = bundle.class_names
        super().__init__(
            path=[bundle.model_path, trained_path],
            network=bundle.network(),
            type=InferType.SEGMENTATION,
            labels={name: k for k, name in enumerate(names) if k > 0},
            dimension=dimension,
            description=description or f"DAC segmentation ({bundle.name}): {', '.join(names[1:])}",
            load_strict=True,
            skip_writer=probabilities,
        )
        self.bundle = bundle
        self.mc_dropout = probabilities
        self.class_names = names
        self._preprocessing = bundle.preprocessing()
        self._postprocessing = ([Activationsd(keys=self.output_label_key, softmax=True)] if probabilities
                                else bundle.postprocessing())
        self._inferer = bundle.inferer()
        self._lock = threading.Lock()

    def is_valid(self) -> bool:
        """Usable when a weights file exists (``/info`` lists only usable models)."""
        return self.get_path() is not None

    def pre_transforms(self, data=None) -> list:
        return list(self._preprocessing.transforms)

    def post_transforms(self, data=None) -> list:
        return list(self._postprocessing)

    def inferer(self, data=None):
        return self._inferer

    def run_pre_transforms(self, data: dict[str, Any], transforms):
        try:
            return super().run_pre_transforms(data, transforms)
        except Exception as err:  # noqa: BLE001 - any failure to read the input is the input's fault
            cause: BaseException = err
            while cause.__cause__ is not None:  # MONAI wraps transform errors; name the root
                cause = cause.__cause__
            raise ImageReadError(f"{data.get('image_path', 'the input')}: cannot be read or prepared for "
                                 f"{self.bundle.name} ({type(cause).__name__}: {cause})") from err

    def _get_network(self, device, data):
        path = self.get_path()
        if path is None:
            raise DatasetLayoutError(
                f"no weights for {self.bundle.name}: neither {self.path[0]} (train the bundle: python -m "
                f"monai.bundle run --config_file configs/train.json --bundle_root {self.bundle.root}) nor "
                f"{self.path[1]} (train from the datastore: POST /train/<model>) exists")
        stamp = (path, os.stat(path).st_mtime_ns)
        with self._lock:  # concurrent requests share one loaded network per device
            cached = self._networks.get(device)
            if cached is not None and cached[1] == stamp:
                return cached[0]
            if cached is not None:
                logger.info("weights changed (%s): reloading", path)
            network = load_trained_network(copy.deepcopy(self.network), path).to(torch.device(device))
            if self.mc_dropout:
                mc_dropout_mode(network)
            self._networks[device] = (network, stamp)
            return network

    def writer(self, data: dict[str, Any], extension=None, dtype=None) -> tuple[Any, dict[str, Any]]:
        pred = data[self.output_label_key]
        source = data.get("image_path")
        kind = result_format(source)
        present = [int(v) for v in torch.unique(torch.as_tensor(pred)).tolist()]
        result: dict[str, Any] = {"format": kind, "classes_present": present}
        if kind != "dicom_seg":
            return save_mask(pred, kind), result
        nifti = save_mask(pred, ".nii.gz")
        try:
            if not any(v > 0 for v in present):  # a DICOM-SEG needs at least one segment with pixels
                result.update(format=".nii.gz", note="empty prediction: DICOM-SEG needs a segment; NIfTI returned")
                return nifti, result
            fd, out = tempfile.mkstemp(suffix=".dcm", prefix="medfound_label_")
            os.close(fd)
            series = getattr(data.get(self.input_key), "meta", {}).get("SeriesInstanceUID")
            write_dicom_seg(nifti, source, self.class_names, out, series_uid=series)
            return out, result
        finally:
            if result["format"] == "dicom_seg":
                os.remove(nifti)
