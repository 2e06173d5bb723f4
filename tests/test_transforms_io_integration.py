"""The transforms through medfound's own readers (``medfound.io``): the metadata contract end to end.

These tests need ``medfound.io`` (the readers); they are skipped in a tree that does not have it yet.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged
from PIL import Image

io = pytest.importorskip("medfound.io")
if not all(hasattr(io, name) for name in ("RadiographReader", "PhotoReader", "MicroscopyReader")):
    pytest.skip("medfound.io has no RadiographReader/PhotoReader/MicroscopyReader yet", allow_module_level=True)

from medfound.transforms.presets import get_preset  # noqa: E402
from medfound.transforms.xray import XRayWindow, XRayWindowd  # noqa: E402

pydicom = pytest.importorskip("pydicom")


def _write_cr(path, stored: np.ndarray) -> None:
    """A CR DICOM file like RG1_UNCR.dcm (MONOCHROME1, 15 bits, window 15000/30000), from its stored values."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientName, ds.PatientID = "Anonymous", "0"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 14, 0
    ds.WindowCenter, ds.WindowWidth = 15000, 30000
    ds.PixelSpacing = [0.8, 0.8]
    ds.PixelData = stored.astype(np.uint16).tobytes()
    if hasattr(ds, "save_as") and int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


@pytest.fixture(scope="module")
def chest(data_dir, tmp_path_factory):
    stored = tifffile.imread(data_dir / "xray" / "rg1_uncr_stored_1in8.tif")
    path = tmp_path_factory.mktemp("cr") / "chest.dcm"
    _write_cr(str(path), stored)
    meta = json.loads((data_dir / "xray" / "rg1_uncr_stored_1in8.json").read_text())
    return path, stored, meta


@pytest.mark.dicom
def test_radiograph_reader_metadata_drives_the_window(chest):
    path, stored, meta = chest
    loaded = LoadImaged("image", reader="medfound.io.RadiographReader", output="modality", image_only=True,
                        ensure_channel_first=True)({"image": str(path)})["image"]
    for key in ("Modality", "PhotometricInterpretation", "VOILUTFunction", "WindowCenter", "WindowWidth",
                "intensity_units", "invert_for_display", "pixel_spacing_source"):
        assert key in loaded.meta, key
    assert loaded.meta["intensity_units"] == "modality" and bool(loaded.meta["invert_for_display"]) is True
    out = XRayWindowd("image", window="file")({"image": loaded})["image"]
    # the same numbers as windowing the stored values with the contract's metadata set by hand
    reference = XRayWindow("file")(MetaTensor(torch.from_numpy(stored.astype(np.float32))[None], meta=meta))
    rows_first = out[0].T if out.shape[1:] == stored.shape[::-1] else out[0]
    np.testing.assert_allclose(rows_first.numpy(), reference[0].numpy(), atol=1e-6)
    assert rows_first[40:110, 108:124].mean() > rows_first[60:110, 45:85].mean() + 0.2  # mediastinum over lung
    # a reader that applies the window itself ("display") gives the same image; XRayWindow then only clips
    shown = LoadImaged("image", reader="medfound.io.RadiographReader", output="display", image_only=True,
                       ensure_channel_first=True)({"image": str(path)})["image"]
    again = XRayWindow("file")(shown)
    np.testing.assert_allclose(again.numpy(), out.numpy(), atol=1e-5)


@pytest.mark.dicom
def test_xray_preset_through_the_reader_is_rows_first(chest):
    path, stored, meta = chest
    out = get_preset("xray", mode="infer", spatial_size=256, keys=("image",))({"image": str(path)})["image"]
    assert out.shape == (3, 256, 256)
    # 245 x 231 stored: letterboxed along the columns, so the padding is at the left and right
    assert float(out[:, :, :5].max()) == 0.0 and float(out[:, :, -5:].max()) == 0.0 and float(out[0, 128, 128]) > 0
    assert float(out[:, :5, 20:230].min()) > 0.0  # no padding at the top: the rows fill the height


def test_photo_and_microscopy_presets_through_the_readers(data_dir):
    rgb = np.array(Image.open(data_dir / "fundus" / "retina_512.jpg"))
    out = get_preset("fundus", mode="infer", spatial_size=512, keys=("image",), fov_crop=False)(
        {"image": str(data_dir / "fundus" / "retina_512.jpg")})["image"]
    np.testing.assert_allclose(out.numpy(), rgb.transpose(2, 0, 1) / 255.0, atol=1e-6)
    files = {"image": str(data_dir / "microscopy" / "nuclei_image.tif"),
             "instances": str(data_dir / "microscopy" / "nuclei_instances.tif")}
    det = get_preset("microscopy", mode="infer", keys=("image", "instances"), label_type="detection")(files)
    assert int(det["count"]) == 125
    stored = tifffile.imread(files["instances"])
    first = int(det["instances"].unique()[1])
    rows, cols = np.nonzero(stored == first)
    assert det["box"][0].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
