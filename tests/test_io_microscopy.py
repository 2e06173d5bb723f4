"""MicroscopyReader: axes to channel-first, physical pixel size, region reads, bad TIFFs."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile
from helpers_io import IO_DATA
from monai.transforms import LoadImage, SaveImage

from medfound.errors import ConfigError, ImageReadError, NonFiniteImageError
from medfound.io import MicroscopyReader, read_tiff_region


def _read(path, **kw):
    r = MicroscopyReader(**kw)
    return r.get_data(r.read(path))


@pytest.fixture(scope="module")
def nuclei():
    return tifffile.imread(IO_DATA / "nuclei_crop.tif")  # (Y, X) uint16, real fluorescence


def _stack(nuclei, shape_prefix):
    """Distinct real-looking planes: the crop rolled by a different amount per plane."""
    n = int(np.prod(shape_prefix)) if shape_prefix else 1
    planes = [np.roll(nuclei, 7 * k, axis=1) + k for k in range(n)]
    return np.stack(planes).reshape(tuple(shape_prefix) + nuclei.shape).astype(np.uint16)


def test_real_crop_reads_as_one_channel_xy(nuclei):
    arr, meta = _read(IO_DATA / "nuclei_crop.tif")
    assert arr.shape == (128, 128) and arr.dtype == np.uint16  # one channel: no channel axis, as MONAI's readers
    np.testing.assert_array_equal(arr, nuclei.T)  # (X, Y)
    assert meta["axes"] == "YX" and meta["pixel_size_source"] == "default" and np.isnan(meta["original_channel_dim"])


@pytest.mark.parametrize(
    ("axes", "prefix", "perm"),
    [
        # data axes -> expected output (C, X, Y[, Z]) as a transpose of the written array
        ("CYX", (3,), (0, 2, 1)),
        ("ZYX", (4,), None),
        ("CZYX", (2, 3), (0, 3, 2, 1)),
        ("TCZYX", (2, 2, 3), None),
    ],
)
def test_axes_to_channel_first(tmp_path, nuclei, axes, prefix, perm):
    data = _stack(nuclei, prefix)
    path = tmp_path / "img.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": axes})
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == axes
    arr, meta = _read(path, time_index=1 if "T" in axes else 0)
    if axes == "ZYX":
        expected = data.transpose(2, 1, 0)  # one channel: (X, Y, Z)
    elif axes == "TCZYX":
        expected = data[1].transpose(0, 3, 2, 1)
    else:
        expected = data.transpose(perm)
    np.testing.assert_array_equal(arr, expected)
    assert meta["axes"] == axes


def test_rgb_samples_become_channels(tmp_path, nuclei):
    rgb = np.stack([nuclei, nuclei // 2, nuclei // 3], axis=-1).astype(np.uint8)  # YXS
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    arr, meta = _read(path)
    assert meta["axes"] == "YXS"
    np.testing.assert_array_equal(arr, rgb.transpose(2, 1, 0))
    arr, _ = _read(path, channels=[2, 0])
    np.testing.assert_array_equal(arr, rgb[..., [2, 0]].transpose(2, 1, 0))
    with pytest.raises(ConfigError, match=r"rgb\.tif: channels \[5\] requested, the image has 3"):
        _read(path, channels=5)


def test_physical_pixel_size_sources(tmp_path, nuclei):
    stack = _stack(nuclei, (3,))
    ome = tmp_path / "a.ome.tif"
    tifffile.imwrite(ome, stack, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 250, "PhysicalSizeXUnit": "nm",
                                                       "PhysicalSizeY": 0.3, "PhysicalSizeZ": 2.0})  # fmt: skip
    _, meta = _read(ome)
    assert meta["pixel_size_source"] == "OME"
    np.testing.assert_allclose(np.diag(meta["affine"])[:3], [0.25, 0.3, 2.0])  # micrometres
    _, meta = _read(ome, unit="mm")
    np.testing.assert_allclose(np.diag(meta["affine"])[:3], [0.25e-3, 0.3e-3, 2.0e-3])

    ij = tmp_path / "b.tif"
    tifffile.imwrite(
        ij, stack, imagej=True, resolution=(1 / 0.65, 1 / 0.65), metadata={"axes": "ZYX", "unit": "um", "spacing": 1.5}
    )
    _, meta = _read(ij)
    assert meta["pixel_size_source"] == "ImageJ"
    np.testing.assert_allclose(np.diag(meta["affine"])[:3], [0.65, 0.65, 1.5], rtol=1e-5)

    res = tmp_path / "c.tif"
    tifffile.imwrite(res, nuclei, resolution=(20000.0, 10000.0), resolutionunit="CENTIMETER")
    _, meta = _read(res)
    assert meta["pixel_size_source"] == "TIFF resolution"
    np.testing.assert_allclose(np.diag(meta["affine"])[:2], [0.5, 1.0])  # 10^4 um/cm / pixels per cm

    _, meta = _read(res, pixel_size=(0.1, 0.2))
    assert meta["pixel_size_source"] == "user"
    np.testing.assert_allclose(np.diag(meta["affine"])[:2], [0.1, 0.2])


def test_region_equals_crop_of_full_image(tmp_path, nuclei):
    big = np.tile(nuclei, (4, 6))  # 512 x 768, real texture
    for kw in ({"tile": (64, 64), "compression": "zlib"}, {"rowsperstrip": 24}, {"tile": (32, 48)}):
        path = tmp_path / "big.tif"
        tifffile.imwrite(path, big, **kw)
        full, _ = _read(path)
        arr, meta = _read(path, roi_start=(100, 37), roi_end=(333, 290))
        np.testing.assert_array_equal(arr, full[100:333, 37:290])
        np.testing.assert_array_equal(meta["affine"][:2, 2], [100.0, 37.0])  # origin at the region's corner
    # region of a multi-page OME stack, Z cut as well
    stack = _stack(nuclei, (2, 5))
    ome = tmp_path / "stack.ome.tif"
    tifffile.imwrite(ome, stack, ome=True, metadata={"axes": "CZYX"}, tile=(32, 32))
    arr, _ = _read(ome, roi_start=(10, 20, 1), roi_end=(90, 100, 4), channels=[1])
    np.testing.assert_array_equal(arr, stack[1].transpose(2, 1, 0)[10:90, 20:100, 1:4])
    arr, _ = _read(ome, roi_start=(10, 20, 1), roi_end=(90, 100, 4))
    np.testing.assert_array_equal(arr, stack.transpose(0, 3, 2, 1)[:, 10:90, 20:100, 1:4])


@pytest.mark.slow
def test_region_of_large_tiled_image_reads_only_its_tiles(tmp_path, nuclei):
    """A 4096 x 4096 uint16 image (32 MB decoded): a 200 x 200 region must not decode it all."""
    big = np.tile(nuclei, (32, 32))
    path = tmp_path / "large.tif"
    tifffile.imwrite(path, big, tile=(256, 256), compression="zlib")
    tracemalloc.start()
    arr, _ = _read(path, roi_start=(1000, 2000), roi_end=(1200, 2200))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(arr, big[2000:2200, 1000:1200].T)
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB for a 0.08 MiB region"
    with tifffile.TiffFile(path) as tif:
        crop = read_tiff_region(tif.pages[0], 2000, 2200, 1000, 1200)
    np.testing.assert_array_equal(crop[0], big[2000:2200, 1000:1200])


def test_pyramid_level_scales_pixel_size(tmp_path, nuclei):
    base = np.tile(nuclei, (2, 2))
    path = tmp_path / "pyr.ome.tif"
    with tifffile.TiffWriter(path) as tw:
        meta = {"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}
        tw.write(base, subifds=1, tile=(64, 64), metadata=meta)
        tw.write(base[::2, ::2], subfiletype=1, tile=(64, 64))
    arr, meta = _read(path, level=1)
    np.testing.assert_array_equal(arr, base[::2, ::2].T)
    np.testing.assert_allclose(np.diag(meta["affine"])[:2], [1.0, 1.0])
    with pytest.raises(ConfigError, match="level 2 requested, the series has 2"):
        _read(path, level=2)


def test_loadimage_by_name_and_save(tmp_path, nuclei):
    img = LoadImage(reader="MicroscopyReader", image_only=True, ensure_channel_first=True)(
        str(IO_DATA / "nuclei_crop.tif")
    )
    assert tuple(img.shape) == (1, 128, 128)
    np.testing.assert_array_equal(img[0].numpy(), nuclei.T.astype(np.float32))
    SaveImage(output_dir=str(tmp_path), output_postfix="rt", separate_folder=False, print_log=False)(img)
    back = LoadImage(reader="NibabelReader", image_only=True)(str(tmp_path / "nuclei_crop_rt.nii.gz"))
    np.testing.assert_array_equal(back.numpy(), nuclei.T.astype(np.float32))
    rgb = tmp_path / "rgb.ome.tif"
    tifffile.imwrite(rgb, _stack(nuclei, (3,)), ome=True, metadata={"axes": "CYX"})
    img = LoadImage(reader="MicroscopyReader", image_only=True, ensure_channel_first=True)(str(rgb))
    assert tuple(img.shape) == (3, 128, 128)  # several channels: channel-first already
    SaveImage(output_dir=str(tmp_path), output_postfix="rt", separate_folder=False, print_log=False)(img)
    assert (tmp_path / "rgb.ome_rt.nii.gz").exists() or list(tmp_path.glob("rgb*_rt.nii.gz"))


def test_bad_tiffs(tmp_path, nuclei):
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + b"\xff" * 100)
    with pytest.raises(ImageReadError, match=r"junk\.tif: "):
        _read(junk)
    good = tmp_path / "cut.tif"
    tifffile.imwrite(good, np.tile(nuclei, (4, 4)))
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match=r"cut\.tif: "):
        _read(good)
    nan = tmp_path / "nan.tif"
    f = nuclei.astype(np.float32)
    f[3, 4] = np.nan
    tifffile.imwrite(nan, f)
    with pytest.raises(NonFiniteImageError, match=r"nan\.tif: the image holds 1 NaN/inf"):
        _read(nan)
    arr, _ = _read(nan, check_finite=False)
    assert np.isnan(arr[4, 3])
    with pytest.raises(ImageReadError, match="no such file"):
        _read(tmp_path / "missing.tif")
    with pytest.raises(ConfigError, match="roi .* outside axis X"):
        _read(IO_DATA / "nuclei_crop.tif", roi_start=(0, 0), roi_end=(500, 10))
