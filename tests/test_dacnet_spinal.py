"""Spinal cord MRI transforms: majority vote, orientation, cord-centred crop, per-slice norm, slicing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, LoadImaged
from monai.utils import set_determinism

from medfound.errors import ConfigError, LabelMismatchError
from medfound.transforms.spinal import (
    AxialOrientation,
    AxialOrientationd,
    AxialSlices,
    AxialSlicesd,
    CordCenteredCrop,
    CordCenteredCropD,
    CordCenteredCropd,
    MajorityVote,
    MajorityVoted,
    MajorityVoteDict,
    NormalizePerSlice,
    NormalizePerSliced,
)


def _vote_reference(raters: np.ndarray, tie_to_foreground: bool) -> np.ndarray:
    """Plain-loop majority vote, written independently of the transform."""
    n = raters.shape[0]
    out = np.zeros(raters.shape[1:], np.uint8)
    for idx in np.ndindex(*raters.shape[1:]):
        votes = raters[(slice(None), *idx)]
        cord, gm = int((votes > 0).sum()), int((votes == 1).sum())
        need = (lambda v: 2 * v >= n) if tie_to_foreground else (lambda v: 2 * v > n)
        out[idx] = 1 if need(gm) else 2 if need(cord) else 0
    return out


@pytest.mark.parametrize("n_raters", [3, 4])
@pytest.mark.parametrize("tie", ["background", "foreground"])
def test_majority_vote_matches_reference(n_raters, tie):
    rng = np.random.default_rng(n_raters)
    raters = rng.integers(0, 3, size=(n_raters, 6, 5, 4)).astype(np.uint8)
    out = MajorityVote(tie=tie)(raters)
    assert out.shape == (1, 6, 5, 4) and out.dtype == torch.uint8
    assert np.array_equal(out[0].numpy(), _vote_reference(raters, tie == "foreground"))
    gm, cord = out == 1, out > 0
    assert bool((gm <= cord).all())  # consensus GM lies inside the consensus cord


def test_majority_vote_keeps_metadata_and_checks_input():
    affine = torch.diag(torch.tensor([0.5, 0.5, 5.0, 1.0]))
    raters = MetaTensor(torch.ones(4, 3, 3, 2), affine=affine, meta={"filename_or_obj": "s-mask-r1.nii.gz"})
    out = MajorityVote(num_raters=4)(raters)
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, affine.double())
    assert out.meta["majority_vote"] == {"raters": 4, "tie": "background"}
    assert int(out.unique().item()) == 1
    with pytest.raises(LabelMismatchError, match=r"s-mask-r1\.nii\.gz: rater mask values \[3\]"):
        MajorityVote()(MetaTensor(torch.full((4, 2, 2), 3.0), meta={"filename_or_obj": "s-mask-r1.nii.gz"}))
    with pytest.raises(LabelMismatchError, match="3 rater masks, expected 4"):
        MajorityVote(num_raters=4)(torch.zeros(3, 2, 2))
    with pytest.raises(ConfigError, match="tie"):
        MajorityVote(tie="coin")
    d = MajorityVoted(keys="label")({"label": torch.tensor([[[2]], [[2]], [[0]]]), "image": 1})
    assert d["label"].tolist() == [[[2]]] and d["image"] == 1
    assert MajorityVoteDict is MajorityVoted


def test_rater_files_load_stacked_then_vote(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(0)
    raters = rng.integers(0, 3, size=(4, 5, 6, 3)).astype(np.uint8)
    paths = []
    for r in range(4):
        paths.append(str(tmp_path / f"site1-sc01-mask-r{r + 1}.nii.gz"))
        nib.save(nib.Nifti1Image(raters[r], np.eye(4)), paths[-1])
    pipeline = Compose([LoadImaged(keys="label", image_only=True), MajorityVoted(keys="label")])
    out = pipeline({"label": paths})["label"]
    assert np.array_equal(out[0].numpy(), _vote_reference(raters, False))


def test_axial_orientation_is_invertible():
    affine = torch.tensor([[-0.5, 0, 0, 10.0], [0, -0.5, 0, 20.0], [0, 0, 2.5, 0], [0, 0, 0, 1]])
    vol = MetaTensor(torch.arange(4 * 5 * 3, dtype=torch.float32).reshape(1, 4, 5, 3), affine=affine)
    out = AxialOrientation()(vol)
    assert np.allclose(np.diag(out.affine.numpy())[:3], [0.5, 0.5, 2.5])
    assert torch.equal(out[0], torch.flip(vol[0], dims=(0, 1)))  # x and y were stored reversed
    pipeline = AxialOrientationd(keys=["image"])
    data = pipeline({"image": vol.clone()})
    back = Invertd(keys="image", transform=pipeline, orig_keys="image")(data)["image"]
    assert torch.equal(back.as_tensor(), vol.as_tensor()) and torch.allclose(back.affine, vol.affine.double())


def test_cord_centered_crop_known_answer_and_padding():
    label = torch.zeros(1, 20, 16)
    label[0, 1:4, 12:16] = 1  # cord near the corner: centre (2.5, 14) in voxel-centre units -> box reaches out
    crop = CordCenteredCrop((8, 6))
    out = crop(label)
    assert out.shape == (1, 8, 6)
    assert int(out.sum()) == 12  # the whole cord is inside
    start, end = crop.compute_bounding_box(label)
    assert start.tolist() == [-1, 11] and end.tolist() == [7, 17]  # padded by one row above, one column right
    expected = torch.nn.functional.pad(label, (0, 1, 1, 0))[:, 0:8, 11:17]
    assert torch.equal(out.as_tensor(), expected)
    # no cord: the image centre; -1 keeps an axis whole
    assert CordCenteredCrop((4, -1)).compute_bounding_box(torch.zeros(1, 10, 7))[0].tolist() == [3, 0]


def test_cord_centered_cropd_inverts_with_invertd():
    set_determinism(0)
    image = MetaTensor(torch.rand(1, 30, 24, 3))
    label = MetaTensor(torch.zeros(1, 30, 24, 3))
    label[0, 20:26, 4:9, :] = 2
    label[0, 22:24, 5:7, 1] = 1
    crop = CordCenteredCropd(["image", "label"], source_key="label", roi_size=(10, 10, -1))
    out = crop({"image": image.clone(), "label": label.clone()})
    assert out["image"].shape == (1, 10, 10, 3) and out["label"].shape == (1, 10, 10, 3)
    assert int((out["label"] > 0).sum()) == int((label > 0).sum())
    # affine follows the crop: voxel (0, 0, 0) of the crop is voxel start of the original
    start, _ = crop.cropper.compute_bounding_box(label)
    assert np.allclose(out["image"].affine[:3, 3].numpy(), start.astype(float))
    back = Invertd(keys=["image", "label"], transform=crop, orig_keys=["image", "label"])(out)
    assert back["label"].shape == label.shape and torch.equal(back["label"].as_tensor(), label.as_tensor())
    inside = np.zeros(label.shape, bool)
    inside[:, start[0]:start[0] + 10, max(start[1], 0):start[1] + 10] = True
    assert torch.equal(back["image"].as_tensor()[inside], image.as_tensor()[inside])
    assert CordCenteredCropD is CordCenteredCropd
    with pytest.raises(ConfigError, match="roi_size"):
        CordCenteredCrop((4, 4))(torch.zeros(1, 5, 5, 5))


def test_normalize_per_slice_known_answers():
    vol = torch.stack([torch.arange(16.0).reshape(1, 4, 4) * s + o for s, o in ((1, 0), (10, 5), (0, 3))], dim=-1)
    mm = NormalizePerSlice(mode="minmax")(vol)
    for k in (0, 1):
        assert float(mm[..., k].min()) == 0.0 and float(mm[..., k].max()) == 1.0
        assert torch.allclose(mm[..., k], torch.arange(16.0).reshape(1, 4, 4) / 15)
    assert float(mm[..., 2].abs().max()) == 0.0  # a constant slice becomes zeros
    z = NormalizePerSlice(mode="zscore")(vol)
    assert torch.allclose(z[..., 1].mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(z[..., 1].std(unbiased=False), torch.tensor(1.0), atol=1e-6)
    p = NormalizePerSlice(mode="percentile", lower=10, upper=90)(vol)
    ref = np.clip((np.arange(16.0) - np.percentile(np.arange(16.0), 10)) / np.ptp(np.percentile(np.arange(16.0),
                                                                                                 [10, 90])), 0, 1)
    assert np.allclose(p[0, ..., 0].numpy().ravel(), ref, atol=1e-6)
    image2d = MetaTensor(torch.tensor([[[2.0, 4.0], [6.0, 10.0]]]), meta={"filename_or_obj": "x"})
    out = NormalizePerSliced(keys="image", axis=None, mode="minmax")({"image": image2d})["image"]
    assert out.tolist() == [[[0.0, 0.25], [0.5, 1.0]]] and out.meta["filename_or_obj"] == "x"
    with pytest.raises(ConfigError, match="mode"):
        NormalizePerSlice(mode="histogram")
    with pytest.raises(ConfigError, match="percentiles"):
        NormalizePerSlice(lower=60, upper=40)


def test_axial_slices_affines_and_labelled_only():
    affine = torch.tensor([[0.5, 0, 0, 1.0], [0, 0.5, 0, 2.0], [0, 0, 2.5, 3.0], [0, 0, 0, 1]])
    vol = MetaTensor(torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4), affine=affine)
    slices = AxialSlices()(vol)
    assert len(slices) == 4
    for k, s in enumerate(slices):
        assert torch.equal(s.as_tensor(), vol.as_tensor()[..., k])
        assert s.meta["slice_index"] == k
        assert np.allclose(s.affine[:3, 3].numpy(), (affine @ torch.tensor([0.0, 0, k, 1]))[:3].numpy())
    label = torch.zeros(1, 2, 3, 4)
    label[0, 0, 0, 2] = 1
    out = AxialSlicesd(["image", "label"], label_key="label", labelled_only=True)(
        {"image": vol, "label": label, "subject": "s1"})
    assert [(d["slice_index"], d["subject"]) for d in out] == [(2, "s1")]
    assert len(AxialSlicesd(["image", "label"])({"image": vol, "label": label})) == 4
    with pytest.raises(LabelMismatchError, match="different numbers of slices"):
        AxialSlicesd(["image", "label"])({"image": vol, "label": label[..., :2]})
    with pytest.raises(ConfigError, match="label_key"):
        AxialSlicesd(["image"], labelled_only=True)
