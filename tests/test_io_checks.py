"""Orientation of files (header only), safe loading and skipping bad cases in a DataLoader.

The check transforms themselves (CheckFinite, CheckLabelMatch, CheckOrientation) are tested in
test_transforms_checks.py."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers_io import IO_DATA, lung_crop, oblique_affine
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from medfound.errors import (
    ImageReadError,
    NonFiniteImageError,
    OrientationError,
)
from medfound.io import (
    SafeLoadImage,
    SafeLoadImaged,
    SkipBadCases,
    check_orientation,
    read_affine,
    read_skip_report,
    scan_cases,
)
from medfound.transforms.checks import CheckLabelMatchd


def test_read_affine_nifti_nrrd_and_qform_sform(tmp_path):
    import SimpleITK as sitk

    vol, aff = lung_crop()
    nrrd = tmp_path / "crop.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(IO_DATA / "lung1_ct_crop.nii.gz")), str(nrrd))
    np.testing.assert_allclose(read_affine(nrrd)[0], aff, atol=1e-5)
    check_orientation(nrrd, allow_oblique=False, allow_left_handed=False)  # a plain CT passes

    img = nib.Nifti1Image(vol[:8, :8, :2], aff)
    img.set_qform(aff, code=1)
    bad = aff.copy()
    bad[0, 3] += 5.0
    img.set_sform(bad, code=2)
    path = tmp_path / "disagree.nii.gz"
    nib.save(img, path)
    _, notes = read_affine(path)
    assert notes and "qform (code 1) and sform (code 2) disagree" in notes[0]
    with pytest.raises(OrientationError, match=r"disagree\.nii\.gz: qform .* disagree"):
        check_orientation(path)
    with pytest.warns(UserWarning, match="disagree"):
        check_orientation(path, on_fail="warn")


def test_check_orientation_on_metatensor():
    t = MetaTensor(
        torch.zeros(1, 4, 4, 4), affine=torch.as_tensor(oblique_affine()), meta={"filename_or_obj": "scan.nii.gz"}
    )
    with pytest.raises(OrientationError, match=r"scan\.nii\.gz: oblique by 22\.2"):
        check_orientation(t, allow_oblique=False)
    with pytest.warns(UserWarning, match=r"scan\.nii\.gz: oblique"):
        check_orientation(t, allow_oblique=False, on_fail="warn")


# -- safe loading and skipping bad cases -------------------------------------------------------------
def _cases(tmp_path, n_good=6):
    """Real CT crops as NIfTI image/label pairs, plus three bad cases."""
    vol, aff = lung_crop()
    cases = []
    for i in range(n_good):
        img = tmp_path / f"img{i}.nii.gz"
        lab = tmp_path / f"lab{i}.nii.gz"
        nib.save(nib.Nifti1Image(vol[:32, :32, :4] + i, aff), img)
        nib.save(nib.Nifti1Image((vol[:32, :32, :4] > -500).astype(np.uint8), aff), lab)
        cases.append({"image": str(img), "label": str(lab)})
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b" + b"garbage" * 20)
    wrong = tmp_path / "wrong_label.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((30, 32, 4), np.uint8), aff), wrong)
    nan = tmp_path / "nan.nii.gz"
    bad = vol[:32, :32, :4].copy()
    bad[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(bad, aff), nan)
    cases.insert(2, {"image": str(corrupt), "label": cases[0]["label"]})
    cases.insert(4, {"image": cases[0]["image"], "label": str(wrong)})
    cases.insert(6, {"image": str(nan), "label": cases[0]["label"]})
    return cases


def _pipeline():
    return Compose(
        [
            SafeLoadImaged(["image", "label"], reader="NibabelReader", check_finite=True),
            EnsureChannelFirstd(["image", "label"]),
            CheckLabelMatchd("label"),
        ]
    )


@pytest.mark.slow  # MONAI's fallback through ITKReader imports ITK (several seconds)
def test_safe_load_errors_are_medfound_errors_naming_the_file(tmp_path):
    cases = _cases(tmp_path)
    with pytest.raises(RuntimeError) as plain:  # MONAI's own loader: a long RuntimeError
        LoadImaged("image", reader="NibabelReader")(cases[2])
    assert not isinstance(plain.value, ImageReadError)
    with pytest.raises(ImageReadError, match=r"corrupt\.nii\.gz: cannot be read \(NibabelReader: "):
        SafeLoadImaged("image", reader="NibabelReader")(cases[2])
    with pytest.raises(NonFiniteImageError, match=r"nan\.nii\.gz: 1 NaN"):
        SafeLoadImage(reader="NibabelReader", check_finite=True)(cases[6]["image"])
    with pytest.raises(ImageReadError, match=r"nowhere\.nii\.gz"):
        SafeLoadImage()(str(tmp_path / "nowhere.nii.gz"))


def test_scan_cases_reports_bad_ones(tmp_path):
    cases = _cases(tmp_path)
    good, bad = scan_cases(cases, _pipeline(), report_path=tmp_path / "report.jsonl")
    assert len(good) == 6 and [b["index"] for b in bad] == [2, 4, 6]
    assert [b["error"] for b in bad] == ["ImageReadError", "LabelMismatchError", "NonFiniteImageError"]
    assert "corrupt.nii.gz" in bad[0]["message"] and "wrong_label.nii.gz" in bad[1]["message"]
    assert read_skip_report(tmp_path / "report.jsonl") == bad


@pytest.mark.slow
def test_skip_bad_cases_in_dataloader_with_workers(tmp_path):
    cases = _cases(tmp_path)
    report = tmp_path / "skipped.jsonl"
    ds = SkipBadCases(Dataset(cases, _pipeline()), report_path=report)
    loader = DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    batches = list(loader)
    assert [b["image"].shape[0] for b in batches] == [3, 3, 3]  # every batch full
    seen = [
        round(float(b.flatten()[0] - batches[0]["image"][0].flatten()[0])) for batch in batches for b in batch["image"]
    ]
    assert sorted(set(seen)) == list(range(6))  # all good cases delivered; bad ones replaced by the next good one
    entries = read_skip_report(report)
    assert [e["index"] for e in entries] == [2, 4, 6]
    assert entries[0]["case"]["image"].endswith("corrupt.nii.gz") and "corrupt.nii.gz" in entries[0]["message"]
    assert entries[2]["error"] == "NonFiniteImageError"
    lines = report.read_text().splitlines()
    assert all(json.loads(line)["pid"] for line in lines)


def test_skip_bad_cases_in_process_and_limits(tmp_path):
    cases = _cases(tmp_path)
    ds = SkipBadCases(Dataset(cases, _pipeline()))
    out = [ds[i]["image"] for i in range(len(ds))]
    assert len(out) == len(cases) and [e["index"] for e in ds.report()] == [2, 4, 6]
    first = ds[2]["image"]  # index 2 is known bad now: served by index 3 without retrying
    assert torch.equal(first, out[3]) and len(ds.report()) == 3
    all_bad = SkipBadCases(Dataset([cases[2]] * 3, _pipeline()), max_consecutive=2)
    with pytest.raises(ImageReadError, match=r"2 case\(s\) in a row failed from index 0; last: .*corrupt\.nii\.gz"):
        all_bad[0]
