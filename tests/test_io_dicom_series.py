"""DicomSeriesReader: geometry equal to SimpleITK, HU preserved, series selection, bad series."""

from __future__ import annotations

import glob
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from _helpers import find_cause
from helpers_io import dicom_testfile, lung_crop, oblique_affine, sitk_series
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    Invertd,
    LoadImage,
    LoadImaged,
    SaveImaged,
    Spacingd,
)

from medfound.errors import ImageReadError, SeriesGeometryError, UnsupportedImageError
from medfound.io import DicomSeriesReader, read_series_header, write_dicom_series
from medfound.io._dicom import read_header, write_dataset
from medfound.io._dicom_header import SERIES_TAGS, scan_header

pytestmark = pytest.mark.dicom


def _read(path, **kw):
    r = DicomSeriesReader(**kw)
    return r.get_data(r.read(path))


@pytest.fixture(scope="module")
def lung():
    return lung_crop()


@pytest.fixture(scope="module")
def oblique_series(tmp_path_factory, lung):
    """The real CT crop written as an oblique series: uint16 + intercept -1024, shuffled file names."""
    vol, _ = lung
    folder = tmp_path_factory.mktemp("oblique")
    write_dicom_series(vol, folder, oblique_affine(), stored_dtype="uint16", rescale_intercept=-1024, order="shuffle")
    return folder, vol


