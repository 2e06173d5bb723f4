"""Shared transforms (resize with padding, encoder input, percentiles, masks), docstring examples,
MONAI conventions (dictionary aliases, bundle-config construction) for all of medfound.transforms."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, MapTransform

import medfound.transforms as T
from medfound.errors import ConfigError, InvalidImageError, LabelMismatchError
from medfound.transforms.common import (
    BinarizeMask,
    BinarizeMaskd,
    ResizeWithPad,
    ResizeWithPadd,
    SwapSpatialAxes,
    SwapSpatialAxesd,
    ToEncoderInput,
    ToEncoderInputd,
)
from medfound.transforms.intensity import PercentileNormalize, PercentileNormalized

MODULES = ["common", "intensity", "checks", "tomography", "xray", "microscopy", "fundus", "fundus.field_of_view",
           "fundus.optic_disc", "fundus.disc_cup", "presets"]


@pytest.mark.parametrize("name", MODULES + [""])
def test_docstring_examples_run(name):
    module = importlib.import_module("medfound.transforms" + (f".{name}" if name else ""))
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_every_dictionary_transform_has_monai_aliases():
    for name in dir(T):
        obj = getattr(T, name)
        if isinstance(obj, type) and issubclass(obj, MapTransform) and name.endswith("d"):
            base = name[:-1]
            assert getattr(T, base + "D") is obj and getattr(T, base + "Dict") is obj, name
            assert hasattr(T, base), f"{name} has no array form"


# ------------------------------------------------------------------ resize with padding


def test_resize_with_pad_known_answer():
    out = ResizeWithPad(64, mode="nearest")(torch.ones(1, 40, 80))
    assert out.shape == (1, 64, 64)
    col = out[0, :, 10]
    assert float(col[:16].sum()) == 0 and float(col[16:48].min()) == 1 and float(col[48:].sum()) == 0
    # a portrait image pads left and right; odd remainders put the extra pixel after
    tall = ResizeWithPad((10, 9), mode="nearest")(torch.ones(1, 20, 10))
    assert tall.shape == (1, 10, 9) and tall[0, 0].tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0]
    assert ResizeWithPad((10, 8), mode="nearest")(torch.ones(1, 20, 10))[0, 0].tolist() == [0, 1, 1, 1, 1, 1, 0, 0]
    # 3D works too
    assert ResizeWithPad(16)(torch.rand(1, 8, 4, 2)).shape == (1, 16, 16, 16)
    with pytest.raises(ConfigError):
        ResizeWithPad((0, 4))(torch.rand(1, 4, 4))


def test_resize_with_pad_inverts_exactly_for_integer_scales():
    img = MetaTensor(torch.arange(32 * 16, dtype=torch.float32).reshape(1, 32, 16),
                     affine=torch.diag(torch.tensor([0.8, 0.8, 1.0, 1.0])), meta={"filename_or_obj": "cxr.png"})
    lab = MetaTensor((torch.rand(1, 32, 16) > 0.5).float(), affine=img.affine.clone())
    pre = Compose([ResizeWithPadd(("image", "label"), spatial_size=64, mode=("nearest", "nearest"))])
    d = pre({"image": img, "label": lab})
    assert d["image"].shape == (1, 64, 64)
    # the affine follows: spacing halves, and the world position of a pixel centre is kept (original pixel
    # (10, 3) becomes new pixels 20-21 x 6-7, shifted by the 16-pixel padding on the second axis)
    np.testing.assert_allclose(np.diag(d["image"].affine.numpy())[:2], [0.4, 0.4], atol=1e-6)
    world_orig = img.affine.numpy() @ np.array([10.0, 3.0, 0.0, 1.0])
    world_new = d["image"].affine.numpy() @ np.array([20.5, 16.0 + 6.5, 0.0, 1.0])
    np.testing.assert_allclose(world_new[:2], world_orig[:2], atol=1e-6)
    assert d["image"].applied_operations[-1]["class"] == "ResizeWithPad"
    d["pred"] = d["label"].clone()
    back = Invertd(("image", "pred"), pre, orig_keys=("image", "label"), nearest_interp=True)(d)
    assert torch.equal(back["pred"].as_tensor(), lab.as_tensor())
    assert torch.equal(back["image"].as_tensor(), img.as_tensor())
    np.testing.assert_allclose(back["image"].affine.numpy(), img.affine.numpy(), atol=1e-6)
    assert back["image"].applied_operations == []


def test_resize_with_pad_area_inverse_is_smooth():
    img = torch.rand(1, 100, 60)
    t = ResizeWithPad(50)
    small = t(img)
    assert small.shape == (1, 50, 50)
    back = t.inverse(small)
    assert back.shape == (1, 100, 60)
    # down and up again loses detail but not the mean
    assert abs(float(back.mean()) - float(img.mean())) < 0.01


def test_swap_spatial_axes_keeps_world_positions_and_inverts():
    img = MetaTensor(torch.arange(12.0).reshape(1, 3, 4),
                     affine=torch.tensor([[0.5, 0, 0, 10.0], [0, 2.0, 0, -4.0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    pre = Compose([SwapSpatialAxesd("image")])
    out = pre({"image": img})["image"]
    assert out.shape == (1, 4, 3) and torch.equal(out[0], img[0].T.as_tensor())
    for i, j in [(0, 0), (2, 1), (1, 3)]:  # pixel (i, j) before is (j, i) after, at the same world point
        before = img.affine.numpy() @ np.array([i, j, 0, 1.0])
        after = out.affine.numpy() @ np.array([j, i, 0, 1.0])
        np.testing.assert_allclose(after, before)
    back = Invertd("image", pre)({"image": out})["image"]
    assert torch.equal(back.as_tensor(), img.as_tensor()) and torch.equal(back.affine, img.affine)
    assert back.applied_operations == []
    with pytest.raises(ConfigError):
        SwapSpatialAxes(axes=(1, 1))
    with pytest.raises(InvalidImageError):
        SwapSpatialAxes(axes=(0, 2))(torch.zeros(1, 3, 3))


# ------------------------------------------------------------------ encoder input


def test_to_encoder_input_channels_and_scaling():
    u8 = torch.tensor([[[0, 51, 255]]], dtype=torch.uint8)
    out = ToEncoderInput()(u8)
    assert out.dtype == torch.float32 and out.shape == (3, 1, 3)
    np.testing.assert_allclose(out[2, 0].numpy(), [0.0, 0.2, 1.0])
    u16 = ToEncoderInput()(torch.tensor([[[65535]]], dtype=torch.int32).to(torch.uint16))
    assert float(u16[0, 0, 0]) == 1.0
    two = ToEncoderInput()(torch.full((2, 2, 2), 0.5))
    assert two[:2].eq(0.5).all() and two[2].eq(0).all()
    rgba = ToEncoderInput()(torch.rand(4, 3, 3))
    assert rgba.shape == (3, 3, 3)
    gray = ToEncoderInput(num_channels=1)(torch.tensor([[[1.0]], [[1.0]], [[1.0]]]))
    assert gray.shape == (1, 1, 1) and float(gray) == pytest.approx(1.0)
    mm = ToEncoderInputd("image", scale="minmax")({"image": torch.tensor([[[-5.0, 5.0]]])})["image"]
    assert mm[0, 0].tolist() == [0.0, 1.0]
    clipped = ToEncoderInput()(torch.tensor([[[-0.2, 1.7]]]))
    assert clipped[0, 0].tolist() == [0.0, 1.0]
    meta = ToEncoderInput()(MetaTensor(torch.rand(1, 2, 2), meta={"filename_or_obj": "x.png"}))
    assert meta.meta["filename_or_obj"] == "x.png"
    with pytest.raises(InvalidImageError, match="5 channels"):
        ToEncoderInput()(torch.rand(5, 2, 2))
    with pytest.raises(InvalidImageError):
        ToEncoderInput()(torch.tensor([[[float("inf")]]]))
    with pytest.raises(ConfigError):
        ToEncoderInput(scale="zscore")


# ------------------------------------------------------------------ percentiles and masks


def test_percentile_normalize_channelwise_and_mask_shapes():
    x = torch.stack([torch.arange(100.0), torch.arange(100.0) * 10]).reshape(2, 10, 10)
    whole = PercentileNormalize(lower=0, upper=100)(x)
    assert float(whole[0].max()) == pytest.approx(0.1, abs=1e-6)  # channel 0 is small against channel 1
    per = PercentileNormalize(lower=0, upper=100, channel_wise=True)(x)
    assert float(per[0].max()) == 1.0 and float(per[1].max()) == 1.0
    mask = torch.zeros(10, 10)
    mask[:5] = 1
    d = PercentileNormalized("image", lower=0, upper=100, channel_wise=True, mask_key="m", clip=False)(
        {"image": x, "m": mask})
    assert float(d["image"][0, 4, 9]) == pytest.approx(1.0) and float(d["image"][0, 9, 9]) > 1.0
    with pytest.raises(LabelMismatchError):
        PercentileNormalize()(x, mask=torch.ones(3, 10, 10))


def test_binarize_mask():
    rgb = torch.zeros(3, 2, 2, dtype=torch.uint8)
    rgb[:, 0, 0] = 255
    rgb[0, 1, 1] = 200  # JPEG colour noise in one channel
    assert BinarizeMask()(rgb)[0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert BinarizeMask(reduce="mean")(rgb)[0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert BinarizeMaskd("m", threshold=0.2)({"m": torch.tensor([[0.1, 0.3]])})["m"].tolist() == [[0.0, 1.0]]


# ------------------------------------------------------------------ bundle configs


def test_transforms_build_from_a_bundle_config():
    config = {
        "pre": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "medfound.transforms.CTWindowd", "keys": "image",
                 "window": ["lung", "soft_tissue", "bone"]},
                {"_target_": "medfound.transforms.ResizeWithPadd", "keys": ["image", "label"], "spatial_size": 32,
                 "mode": ["area", "nearest"]},
                {"_target_": "medfound.transforms.ToEncoderInputd", "keys": "image"},
            ],
        },
        "others": [
            {"_target_": "medfound.transforms.XRayWindowd", "keys": "image", "window": {"center": 0, "width": 2}},
            {"_target_": "medfound.transforms.MRPercentileNormalized", "keys": "image", "mask_key": "brain"},
            {"_target_": "medfound.transforms.RandSampleSlicesd", "keys": ["image", "label"], "label_key": "label",
             "num_samples": 2, "neighbours": [1, 0], "pos_fraction": 0.5},
            {"_target_": "medfound.transforms.SampleSlicesd", "keys": "image", "axis": "coronal"},
            {"_target_": "medfound.transforms.ResampleToSpacingd", "keys": ["image", "label"], "pixdim": [1, 1, -1],
             "label_keys": "label"},
            {"_target_": "medfound.transforms.GridTiled", "keys": "image", "tile_size": [256, 256], "overlap": 32},
            {"_target_": "medfound.transforms.ChannelPercentileNormalized", "keys": "image"},
            {"_target_": "medfound.transforms.InstanceMaskToBoxesd", "keys": "instances"},
            {"_target_": "medfound.transforms.FieldOfViewCropd", "keys": ["image", "label"], "margin": 4},
            {"_target_": "medfound.transforms.OpticDiscCropd", "keys": ["image", "label"], "mask_key": "label",
             "roi_size": 256},
            {"_target_": "medfound.transforms.CLAHEd", "keys": "image", "clip_limit": 2.0, "tile_grid": [8, 8]},
            {"_target_": "medfound.transforms.DecodeDiscCupd", "keys": "label", "output": "index"},
            {"_target_": "medfound.transforms.EncodeDiscCupd", "keys": "pred", "input": "index", "num_channels": 3},
            {"_target_": "medfound.transforms.GreenChanneld", "keys": "image", "num_channels": 3},
            {"_target_": "medfound.transforms.FieldOfViewMaskd", "keys": "image"},
            {"_target_": "medfound.transforms.BinarizeMaskd", "keys": "label"},
            {"_target_": "medfound.transforms.XRayInvertd", "keys": "image", "invert": True},
            {"_target_": "medfound.transforms.microscopy.TileAssembler", "spatial_shape": [512, 512],
             "tile_size": 256, "blend": "linear"},
            {"_target_": "medfound.transforms.get_preset", "modality": "endoscopy", "mode": "train",
             "spatial_size": 64, "keys": ["image", "label"], "load": False},
        ],
    }
    parser = ConfigParser(config)
    pre = parser.get_parsed_content("pre")
    out = pre({"image": torch.full((1, 20, 10), -600.0), "label": torch.ones(1, 20, 10)})
    assert out["image"].shape == (3, 32, 32) and out["label"].shape == (1, 32, 32)
    assert float(out["image"][0, 16, 16]) == pytest.approx(0.5)
    others = parser.get_parsed_content("others")
    assert len(others) == len(config["others"])
    preset = others[-1]
    sample = preset({"image": torch.rand(3, 48, 40), "label": (torch.rand(1, 48, 40) > 0.5).float()})
    assert sample["image"].shape == (3, 64, 64)
