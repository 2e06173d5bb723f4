"""RadiographReader: DICOM grayscale pipeline against real files and the standard's formulas."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
import torch
from helpers_io import dicom_testfile
from monai.transforms import LoadImage, LoadImaged
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medfound.errors import ConfigError, ImageReadError, UnsupportedImageError
from medfound.io import RadiographReader, window_to_unit
from medfound.io._dicom import PYDICOM_MAJOR, decode_frame, write_dataset
from medfound.transforms.xray import apply_voi_window

if PYDICOM_MAJOR >= 3:
    from pydicom.pixels import apply_modality_lut, apply_windowing
else:  # the CI's pydicom 2.4 run
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_windowing

pytestmark = pytest.mark.dicom


def voi_window(x, center, width, function="LINEAR"):
    """The window of the metadata path (``XRayWindow``) on a numpy array, as the reference of the reader's."""
    return apply_voi_window(torch.as_tensor(np.asarray(x, dtype=np.float64)), center, width, function).numpy()


def _read(path, **kw):
    r = RadiographReader(**kw)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no usable pixel spacing")
        return r.get_data(r.read(path))


def _write_dx(path, pixels, **attrs):
    """A minimal DX image (MONOCHROME2 unless told otherwise) holding ``pixels`` (rows, cols) uint16."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    write_dataset(ds, path)
    return str(path)


# -- real files -------------------------------------------------------------------------------------
def test_chest_cr_bone_and_mediastinum_brighter_than_lung():
    """RG1: CR, MONOCHROME1, stored window 15000/30000, PixelSpacing [0, 0]."""
    arr, meta = _read(dicom_testfile("RG1_UNCR.dcm"))
    assert arr.shape == (1841, 1955) and arr.dtype == np.float32  # (x, y) = (Columns, Rows)
    assert 0.0 <= arr.min() and arr.max() <= 1.0

    def roi(x0, x1, y0, y1):
        return float(arr[x0:x1, y0:y1].mean())

    lungs = max(roi(380, 560, 700, 900), roi(1280, 1460, 700, 900))
    assert roi(880, 960, 1000, 1200) > lungs + 0.2  # mediastinum
    assert roi(880, 960, 300, 450) > lungs + 0.15  # spine above the heart
    assert meta["PhotometricInterpretation"] == "MONOCHROME1" and meta["Modality"] == "CR"
    assert meta["WindowCenter"] == [15000.0] and meta["WindowWidth"] == [30000.0]
    assert meta["VOILUTFunction"] == "LINEAR" and meta["voi_applied"] == "window"
    assert meta["intensity_units"] == "display" and meta["invert_for_display"] is False


def test_chest_cr_modality_output_and_contract_keys():
    disp, _ = _read(dicom_testfile("RG1_UNCR.dcm"))
    mod, meta = _read(dicom_testfile("RG1_UNCR.dcm"), output="modality")
    raw = pydicom.dcmread(dicom_testfile("RG1_UNCR.dcm")).pixel_array
    np.testing.assert_array_equal(mod, raw.T.astype(np.float32))  # no rescale stored: modality = stored
    assert meta["intensity_units"] == "modality" and meta["invert_for_display"] is True
    # what a "window from the file" transform does with the metadata gives the display output back
    c, w = meta["WindowCenter"][0], meta["WindowWidth"][0]
    redone = 1.0 - voi_window(mod, c, w, meta["VOILUTFunction"])
    np.testing.assert_allclose(redone, disp, atol=1e-6)


def test_spacing_zero_falls_back_with_warning():
    r = RadiographReader()
    with pytest.warns(
        UserWarning,
        match=r"RG1_UNCR\.dcm: no usable pixel spacing \(PixelSpacing \[0(\.000)?, 0(\.000)?\]\); using 1\.0 mm",
    ):
        _, meta = r.get_data(r.read(dicom_testfile("RG1_UNCR.dcm")))
    assert meta["pixel_spacing_source"] == "default"
    np.testing.assert_array_equal(meta["affine"], np.eye(3))


def test_jpeg2000_lossless_identical_and_lossy_close():
    unc, _ = _read(dicom_testfile("RG1_UNCR.dcm"), output="modality")
    j2k, _ = _read(dicom_testfile("RG1_J2KR.dcm"), output="modality")
    np.testing.assert_array_equal(unc, j2k)
    lossy, _ = _read(dicom_testfile("RG1_J2KI.dcm"))
    disp, _ = _read(dicom_testfile("RG1_UNCR.dcm"))
    diff = np.abs(lossy - disp)
    assert 0 < diff.mean() < 0.005 and diff.max() < 0.05


def test_rle_and_jpeg2000_equal_their_uncompressed_twins():
    base, _ = _read(dicom_testfile("MR_small.dcm"), output="modality")
    for twin in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"):
        other, _ = _read(dicom_testfile(twin), output="modality")
        np.testing.assert_array_equal(base, other)
    ct, _ = _read(dicom_testfile("693_UNCR.dcm"), output="modality")
    ct_j2k, _ = _read(dicom_testfile("693_J2KR.dcm"), output="modality")
    np.testing.assert_array_equal(ct, ct_j2k)


def test_jpeg_lossless_matches_gdcm():
    """JPEG lossless (process 14) decoded by pydicom's plugin equals SimpleITK/GDCM's decoding."""
    import SimpleITK as sitk

    for name in ("JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"):
        ours, _ = _read(dicom_testfile(name), output="modality")
        ref = sitk.GetArrayFromImage(sitk.ReadImage(dicom_testfile(name))).squeeze().astype(np.float32)
        np.testing.assert_array_equal(ours, ref.T)


def test_voi_lut_sequence_applied_from_its_table():
    path = dicom_testfile("vlut_04.dcm")
    arr, meta = _read(path)
    ds = pydicom.dcmread(path)
    item = ds.VOILUTSequence[0]
    n, first, bits = (int(v) for v in item.LUTDescriptor)
    table = np.asarray(item.LUTData, dtype=np.float64)
    stored = ds.pixel_array.astype(np.int64)
    expected = table[np.clip(stored - first, 0, n - 1)] / (2**bits - 1)
    np.testing.assert_allclose(arr, expected.T, atol=1e-7)
    assert meta["voi_applied"] == "lut" and len(np.unique(arr)) == 256


def test_voi_lut_sequence_nonlinear_table_and_first_mapped(tmp_path):
    """The real file's LUT is linear (x * 257, 16 bits): give it a curved table that starts at input 10."""
    ds = pydicom.dcmread(dicom_testfile("vlut_04.dcm"))
    table = (np.sqrt(np.arange(200) / 199.0) * 4095).astype(int)
    item = ds.VOILUTSequence[0]
    item.LUTDescriptor = [200, 10, 12]
    item.LUTData = table.tolist()
    path = tmp_path / "curved.dcm"
    write_dataset(ds, path)
    arr, _ = _read(path)
    stored = ds.pixel_array.astype(np.int64)
    expected = table[np.clip(stored - 10, 0, 199)] / 4095.0
    np.testing.assert_allclose(arr, expected.T, atol=1e-6)
    assert arr[stored.T <= 10].max() == 0.0 and arr[stored.T >= 209].min() == 1.0


