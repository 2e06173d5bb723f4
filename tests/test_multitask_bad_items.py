"""Multi-task pre-training: bad samples are checked before collation and skipped (or named), and a
non-finite loss stops the run naming task and files, with the last good checkpoint kept."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from _multitask_utils import TINY, LogCollector, memory_task
from PIL import Image

from medfound.errors import ImageReadError, NonFiniteLossError
from medfound.multitask.batches import collate_task_batch
from medfound.multitask.datasets import TaskDataset
from medfound.multitask.pretrain import pretrain
from medfound.utils import load_torch_file

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _file_task(tmp_path, bad: dict[int, str]) -> dict:
    """A file-backed classification task of 8 PNGs; ``bad`` replaces some by a NaN TIFF, a 3D volume or an RGBA PNG."""
    import nibabel as nib
    import tifffile

    rng = np.random.default_rng(0)
    items = []
    for i in range(8):
        kind = bad.get(i)
        if kind == "nan":
            a = rng.random((32, 32)).astype(np.float32)
            a[5, 5] = np.nan
            path = tmp_path / f"nan_{i}.tiff"
            tifffile.imwrite(path, a)
        elif kind == "3d":
            path = tmp_path / f"vol_{i}.nii.gz"
            nib.save(nib.Nifti1Image(rng.random((32, 32, 4)).astype(np.float32), np.eye(4)), path)
        elif kind == "rgba":
            path = tmp_path / f"rgba_{i}.png"
            Image.fromarray((rng.random((32, 32, 4)) * 255).astype(np.uint8)).save(path)
        else:
            path = tmp_path / f"img_{i}.png"
            Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(path)
        items.append({"image": str(path), "label": i % 2})
    return {"name": "files", "kind": "classification", "class_names": ["a", "b"], "training": items,
            "validation": items[:2], "augment": False}


def test_bad_samples_are_skipped_before_collation_and_the_run_finishes(tmp_path):
    task = _file_task(tmp_path, {1: "nan", 3: "3d", 5: "rgba"})
    config = {"tasks": [task], "network": dict(TINY), "trainer": {"max_iterations": 4, "batch_size": 4},
              "validation": None, "progress_bar": False, "log_every": 1, "seed": 0}
    logs = LogCollector()
    logging.getLogger("medfound.multitask.datasets").addHandler(logs)
    try:
        summary = pretrain(config, output_dir=tmp_path / "run")
    finally:
        logging.getLogger("medfound.multitask.datasets").removeHandler(logs)
    assert summary["iterations"] == 4
    text = "\n".join(logs.messages)
    for name, problem in (("nan_1.tiff", "NaN"), ("vol_3.nii.gz", "(C, H, W)"), ("rgba_5.png", "4 channels")):
        assert name in text and problem in text, (name, text)
    weights = load_torch_file(tmp_path / "run" / "model.pt")
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_raise_mode_names_the_file(tmp_path):
    from medfound.multitask.task_transforms import default_transforms
    from medfound.multitask.tasks import TaskSpec

    task = _file_task(tmp_path, {0: "nan"})
    spec = TaskSpec.from_dict(task)
    ds = TaskDataset(spec.training, default_transforms(spec, False, task["training"][0]["image"]), "files",
                     skip_bad=False, kind="classification")
    with pytest.raises(ImageReadError, match=r"nan_0\.tiff.*NonFiniteImageError.*NaN"):
        ds[0]


def test_grey_and_colour_samples_share_a_batch():
    batch = collate_task_batch("classification")(
        [{"image": torch.zeros(1, 4, 4), "label": 0}, {"image": torch.ones(3, 4, 4), "label": 1}])
    assert batch["image"].shape == (2, 3, 4, 4) and torch.equal(batch["image"][0], torch.zeros(3, 4, 4))
    assert batch["filename_or_obj"] == ["<in-memory image (1, 4, 4)>", "<in-memory image (3, 4, 4)>"]


class _OverflowAfter:
    """Identity for the first ``n`` samples, then images of finite values whose features overflow."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, d: dict) -> dict:
        self.calls += 1
        return d if self.calls <= self.n else {**d, "image": d["image"] * 3e38}


def test_non_finite_loss_stops_naming_task_and_files_and_keeps_the_last_good_checkpoint(tmp_path):
    task = memory_task("a", "classification", 8)
    task["transforms"] = {"train": _OverflowAfter(8), "val": _OverflowAfter(0)}  # iterations 1-2 good, 3 not
    config = {"tasks": [task], "network": dict(TINY), "validation": None, "progress_bar": False, "log_every": 1,
              "trainer": {"max_iterations": 6, "batch_size": 4, "checkpoint_every": 1}}
    with pytest.raises(NonFiniteLossError) as info:
        pretrain(config, output_dir=tmp_path / "run")
    msg = str(info.value)
    assert "iteration 3 (task 'a')" in msg and "last.pt keeps the last good state" in msg
    assert "<in-memory image (1, 32, 32)>" in msg
    saved = load_torch_file(tmp_path / "run" / "last.pt")
    assert saved["trainer"]["engine"]["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in saved["trainer"]["network"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "model.pt").exists()
    bundle = json.loads((tmp_path / "run" / "train.json").read_text())
    assert bundle["train_handlers"][0]["_target_"] == "medfound.handlers.StopOnNonFiniteLoss"
