"""Reader registration: names resolve, plain LoadImage is unchanged, opt-in preference, bundle configs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from helpers_io import IO_DATA, dicom_testfile, lung_crop
from monai.bundle import ConfigParser
from monai.transforms import LoadImage
from monai.transforms.io.array import SUPPORTED_READERS

import medfound.io
from medfound.io import (
    MEDFOUND_READERS,
    DicomSeriesReader,
    MicroscopyReader,
    PhotoReader,
    RadiographReader,
    register_readers,
    unregister_readers,
    write_dicom_series,
)


@pytest.fixture
def restore_registry():
    yield
    register_readers(prefer=False)


def _load_plain(path):
    img = LoadImage(image_only=True)(path)
    return img.numpy(), {k: v for k, v in img.meta.items() if k != "filename_or_obj"}


@pytest.mark.dicom
@pytest.mark.slow  # the first ITK use in a process imports ITK (several seconds)
def test_plain_loadimage_unchanged_by_import(tmp_path, restore_registry):
    """Auto-selection with medfound registered equals auto-selection without it, file for file."""
    vol, aff = lung_crop()
    series = tmp_path / "ct"
    write_dicom_series(vol[:16, :16, :3], series, aff)
    files = [str(IO_DATA / "he_histology.jpg"), str(IO_DATA / "nuclei_crop.tif"), str(IO_DATA / "lung1_ct_crop.nii.gz"),
             dicom_testfile("MR_small.dcm"), str(series)]  # fmt: skip
    with_medfound = [_load_plain(f) for f in files]
    unregister_readers()
    assert not set(MEDFOUND_READERS) & set(SUPPORTED_READERS)
    without = [_load_plain(f) for f in files]
    for f, (a, ma), (b, mb) in zip(files, with_medfound, without):
        np.testing.assert_array_equal(a, b, err_msg=f)
        assert set(ma) == set(mb), f
        assert "intensity_units" not in ma and "pixel_size_source" not in ma, f


def test_names_resolve_and_kwargs_reach_the_reader():
    for name, cls in [("DicomSeriesReader", DicomSeriesReader), ("RadiographReader", RadiographReader),
                      ("MicroscopyReader", MicroscopyReader), ("PhotoReader", PhotoReader)]:  # fmt: skip
        loader = LoadImage(reader=name)
        assert isinstance(loader.readers[-1], cls)
    loader = LoadImage(reader="RadiographReader", output="modality", window_index=1)
    assert loader.readers[-1].output == "modality" and loader.readers[-1].window_index == 1
    dotted = LoadImage(reader="medfound.io.PhotoReader")  # a dotted path works without registration too
    assert isinstance(dotted.readers[-1], PhotoReader)


@pytest.mark.dicom
def test_prefer_opt_in_routes_files_to_medfound(tmp_path, restore_registry):
    register_readers(prefer=True)
    assert list(SUPPORTED_READERS)[-len(MEDFOUND_READERS) :] == list(MEDFOUND_READERS)
    cr = LoadImage(image_only=True)(dicom_testfile("RG3_UNCR.dcm"))
    assert cr.meta["intensity_units"] == "display" and 0 <= float(cr.min()) and float(cr.max()) <= 1
    photo = LoadImage(image_only=True)(str(IO_DATA / "he_histology.jpg"))
    assert tuple(photo.shape) == (3, 500, 300)  # channel-first without EnsureChannelFirst
    tif = LoadImage(image_only=True)(str(IO_DATA / "nuclei_crop.tif"))
    assert tif.meta["pixel_size_source"] == "default"
    vol, aff = lung_crop()
    write_dicom_series(vol[:16, :16, :3], tmp_path, aff)
    ct = LoadImage(image_only=True)(str(tmp_path))
    assert ct.meta["num_slices"] == 3
    mr = LoadImage(image_only=True)(dicom_testfile("MR_small.dcm"))  # a CT/MR file is a one-slice series
    assert tuple(mr.shape) == (64, 64, 1)
    nii = LoadImage(image_only=True)(str(IO_DATA / "lung1_ct_crop.nii.gz"))  # not claimed: MONAI's reader
    assert "num_slices" not in nii.meta
    register_readers(prefer=False)
    assert list(SUPPORTED_READERS)[: len(MEDFOUND_READERS)] == list(MEDFOUND_READERS)


def test_bundle_config_targets_with_plain_json(tmp_path):
    config = {
        "load": {"_target_": "LoadImaged", "keys": "image", "reader": "MicroscopyReader", "ensure_channel_first": True,
                 "roi_start": [10, 20], "roi_end": [74, 84], "pixel_size": [0.5, 0.5]},
        "reader": {"_target_": "medfound.io.RadiographReader", "output": "modality", "voi": "none",
                   "spacing_tags": ["ImagerPixelSpacing"], "default_spacing": 0.2},
        "check": {"_target_": "medfound.transforms.CheckLabelMatchd", "keys": ["label"], "image_key": "image",
                  "atol": 0.01},
        "safe": {
            "_target_": "medfound.io.SafeLoadImaged",
            "keys": ["image"],
            "reader": "PhotoReader",
            "check_finite": True,
        },
        "skip": {
            "_target_": "medfound.io.SkipBadCases",
            "dataset": [1, 2, 3],
            "report_path": str(tmp_path / "r.jsonl"),
        },
        "series": {"_target_": "medfound.io.DicomSeriesReader", "on_irregular": "raise", "workers": 2},
    }  # fmt: skip
    parser = ConfigParser(config)
    out = parser.get_parsed_content("load")({"image": str(IO_DATA / "nuclei_crop.tif")})
    assert tuple(out["image"].shape) == (1, 64, 64)
    np.testing.assert_allclose(out["image"].affine.numpy()[:2, 2], [5.0, 10.0])
    assert parser.get_parsed_content("reader").spacing_tags == ("ImagerPixelSpacing",)
    assert parser.get_parsed_content("check").image_key == "image"
    photo = parser.get_parsed_content("safe")({"image": str(IO_DATA / "he_histology.jpg")})
    assert tuple(photo["image"].shape) == (3, 500, 300)
    assert len(parser.get_parsed_content("skip")) == 3
    assert parser.get_parsed_content("series").on_irregular == "raise"


def test_readers_and_loaders_pickle():
    """DataLoader workers started with spawn pickle the transforms; readers must survive it."""
    objects = (
        LoadImage(reader="RadiographReader"),
        DicomSeriesReader(series_uid="1.2"),
        MicroscopyReader(channels=[0]),
        PhotoReader(pixel_size=0.1),
        medfound.io.SafeLoadImaged("image", reader="PhotoReader"),
    )
    for obj in objects:
        clone = pickle.loads(pickle.dumps(obj))
        assert type(clone) is type(obj)
    img = pickle.loads(pickle.dumps(LoadImage(reader="PhotoReader")))(str(IO_DATA / "he_histology.jpg"))
    assert isinstance(img, torch.Tensor)


def test_nvimgcodec_notice_is_silenced_and_nothing_else(caplog):
    """MONAI logs "nvImageCodec is not available" at every LoadImage construction (named reader or not)
    when the optional GPU decoder is missing; importing medfound.io drops that record, and only it."""
    import logging

    from medfound.io.registry import _NVIMGCODEC_LOGGER, _NvImageCodecNotice, quiet_nvimgcodec_notice

    logger = logging.getLogger(_NVIMGCODEC_LOGGER)
    quiet_nvimgcodec_notice()
    quiet_nvimgcodec_notice()  # idempotent: one filter
    assert sum(isinstance(f, _NvImageCodecNotice) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=_NVIMGCODEC_LOGGER):
        LoadImage(reader="PILReader")
        logger.warning("another message from the plugin module")
    messages = [r.getMessage() for r in caplog.records if r.name == _NVIMGCODEC_LOGGER]
    assert messages == ["another message from the plugin module"]
    from monai.data.nvimgcodec_pydicom_plugin import is_nvimgcodec_available

    if not is_nvimgcodec_available():  # without the filter the notice is there
        filters = list(logger.filters)
        for f in filters:
            logger.removeFilter(f)
        try:
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger=_NVIMGCODEC_LOGGER):
                LoadImage(reader="PILReader")
            assert any(r.getMessage().startswith("nvImageCodec is not available") for r in caplog.records)
        finally:
            for f in filters:
                logger.addFilter(f)
