"""Input checks as transforms: finite values, label/image agreement, orientation of an affine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_io import oblique_affine
from monai.bundle import ConfigParser
from monai.data import MetaTensor

from medfound.errors import ConfigError, LabelMismatchError, NonFiniteImageError, OrientationError
from medfound.transforms.checks import (
    CheckFinite,
    CheckFinited,
    CheckLabelMatchd,
    CheckOrientation,
    CheckOrientationd,
    check_affine,
    orientation_report,
)


# -- orientation of an affine ----------------------------------------------------------------------------
def test_orientation_report_cases():
    r = orientation_report(np.eye(4))
    assert r.axcodes == ("R", "A", "S") and r.issues() == []
    r = orientation_report(np.diag([-0.7, -0.7, 2.5, 1.0]))  # ITK/DICOM LPS storage seen in RAS
    assert r.axcodes == ("L", "P", "S") and not r.left_handed and not r.oblique
    r = orientation_report(np.diag([-1.0, 1.0, 1.0, 1.0]))  # radiological NIfTI storage
    assert r.left_handed and r.issues() == ["left-handed voxel axes"]
    r = orientation_report(oblique_affine(deg=(20.0, 10.0)))
    # x axis turned 20 degrees, y axis by arccos(cos 20 cos 10), z axis 10 degrees
    assert r.oblique and r.obliquity_deg == pytest.approx(
        np.degrees(np.arccos(np.cos(np.radians(20)) * np.cos(np.radians(10)))), abs=1e-6
    )
    np.testing.assert_allclose(r.spacing, [0.57, 0.6, 2.5])
    shear = np.eye(4)
    shear[0, 2] = 0.3
    assert orientation_report(shear).sheared
    assert orientation_report(np.diag([1.0, 0.0, 1.0, 1.0])).degenerate
    r2 = orientation_report(np.diag([0.2, -0.3, 1.0]))  # a 2D affine
    assert r2.axcodes == ("R", "P") and r2.left_handed


def test_check_affine_and_orientation_transform():
    t = MetaTensor(
        torch.zeros(1, 4, 4, 4), affine=torch.as_tensor(oblique_affine()), meta={"filename_or_obj": "scan.nii.gz"}
    )
    with pytest.raises(OrientationError, match=r"scan\.nii\.gz: oblique by 22\.2"):
        CheckOrientation(allow_oblique=False)(t)
    d = {"image": t}
    assert CheckOrientationd("image")(d)["image"] is t
    with pytest.raises(OrientationError, match=r"scan\.nii\.gz: oblique"):
        CheckOrientationd("image", allow_oblique=False)(d)
    with pytest.warns(UserWarning, match="left-handed"):
        report = check_affine(np.diag([-1.0, 1.0, 1.0, 1.0]), allow_left_handed=False, on_fail="warn")
    assert report.left_handed
    with pytest.raises(OrientationError, match=r"vol: degenerate affine \(zero-length .*\); header says no"):
        check_affine(np.diag([1.0, 0.0, 1.0, 1.0]), "vol", fatal_notes=["header says no"])
    with pytest.raises(ConfigError, match="on_fail must be one of"):
        CheckOrientation(on_fail="ignore")
    with pytest.raises(ConfigError, match="needs a MetaTensor"):
        CheckOrientation()(torch.zeros(1, 2, 2))


# -- finite values and label/image agreement ---------------------------------------------------------------
def test_check_finite_names_file_and_key():
    x = MetaTensor(torch.tensor([[1.0, float("inf"), float("nan")]]), meta={"filename_or_obj": "vol.nii.gz"})
    with pytest.raises(NonFiniteImageError, match=r"vol\.nii\.gz: 1 NaN and 1 infinite values \(key 'image'\)"):
        CheckFinited("image")({"image": x})
    ok = MetaTensor(torch.ones(2, 2))
    assert CheckFinite()(ok) is ok
    assert CheckFinite()(torch.tensor([1, 2])) is not None  # integers cannot hold NaN


def test_label_match():
    img = MetaTensor(torch.zeros(1, 8, 8), affine=torch.eye(3), meta={"filename_or_obj": "img.png"})
    lab = MetaTensor(torch.zeros(1, 8, 9), affine=torch.eye(3), meta={"filename_or_obj": "mask.png"})
    with pytest.raises(LabelMismatchError, match=r"mask\.png: spatial shape \(8, 9\) does not match img\.png \(8, 8\)"):
        CheckLabelMatchd("label")({"image": img, "label": lab})
    shifted = MetaTensor(
        torch.zeros(1, 8, 8),
        affine=torch.tensor([[1.0, 0, 2], [0, 1, 0], [0, 0, 1]]),
        meta={"filename_or_obj": "m2.png"},
    )
    with pytest.raises(
        LabelMismatchError, match=r"m2\.png: affine does not match img\.png \(largest difference 2\.0\)"
    ):
        CheckLabelMatchd("label")({"image": img, "label": shifted})
    same = MetaTensor(torch.zeros(1, 8, 8), affine=torch.eye(3))
    d = {"image": img, "label": same}
    assert CheckLabelMatchd("label")(d)["label"] is same
    assert CheckLabelMatchd("missing", allow_missing_keys=True)(d)["image"] is img


def test_checks_build_from_a_bundle_config():
    parser = ConfigParser({"check": {"_target_": "medfound.transforms.CheckLabelMatchd", "keys": ["label"],
                                     "image_key": "image", "atol": 0.01}})
    check = parser.get_parsed_content("check")
    assert check.checker.atol == 0.01
    with pytest.raises(ConfigError, match="atol must be a number >= 0"):
        CheckLabelMatchd("label", atol="0.01")
