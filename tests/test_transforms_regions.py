"""medfound.transforms.regions: class-index maps to region masks (known answers, array and dictionary forms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medfound.errors import LabelMismatchError
from medfound.evaluation.segmentation import region_masks
from medfound.transforms import ClassesToRegions, ClassesToRegionsd

FUNDUS = {"disc": [1, 2], "cup": [2]}


def test_regions_are_unions_of_classes_in_every_form():
    label = np.array([[[0, 1, 2], [2, 1, 0]]])  # (1, H, W): 0 background, 1 rim, 2 cup
    disc = [[False, True, True], [True, True, False]]
    cup = [[False, False, True], [True, False, False]]
    out = ClassesToRegions(FUNDUS, dtype=bool)(label)
    assert isinstance(out, np.ndarray) and out.dtype == bool and out.tolist() == [disc, cup]
    as_float = ClassesToRegions(FUNDUS)(torch.as_tensor(label, dtype=torch.float32))
    assert as_float.dtype == torch.float32 and as_float.tolist() == [np.asarray(m, float).tolist() for m in (disc, cup)]
    meta = MetaTensor(torch.as_tensor(label), meta={"filename_or_obj": "case7_mask.png"})
    d = ClassesToRegionsd(["pred", "label"], FUNDUS)({"pred": meta, "label": meta.clone()})
    assert isinstance(d["pred"], MetaTensor) and d["pred"].meta["filename_or_obj"] == "case7_mask.png"
    assert torch.equal(d["pred"], d["label"]) and d["pred"].shape == (2, 2, 3)
    # the metrics' masks are the same transform's
    masks = region_masks(label[0], FUNDUS)
    assert list(masks) == ["disc", "cup"] and masks["disc"].tolist() == disc and masks["cup"].tolist() == cup


def test_bad_inputs_name_the_problem():
    with pytest.raises(LabelMismatchError, match=r"class-index map \(1, \*spatial\), got shape \(3, 4, 4\)"):
        ClassesToRegions(FUNDUS)(torch.zeros(3, 4, 4))
    with pytest.raises(LabelMismatchError, match="at least one region"):
        ClassesToRegions({})
    with pytest.raises(LabelMismatchError, match=r"regions\['disc'\] must be a non-empty list"):
        ClassesToRegions({"disc": 2})
    with pytest.raises(ValueError, match=r"regions\['disc'\] must be an integer >= 0, got 'rim'"):
        ClassesToRegions({"disc": ["rim"]})
