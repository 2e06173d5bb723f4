"""X-ray transforms: DICOM VOI functions against the standard's formulas, metadata contract, a real chest CR."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor

from medfound.errors import ConfigError, InvalidImageError
from medfound.transforms.xray import XRayInvert, XRayInvertd, XRayWindow, XRayWindowd, apply_voi_window


def _radiograph(values, **meta) -> MetaTensor:
    base = {"Modality": "CR", "PhotometricInterpretation": "MONOCHROME2", "VOILUTFunction": "LINEAR",
            "WindowCenter": [], "WindowWidth": [], "intensity_units": "modality", "invert_for_display": False,
            "pixel_spacing_source": "PixelSpacing", "filename_or_obj": "chest.dcm"}
    base.update(meta)
    return MetaTensor(torch.as_tensor(values, dtype=torch.float32).reshape(1, 1, -1), meta=base)


def test_voi_linear_follows_ps3_3_c11_2_1_2():
    c, w = 2048.0, 4096.0
    x = torch.tensor([-10.0, 0.0, 1.0, 2047.5, 4095.0, 5000.0])
    # y = ((x - (c - 0.5)) / (w - 1) + 0.5), 0 at or below c - 0.5 - (w - 1) / 2, 1 above c - 0.5 + (w - 1) / 2
    expected = [0.0, 0.0, 1.0 / 4095.0, 0.5, 1.0, 1.0]
    np.testing.assert_allclose(apply_voi_window(x, c, w, "linear").numpy(), expected, atol=1e-7)
    # a window of width 1 is a threshold at c - 0.5
    assert apply_voi_window(torch.tensor([99.0, 99.6, 101.0]), 100.0, 1.0).tolist() == [0.0, 1.0, 1.0]


def test_voi_linear_exact_and_sigmoid():
    x = torch.tensor([0.0, 75.0, 100.0, 125.0, 300.0])
    np.testing.assert_allclose(apply_voi_window(x, 100.0, 100.0, "linear_exact").numpy(),
                               [0.0, 0.25, 0.5, 0.75, 1.0], atol=1e-7)
    sig = apply_voi_window(x, 100.0, 100.0, "SIGMOID").numpy()
    expected = [1.0 / (1.0 + math.exp(-4.0 * (v - 100.0) / 100.0)) for v in x.tolist()]
    np.testing.assert_allclose(sig, expected, rtol=1e-6)
    assert sig[2] == pytest.approx(0.5) and sig[3] == pytest.approx(1 / (1 + math.exp(-1)), rel=1e-6)
    with pytest.raises(ConfigError):
        apply_voi_window(x, 0.0, 0.0, "linear_exact")
    with pytest.raises(ConfigError):
        apply_voi_window(x, 0.0, 10.0, "gamma")


def test_window_from_file_index_function_and_inversion():
    img = _radiograph([0.0, 500.0, 1000.0, 1500.0, 2000.0], WindowCenter=[1000.0, 500.0],
                      WindowWidth=[2000.0, 400.0], VOILUTFunction="LINEAR_EXACT", invert_for_display=True,
                      PhotometricInterpretation="MONOCHROME1")
    out = XRayWindow("file")(img)
    np.testing.assert_allclose(out[0, 0].numpy(), [1.0, 0.75, 0.5, 0.25, 0.0], atol=1e-7)
    assert out.meta["intensity_units"] == "display" and out.meta["invert_for_display"] is False
    # inverting again in "auto" mode is a no-op now
    assert torch.equal(XRayInvert()(out), out)
    second = XRayWindow("file", window_index=1, invert=False)(img)
    np.testing.assert_allclose(second[0, 0].numpy(), [0.0, 0.5, 1.0, 1.0, 1.0], atol=1e-7)
    assert second.meta["intensity_units"] == "windowed" and second.meta["invert_for_display"] is True
    # XRayInvert finishes the job and the metadata says so
    fixed = XRayInvert()(second)
    np.testing.assert_allclose(fixed[0, 0].numpy(), [1.0, 0.5, 0.0, 0.0, 0.0], atol=1e-7)
    assert fixed.meta["intensity_units"] == "display" and fixed.meta["invert_for_display"] is False
    # the file's function is used unless overridden
    sig = XRayWindow("file", voi_function="auto")(_radiograph([1000.0], WindowCenter=[1000.0], WindowWidth=[10.0],
                                                               VOILUTFunction="SIGMOID"))
    assert float(sig) == pytest.approx(0.5)


def test_window_display_units_and_fallbacks():
    shown = _radiograph([-0.5, 0.2, 1.3], intensity_units="display", WindowCenter=[100.0], WindowWidth=[10.0])
    assert XRayWindow("file")(shown)[0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])
    values = np.arange(1000, dtype=np.float32)
    lo, hi = np.percentile(values, [0.5, 99.5])
    robust = XRayWindow("file")(_radiograph(values))
    np.testing.assert_allclose(robust[0, 0].numpy(), np.clip((values - lo) / (hi - lo), 0, 1), atol=1e-6)
    full = XRayWindow("full")(_radiograph(values))
    assert float(full.min()) == 0.0 and float(full.max()) == 1.0
    with pytest.raises(InvalidImageError, match="chest.dcm"):
        XRayWindow("file", fallback="raise")(_radiograph(values))
    explicit = XRayWindowd("image", window={"center": 500, "width": 1000})({"image": _radiograph([0.0, 500.0, 1000.0])})
    assert explicit["image"][0, 0].tolist() == [0.0, 0.5, 1.0]
    # a plain tensor (no metadata) is windowed and never inverted
    assert XRayWindow([1.0, 2.0])(torch.tensor([[0.0, 1.0, 2.0]])).tolist() == [[0.0, 0.5, 1.0]]
    with pytest.raises(ConfigError):
        XRayWindow("bone")
    with pytest.raises(ConfigError):
        XRayWindow({"center": 1})


def test_invert_forced_and_by_photometric_interpretation():
    x = torch.tensor([[0.0, 0.25, 1.0]])
    assert XRayInvertd("image", invert=True)({"image": x})["image"].tolist() == [[1.0, 0.75, 0.0]]
    assert XRayInvert(invert=True, value_range=None)(torch.tensor([[2.0, 3.0, 6.0]])).tolist() == [[6.0, 5.0, 2.0]]
    assert XRayInvert()(x).tolist() == x.tolist()  # no metadata: nothing to do
    mono1 = MetaTensor(x.clone(), meta={"PhotometricInterpretation": "MONOCHROME1"})
    assert XRayInvert()(mono1).tolist() == [[1.0, 0.75, 0.0]]


def test_real_chest_cr_lung_darker_than_mediastinum(data_dir):
    stored = tifffile.imread(data_dir / "xray" / "rg1_uncr_stored_1in8.tif")
    meta = json.loads((data_dir / "xray" / "rg1_uncr_stored_1in8.json").read_text())
    img = MetaTensor(torch.from_numpy(stored.astype(np.float32))[None], meta=meta)
    out = XRayWindow("file")(img)[0].numpy()
    assert out.min() >= 0.0 and out.max() <= 1.0
    right_lung, left_lung = out[60:110, 45:85].mean(), out[60:110, 150:190].mean()
    mediastinum, spine = out[40:110, 108:124].mean(), out[150:200, 105:125].mean()
    assert mediastinum > right_lung + 0.2 and mediastinum > left_lung + 0.2 and spine > right_lung + 0.2
    # without inversion (what MONOCHROME1 would look like read naively) the order flips
    raw = XRayWindow("file", invert=False)(img)[0].numpy()
    assert raw[40:110, 108:124].mean() < raw[60:110, 45:85].mean()
