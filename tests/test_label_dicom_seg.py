"""DICOM-SEG out for a DICOM series in: references the source series and reads back with pydicom to the same mask.

Needs the ``label`` extra (pydicom-seg, pydicom 2.4): skipped with the reason where it is absent.
The read-back does not use pydicom-seg's reader: each frame is placed by its own references
(segment number, referenced source SOP instance), so a frame written against the wrong
slice or segment fails the comparison.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pydicom_seg", reason="needs the label extra (pydicom-seg, pydicom 2.4.4)")
import pydicom  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from medfound.io import write_dicom_series  # noqa: E402
from medfound.label.dicom_seg import write_dicom_seg  # noqa: E402

pytestmark = pytest.mark.dicom

CLASSES = ["background", "grey matter", "white matter"]


@pytest.fixture
def series(tmp_path):
    """A 5-slice CT series (oblique-free, anisotropic) and SimpleITK's reading of it."""
    rng = np.random.default_rng(0)
    volume = rng.integers(-100, 100, size=(12, 10, 5)).astype(np.float32)
    folder = tmp_path / "series"
    write_dicom_series(volume, folder, np.diag([0.7, 0.8, 2.5, 1.0]), order="shuffle", seed=3,
                       series_instance_uid="1.2.826.0.1.3680043.8.498.1")
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(files)
    return folder, reader.Execute(), list(files)


def _mask(image: sitk.Image) -> np.ndarray:
    """(Z, Y, X) class-index mask: class 1 and 2 boxes on different slices, slice 0 empty."""
    z, y, x = sitk.GetArrayFromImage(image).shape
    mask = np.zeros((z, y, x), np.uint8)
    mask[1:4, 2:6, 3:8] = 1
    mask[3:5, 6:9, 1:4] = 2
    return mask


def _read_back(seg: pydicom.Dataset, files: list[str], shape: tuple[int, int, int]) -> np.ndarray:
    """The class-index mask a DICOM-SEG encodes, frame by frame from its references (pydicom only)."""
    uid_to_z = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: z for z, f in enumerate(files)}
    frames = seg.pixel_array.reshape(-1, shape[1], shape[2])
    out = np.zeros(shape, np.uint8)
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        z = uid_to_z[source]
        assert not np.any(out[z][frame > 0]), "two segments claim one pixel"
        out[z][frame > 0] = segment
    return out


def test_dicom_seg_references_the_series_and_reads_back_to_the_mask(series, tmp_path):
    folder, image, files = series
    mask = _mask(image)
    mask_image = sitk.GetImageFromArray(mask)
    mask_image.CopyInformation(image)
    mask_file = tmp_path / "mask.nii.gz"
    sitk.WriteImage(mask_image, str(mask_file))

    out = write_dicom_seg(mask_file, folder, CLASSES, tmp_path / "seg.dcm")
    seg = pydicom.dcmread(out)
    source = pydicom.dcmread(files[0], stop_before_pixels=True)

    assert seg.Modality == "SEG" and seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.PatientID == source.PatientID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == "1.2.826.0.1.3680043.8.498.1"
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == {
        pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert [s.SegmentLabel for s in seg.SegmentSequence] == CLASSES[1:]
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2]

    np.testing.assert_array_equal(_read_back(seg, files, mask.shape), mask)


def test_dicom_seg_needs_a_volume(tmp_path, series):
    folder, _, _ = series
    flat = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 4), np.uint8)), str(flat))
    with pytest.raises(ValueError, match="volumes"):
        write_dicom_seg(flat, folder, CLASSES, tmp_path / "seg.dcm")
