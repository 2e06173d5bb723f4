"""Tomography transforms: CT windows (hand-computed), MR normalisation, resampling, slice sampling on a real CT."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, LoadImaged

from medfound.errors import ConfigError, InvalidImageError, LabelMismatchError
from medfound.transforms._utils import kth_percentiles, percentiles
from medfound.transforms.tomography import (
    CT_WINDOWS,
    CTWindow,
    CTWindowd,
    MRPercentileNormalize,
    MRPercentileNormalized,
    RandSampleSlices,
    RandSampleSlicesd,
    ResampleToSpacing,
    ResampleToSpacingd,
    SampleSlices,
    SampleSlicesd,
    plane_axis,
    resolve_ct_windows,
    slices_with_label,
)

CT_DIR = "ct"


@pytest.fixture(scope="module")
def lung(data_dir):
    """The real lung CT crop (1, 128, 128, 16) in HU and its nodule label, loaded the MONAI way."""
    files = {"image": str(data_dir / CT_DIR / "lung1_crop_image.nii.gz"),
             "label": str(data_dir / CT_DIR / "lung1_crop_label.nii.gz")}
    return LoadImaged(("image", "label"), ensure_channel_first=True, image_only=True)(files)


def _fresh(lung):
    return {k: v.clone() for k, v in lung.items()}


# ------------------------------------------------------------------ CT windows


@pytest.mark.parametrize(
    "name, hu, expected",
    [
        ("lung", [-1350.0, -1000.0, -600.0, 150.0, 400.0], [0.0, 350 / 1500, 0.5, 1.0, 1.0]),
        ("mediastinum", [-125.0, 0.0, 50.0, 225.0], [0.0, 125 / 350, 0.5, 1.0]),
        ("bone", [-500.0, 400.0, 1000.0, 1300.0], [0.0, 0.5, 1500 / 1800, 1.0]),
        ("brain", [0.0, 40.0, 60.0, 80.0], [0.0, 0.5, 0.75, 1.0]),
        ("subdural", [-32.5, 75.0, 100.0], [0.0, 0.5, 132.5 / 215]),
        ("soft_tissue", [-150.0, 0.0, 50.0, 250.0], [0.0, 0.375, 0.5, 1.0]),
        ("liver", [-45.0, 30.0, 60.0, 105.0], [0.0, 0.5, 0.7, 1.0]),
    ],
)
def test_ct_window_hand_computed(name, hu, expected):
    out = CTWindow(name)(torch.tensor([[hu]]))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=0, atol=1e-6)


def test_ct_window_named_values_are_the_usual_ones():
    assert CT_WINDOWS["lung"] == (-600.0, 1500.0)
    assert CT_WINDOWS["mediastinum"] == (50.0, 350.0)
    assert CT_WINDOWS["brain"] == (40.0, 80.0)
    assert set(CT_WINDOWS) >= {"lung", "mediastinum", "bone", "brain", "subdural", "soft_tissue", "liver"}


def test_ct_window_custom_multi_and_noclip():
    hu = torch.tensor([[[-1000.0, 0.0, 1000.0]]])
    custom = CTWindow(center=0, width=1000)(hu)
    assert custom[0, 0].tolist() == [0.0, 0.5, 1.0]
    noclip = CTWindow(center=0, width=1000, clip=False)(hu)
    assert noclip[0, 0].tolist() == [-0.5, 0.5, 1.5]
    multi = CTWindow(["lung", {"center": 0, "width": 1000}, [40, 80]])(hu)
    assert multi.shape == (3, 1, 3)
    np.testing.assert_allclose(multi[1, 0].numpy(), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(multi[2, 0].numpy(), [0.0, 0.0, 1.0])
    # two input channels, two windows: window-major channel order
    two = CTWindow(["brain", "bone"])(torch.tensor([[[40.0]], [[400.0]]]))
    np.testing.assert_allclose(two.flatten().numpy(), [0.5, 1.0, 540 / 1800, 0.5], atol=1e-6)
    assert resolve_ct_windows("Soft tissue") == [(50.0, 400.0)]


def test_ct_window_keeps_metadata_and_rejects_bad_input():
    img = MetaTensor(torch.zeros(1, 2, 2, 2), affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])),
                     meta={"filename_or_obj": "case7.nii.gz"})
    out = CTWindowd("image", window="lung")({"image": img})["image"]
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "case7.nii.gz"
    assert torch.equal(out.affine, img.affine)
    with pytest.raises(ConfigError, match="unknown CT window"):
        CTWindow("lungs")
    with pytest.raises(ConfigError, match="width must be positive"):
        CTWindow(center=0, width=0)
    bad = img.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InvalidImageError, match="case7.nii.gz"):
        CTWindow("lung")(bad)


def test_ct_window_on_real_ct(lung):
    out = CTWindow(["lung", "soft_tissue", "bone"])(lung["image"])
    hu = lung["image"][0]
    assert out.shape == (3, *hu.shape)
    # lung window of a voxel equals the formula; air (< -1350 HU) is 0; bone window > soft tissue window on bone
    np.testing.assert_allclose(out[0].numpy(), np.clip((hu.numpy() + 1350) / 1500, 0, 1), atol=1e-6)
    bone_vox = hu > 700
    assert bone_vox.any() and float(out[2][bone_vox].min()) > 0.6 and float(out[1][bone_vox].min()) == 1.0


# ------------------------------------------------------------------ MR / percentiles


def test_percentile_helpers_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=10001).astype(np.float32)
    q = [0.0, 0.5, 37.3, 99.5, 100.0]
    np.testing.assert_allclose(percentiles(torch.from_numpy(x), q).numpy(), np.percentile(x, q), rtol=1e-6)
    np.testing.assert_allclose(kth_percentiles(torch.from_numpy(x), q).numpy(), np.percentile(x, q), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ConfigError):
        percentiles(torch.from_numpy(x), [101])


def test_mr_normalisation_against_numpy_and_mask():
    rng = np.random.default_rng(1)
    vol = rng.gamma(2.0, 100.0, size=(1, 20, 20, 8)).astype(np.float32)
    lo, hi = np.percentile(vol, [0.5, 99.5])
    out = MRPercentileNormalize()(torch.from_numpy(vol))
    np.testing.assert_allclose(out.numpy(), np.clip((vol - lo) / (hi - lo), 0, 1), atol=1e-5)
    # outliers outside the mask do not move the normalisation
    mask = np.zeros((1, 20, 20, 8), bool)
    mask[:, 2:18, 2:18] = True
    spoiled = vol.copy()
    spoiled[~mask] = 1e6
    lo_m, hi_m = np.percentile(vol[mask], [1, 99])
    out_m = MRPercentileNormalized("image", lower=1, upper=99, mask_key="brain")(
        {"image": torch.from_numpy(spoiled), "brain": torch.from_numpy(mask)})["image"]
    np.testing.assert_allclose(out_m.numpy()[mask], np.clip((vol[mask] - lo_m) / (hi_m - lo_m), 0, 1), atol=1e-5)
    # nonzero: zero background ignored; constant image gives zeros, not NaN
    bg = np.concatenate([np.zeros(100, np.float32), np.arange(1, 101, dtype=np.float32)])[None]
    out_nz = MRPercentileNormalize(lower=0, upper=100, nonzero=True)(torch.from_numpy(bg))
    assert float(out_nz[0, 100]) == 0.0 and float(out_nz[0, -1]) == 1.0
    assert torch.equal(MRPercentileNormalize()(torch.full((1, 4, 4), 7.0)), torch.zeros(1, 4, 4))


def test_mr_normalisation_errors():
    with pytest.raises(LabelMismatchError):
        MRPercentileNormalize()(torch.rand(1, 4, 4), mask=torch.ones(1, 5, 4))
    with pytest.raises(InvalidImageError, match="selects no voxels"):
        MRPercentileNormalize()(torch.rand(1, 4, 4), mask=torch.zeros(4, 4))
    with pytest.raises(ConfigError):
        MRPercentileNormalize(lower=90, upper=10)


# ------------------------------------------------------------------ resampling


def test_resample_to_spacing_inverts(lung):
    pre = Compose([ResampleToSpacingd(("image", "label"), pixdim=(1.14, 1.14, 2.5), label_keys="label")])
    d = pre(_fresh(lung))
    assert d["image"].dtype == torch.float32
    np.testing.assert_allclose(np.abs(np.diag(d["image"].affine.numpy())[:3]), [1.14, 1.14, 2.5], atol=1e-6)
    assert set(torch.unique(d["label"]).tolist()) == {0.0, 1.0}
    d["pred"] = d["label"].clone()
    inv = Invertd("pred", pre, orig_keys="label", nearest_interp=True)(d)["pred"]
    assert inv.shape == lung["label"].shape
    np.testing.assert_allclose(inv.affine.numpy(), lung["label"].affine.numpy(), atol=1e-6)
    # the nodule survives the round trip closely (volume within 15 %, overlap high)
    a, b = inv[0] > 0.5, lung["label"][0] > 0.5
    assert abs(int(a.sum()) - int(b.sum())) <= 0.15 * int(b.sum())
    assert 2 * int((a & b).sum()) / (int(a.sum()) + int(b.sum())) > 0.8
    # the array form resamples a label with nearest neighbour
    lab = ResampleToSpacing(pixdim=(0.5, 0.5, 2.5), is_label=True)(lung["label"])
    assert set(torch.unique(lab).tolist()) == {0.0, 1.0}
    with pytest.raises(ConfigError, match="label_keys"):
        ResampleToSpacingd("image", pixdim=1.0, label_keys="label")


# ------------------------------------------------------------------ slice sampling


def test_plane_axis_follows_the_affine():
    ras = np.diag([0.7, 0.7, 5.0, 1.0])
    assert [plane_axis(ras, p) for p in ("sagittal", "coronal", "axial")] == [0, 1, 2]
    lps = np.diag([-0.7, -0.7, 5.0, 1.0])
    assert plane_axis(lps, "axial") == 2
    # volume stored slice-first (z, y, x): the axial axis is array axis 0
    zyx = np.array([[0, 0, 0.7, 0], [0, 0.7, 0, 0], [5.0, 0, 0, 0], [0, 0, 0, 1]])
    assert plane_axis(zyx, "axial") == 0 and plane_axis(zyx, "sagittal") == 2
    assert plane_axis(None, 1) == 1
    with pytest.raises(ConfigError):
        plane_axis(ras, "oblique")


def test_label_slices_are_exactly_those_with_label_voxels(lung, data_dir):
    raw = np.asarray(nib.load(str(data_dir / CT_DIR / "lung1_crop_label.nii.gz")).dataobj)
    expected = np.nonzero(raw.any(axis=(0, 1)))[0].tolist()
    assert expected == [6, 7, 8]
    assert slices_with_label(lung["label"], axis=2) == expected
    items = SampleSlicesd(("image", "label"), label_key="label", axis="axial", select="label")(_fresh(lung))
    assert [it["image"].meta["slice_index"] for it in items] == expected
    vol = lung["image"]
    for it in items:
        i = it["image"].meta["slice_index"]
        assert it["image"].shape == (1, 128, 128)
        assert torch.equal(it["image"], vol[..., i].as_tensor())
        assert torch.equal(it["label"], lung["label"][..., i].as_tensor())
        assert it["label"].sum() > 0
        assert it["image"].meta["slice_plane"] == "axial" and it["image"].meta["slice_axis"] == 2
    # with a margin the neighbouring slices join
    wide = SampleSlices(select="label", margin=2)(lung["image"], label=lung["label"])
    assert [t.meta["slice_index"] for t in wide] == list(range(4, 11))
    # every slice otherwise, in order
    assert [t.meta["slice_index"] for t in SampleSlices()(lung["image"])] == list(range(16))


def test_slice_affine_maps_pixels_to_the_volume_world(lung):
    vol = lung["image"]
    item = SampleSlices(axis="axial")(vol)[7]
    a2 = item.affine.numpy()
    a3 = vol.affine.numpy()
    for r, c in [(0, 0), (10, 100), (127, 3)]:
        world = a3 @ np.array([r, c, 7, 1.0])
        np.testing.assert_allclose((a2 @ np.array([r, c, 1.0]))[:2], world[:2], atol=1e-6)
    coronal = SampleSlices(axis="coronal")(vol)[5]
    assert coronal.shape == (1, 128, 16)
    world = a3 @ np.array([9, 5, 11, 1.0])
    np.testing.assert_allclose((coronal.affine.numpy() @ np.array([9, 11, 1.0]))[:2], world[[0, 2]], atol=1e-6)


def test_two_and_a_half_d_neighbours(lung):
    vol = lung["image"]
    items = SampleSlices(neighbours=1)(vol)
    assert len(items) == 16 and items[0].shape == (3, 128, 128)
    mid = items[7]
    for ch, k in enumerate((6, 7, 8)):
        assert torch.equal(mid[ch], vol[0, ..., k].as_tensor())
    # edge: replicate by default, zeros on request
    assert torch.equal(items[0][0], vol[0, ..., 0].as_tensor())
    zero_edge = SampleSlices(neighbours=1, pad_mode="zeros")(vol)[15]
    assert float(zero_edge[2].abs().sum()) == 0.0 and torch.equal(zero_edge[1], vol[0, ..., 15].as_tensor())
    # per-key neighbours in the dict form: 3-channel image, 1-channel label
    d = SampleSlicesd(("image", "label"), neighbours=(1, 0))(_fresh(lung))[7]
    assert d["image"].shape[0] == 3 and d["label"].shape[0] == 1


def test_slice_items_invert_into_the_volume(lung):
    pre = Compose([
        ResampleToSpacingd(("image", "label"), pixdim=(0.5703125, 0.5703125, 2.5), label_keys="label"),
        SampleSlicesd(("image", "label"), label_key="label", select="label", neighbours=(1, 0)),
    ])
    items = pre(_fresh(lung))
    assert len(items) >= 5  # 3 labelled 5 mm slices become at least 5 at 2.5 mm
    item = items[len(items) // 2]
    assert [op["class"] for op in item["label"].applied_operations] == ["SpatialResample", "SampleSlices"]
    item["pred"] = item["label"].clone()
    inv = Invertd("pred", pre, orig_keys="label", nearest_interp=True)(item)["pred"]
    assert inv.shape == lung["label"].shape
    np.testing.assert_allclose(inv.affine.numpy(), lung["label"].affine.numpy(), atol=1e-6)
    assert "slice_index" not in inv.meta
    # the predicted slice lands where it came from and only there
    filled = torch.nonzero(inv[0].sum(dim=(0, 1))).flatten().tolist()
    assert filled and set(filled) <= {6, 7, 8}
    # without resampling the round trip is exact
    plain = SampleSlicesd(("image", "label"))
    item = plain(_fresh(lung))[7]
    back = plain.inverse(item)
    assert torch.equal(back["image"][..., 7], lung["image"][..., 7].as_tensor())
    assert float(back["image"][..., :7].abs().sum()) == 0.0


def test_rand_slices_reproducible_and_label_balanced(lung):
    img, lab = lung["image"], lung["label"]
    a = RandSampleSlices(num_samples=6).set_random_state(seed=3)(img)
    b = RandSampleSlices(num_samples=6).set_random_state(seed=3)(img)
    assert [t.meta["slice_index"] for t in a] == [t.meta["slice_index"] for t in b]
    draws = {tuple(t.meta["slice_index"] for t in RandSampleSlices(num_samples=6).set_random_state(seed=s)(img))
             for s in range(5)}
    assert len(draws) > 1
    pos = RandSampleSlices(num_samples=8, pos_fraction=1.0).set_random_state(seed=0)(img, label=lab)
    assert {t.meta["slice_index"] for t in pos} <= {6, 7, 8}
    neg = RandSampleSlices(num_samples=8, pos_fraction=0.0).set_random_state(seed=0)(img, label=lab)
    assert not {t.meta["slice_index"] for t in neg} & {6, 7, 8}
    only = RandSampleSlices(num_samples=5, select="label").set_random_state(seed=0)(img, label=lab)
    assert len(only) == 5 and {t.meta["slice_index"] for t in only} <= {6, 7, 8}
    # dict form: same slices for image and label, reproducible through set_random_state
    t1 = RandSampleSlicesd(("image", "label"), label_key="label", num_samples=4, pos_fraction=0.5)
    t2 = RandSampleSlicesd(("image", "label"), label_key="label", num_samples=4, pos_fraction=0.5)
    r1 = t1.set_random_state(seed=11)(_fresh(lung))
    r2 = t2.set_random_state(seed=11)(_fresh(lung))
    assert [x["image"].meta["slice_index"] for x in r1] == [x["image"].meta["slice_index"] for x in r2]
    for x in r1:
        assert x["image"].meta["slice_index"] == x["label"].meta["slice_index"]
        back = t1.inverse(x)  # each random item puts its slice back into the volume
        i = x["image"].meta["slice_index"]
        assert back["label"].shape == lung["label"].shape
        assert torch.equal(back["label"][..., i], lung["label"][..., i].as_tensor())


def test_empty_label_policies(lung):
    img, empty = lung["image"], torch.zeros_like(lung["label"])
    empty = MetaTensor(empty, meta={"filename_or_obj": "case3_label.nii.gz"})
    with pytest.raises(LabelMismatchError, match="case3_label.nii.gz"):
        SampleSlices(select="label")(img, label=empty)
    assert SampleSlices(select="label", empty="skip")(img, label=empty) == []
    assert len(SampleSlices(select="label", empty="all")(img, label=empty)) == 16
    with pytest.raises(ConfigError):
        SampleSlices(select="label")(img)
    with pytest.raises(LabelMismatchError):
        SampleSlices(select="label")(img, label=torch.ones(1, 128, 128, 15))
    with pytest.raises(InvalidImageError):
        SampleSlices()(torch.zeros(1, 8, 8))
    with pytest.raises(LabelMismatchError):
        SampleSlicesd(("image", "label"))({"image": torch.zeros(1, 4, 4, 4), "label": torch.zeros(1, 4, 4, 5)})