def test_modality_lut_sequence_applied_from_its_table():
    path = dicom_testfile("mlut_18.dcm")
    arr, _ = _read(path, output="modality")
    ds = pydicom.dcmread(path)
    item = ds.ModalityLUTSequence[0]
    n, first, _ = (int(v) for v in item.LUTDescriptor)
    if first >= 2**15:  # signed pixel data: the first mapped value is signed
        first -= 2**16
    table = np.asarray(item.LUTData, dtype=np.float64)
    # 12 bits stored in 16, signed: bit 11 is the sign, the bits above it are not pixel data
    raw = np.frombuffer(ds.PixelData, dtype="<i2").reshape(ds.Rows, ds.Columns)
    stored = ((raw << 4) >> 4).astype(np.int64)
    assert stored.min() == -2048 and stored.max() == 2047
    np.testing.assert_array_equal(arr, table[np.clip(stored - first, 0, n - 1)].T)


PYDICOM_PARITY_FILES = ["RG1_UNCR.dcm", "RG3_UNCR.dcm", "RG1_J2KI.dcm", "MR_small.dcm", "693_UNCR.dcm",
                        "CT_small.dcm", "JPEG-LL.dcm", "mlut_18.dcm", "vlut_04.dcm"]


@pytest.mark.parametrize("name", PYDICOM_PARITY_FILES)
def test_modality_and_window_equal_pydicom_on_real_files(name):
    """The reader's modality values are pydicom's ``apply_modality_lut`` (float32), its stored window
    pydicom's ``apply_windowing`` mapped to [0, 1], and the transforms' window on the reader's
    metadata gives the same display values."""
    path = dicom_testfile(name)
    ds = pydicom.dcmread(path)
    stored = decode_frame(ds, path)  # = ds.pixel_array, sign-extended also with pydicom 2.4 (mlut_18: 12 of 16 bits)
    ref = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    mod, meta = _read(path, output="modality")
    np.testing.assert_array_equal(mod, ref.T)
    if not meta["WindowCenter"]:
        return
    disp, dmeta = _read(path, voi="window")
    lo, hi = apply_windowing(np.array([-np.inf, np.inf]), ds)
    expected = (apply_windowing(ref, ds) - lo) / (hi - lo)
    if meta["invert_for_display"]:
        expected = 1.0 - expected
    np.testing.assert_allclose(disp, expected.T, atol=1e-6)
    c, w = meta["WindowCenter"][0], meta["WindowWidth"][0]
    again = voi_window(mod, c, w, meta["VOILUTFunction"])
    np.testing.assert_allclose(1.0 - again if meta["invert_for_display"] else again, disp, atol=1e-6)


