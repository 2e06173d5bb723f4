"""Quiet wrong reads (issue 14, defect 8): geometry is never guessed.

- the CT/MR presets without ``volume=True`` refuse a volume of several slices, naming its file,
  its shape and the cube that resizing would have made; a one-slice volume is a 2D slice;
- two DICOM series of equal size are a choice for the user, the same whatever the file listing order;
- ``LoadImaged(reader="DicomSeriesReader")`` on a series medfound refuses raises that refusal:
  MONAI's ``LoadImage`` never falls back to ITKReader, which would read the series anyway.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from _helpers import find_cause
from helpers_io import lung_crop
from monai.data import MetaTensor
from monai.transforms import LoadImaged

from medfound.errors import InvalidImageError, SeriesGeometryError
from medfound.io import write_dicom_series
from medfound.transforms.presets import get_preset


@pytest.fixture(scope="module")
def lung():
    return lung_crop()


@pytest.mark.parametrize("modality", ["ct", "mr"])
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_preset_refuses_a_volume_it_would_turn_into_a_cube(tmp_path, modality, mode):
    path = tmp_path / "scan48.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((256, 256, 48), np.float32), np.eye(4)), path)
    pre = get_preset(modality, mode=mode, spatial_size=128, keys=("image",), reader="NibabelReader")
    with pytest.raises(Exception) as info:
        pre({"image": str(path)})
    msg = str(find_cause(info.value, InvalidImageError))
    assert msg.startswith(f"{path}: a volume of shape (1, 256, 256, 48) (48 slices"), msg
    assert "128x128x128 block (48 slices -> 24, padded to 128)" in msg and "volume=True" in msg


def test_preset_refusal_names_the_key_of_an_array_and_other_ranks():
    pre = get_preset("ct", mode="infer", spatial_size=64, keys=("image",), load=False)
    with pytest.raises(Exception) as info:
        pre({"image": torch.zeros(1, 40, 30, 5)})
    assert str(find_cause(info.value, InvalidImageError)).startswith("item 'image': a volume of shape (1, 40, 30, 5)")
    with pytest.raises(Exception) as info:
        pre({"image": torch.zeros(1, 4, 4, 4, 4)})
    assert "makes 2D images (C, H, W); got shape (1, 4, 4, 4, 4)" in str(find_cause(info.value, InvalidImageError))


def test_volume_true_still_cuts_the_volume_into_slices():
    pre = get_preset("ct", mode="infer", spatial_size=64, keys=("image",), load=False, volume=True)
    out = pre({"image": MetaTensor(torch.zeros(1, 40, 30, 5))})
    assert len(out) == 5 and all(tuple(o["image"].shape) == (3, 64, 64) for o in out)


@pytest.mark.dicom
def test_a_single_ct_dicom_file_is_a_2d_slice_not_a_cube(tmp_path, lung):
    vol, aff = lung
    files = write_dicom_series(vol[:, :, 3:4], tmp_path, aff)  # one slice: read as (X, Y, 1)
    pre = get_preset("ct", mode="infer", spatial_size=64, keys=("image", "label"))
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image((vol[:, :, 3:4] > -500).astype(np.uint8), aff), mask)
    out = pre({"image": str(files[0]), "label": str(mask)})
    assert tuple(out["image"].shape) == (3, 64, 64) and tuple(out["label"].shape) == (1, 64, 64)
    assert set(torch.unique(out["label"]).tolist()) == {0.0, 1.0}
    # the lung window of the slice, letterboxed: the same picture as the 2D array through the same preset
    plain = get_preset("ct", mode="infer", spatial_size=64, keys=("image",), load=False)
    ref = plain({"image": torch.as_tensor(vol[None, :, :, 3])})["image"]
    np.testing.assert_allclose(out["image"].numpy(), ref.numpy(), atol=1e-5)


def _two_equal_series(folder, lung, first: str) -> None:
    vol, aff = lung
    uids = {"A": "1.2.3.4.200", "B": "1.2.3.4.300"}
    order = [first, "B" if first == "A" else "A"]
    for prefix in order:  # interleaved positions, equal size: neither is "the largest"
        write_dicom_series(vol[:, :, :6] + (5 if prefix == "A" else 0), folder, aff,
                           series_instance_uid=uids[prefix], file_prefix=prefix)


@pytest.mark.dicom
def test_interleaved_series_of_equal_size_give_the_same_answer_in_any_listing_order(tmp_path, lung):
    from medfound.io import DicomSeriesReader

    messages = []
    for first in ("A", "B"):
        folder = tmp_path / f"{first}_first"
        _two_equal_series(folder, lung, first)
        reader = DicomSeriesReader()
        with pytest.raises(SeriesGeometryError) as info:
            reader.get_data(reader.read(folder))
        messages.append(str(info.value).replace(str(folder), "<folder>"))
        chosen = DicomSeriesReader(series_uid="1.2.3.4.300")
        arr, meta = chosen.get_data(chosen.read(folder))
        assert meta["SeriesInstanceUID"] == "1.2.3.4.300"
        np.testing.assert_array_equal(arr, lung[0][:, :, :6])
    assert messages[0] == messages[1] and "1.2.3.4.200, 1.2.3.4.300" in messages[0]


def _tied(folder, lung):
    _two_equal_series(folder, lung, "A")
    return str(folder), "choose one with series_uid"


def _duplicate_positions(folder, lung):
    vol, aff = lung
    write_dicom_series(vol[:, :, :5], folder, aff, series_instance_uid="1.2.3.9", file_prefix="A")
    write_dicom_series(vol[:, :, :5], folder, aff, series_instance_uid="1.2.3.9", file_prefix="B")  # two acquisitions
    return str(folder), "same slice position"


def _mixed_sizes(folder, lung):
    vol, aff = lung
    write_dicom_series(vol[:, :, :5], folder, aff, series_instance_uid="1.2.3.9", file_prefix="A")
    shifted = aff.copy()
    shifted[:3, 3] += aff[:3, 2] * 5
    write_dicom_series(vol[:16, :16, :2], folder, shifted, series_instance_uid="1.2.3.9", file_prefix="B")
    return str(folder), "slice size"


def _files_of_two_series(folder, lung):
    vol, aff = lung
    a = write_dicom_series(vol[:, :, :5], folder / "a", aff, series_instance_uid="1.2.3.7")
    far = aff.copy()
    far[:3, 3] += aff[:3, 2] * 40  # a slice 40 positions away: ITK would take the span as the spacing
    b = write_dicom_series(vol[:, :, :1], folder / "b", far, series_instance_uid="1.2.3.8")
    return [str(p) for p in a + b], "belongs to series 1.2.3.8"


@pytest.mark.dicom
@pytest.mark.parametrize("make", [_tied, _duplicate_positions, _mixed_sizes, _files_of_two_series],
                         ids=["equal-series", "duplicate-positions", "mixed-slice-sizes", "files-of-two-series"])
def test_loadimaged_by_reader_name_raises_the_refusal_and_never_falls_back_to_itk(tmp_path, lung, make):
    source, expected = make(tmp_path, lung)
    loader = LoadImaged("image", reader="DicomSeriesReader", image_only=True)
    with pytest.raises(SeriesGeometryError, match=expected):
        loader({"image": source})
