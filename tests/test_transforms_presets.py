"""Per-modality presets: the encoder input contract, labels that follow, loading from files, inversion."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd
from PIL import Image

from medfound.data.synthetic.fundus import FUNDUS_DOMAINS, render_fundus
from medfound.data.synthetic.polyp import POLYP_DOMAINS, render_polyp
from medfound.errors import ConfigError
from medfound.transforms.fundus import DecodeDiscCup, locate_optic_disc
from medfound.transforms.presets import MODALITIES, get_preset
from medfound.utils import make_rng

SIZE = 64


def _check_image(img: torch.Tensor, size: int = SIZE) -> None:
    assert img.shape == (3, size, size) and img.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0


def _fake_item(modality: str) -> dict:
    g = torch.Generator().manual_seed(0)
    if modality in ("fundus", "endoscopy"):
        image = (torch.rand(3, 90, 70, generator=g) * 255).to(torch.uint8)
    elif modality == "ct":
        image = torch.rand(1, 90, 70, generator=g) * 2000 - 1000
    else:
        image = torch.rand(1, 90, 70, generator=g) * 4000
    if modality == "fundus":
        label = torch.full((3, 90, 70), 255, dtype=torch.uint8)
        label[:, 30:50, 20:40] = 128
        label[:, 35:45, 25:35] = 0
    else:
        label = torch.zeros(1, 90, 70, dtype=torch.uint8)
        label[:, 30:60, 10:40] = 255 if modality == "endoscopy" else 1
    return {"image": image, "label": label}


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_preset_output_contract(modality, mode):
    t = get_preset(modality, mode=mode, spatial_size=SIZE, load=False)
    out = t(_fake_item(modality))
    if modality == "microscopy" and mode == "infer":
        assert out["image"].shape == (3, 96, 96)  # native resolution, padded to a multiple of 32
        assert out["label"].shape == (1, 96, 96)
    else:
        _check_image(out["image"])
        assert out["label"].shape == (1, SIZE, SIZE)
    allowed = {0.0, 1.0, 2.0} if modality == "fundus" else {0.0, 1.0}
    values = set(torch.unique(out["label"]).tolist())
    assert values <= allowed and len(values) >= 2  # nearest neighbour: no blended label values
    if modality == "fundus":
        assert values == {0.0, 1.0, 2.0}


def test_preset_training_is_reproducible():
    item = _fake_item("endoscopy")
    a = get_preset("endoscopy", spatial_size=SIZE, load=False).set_random_state(seed=5)(dict(item))
    b = get_preset("endoscopy", spatial_size=SIZE, load=False).set_random_state(seed=5)(dict(item))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    outs = [get_preset("endoscopy", spatial_size=SIZE, load=False).set_random_state(seed=s)(dict(item))["image"]
            for s in range(4)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_preset_errors():
    with pytest.raises(ConfigError, match=r"modality must be one of \[.ct., .mr.,"):
        get_preset("ultrasound")
    with pytest.raises(ConfigError):
        get_preset("ct", mode="eval")
    with pytest.raises(ConfigError, match="exactly one label key"):
        get_preset("microscopy", keys=("image", "a", "b"), label_type="detection")
    with pytest.raises(ConfigError):
        get_preset("xray", volume=True)
    # classification: the label is a class index and passes through untouched
    out = get_preset("xray", mode="infer", spatial_size=SIZE, label_type="classification", load=False)(
        {"image": torch.rand(1, 50, 40), "label": 3})
    assert out["label"] == 3


def test_fundus_preset_from_files_keeps_orientation_and_inverts(tmp_path):
    domain = FUNDUS_DOMAINS[0]
    image, mask, _ = render_fundus(make_rng(0, "fundus", domain.name, "train", 2), domain, "small")
    Image.fromarray(image).save(tmp_path / "img.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    files = {"image": str(tmp_path / "img.png"), "label": str(tmp_path / "mask.png")}
    side = image.shape[0]
    # same size, no FOV crop: the pipeline is then only a type conversion, rows first as stored
    plain = get_preset("fundus", mode="infer", spatial_size=side, fov_crop=False)(dict(files))
    np.testing.assert_allclose(plain["image"].numpy(), image.transpose(2, 0, 1) / 255.0, atol=1e-6)
    expected = DecodeDiscCup(output="index")(torch.from_numpy(mask.transpose(2, 0, 1).copy()))
    assert torch.equal(plain["label"].as_tensor().float(), expected.as_tensor())
    # the full inference pipeline: image and label stay aligned, and Invertd brings a prediction back
    pre = get_preset("fundus", mode="infer", spatial_size=SIZE * 2)
    out = pre(dict(files))
    _check_image(out["image"], SIZE * 2)
    row, col = locate_optic_disc(out["image"])
    assert out["label"][0, int(round(row)), int(round(col))] > 0  # the bright disc is where the label says
    out["pred"] = out["label"].clone()
    back = Invertd("pred", pre, orig_keys="label", nearest_interp=True)(out)["pred"]
    assert back.shape == (1, side, side)
    # inverted all the way: back in the reader's (C, X, Y) layout, i.e. the stored mask transposed
    a, b = back[0] > 0, expected[0].T > 0
    assert 2 * int((a & b).sum()) / (int(a.sum()) + int(b.sum())) > 0.95


def test_endoscopy_preset_from_files(tmp_path):
    image, mask, _ = render_polyp(make_rng(0, "polyp", POLYP_DOMAINS[0].name, 0), POLYP_DOMAINS[0], "small")
    Image.fromarray(image).save(tmp_path / "frame.png")
    Image.fromarray(mask).save(tmp_path / "frame_mask.png")
    out = get_preset("endoscopy", mode="train", spatial_size=SIZE)({"image": str(tmp_path / "frame.png"),
                                                                   "label": str(tmp_path / "frame_mask.png")})
    _check_image(out["image"])
    assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}


def test_microscopy_detection_preset_boxes_follow_crops(data_dir):
    files = {"image": str(data_dir / "microscopy" / "nuclei_image.tif"),
             "instances": str(data_dir / "microscopy" / "nuclei_instances.tif")}
    infer = get_preset("microscopy", mode="infer", keys=("image", "instances"), label_type="detection")(dict(files))
    assert infer["image"].shape == (3, 512, 512) and int(infer["count"]) == 125
    stored = tifffile.imread(files["instances"])
    i = 17
    rows, cols = np.nonzero(stored == int(infer["instances"].unique()[i + 1]))
    assert infer["box"][i].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
    train = get_preset("microscopy", mode="train", spatial_size=128, keys=("image", "instances"),
                       label_type="detection").set_random_state(seed=1)
    for _ in range(3):
        out = train(dict(files))
        _check_image(out["image"], 128)
        ids = [v for v in torch.unique(out["instances"]).tolist() if v != 0]
        assert int(out["count"]) == len(ids) == len(out["box"])
        for box, inst in zip(out["box"].tolist(), ids):
            r, c = np.nonzero(out["instances"][0].numpy() == inst)
            assert box == [c.min(), r.min(), c.max() + 1, r.max() + 1]


@pytest.mark.slow
def test_ct_volume_preset_slices_the_real_ct(data_dir):
    files = {"image": str(data_dir / "ct" / "lung1_crop_image.nii.gz"),
             "label": str(data_dir / "ct" / "lung1_crop_label.nii.gz")}
    items = get_preset("ct", mode="infer", spatial_size=SIZE, volume=True)(dict(files))
    assert [it["image"].meta["slice_index"] for it in items] == list(range(16))
    for it in items:
        _check_image(it["image"])
    assert [i for i, it in enumerate(items) if it["label"].sum() > 0] == [6, 7, 8]
    train = get_preset("ct", mode="train", spatial_size=SIZE, volume=True, num_samples=6).set_random_state(seed=0)
    batch = train(dict(files))
    assert len(batch) == 6
    for it in batch:
        _check_image(it["image"])
        assert it["image"].meta["slice_index"] == it["label"].meta["slice_index"]
    labelled = sum(int(it["label"].sum() > 0) for it in batch)
    assert 1 <= labelled <= 5  # about half the draws come from the 3 labelled slices


def test_xray_preset_on_the_real_chest_cr(data_dir):
    stored = tifffile.imread(data_dir / "xray" / "rg1_uncr_stored_1in8.tif").astype(np.float32)
    meta = json.loads((data_dir / "xray" / "rg1_uncr_stored_1in8.json").read_text())
    img = MetaTensor(torch.from_numpy(stored)[None], meta=meta)
    out = get_preset("xray", mode="infer", spatial_size=256, keys=("image",), load=False)({"image": img})["image"]
    _check_image(out, 256)
    # 245x231 -> 256x241, 7 columns of padding on the left: lung and mediastinum regions as in the xray test
    s = 256 / 245
    def region(r0, r1, c0, c1):  # noqa: E306 - tiny local helper
        return float(out[0, int(r0 * s):int(r1 * s), int(c0 * s) + 7:int(c1 * s) + 7].mean())
    assert region(40, 110, 108, 124) > region(60, 110, 45, 85) + 0.2