def test_voi_lut_with_8_bit_entries(tmp_path):
    """A 12-bit image with a 4096-entry, 8-bit VOI LUT (the usual display LUT). pydicom's ``apply_voi``
    (2.4.4 and 3.0.2) keeps the table index in uint8, the type of the entries, so inputs above 255
    wrap around (input 300 reads entry 44); the reader looks the table up itself and must not."""
    ramp = np.tile(np.arange(0, 4096, 8, dtype=np.uint16), (2, 1))  # 2 x 512
    table = (np.sqrt(np.arange(4096) / 4095.0) * 255).astype(int)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4096, 0, 8])
    item.add_new("LUTData", "US", table.tolist())
    path = _write_dx(tmp_path / "lut8.dcm", ramp, VOILUTSequence=[item])
    arr, meta = _read(path)
    assert meta["voi_applied"] == "lut"
    np.testing.assert_allclose(arr, (table[ramp] / 255.0).T, atol=1e-7)
    assert np.all(np.diff(arr[:, 0]) >= 0)  # monotone, as the table


# -- the standard's formulas ----------------------------------------------------------------------
def test_voi_functions_hand_computed():
    """PS3.3 C.11.2.1.2: values worked out by hand from the formulas (y in [0, 1]), for the reader's
    window (pydicom's ``apply_windowing``, rescaled) and the transforms' (``apply_voi_window``)."""

    def both(x, c, w, fn):
        ds = Dataset()
        ds.PhotometricInterpretation, ds.BitsStored, ds.PixelRepresentation = "MONOCHROME2", 12, 0
        ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = c, w, fn
        reader, transform = window_to_unit(np.asarray(x), ds), voi_window(x, c, w, fn)
        np.testing.assert_allclose(reader, transform, atol=1e-6)
        return reader

    x = np.array([-1.0, -0.5, 0.0, 49.5, 99.0, 99.5, 100.0])
    np.testing.assert_allclose(both(x, 50, 101, "LINEAR"), [0, 0, 0.005, 0.5, 0.995, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(both(np.array([9.0, 9.5, 9.6, 10.0]), 10, 1, "LINEAR"), [0, 0, 1, 1])
    x = np.array([-10.0, 0.0, 0.1, 25.0, 50.0, 100.0, 100.1])
    np.testing.assert_allclose(both(x, 50, 100, "LINEAR_EXACT"), [0, 0, 0.001, 0.25, 0.5, 1.0, 1.0], atol=1e-6)
    x = np.array([0.0, 50.0, 75.0, 1e6])
    np.testing.assert_allclose(both(x, 50, 100, "SIGMOID"), [0.11920292, 0.5, 0.73105858, 1.0], atol=1e-7)
    with pytest.raises(ConfigError, match="width >= 1"):
        voi_window(x, 50, 0.5, "LINEAR")
    with pytest.raises(ConfigError, match="VOI LUT function"):
        voi_window(x, 50, 10, "CUBIC")


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_stored_voi_function_and_window_index(tmp_path, function):
    ramp = np.tile(np.arange(0, 4000, 20, dtype=np.uint16), (3, 1))  # 3 x 200
    path = _write_dx(tmp_path / "dx.dcm", ramp, WindowCenter=["1000", "2500"], WindowWidth=["400", "1000"],
                     VOILUTFunction=function, RescaleSlope="2", RescaleIntercept="-100")  # fmt: skip
    modality = ramp.astype(np.float64) * 2 - 100
    for index, (c, w) in enumerate([(1000, 400), (2500, 1000)]):
        arr, meta = _read(path, window_index=index)
        np.testing.assert_allclose(arr, voi_window(modality, c, w, function).T, atol=1e-6)
        assert meta["VOILUTFunction"] == function and meta["WindowCenter"] == [1000.0, 2500.0]
    # a hand-computed point: stored 500 -> modality 900, first window (1000, 400)
    arr, _ = _read(path, window_index=0)
    expected = {"LINEAR": (900 - 999.5) / 399 + 0.5, "LINEAR_EXACT": 0.25, "SIGMOID": 1 / (1 + np.e)}[function]
    assert arr[25, 0] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ConfigError, match=r"dx\.dcm: window_index 2, the file stores 2 window"):
        _read(path, window_index=2)


@pytest.mark.parametrize(
    ("photometric", "shape", "inverted"),
    [("MONOCHROME2", None, False), ("MONOCHROME2", "IDENTITY", False), ("MONOCHROME2", "INVERSE", True),
     ("MONOCHROME1", None, True), ("MONOCHROME1", "INVERSE", True), ("MONOCHROME1", "IDENTITY", True)],
)  # fmt: skip
def test_polarity_combinations(tmp_path, photometric, shape, inverted):
    """Higher output = brighter. MONOCHROME1 with INVERSE is one inversion (DX: INVERSE "shall be used
    if MONOCHROME1", PS3.3 C.8.11.7), not two."""
    ramp = np.tile(np.arange(0, 4000, 40, dtype=np.uint16), (2, 1))
    attrs = {"PhotometricInterpretation": photometric, "WindowCenter": "2000", "WindowWidth": "4000"}
    if shape:
        attrs["PresentationLUTShape"] = shape
    path = _write_dx(tmp_path / "p.dcm", ramp, **attrs)
    arr, meta = _read(path)
    plain = voi_window(ramp.astype(np.float64), 2000, 4000).T
    np.testing.assert_allclose(arr, 1.0 - plain if inverted else plain, atol=1e-6)
    _, mmeta = _read(path, output="modality")
    assert mmeta["invert_for_display"] is inverted and meta["invert_for_display"] is False
    forced, _ = _read(path, invert=False)
    np.testing.assert_allclose(forced, plain, atol=1e-6)


def test_spacing_sources(tmp_path):
    px = np.zeros((4, 6), dtype=np.uint16)
    p1 = _write_dx(tmp_path / "a.dcm", px, ImagerPixelSpacing=["0.2", "0.15"])
    _, meta = _read(p1)
    assert meta["pixel_spacing_source"] == "ImagerPixelSpacing"
    np.testing.assert_allclose(meta["affine"], np.diag([0.15, 0.2, 1.0]))  # x = column spacing
    p2 = _write_dx(tmp_path / "b.dcm", px, ImagerPixelSpacing=["0.2", "0.2"], PixelSpacing=["0.18", "0.17"])
    _, meta = _read(p2)
    assert meta["pixel_spacing_source"] == "PixelSpacing" and meta["spacing"].tolist() == [0.17, 0.18]
    _, meta = _read(p2, spacing_tags=("ImagerPixelSpacing", "PixelSpacing"))
    assert meta["pixel_spacing_source"] == "ImagerPixelSpacing"
    p3 = _write_dx(tmp_path / "c.dcm", px, PixelSpacing=["0", "0"], ImagerPixelSpacing=["0.1", "0.1"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a usable second attribute: no warning
        _, meta = RadiographReader().get_data(RadiographReader().read(p3))
    assert meta["pixel_spacing_source"] == "ImagerPixelSpacing"


def test_voi_none_and_auto_fallback(tmp_path):
    ramp = np.tile(np.arange(100, 1100, 10, dtype=np.uint16), (2, 1))
    path = _write_dx(tmp_path / "nowin.dcm", ramp)
    arr, meta = _read(path)
    assert meta["voi_applied"] == "minmax" and arr.min() == 0.0 and arr.max() == 1.0
    np.testing.assert_allclose(arr[:, 0], np.linspace(0, 1, 100), atol=1e-6)
    with pytest.raises(ImageReadError, match=r"nowin\.dcm: voi='window' but the file stores no WindowCenter"):
        _read(path, voi="window")
    with pytest.raises(ImageReadError, match=r"nowin\.dcm: voi='lut' but the file has no VOI LUT Sequence"):
        _read(path, voi="lut")


def test_loadimage_by_name_metadata_and_channel_first():
    img = LoadImage(reader="RadiographReader", ensure_channel_first=True, voi="window")(dicom_testfile("RG3_UNCR.dcm"))
    assert tuple(img.shape) == (1, 1760, 1760)
    assert img.meta["WindowCenter"] == [550.0] and img.meta["intensity_units"] == "display"
    d = LoadImaged("image", reader="RadiographReader", output="modality")({"image": dicom_testfile("MR_small.dcm")})
    assert d["image"].meta["invert_for_display"] is False and d["image"].meta["WindowCenter"] == [600.0]


# -- bad input ------------------------------------------------------------------------------------------
def test_bad_input_errors_name_the_file(tmp_path):
    with pytest.raises(UnsupportedImageError, match=r"SC_rgb\.dcm: photometric interpretation 'RGB' is not supported"):
        _read(dicom_testfile("SC_rgb.dcm"))
    text = tmp_path / "notes.dcm"
    text.write_text("this is not DICOM\n" * 50)
    with pytest.raises(ImageReadError, match=r"notes\.dcm: not a DICOM file"):
        _read(text)
    good = _write_dx(tmp_path / "cut.dcm", np.zeros((64, 64), dtype=np.uint16))
    with open(good, "rb") as f:
        data = f.read()
    with open(good, "wb") as f:
        f.write(data[:-2000])
    with pytest.raises(ImageReadError, match=r"cut\.dcm: "):
        _read(good)
    ds = pydicom.dcmread(dicom_testfile("rtplan.dcm"))
    assert "PixelData" not in ds
    with pytest.raises(ImageReadError, match=r"rtplan\.dcm: the DICOM file has no pixel data"):
        _read(dicom_testfile("rtplan.dcm"))
    with pytest.raises(ConfigError, match="output must be one of"):
        RadiographReader(output="hdr")


def test_spatial_transforms_invert_and_save(tmp_path):
    """The explicit 2D affine works downstream: resample, invert back, save and read again."""
    from monai.transforms import Compose, Invertd, Resized, SaveImaged, Spacingd

    path = _write_dx(tmp_path / "chest.dcm", (np.arange(120 * 90).reshape(120, 90) % 4000).astype(np.uint16),
                     ImagerPixelSpacing=["0.2", "0.25"], WindowCenter="2000", WindowWidth="4000")  # fmt: skip
    pre = Compose([LoadImaged("image", reader="RadiographReader", ensure_channel_first=True),
                   Spacingd("image", pixdim=(0.5, 0.5)), Resized("image", (64, 64))])  # fmt: skip
    out = pre({"image": path})
    assert tuple(out["image"].shape) == (1, 64, 64)
    inv = Invertd("image", transform=pre, orig_keys="image")(out)
    assert tuple(inv["image"].shape) == (1, 90, 120)
    np.testing.assert_allclose(inv["image"].affine.numpy(), np.diag([0.25, 0.2, 1.0]), atol=1e-6)
    loaded = LoadImaged("image", reader="RadiographReader", ensure_channel_first=True)({"image": path})
    SaveImaged("image", output_dir=str(tmp_path), output_postfix="rt", separate_folder=False, print_log=False)(loaded)
    back = LoadImage(reader="NibabelReader", image_only=True)(str(tmp_path / "chest_rt.nii.gz"))
    np.testing.assert_allclose(back.numpy(), loaded["image"][0].numpy(), atol=1e-6)
    np.testing.assert_allclose(back.pixdim.numpy()[:2], [0.25, 0.2], atol=1e-6)
