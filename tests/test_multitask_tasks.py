"""Task configs (the demo's tasks.json as is, YAML, errors), default transforms, datasets, collation."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medfound.errors import ConfigError, DatasetLayoutError, ImageReadError, LabelMismatchError
from medfound.multitask.batches import collate_task_batch, prepare_task_batch
from medfound.multitask.datasets import TaskDataset, build_task_datasets
from medfound.multitask.task_transforms import task_transforms
from medfound.multitask.tasks import TaskSpec, load_tasks


def test_demo_tasks_json_loads_as_is(multitask_demo):
    tasks = load_tasks(multitask_demo / "tasks.json")
    assert len(tasks) == 8
    assert {t.kind for t in tasks} == {"classification", "multilabel", "segmentation", "detection"}
    assert [t.name for t in load_tasks(multitask_demo / "tasks.json", roles="transfer")] == [
        "microscopy_nuclei_phenotype_cls"
    ]
    assert len(load_tasks(multitask_demo / "tasks.json", roles=["pretrain"])) == 7
    seg = next(t for t in tasks if t.name == "ct_abdomen_organs_seg")
    assert seg.num_classes == 4 and seg.modality == "CT" and seg.extra["image_size"] == [64, 64]
    items = seg.load_split("train")
    assert len(items) == 40 and all(isinstance(i["label"], str) for i in items)
    assert (multitask_demo / "ct_abdomen_organs_seg" / "labels" / "training_0000.nii.gz").samefile(items[0]["label"])
    det = next(t for t in tasks if t.kind == "detection").load_split("val")
    assert all(len(i["box"]) == len(i["label"]) for i in det)


def test_yaml_task_file_with_defaults(tmp_path, multitask_demo):
    shutil.copytree(multitask_demo / "ct_chest_nodule_cls", tmp_path / "nodules")
    (tmp_path / "tasks.yaml").write_text(
        "defaults:\n  batch_size: 3\n  modality: CT\n"
        "tasks:\n"
        "  - name: nodules\n    kind: classification\n    class_names: [no, yes]\n"
        "    datalist: nodules/datalist.json\n    loss: {label_smoothing: 0.1}\n    metric: {primary: auc_macro}\n"
    )
    (task,) = load_tasks(tmp_path / "tasks.yaml")
    assert task.batch_size == 3 and task.primary_metric == "auc_macro"
    assert task.build_loss().label_smoothing == 0.1
    assert len(task.load_split("val")) == 128  # 4 x 32: a task labelled per image (IMAGE_LABEL_COUNT_FACTOR)


@pytest.mark.parametrize(
    "entry, error, match",
    [
        ({"name": "a", "kind": "regression", "class_names": ["x"], "training": []}, ConfigError, "kind"),
        ({"name": "a", "kind": "classification", "class_names": ["x"], "training": []}, ConfigError, "at least 2"),
        ({"name": "a.b", "kind": "multilabel", "class_names": ["x"], "training": []}, ConfigError, "name"),
        ({"name": "a", "kind": "multilabel", "class_names": ["x"]}, ConfigError, "datalist"),
        ({"kind": "multilabel", "class_names": ["x"], "training": []}, ConfigError, "lacks 'name'"),
        (
            {"name": "a", "kind": "segmentation", "class_names": ["bg", "x"], "training": [], "batch_size": 0},
            ConfigError,
            "batch_size",
        ),
        (
            {"name": "a", "kind": "segmentation", "class_names": ["bg", "x"], "training": [], "spatial_size": -5},
            ConfigError,
            r"task 'a': spatial_size must be an integer >= 1, got -5",
        ),
        (
            {"name": "a", "kind": "segmentation", "class_names": ["bg", "x"], "training": [],
             "spatial_size": [64, 0]},
            ConfigError,
            r"task 'a': spatial_size\[1\] must be an integer >= 1, got 0",
        ),
        (
            {"name": "a", "kind": "multilabel", "class_names": ["x"], "training": [], "weight": "2"},
            ConfigError,
            r"task 'a': weight must be a number > 0, got '2'",
        ),
    ],
)
def test_bad_task_configs(entry, error, match):
    with pytest.raises(error, match=match):
        load_tasks([entry])


def test_bad_datalists_name_the_file_and_item(tmp_path):
    with pytest.raises(ConfigError, match="appears twice"):
        load_tasks([{"name": "a", "kind": "multilabel", "class_names": ["x"], "training": []}] * 2)
    missing = TaskSpec.from_dict(
        {"name": "a", "kind": "multilabel", "class_names": ["x"], "datalist": "nope.json"}, base_dir=tmp_path
    )
    with pytest.raises(DatasetLayoutError, match="nope.json"):
        missing.load_split("train")
    path = tmp_path / "dl.json"
    path.write_text(json.dumps({"training": [{"image": "a.png", "label": 1}, {"image": "b.png", "label": 3}]}))
    spec = TaskSpec.from_dict({"name": "c", "kind": "classification", "class_names": ["x", "y"], "datalist": str(path)})
    with pytest.raises(LabelMismatchError, match=r"dl.json \(training\) item 1.*0\.\.1"):
        spec.load_split("train")
    path.write_text(json.dumps({"training": [{"image": "a.png", "box": [[5, 5, 2, 9]], "label": [0]}]}))
    det = TaskSpec.from_dict({"name": "d", "kind": "detection", "class_names": ["o"], "datalist": str(path)})
    with pytest.raises(LabelMismatchError, match="max > min"):
        det.load_split("train")
    path.write_text("{not json")
    with pytest.raises(DatasetLayoutError, match="dl.json"):
        det.load_split("train")
    with pytest.raises(ConfigError, match="does not exist"):
        load_tasks(tmp_path / "none.json")


def test_default_transforms_ct_window_and_picture_orientation(multitask_demo):
    tasks = {t.name: t for t in load_tasks(multitask_demo / "tasks.json")}
    ds = build_task_datasets([tasks["ct_chest_nodule_cls"], tasks["xray_chest_nodule_det"]], "val")
    ct_item = tasks["ct_chest_nodule_cls"].load_split("val")[0]
    hu = np.asanyarray(nib.load(ct_item["image"]).dataobj).astype(np.float64)
    ct = ds["ct_chest_nodule_cls"][0]["image"]
    assert ct.shape == (1, 64, 64) and ct.dtype == torch.float32
    np.testing.assert_allclose(ct[0].numpy(), np.clip((hu + 1000) / 2000, 0, 1), atol=1e-6)  # default CT window
    xr_item = tasks["xray_chest_nodule_det"].load_split("val")[0]
    raw = np.asarray(Image.open(xr_item["image"]), np.float64)  # rows x columns as stored
    lo, hi = np.percentile(raw, [0.5, 99.5])
    xr = ds["xray_chest_nodule_det"][0]
    np.testing.assert_allclose(xr["image"][0].numpy(), np.clip((raw - lo) / (hi - lo), 0, 1), atol=1e-5)
    assert xr["box"] == xr_item["box"]


def test_training_augmentation_is_seeded_per_sample(multitask_demo):
    (spec,) = load_tasks(multitask_demo / "tasks.json", names=["mr_brain_lesion_seg"])
    ds = build_task_datasets([spec], "train")[spec.name]
    a, b, c = ds[(3, 11)], ds[(5, 12)], ds[(3, 11)]
    assert torch.equal(a["image"], c["image"]) and torch.equal(a["label"], c["label"])
    assert not torch.equal(ds[(3, 11)]["image"], ds[(3, 99)]["image"])
    assert set(torch.unique(b["label"]).tolist()) <= {0, 1}


def test_transforms_from_bundle_style_config(multitask_demo):
    (spec,) = load_tasks(multitask_demo / "tasks.json", names=["ct_abdomen_organs_seg"])
    spec.spatial_size = (32, 32)
    spec.transforms = {
        "val": [
            {"_target_": "LoadImaged", "keys": ["image", "label"], "image_only": True, "ensure_channel_first": True},
            {
                "_target_": "ScaleIntensityRanged",
                "keys": "image",
                "a_min": -200,
                "a_max": 300,
                "b_min": 0,
                "b_max": 1,
                "clip": True,
            },
            {"_target_": "Resized", "keys": ["image", "label"], "spatial_size": [32, 32], "mode": ["area", "nearest"]},
        ]
    }
    sample = TaskDataset(spec.load_split("val"), task_transforms(spec, train=False))[0]
    assert sample["image"].shape == (1, 32, 32) and float(sample["image"].max()) <= 1.0
    spec.transforms = {"val": [{"_target_": "NoSuchTransform"}]}
    with pytest.raises(ConfigError, match="transforms"):
        task_transforms(spec, train=False)


def test_detection_cannot_be_resized_by_default(multitask_demo):
    (spec,) = load_tasks(multitask_demo / "tasks.json", names=["microscopy_nuclei_det"])
    spec.spatial_size = (64, 64)
    with pytest.raises(ConfigError, match="detection"):
        task_transforms(spec, train=True)


def test_bad_cases_are_skipped_and_reported(tmp_path, multitask_demo):
    task_dir = tmp_path / "xr"
    shutil.copytree(multitask_demo / "xray_chest_findings_mlc", task_dir)
    (task_dir / "images" / "validation_0001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    spec = TaskSpec.from_dict(
        {
            "name": "xr",
            "kind": "multilabel",
            "class_names": ["o", "e", "c"],
            "datalist": str(task_dir / "datalist.json"),
        }
    )
    ds = build_task_datasets([spec], "val")["xr"]
    good = ds[1]  # the broken sample 1 is replaced by sample 2
    assert torch.equal(good["image"], ds[2]["image"])
    assert list(ds.bad_cases) == [1] and "validation_0001.png" in ds.bad_cases[1]
    strict = build_task_datasets([spec], "val", skip_bad=False)["xr"]
    with pytest.raises(ImageReadError, match="validation_0001.png"):
        strict[1]


def test_collate_pads_and_prepares_every_kind():
    seg = collate_task_batch("segmentation")(
        [
            {"image": torch.ones(1, 4, 6), "label": torch.ones(1, 4, 6)},
            {"image": torch.ones(1, 5, 3), "label": torch.zeros(1, 5, 3)},
        ]
    )
    assert seg["image"].shape == (2, 1, 5, 6) and seg["image_size"].tolist() == [[4, 6], [5, 3]]
    assert seg["label"][0, 0, 4].tolist() == [-1] * 6 and seg["label"][1, 0, :, 3:].unique().tolist() == [-1]
    images, target = prepare_task_batch("segmentation", seg, "cpu")
    assert images.shape == (2, 3, 5, 6) and target.shape == (2, 5, 6)
    det = collate_task_batch("detection")(
        [
            {"image": torch.zeros(3, 8, 8), "box": [[1, 2, 5, 6]], "label": [0]},
            {"image": torch.zeros(3, 8, 8), "box": [], "label": []},
        ]
    )
    _, target = prepare_task_batch("detection", det, "cpu")
    assert target[0]["boxes"].tolist() == [[1.0, 2.0, 5.0, 6.0]] and target[1]["boxes"].shape == (0, 4)
    cls = collate_task_batch("classification")([{"image": torch.zeros(1, 2, 2), "label": 1}] * 2)
    assert cls["label"].tolist() == [1, 1]
    with pytest.raises(ConfigError, match="1 or 3 channels"):
        prepare_task_batch("classification", {"image": torch.zeros(1, 2, 4, 4), "label": torch.zeros(1)}, "cpu")


def test_modality_preset_from_the_task_config(multitask_demo):
    (spec,) = load_tasks(multitask_demo / "tasks.json", names=["ct_abdomen_organs_seg"])
    spec.preset = "ct"
    spec.spatial_size = (64, 64)
    ds = build_task_datasets([spec], "train")[spec.name]
    sample = ds[(0, 5)]
    assert sample["image"].shape == (3, 64, 64)  # three CT windows as channels
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    assert sample["label"].shape == (1, 64, 64) and set(torch.unique(sample["label"]).tolist()) <= {0, 1, 2, 3}
    (det,) = load_tasks(multitask_demo / "tasks.json", names=["microscopy_nuclei_det"])
    det.preset = "microscopy"
    with pytest.raises(ConfigError, match="box lists"):
        task_transforms(det, train=True)


def test_unknown_task_keys_warn_but_informational_ones_do_not():
    entry = {"name": "a", "kind": "multilabel", "class_names": ["x"], "training": [], "description": "fine"}
    with pytest.warns(UserWarning, match=r"\['batchsize'\] are not task options"):
        (spec,) = load_tasks([{**entry, "batchsize": 4}])
    assert spec.extra == {"description": "fine", "batchsize": 4} and spec.batch_size is None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_tasks([entry])


def test_demo_pretraining_task_options(multitask_demo):
    # the options the demo's pre-training needs (see medfound.demos.umedpt.demo_pretrain_config)
    tasks = {t.name: t for t in load_tasks(multitask_demo / "tasks.json")}
    for t in tasks.values():
        if t.role == "pretrain" and t.kind in ("classification", "multilabel"):
            assert t.head == {"standardize": "batch"}
    assert tasks["microscopy_nuclei_phenotype_cls"].head == {}  # the held-out task keeps a plain head
    assert tasks["ct_abdomen_organs_seg"].intensity == {"a_min": -160.0, "a_max": 240.0}
    item = tasks["ct_abdomen_organs_seg"].load_split("val")[0]
    hu = nib.load(item["image"]).get_fdata()
    label = nib.load(item["label"]).get_fdata()
    if (label == 1).any():  # contrast-enhanced liver against soft tissue
        assert hu[label == 1].mean() - np.median(hu[(label == 0) & (hu > 0) & (hu < 80)]) > 40


def test_demo_xray_nodules_have_fcos_positives(multitask_demo):
    # boxes smaller than the finest FCOS stride (8) get no positive location; the demo's must
    from medfound.multitask.fcos_targets import FCOSTargetAssigner

    (task,) = load_tasks(multitask_demo / "tasks.json", names=["xray_chest_nodule_det"])
    side = task.extra["image_size"][0]
    sizes = [(-(-side // s), -(-side // s)) for s in (8, 16, 32, 64, 128)]
    assigner, positives = FCOSTargetAssigner(), []
    for item in task.load_split("train"):
        boxes = torch.tensor(item["box"], dtype=torch.float32).reshape(-1, 4)
        if len(boxes):
            target = {"boxes": boxes, "labels": torch.zeros(len(boxes), dtype=torch.long)}
            matched = assigner(sizes, [target], image_size=(side, side))["matched"][0]
            positives += [int((matched == g).sum()) for g in range(len(boxes))]
    assert len(positives) >= 30
    assert np.mean([p > 0 for p in positives]) >= 0.95 and np.mean(positives) >= 2.0
