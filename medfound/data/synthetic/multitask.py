"""Synthetic small multi-task collection (classification, segmentation, detection) for UMedPT demos.

Layout written::

    multitask/
      tasks.json                                 the task list (name, kind, classes, datalist, role)
      ct_abdomen_organs_seg/datalist.json        MONAI datalist: "training" and "validation"
      ct_abdomen_organs_seg/images/*.nii.gz      CT-like slices in Hounsfield units (int16)
      ct_abdomen_organs_seg/labels/*.nii.gz
      ...
      manifest.json, README.md

Images are stored in each modality's natural format: CT and MR slices as 2D NIfTI
(HU / arbitrary MR units), fluorescence microscopy as 16-bit TIFF, radiographs as 8-bit
PNG. Datalist entries follow MONAI conventions:

- classification: ``{"image": path, "label": class_index}``
- multi-label classification: ``{"image": path, "label": [0/1 per class]}``
- segmentation: ``{"image": path, "label": label_path}`` (label map of class indices)
- detection: ``{"image": path, "box": [[x_min, y_min, x_max, y_max], ...], "label": [class, ...]}``
  with x along the image width (array column), y along its height (array row), in
  pixels of the stored array, corners on pixel edges (max exclusive).

Paths are relative to the datalist's folder, so ``monai.data.load_decathlon_datalist``
resolves them. ``role`` in ``tasks.json`` is ``"pretrain"`` for the tasks a foundation
model trains on and ``"transfer"`` for the held-out target task of the transfer demo.

Example
-------
>>> import tempfile
>>> from medfound.data.synthetic.multitask import write_multitask_demo
>>> manifest = write_multitask_demo(tempfile.mkdtemp(), size="small", seed=0)
>>> [t["kind"] for t in manifest["tasks"]][:3]
['segmentation', 'classification', 'segmentation']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import tifffile

from medfound.data.synthetic.common import (
    check_size,
    ellipse_distance,
    grid,
    save_png,
    smooth_noise,
    soft_inside,
    to_uint8,
    write_dataset_docs,
)
from medfound.transforms.intensity import gaussian_blur
from medfound.utils import atomic_write_json, make_rng

__all__ = [
    "SyntheticTask", "MULTITASK_TASKS", "MULTITASK_COUNTS", "IMAGE_LABEL_COUNT_FACTOR", "PRETRAIN_TASK_OPTIONS",
    "write_multitask_demo",
]

#: samples per split and image side per size preset ("det_side" for detection tasks;
#: "transfer_validation": the held-out transfer task's test split, larger so that the transfer
#: protocol's scores are not dominated by the sampling noise of a handful of test images; the
#: pre-training tasks' validation split is 32, not 16, for the same reason: an F1 or AUC on 16
#: images moved by 0.1-0.2 between validations of the same run)
MULTITASK_COUNTS: dict[str, dict[str, int]] = {
    "small": {"training": 40, "validation": 32, "transfer_validation": 64, "side": 64, "det_side": 96},
    "medium": {"training": 240, "validation": 60, "transfer_validation": 120, "side": 128, "det_side": 192},
}


@dataclass(frozen=True)
class SyntheticTask:
    """One synthetic task: what it is and the function that renders a sample."""

    name: str
    kind: str  # classification | multilabel | segmentation | detection
    modality: str
    class_names: tuple[str, ...]
    image_format: str  # nifti | tiff | png
    role: str  # pretrain | transfer
    render: Callable[[np.random.Generator, int], tuple[np.ndarray, Any]]
    description: str
    #: the task's ``intensity`` option (e.g. a CT window in HU), written into ``tasks.json``
    intensity: dict[str, float] | None = None

    @property
    def count_factor(self) -> int:
        """Multiplier of the size preset's image counts (both splits): :data:`IMAGE_LABEL_COUNT_FACTOR`
        for pre-training tasks labelled per image (classification, multi-label), else 1."""
        per_image = self.role == "pretrain" and self.kind in ("classification", "multilabel")
        return IMAGE_LABEL_COUNT_FACTOR if per_image else 1


# ---------------------------------------------------------------------------------------------
# tomography


def _ct_body(rng, s):
    yy, xx = grid(s, s)
    cy, cx = s / 2 + rng.normal(0, 0.02 * s), s / 2 + rng.normal(0, 0.02 * s)
    ry, rx = 0.34 * s * rng.uniform(0.9, 1.05), 0.44 * s * rng.uniform(0.9, 1.05)
    d_body = ellipse_distance(yy, xx, cy, cx, ry, rx)
    hu = np.full((s, s), -1000.0)
    hu[d_body < 1] = -100.0  # subcutaneous fat
    hu[d_body < 0.9] = 40.0  # soft tissue
    hu += np.where(d_body < 1, 12 * smooth_noise(rng, (s, s), s / 25), 0)
    return yy, xx, cy, cx, ry, rx, hu


def _render_ct_abdomen(rng, s):
    yy, xx, cy, cx, ry, rx, hu = _ct_body(rng, s)
    label = np.zeros((s, s), np.uint8)
    spine = ellipse_distance(yy, xx, cy + 0.65 * ry, cx, 0.07 * s, 0.07 * s)
    hu[spine < 1] = 700.0
    hu[spine < 0.7] = 250.0
    # (class, centre dy, centre dx, radius y, radius x, HU, presence probability); HU of a contrast-enhanced
    # (portal-venous) scan, as abdominal organ segmentation sets are: liver ~105, spleen ~120, kidney cortex
    # ~170 against 40 HU soft tissue. (Unenhanced values, liver 60 / spleen 48, differ from soft tissue by
    # about one noise sigma: no Dice above 0 in the demo's budget, see the task's notes.)
    organs = [
        (1, -0.1, -0.42, 0.42, 0.36, 105.0, 0.95),
        (2, 0.35, -0.38, 0.16, 0.11, 170.0, 0.85),
        (2, 0.35, 0.38, 0.16, 0.11, 170.0, 0.85),
        (3, -0.05, 0.5, 0.22, 0.14, 125.0, 0.7),
    ]
    for cls, dy, dx, fy, fx, value, p in organs:
        if rng.random() > p:
            continue
        scale = rng.uniform(0.8, 1.15)
        d = ellipse_distance(yy, xx, cy + dy * ry + rng.normal(0, 0.02 * s), cx + dx * rx + rng.normal(0, 0.02 * s),
                             fy * ry * scale, fx * rx * scale, rng.normal(0, 0.2))
        inside = d < 1
        hu[inside] = value + rng.normal(0, 8)
        label[inside] = cls
    hu = gaussian_blur(hu, 0.6, spatial_axes=(0, 1)) + rng.normal(0, 12, (s, s))
    return np.rint(hu).astype(np.int16), label


def _render_ct_chest_nodule(rng, s):
    yy, xx, cy, cx, ry, rx, hu = _ct_body(rng, s)
    lungs = []
    for side in (-1, 1):
        lcy, lcx = cy - 0.05 * ry, cx + side * 0.45 * rx
        d = ellipse_distance(yy, xx, lcy, lcx, 0.7 * ry, 0.33 * rx, side * 0.15)
        hu[d < 1] = -850 + 40 * smooth_noise(rng, (s, s), s / 20)[d < 1]
        lungs.append((d, lcy, lcx))
    # vessels: small bright dots in the lungs (the distractors)
    for _ in range(int(rng.integers(6, 14))):
        d, lcy, lcx = lungs[int(rng.integers(0, 2))]
        vy, vx = lcy + rng.uniform(-0.5, 0.5) * ry, lcx + rng.uniform(-0.2, 0.2) * rx
        r = s * rng.uniform(0.008, 0.015)
        v = ellipse_distance(yy, xx, vy, vx, r, r)
        hu = np.where((v < 1) & (d < 1), 20.0, hu)
    has_nodule = int(rng.random() < 0.5)
    if has_nodule:
        d, lcy, lcx = lungs[int(rng.integers(0, 2))]
        # radius 3.2-5.1 px at 64 px (32-93 px of nodule, 1.6-2.6 of the encoder's 4 px patches across), centre
        # kept inside its lung. Was 2.2-3.8 px (15-49 px, 1.1-1.9 patches, about as much bright lung as the vessel
        # distractors add, 30 +- 16 px): the demo's pre-training memorised its 40 training images (training
        # loss 1.0 -> 0.16) at validation F1 0.50 / AUC 0.62, see the README's recipe section
        r = s * rng.uniform(0.05, 0.08)
        ny, nx = lcy + rng.uniform(-0.8, 0.8) * (0.7 * ry - r) * 0.8, lcx + rng.uniform(-0.8, 0.8) * (0.33 * rx - r)
        nod = soft_inside(ellipse_distance(yy, xx, ny, nx, r, r * rng.uniform(0.85, 1.15)), 0.15)
        hu = hu * (1 - nod) + 30.0 * nod
    hu = gaussian_blur(hu, 0.5, spatial_axes=(0, 1)) + rng.normal(0, 15, (s, s))
    return np.rint(hu).astype(np.int16), has_nodule


def _render_mr_brain_lesion(rng, s):
    yy, xx = grid(s, s)
    cy, cx = s / 2 + rng.normal(0, 0.02 * s), s / 2 + rng.normal(0, 0.02 * s)
    ry, rx = 0.42 * s * rng.uniform(0.92, 1.02), 0.35 * s * rng.uniform(0.92, 1.02)
    d_head = ellipse_distance(yy, xx, cy, cx, ry, rx)
    img = np.zeros((s, s))
    img[d_head < 1] = 0.9  # scalp fat
    img[d_head < 0.93] = 0.08  # skull
    img[d_head < 0.86] = 0.55 + 0.06 * smooth_noise(rng, (s, s), s / 12)[d_head < 0.86]  # grey matter
    wm = ellipse_distance(yy, xx, cy, cx, 0.7 * ry, 0.68 * rx) < 1
    img[wm] = 0.75
    for side in (-1, 1):
        vent = ellipse_distance(yy, xx, cy - 0.05 * ry, cx + side * 0.12 * rx, 0.28 * ry, 0.07 * rx, side * 0.3)
        img[vent < 1] = 0.15
    label = np.zeros((s, s), np.uint8)
    if rng.random() < 0.8:
        r = s * rng.uniform(0.04, 0.1)
        ly, lx = cy + rng.uniform(-0.45, 0.45) * ry, cx + rng.uniform(-0.45, 0.45) * rx
        d = ellipse_distance(yy, xx, ly, lx, r, r * rng.uniform(0.7, 1.3), rng.uniform(0, math.pi))
        d = d * (1 + 0.15 * smooth_noise(rng, (s, s), s / 15))
        lesion = (d < 1) & (d_head < 0.86)
        img[lesion] = 1.0 + 0.05 * rng.standard_normal(int(lesion.sum()))
        label[lesion] = 1
    bias = 1 + 0.15 * np.tanh(smooth_noise(rng, (s, s), s / 3))
    img = gaussian_blur(img, 0.7, spatial_axes=(0, 1)) * bias
    sigma = 0.03
    img = np.sqrt((img + rng.normal(0, sigma, img.shape)) ** 2 + rng.normal(0, sigma, img.shape) ** 2)
    return (img * 1000).astype(np.float32), label


# ---------------------------------------------------------------------------------------------
# fluorescence microscopy


def _render_nuclei(rng, s, phenotype="normal"):
    """Fluorescent nuclei on a dark background; returns uint16 image and uint16 instance ids."""
    yy, xx = grid(s, s)
    unit = s / 64
    n = int(rng.integers(6, 13)) if phenotype != "enlarged" else int(rng.integers(4, 8))
    instances = np.zeros((s, s), np.uint16)
    signal = np.zeros((s, s))
    next_id = 1
    for _ in range(n):
        cy, cx = rng.uniform(0, s), rng.uniform(0, s)
        base = {"normal": (3.0, 5.0), "enlarged": (6.0, 8.5), "fragmented": (3.0, 4.5)}[phenotype]
        r = unit * rng.uniform(*base)
        parts = [(cy, cx, r)]
        if phenotype == "fragmented":
            k = int(rng.integers(2, 5))
            parts = [(cy + rng.normal(0, r * 0.8), cx + rng.normal(0, r * 0.8), r * rng.uniform(0.35, 0.55))
                     for _ in range(k)]
        brightness = rng.uniform(0.5, 1.0)
        for py, px, pr in parts:
            d = ellipse_distance(yy, xx, py, px, pr * rng.uniform(0.75, 1.0), pr, rng.uniform(0, math.pi))
            free = (d < 1) & (instances == 0)
            if free.sum() < 4:
                continue
            instances[free] = next_id
            next_id += 1
            signal = np.maximum(signal, brightness * soft_inside(d, 0.12) *
                                (1 + 0.15 * smooth_noise(rng, (s, s), 1.5 * unit)))
    image = 0.03 + gaussian_blur(signal, 0.8 * unit, spatial_axes=(0, 1))
    counts = rng.poisson(np.clip(image, 0, None) * 3000.0) + rng.normal(100, 8, (s, s))
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16), instances


def _boxes_from_instances(instances: np.ndarray) -> list[list[int]]:
    boxes = []
    for i in np.unique(instances):
        if i == 0:
            continue
        rows, cols = np.nonzero(instances == i)
        boxes.append([int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1])
    return boxes


def _render_nuclei_seg(rng, s):
    image, instances = _render_nuclei(rng, s)
    return image, (instances > 0).astype(np.uint8)


def _render_nuclei_det(rng, s):
    image, instances = _render_nuclei(rng, s)
    boxes = _boxes_from_instances(instances)
    return image, {"box": boxes, "label": [0] * len(boxes)}


def _render_nuclei_phenotype(rng, s):
    cls = int(rng.integers(0, 3))
    image, _ = _render_nuclei(rng, s, ("normal", "enlarged", "fragmented")[cls])
    return image, cls


# ---------------------------------------------------------------------------------------------
# radiography


def _xray_chest(rng, s, cardiomegaly=False):
    """Attenuation-like chest radiograph in [0, 1] (brighter = denser) and the lung distances."""
    yy, xx = grid(s, s)
    cy, cx = s / 2 + rng.normal(0, 0.02 * s), s / 2 + rng.normal(0, 0.02 * s)
    img = 0.15 + 0.35 * soft_inside(ellipse_distance(yy, xx, cy + 0.05 * s, cx, 0.55 * s, 0.45 * s), 0.1)
    lungs = []
    for side in (-1, 1):
        lcy, lcx = cy - 0.03 * s, cx + side * 0.2 * s
        d = ellipse_distance(yy, xx, lcy, lcx, 0.3 * s * rng.uniform(0.95, 1.05), 0.13 * s, side * 0.12)
        img -= 0.28 * soft_inside(d, 0.08)
        lungs.append((d, lcy, lcx))
    heart_w = 0.14 * s * (1.4 if cardiomegaly else rng.uniform(0.9, 1.05))
    heart = soft_inside(ellipse_distance(yy, xx, cy + 0.12 * s, cx + 0.03 * s, 0.13 * s, heart_w), 0.12)
    img = np.maximum(img, 0.62 * heart + img * (1 - heart))
    for k in range(7):  # ribs: bright arcs across the lungs
        y0 = cy - 0.3 * s + k * 0.085 * s
        rib = np.exp(-(((yy - y0 - 0.12 * ((xx - cx) / s) ** 2 * s) / (0.012 * s)) ** 2))
        img += 0.07 * rib * (np.minimum(lungs[0][0], lungs[1][0]) < 1.1)
    img += 0.025 * smooth_noise(rng, (s, s), s / 30)
    return yy, xx, img, lungs


def _render_xray_findings(rng, s):
    labels = [int(rng.random() < 0.35), int(rng.random() < 0.3), int(rng.random() < 0.3)]
    yy, xx, img, lungs = _xray_chest(rng, s, cardiomegaly=bool(labels[2]))
    if labels[0]:  # opacity: a patchy consolidation in one lung
        d, lcy, lcx = lungs[int(rng.integers(0, 2))]
        oy, ox = lcy + rng.uniform(-0.15, 0.15) * s, lcx + rng.uniform(-0.05, 0.05) * s
        patch = soft_inside(ellipse_distance(yy, xx, oy, ox, 0.1 * s, 0.07 * s), 0.4)
        patch *= np.clip(0.7 + 0.5 * smooth_noise(rng, (s, s), s / 25), 0, 1)
        img += 0.22 * patch * (d < 1)
    if labels[1]:  # effusion: fluid filling the base of a lung under a meniscus
        d, lcy, lcx = lungs[int(rng.integers(0, 2))]
        level = lcy + rng.uniform(0.12, 0.22) * s
        fluid = soft_inside(np.clip((level - yy) / (0.02 * s) + 1 - 0.002 * (xx - lcx) ** 2 / s, 0, 50), 0.3)
        img += 0.25 * fluid * (d < 1.05)
    img = gaussian_blur(img, 0.6, spatial_axes=(0, 1)) + rng.normal(0, 0.015, (s, s))
    return to_uint8(np.clip(img, 0, 1) ** 0.9), labels


def _render_xray_nodules(rng, s):
    yy, xx, img, lungs = _xray_chest(rng, s)
    boxes = []
    for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
        d, lcy, lcx = lungs[int(rng.integers(0, 2))]
        # radius 5.8-8.6 px at 96 px (boxes 12-18 px): FCOS's finest level (stride 8) has ~3 positive
        # locations per box (was 2.4-4.8 px, boxes 6-11 px: a quarter of the boxes had none, the rest 1 on
        # average, and the detector learnt nothing, mAP 0.000 in the demo); inside the lung (half-width
        # 0.13 s) and denser (0.3), so a nodule stays brighter than its surroundings
        r = s * rng.uniform(0.06, 0.09)
        ny, nx = lcy + rng.uniform(-0.15, 0.15) * s, lcx + rng.uniform(-1, 1) * (0.125 * s - r)
        img += 0.3 * soft_inside(ellipse_distance(yy, xx, ny, nx, r, r), 0.15)
        boxes.append([int(math.floor(nx - r)), int(math.floor(ny - r)), int(math.ceil(nx + r)), int(math.ceil(ny + r))])
    img = gaussian_blur(img, 0.6, spatial_axes=(0, 1)) + rng.normal(0, 0.015, (s, s))
    boxes = [[max(0, x0), max(0, y0), min(s, x1), min(s, y1)] for x0, y0, x1, y1 in boxes]
    return to_uint8(np.clip(img, 0, 1) ** 0.9), {"box": boxes, "label": [0] * len(boxes)}


#: image-count multiplier of the pre-training tasks labelled per image (classification, multi-label;
#: :attr:`SyntheticTask.count_factor`):
#: such an image carries one label (three bits), a segmentation image thousands of labelled pixels and
#: a detection image its boxes. With the preset's 40 training images the demo's pre-training memorised
#: the CT nodules (training loss 1.12 -> 0.09 over 900 task-iterations in seed 3, 0.01 in seed 4) and
#: ended at validation F1 0.59 / 0.78 on 32 images, +0.03 / +0.07 above the same head on a random frozen
#: encoder (AUC 0.76 / 0.86); with 160 training and 128 validation images (half the sampling noise in
#: the score) at 0.89 / 0.91, +0.34 / +0.25 (AUC 0.93 / 0.96). Over seeds 0-4 the difference went from
#: +0.169 [-0.003, +0.341] to +0.276 [+0.228, +0.324], and the X-ray findings' from +0.172 [+0.046, +0.298]
#: to +0.110 [+0.088, +0.132] (``examples/umedpt_recipe.py``, README). Iterations per task are unchanged.
IMAGE_LABEL_COUNT_FACTOR = 4

MULTITASK_TASKS: tuple[SyntheticTask, ...] = (
    SyntheticTask("ct_abdomen_organs_seg", "segmentation", "CT", ("background", "liver", "kidney", "spleen"),
                  "nifti", "pretrain", _render_ct_abdomen, "abdominal CT slice (HU), organ label map",
                  intensity={"a_min": -160.0, "a_max": 240.0}),  # abdomen window W400/L40
    SyntheticTask("ct_chest_nodule_cls", "classification", "CT", ("no_nodule", "nodule"),
                  "nifti", "pretrain", _render_ct_chest_nodule, "chest CT slice (HU), is there a lung nodule"),
    SyntheticTask("mr_brain_lesion_seg", "segmentation", "MR", ("background", "lesion"),
                  "nifti", "pretrain", _render_mr_brain_lesion, "brain MR slice with a bright lesion"),
    SyntheticTask("microscopy_nuclei_seg", "segmentation", "fluorescence microscopy", ("background", "nucleus"),
                  "tiff", "pretrain", _render_nuclei_seg, "fluorescent nuclei, foreground mask"),
    SyntheticTask("microscopy_nuclei_det", "detection", "fluorescence microscopy", ("nucleus",),
                  "tiff", "pretrain", _render_nuclei_det, "fluorescent nuclei, one box per nucleus"),
    SyntheticTask("xray_chest_findings_mlc", "multilabel", "X-ray", ("opacity", "effusion", "cardiomegaly"),
                  "png", "pretrain", _render_xray_findings, "chest radiograph, three findings (multi-label)"),
    SyntheticTask("xray_chest_nodule_det", "detection", "X-ray", ("nodule",),
                  "png", "pretrain", _render_xray_nodules, "chest radiograph, one box per nodule"),
    SyntheticTask("microscopy_nuclei_phenotype_cls", "classification", "fluorescence microscopy",
                  ("normal", "enlarged", "fragmented"), "tiff", "transfer", _render_nuclei_phenotype,
                  "fluorescent nuclei, phenotype of the field (held out for the transfer demo)"),
)

_SUFFIX = {"nifti": ".nii.gz", "tiff": ".tif", "png": ".png"}

#: head options of every PRE-TRAINING task of a kind, written into ``tasks.json`` (measured on the demo's
#: pre-training, see :func:`medfound.demos.umedpt.demo_pretrain_config`): classification heads standardise
#: the embedding with their task's batch statistics (it varies between images by ~1 % of its per-channel
#: offset; without this the CT nodule task predicted one class, F1 0.273, in the demo's recipe)
PRETRAIN_TASK_OPTIONS: dict[str, dict[str, Any]] = {
    "classification": {"head": {"standardize": "batch"}},
    "multilabel": {"head": {"standardize": "batch"}},
}


def _write_image(path: Path, array: np.ndarray, image_format: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if image_format == "nifti":
        img = nib.Nifti1Image(array, np.eye(4))
        img.header.set_xyzt_units("mm")
        nib.save(img, path)
    elif image_format == "tiff":
        tifffile.imwrite(path, array, photometric="minisblack", metadata=None, software=None, datetime=None)
    else:
        save_png(path, array)


def write_multitask_demo(out_dir: str | Path, size: str = "small", seed: int = 0) -> dict[str, Any]:
    """Write the synthetic multi-task collection (8 tasks) with MONAI datalists.

    Parameters
    ----------
    out_dir : folder for the task folders, ``tasks.json``, ``manifest.json`` and ``README.md``.
    size : ``"small"`` or ``"medium"``.
    seed : master seed; the same seed writes byte-identical files.

    Returns
    -------
    dict
        The manifest that was written (its ``tasks`` entry equals ``tasks.json``'s).
    """
    check_size(size)
    root = Path(out_dir)
    counts = MULTITASK_COUNTS[size]
    files, tasks_info = [], []
    for task in MULTITASK_TASKS:
        side = counts["det_side"] if task.kind == "detection" else counts["side"]
        validation = counts["transfer_validation" if task.role == "transfer" else "validation"]
        n_items = {"training": counts["training"] * task.count_factor, "validation": validation * task.count_factor}
        task_dir = root / task.name
        datalist: dict[str, Any] = {
            "name": task.name, "kind": task.kind, "modality": task.modality,
            "class_names": list(task.class_names), "synthetic": True,
        }
        for split in ("training", "validation"):
            items = []
            for i in range(n_items[split]):
                image, target = task.render(make_rng(seed, "multitask", task.name, split, i), side)
                stem = f"{split}_{i:04d}{_SUFFIX[task.image_format]}"
                img_path = task_dir / "images" / stem
                _write_image(img_path, image, task.image_format)
                files.append(img_path)
                item: dict[str, Any] = {"image": f"images/{stem}"}
                if task.kind == "segmentation":
                    label_path = task_dir / "labels" / stem
                    _write_image(label_path, target, task.image_format)
                    files.append(label_path)
                    item["label"] = f"labels/{stem}"
                elif task.kind == "detection":
                    item.update(target)
                else:
                    item["label"] = target
                items.append(item)
            datalist[split] = items
        atomic_write_json(task_dir / "datalist.json", datalist, sort_keys=True)
        files.append(task_dir / "datalist.json")
        tasks_info.append({
            "name": task.name, "kind": task.kind, "modality": task.modality, "class_names": list(task.class_names),
            "role": task.role, "image_format": task.image_format, "image_size": [side, side],
            "datalist": f"{task.name}/datalist.json", "description": task.description,
            "counts": n_items,
            **({"intensity": dict(task.intensity)} if task.intensity else {}),
            **(PRETRAIN_TASK_OPTIONS.get(task.kind, {}) if task.role == "pretrain" else {}),
        })
    atomic_write_json(root / "tasks.json", {"synthetic": True, "tasks": tasks_info}, sort_keys=True)
    files.append(root / "tasks.json")
    return write_dataset_docs(
        root,
        name="multitask",
        title="Synthetic multi-task collection (tomography, microscopy, X-ray)",
        layout="tasks.json + {task}/datalist.json + {task}/images (+ labels)",
        description=(
            "Eight small tasks: CT organ segmentation, CT nodule classification, MR lesion\n"
            "segmentation, nuclei segmentation and detection, chest X-ray findings (multi-label) and\n"
            "nodule detection, and a held-out nuclei phenotype classification for the transfer demo.\n"
            "CT/MR slices are 2D NIfTI, microscopy 16-bit TIFF, radiographs 8-bit PNG. Detection\n"
            "boxes are [x_min, y_min, x_max, y_max] in pixels (x = column, y = row, max exclusive)."
        ),
        seed=seed,
        size=size,
        extra={"tasks": tasks_info},
        files=files,
    )
