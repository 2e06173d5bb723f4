"""DICOM-SEG for a mask predicted on a DICOM series, referencing that series (pydicom-seg).

:func:`write_dicom_seg` encodes a class-index mask (a NIfTI file in the geometry of the
series, as the infer task writes it) as a DICOM Segmentation object: one segment per class
(background excluded), named after the bundle's class names, one binary frame per source
slice and segment, each frame referencing its source image (``DerivationImageSequence``)
and the series as a whole (``ReferencedSeriesSequence``), with patient and study copied
from the source.

Why pydicom-seg and not highdicom: MONAI Label 0.8.5 itself depends on pydicom-seg, so it
is installed with the ``label`` extra's pins (``pydicom==2.4.4``) at no cost; highdicom's
releases since 0.23 need pydicom 3, so under those pins only the frozen 0.22 would
install, an extra package for the same job. Why not MONAI Label's own
``nifti_to_dicom_seg``: it names segments by the position of each label among the labels
*present* (a missing class shifts every later name), globs every file of the folder as a
source image, and its default path shells out to dcmqi's ``itkimage2segimage``, which
MONAI Label downloads at run time.

Needs the ``label`` extra (pydicom-seg, pydicom < 3); medfound's core does not import it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import pydicom
import pydicom_seg
import SimpleITK as sitk

from medfound.errors import ConfigError, DatasetLayoutError
from medfound.io import scan_dicom_folder

__all__ = ["write_dicom_seg", "segment_template"]


def segment_template(class_names: Sequence[str], algorithm: str = "medfound",
                     series_description: str = "medfound segmentation") -> pydicom.Dataset:
    """The pydicom-seg template: segment ``k`` (1-based) is class ``k`` of ``class_names``."""
    if len(class_names) < 2:
        raise ConfigError(f"class_names must list background and at least one class, got {list(class_names)}")
    segments = [{
        "labelID": k,
        "SegmentLabel": str(name),
        "SegmentDescription": str(name),
        "SegmentAlgorithmType": "AUTOMATIC",
        "SegmentAlgorithmName": algorithm,
        "SegmentedPropertyCategoryCodeSequence": {
            "CodeValue": "91723000", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Anatomical Structure"},
        "SegmentedPropertyTypeCodeSequence": {
            "CodeValue": "91723000", "CodingSchemeDesignator": "SCT", "CodeMeaning": str(name)},
    } for k, name in enumerate(class_names) if k > 0]
    return pydicom_seg.template.from_dcmqi_metainfo({
        "ContentCreatorName": "medfound", "SeriesDescription": series_description, "SeriesNumber": "300",
        "InstanceNumber": "1", "ContentLabel": "SEGMENTATION", "ContentDescription": series_description,
        "ClinicalTrialSeriesID": "", "ClinicalTrialTimePointID": "", "ClinicalTrialCoordinatingCenterName": "",
        "BodyPartExamined": "", "segmentAttributes": [segments]})


def _series_files(series_dir: Path, series_uid: str | None) -> list[str]:
    groups = scan_dicom_folder(series_dir)
    if not groups:
        raise DatasetLayoutError(f"{series_dir}: no DICOM files to reference")
    if series_uid and series_uid in groups:
        return groups[series_uid]
    if len(groups) > 1:
        raise DatasetLayoutError(f"{series_dir}: {len(groups)} series; name the one the mask belongs to")
    return next(iter(groups.values()))


def write_dicom_seg(
    mask_file: str | os.PathLike,
    series_dir: str | os.PathLike,
    class_names: Sequence[str],
    out_file: str | os.PathLike,
    series_uid: str | None = None,
    algorithm: str = "medfound",
) -> Path:
    """Write the class-index mask ``mask_file`` as a DICOM-SEG referencing the series in ``series_dir``.

    Parameters
    ----------
    mask_file : the mask in the series' geometry (NIfTI or any SimpleITK-readable file).
    series_dir : the source DICOM series (folder).
    class_names : class names, background first; mask value ``k`` is segment ``k``.
    out_file : the ``.dcm`` to write.
    series_uid : the source SeriesInstanceUID when the folder holds several series.
    algorithm : ``SegmentAlgorithmName`` of every segment.

    Raises
    ------
    ValueError
        The mask holds no class (a DICOM-SEG needs at least one segment with pixels) or a
        value beyond ``class_names``.
    """
    mask = sitk.Cast(sitk.ReadImage(str(mask_file)), sitk.sitkUInt16)
    if mask.GetDimension() != 3:
        raise ConfigError(f"{mask_file}: DICOM-SEG is written for volumes (3D masks), got {mask.GetDimension()}D")
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in _series_files(Path(series_dir), series_uid)]
    writer = pydicom_seg.MultiClassWriter(template=segment_template(class_names, algorithm),
                                          inplane_cropping=False, skip_empty_slices=False,
                                          skip_missing_segment=False)
    frame_of_reference = sources[0].get("FrameOfReferenceUID")
    # pydicom-seg 0.4.1 shares data elements between the source datasets and the SEG, then mints
    # a new FrameOfReferenceUID (overwriting the sources' too): it gets copies, and the SEG gets
    # the source's frame of reference back, since viewers overlay a SEG on a series only when
    # the two match (the round-trip test in tests/test_label_dicom_seg.py failed on both)
    dataset = writer.write(mask, [copy.deepcopy(s) for s in sources])
    if frame_of_reference:
        dataset.FrameOfReferenceUID = frame_of_reference
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(str(out), write_like_original=False)
    return out