def test_geometry_equals_simpleitk_and_hu_preserved(oblique_series):
    folder, vol = oblique_series
    arr, meta = _read(folder)
    ref = sitk_series(folder)
    assert arr.shape == ref.GetSize() == vol.shape
    np.testing.assert_allclose(meta["spacing"], ref.GetSpacing(), rtol=0, atol=1e-6)
    # metadata affine is RAS; SimpleITK's origin/direction are LPS
    lps = np.diag([-1.0, -1.0, 1.0])
    direction = np.asarray(ref.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(lps @ meta["affine"][:3, 3], ref.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(lps @ meta["affine"][:3, :3] / meta["spacing"], direction, atol=1e-6)
    # HU preserved exactly, and SimpleITK decodes the same voxels
    np.testing.assert_array_equal(arr, vol)
    import SimpleITK as sitk

    np.testing.assert_array_equal(sitk.GetArrayFromImage(ref).transpose(2, 1, 0), arr)
    np.testing.assert_allclose(meta["affine"], oblique_affine(), atol=1e-5)


@pytest.mark.slow  # the first ITK use in a process imports ITK (several seconds)
def test_affine_equals_monai_itkreader(oblique_series):
    folder, _ = oblique_series
    ours = LoadImage(reader=DicomSeriesReader(), image_only=True)(str(folder))
    itk = LoadImage(reader="ITKReader", image_only=True)(str(folder))
    np.testing.assert_allclose(ours.affine.numpy(), itk.affine.numpy(), atol=1e-5)
    assert torch.equal(ours, itk)
    assert ours.meta["filename_or_obj"] == str(folder)
    assert np.isnan(ours.meta["original_channel_dim"])


def test_descending_slices_sorted_along_normal(tmp_path, lung):
    """Slices written with a negative z step come back sorted along the normal, as SimpleITK sorts them."""
    vol, _ = lung
    aff = np.diag([0.7, 0.7, -3.0, 1.0])
    aff[:3, 3] = (5.0, 6.0, 100.0)
    write_dicom_series(vol, tmp_path, aff, order="position")
    arr, meta = _read(tmp_path)
    ref = sitk_series(tmp_path)
    import SimpleITK as sitk

    np.testing.assert_array_equal(arr, sitk.GetArrayFromImage(ref).transpose(2, 1, 0))
    np.testing.assert_array_equal(arr, vol[:, :, ::-1])
    assert meta["affine"][2, 2] == pytest.approx(3.0)
    assert meta["affine"][2, 3] == pytest.approx(100.0 - 3.0 * (vol.shape[2] - 1))


def test_rescale_applied_per_slice(tmp_path, lung):
    vol, aff = lung
    paths = write_dicom_series(vol, tmp_path, aff, stored_dtype="uint16", rescale_intercept=-1024)
    # re-encode one slice with its own slope: stored = (HU + 1024) * 2, slope 0.5
    ds = pydicom.dcmread(paths[5])
    stored = np.frombuffer(ds.PixelData, dtype="<u2").astype(np.int64) * 2
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.RescaleSlope = "0.5"
    write_dataset(ds, paths[5])
    arr, _ = _read(tmp_path)
    np.testing.assert_array_equal(arr, vol)


def test_several_series_largest_by_default_and_by_uid(tmp_path, lung):
    vol, aff = lung
    write_dicom_series(vol, tmp_path, aff, series_instance_uid="1.2.3.4.100", file_prefix="A")
    write_dicom_series(vol[:, :, :5] + 7, tmp_path, aff, series_instance_uid="1.2.3.4.200", file_prefix="B",
                       series_description="scout")  # fmt: skip
    with pytest.warns(UserWarning, match=r"2 DICOM series.*1\.2\.3\.4\.200 \(5 files, 'scout'\)"):
        arr, meta = _read(tmp_path)
    assert meta["SeriesInstanceUID"] == "1.2.3.4.100" and meta["other_series"] == 1
    np.testing.assert_array_equal(arr, vol)
    arr, meta = _read(tmp_path, series_uid="1.2.3.4.200")
    np.testing.assert_array_equal(arr, vol[:, :, :5] + 7)
    with pytest.raises(ImageReadError, match="no series with SeriesInstanceUID 9.9"):
        _read(tmp_path, series_uid="9.9")
    files = sorted(glob.glob(str(tmp_path / "*.dcm")))
    with pytest.raises(
        SeriesGeometryError, match=r"B00001\.dcm: belongs to series 1\.2\.3\.4\.200, the other files to 1\.2\.3\.4\.100"
    ):
        _read(files)  # an explicit list of files mixing two series
    arr, _ = _read(files, series_uid="1.2.3.4.200")
    np.testing.assert_array_equal(arr, vol[:, :, :5] + 7)


def test_missing_slice_detected(tmp_path, lung):
    vol, aff = lung
    paths = write_dicom_series(vol, tmp_path, aff)
    os.remove(paths[6])
    with pytest.warns(
        UserWarning, match=r"irregular slice spacing.*IM00006\.dcm and IM00008\.dcm.*1 slice\(s\) missing"
    ):
        arr, meta = _read(tmp_path)
    assert arr.shape[2] == vol.shape[2] - 1 and meta["missing_slices"] == 1 and meta["slice_spacing_irregular"]
    with pytest.raises(SeriesGeometryError, match="irregular slice spacing"):
        _read(tmp_path, on_irregular="raise")


def test_duplicate_position_and_mixed_size_raise(tmp_path, lung):
    vol, aff = lung
    paths = write_dicom_series(vol, tmp_path, aff, series_instance_uid="1.2.3.9")
    ds = pydicom.dcmread(paths[3])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    write_dataset(ds, tmp_path / "dup.dcm")
    with pytest.raises(SeriesGeometryError, match=r"same slice position as .*IM00004\.dcm|IM00004\.dcm.*same slice"):
        _read(tmp_path)
    os.remove(tmp_path / "dup.dcm")
    other = tmp_path.parent / (tmp_path.name + "_small")
    small = write_dicom_series(vol[:64, :64, :2], other, aff, series_instance_uid="1.2.3.9", file_prefix="S")
    shutil.copy(small[0], tmp_path / "S.dcm")
    with pytest.raises(SeriesGeometryError, match=r"S\.dcm: slice size 64x64 differs"):
        _read(tmp_path)


def test_compressed_slices_decode_like_uncompressed():
    unc, meta_u = _read([dicom_testfile("693_UNCR.dcm")])
    j2k, meta_j = _read([dicom_testfile("693_J2KR.dcm")])
    np.testing.assert_array_equal(unc, j2k)
    np.testing.assert_allclose(meta_u["affine"], meta_j["affine"])
    # the real CT slice is in HU: air around the body below -900, nothing below -1024 - 2048
    assert unc.min() < -900 and unc.max() > 500


def test_fast_header_scanner_matches_pydicom():
    import data_store

    files = glob.glob(str(Path(pydicom.__file__).parent / "data" / "test_files" / "**" / "*"), recursive=True)
    files += glob.glob(str(Path(data_store.__file__).parent / "data" / "*.dcm"))
    checked = 0
    for f in sorted(p for p in files if os.path.isfile(p)):
        fast = scan_header(f)
        if fast is None:
            continue
        ds, pix = read_header(f, [kw for kw, _ in SERIES_TAGS.values()])
        from medfound.io.dicom_series import _plain

        ref = {kw: _plain(ds[kw].value) for kw, _ in SERIES_TAGS.values() if kw in ds}
        assert fast[0] == ref, f
        assert fast[1] == pix, f
        checked += 1
    assert checked > 100  # implicit/explicit/big-endian files, nested and undefined-length sequences


def test_header_reader_falls_back_to_pydicom(tmp_path, lung):
    """A file without preamble is not scanned by the fast path but still read (through pydicom)."""
    vol, aff = lung
    paths = write_dicom_series(vol[:, :, :2], tmp_path, aff)
    raw = paths[0].read_bytes()
    assert raw[128:132] == b"DICM"
    nopre = tmp_path / "nopreamble.dcm"
    nopre.write_bytes(raw[132:])  # file meta + dataset, no preamble
    assert scan_header(str(nopre)) is None
    h, _ = read_series_header(str(paths[0]))
    assert h["Rows"] == vol.shape[1] and h["RescaleIntercept"] == 0.0


def test_bad_files_named_in_errors(tmp_path, lung):
    vol, aff = lung
    paths = write_dicom_series(vol, tmp_path, aff)
    data = paths[4].read_bytes()
    paths[4].write_bytes(data[: len(data) - 1000])  # truncated pixel data
    with pytest.raises(ImageReadError, match=r"IM00005\.dcm: .*(truncated|holds)"):
        _read(tmp_path)
    paths[4].write_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(ImageReadError, match=r"IM00005\.dcm: not a DICOM file"):
        _read(tmp_path)
    paths[4].write_bytes(data)
    ds = pydicom.dcmread(paths[0])
    del ds.PixelData
    del ds.Rows
    write_dataset(ds, tmp_path / "report.dcm")  # a non-image object in the folder is skipped, with a warning
    with pytest.warns(UserWarning, match=r"skipped 1 DICOM file\(s\) without image data: report\.dcm"):
        arr, _ = _read(tmp_path)
    np.testing.assert_array_equal(arr, vol)
    with pytest.raises(ImageReadError, match=r"report\.dcm: DICOM file without image attributes"):
        _read(paths[:3] + [tmp_path / "report.dcm"])  # named explicitly: an error
    with pytest.raises(UnsupportedImageError, match=r"3 samples per pixel"):
        _read([dicom_testfile("SC_rgb.dcm")])
    with pytest.raises(ImageReadError, match="no DICOM files"):
        (tmp_path / "empty").mkdir()
        _read(tmp_path / "empty")


def test_loadimaged_by_name_invert_and_save(tmp_path, oblique_series):
    folder, vol = oblique_series
    pipeline = Compose(
        [
            LoadImaged("image", reader="DicomSeriesReader"),
            EnsureChannelFirstd("image"),
            Spacingd("image", pixdim=(1.0, 1.0, 1.0), mode="bilinear"),
        ]
    )
    out = pipeline({"image": str(folder)})
    assert out["image"].shape[1:] != vol.shape
    inv = Invertd("image", transform=pipeline, orig_keys="image", nearest_interp=False)(out)
    assert inv["image"].shape[1:] == vol.shape
    np.testing.assert_allclose(inv["image"].affine.numpy(), oblique_affine(), atol=1e-4)
    # invert of a resampling is a resampling back: interior voxels close to the original HU
    err = np.abs(inv["image"][0].numpy() - vol)[5:-5, 5:-5, 2:-2]
    assert np.median(err) < 60
    loaded = LoadImaged("image", reader="DicomSeriesReader", ensure_channel_first=True)({"image": str(folder)})
    SaveImaged("image", output_dir=str(tmp_path), output_postfix="rt", print_log=False, separate_folder=False)(loaded)
    saved = glob.glob(str(tmp_path / "*rt.nii.gz"))
    assert len(saved) == 1
    back = LoadImage(reader="NibabelReader", image_only=True)(saved[0])
    np.testing.assert_array_equal(back.numpy(), vol)
    np.testing.assert_allclose(back.affine.numpy(), oblique_affine(), atol=1e-4)


def test_folders_stack_as_channels(tmp_path, lung):
    vol, aff = lung
    write_dicom_series(vol, tmp_path / "a", aff)
    write_dicom_series(vol * 0 + 5, tmp_path / "b", aff)
    arr, meta = _read([tmp_path / "a", tmp_path / "b"])
    assert arr.shape == (2,) + vol.shape and meta["original_channel_dim"] == 0
    np.testing.assert_array_equal(arr[1], 5)
    write_dicom_series(vol, tmp_path / "c", np.diag([1.0, 1.0, 2.0, 1.0]))
    with pytest.raises(SeriesGeometryError, match="geometry differs"):
        _read([tmp_path / "a", tmp_path / "c"])


def test_single_slice_and_threads_agree(oblique_series):
    folder, vol = oblique_series
    a1, _ = _read(folder, workers=1)
    a4, _ = _read(folder, workers=4)
    np.testing.assert_array_equal(a1, a4)
    one = min(glob.glob(str(folder / "*.dcm")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arr, meta = _read([one])
    assert arr.shape == vol.shape[:2] + (1,)
    assert meta["spacing"][2] == pytest.approx(2.5)


def test_output_dtype_exact_integers_or_float(tmp_path, lung):
    vol, aff = lung
    write_dicom_series(vol, tmp_path / "a", aff, stored_dtype="uint16", bits_stored=12, rescale_intercept=-1024)
    arr, _ = _read(tmp_path / "a")
    assert arr.dtype == np.int16 and arr.flags["C_CONTIGUOUS"]  # 0..4095 - 1024 fits int16, as ITK gives
    np.testing.assert_array_equal(arr, vol)
    write_dicom_series(vol, tmp_path / "b", aff, stored_dtype="uint16", rescale_intercept=-1024)
    assert _read(tmp_path / "b")[0].dtype == np.int32  # 16 bits stored: 65535 - 1024 needs int32
    write_dicom_series(vol, tmp_path / "c", aff, rescale_slope=0.5)
    arr, _ = _read(tmp_path / "c")
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr, vol)
    assert _read(tmp_path / "a", dtype="float32")[0].dtype == np.float32


def test_two_series_of_equal_size_are_a_choice_not_a_listing_order(tmp_path, lung):
    vol, aff = lung
    write_dicom_series(vol[:, :, :6], tmp_path, aff, series_instance_uid="1.2.3.4.300", file_prefix="B")
    write_dicom_series(vol[:, :, :6] + 5, tmp_path, aff, series_instance_uid="1.2.3.4.200", file_prefix="A")
    tied = r"2 DICOM series with 6 files each.*1\.2\.3\.4\.200, 1\.2\.3\.4\.300"
    with pytest.raises(SeriesGeometryError, match=tied):
        _read(tmp_path)
    arr, meta = _read(tmp_path, series_uid="1.2.3.4.300")
    assert meta["SeriesInstanceUID"] == "1.2.3.4.300"
    np.testing.assert_array_equal(arr, vol[:, :, :6])


def test_load_image_with_this_reader_never_falls_back_to_itk_on_a_refused_series(tmp_path, lung):
    """MONAI's LoadImage tries its other readers when ``read`` fails: ITKReader would read the
    refused series anyway (here: one of two equal series, picked by ITK's own rule)."""
    from monai.transforms import LoadImage

    vol, aff = lung
    write_dicom_series(vol[:, :, :6], tmp_path, aff, series_instance_uid="1.2.3.4.300", file_prefix="B")
    write_dicom_series(vol[:, :, :6] + 5, tmp_path, aff, series_instance_uid="1.2.3.4.200", file_prefix="A")
    with pytest.raises(Exception) as info:
        LoadImage(reader=DicomSeriesReader(), image_only=True)(str(tmp_path))
    assert "choose one with series_uid" in str(find_cause(info.value, SeriesGeometryError))
