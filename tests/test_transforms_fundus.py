"""Fundus transforms (and the green channel and CLAHE of medfound.transforms.intensity) on a real photograph
and on the synthetic multi-site fundus data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd
from PIL import Image

from medfound.data.synthetic.fundus import FUNDUS_DOMAINS, render_fundus
from medfound.errors import ConfigError, InvalidImageError, LabelMismatchError
from medfound.transforms.fundus import (
    DecodeDiscCup,
    DecodeDiscCupd,
    EncodeDiscCup,
    EncodeDiscCupd,
    FieldOfViewCrop,
    FieldOfViewCropd,
    FieldOfViewMask,
    FieldOfViewMaskd,
    OpticDiscCrop,
    OpticDiscCropd,
    fov_mask,
    locate_optic_disc,
)
from medfound.transforms.intensity import CLAHE, GreenChannel, GreenChanneld, clahe
from medfound.utils import make_rng

CASES_PER_DOMAIN = 4


@pytest.fixture(scope="module")
def retina(data_dir) -> MetaTensor:
    rgb = np.array(Image.open(data_dir / "fundus" / "retina_512.jpg"))
    return MetaTensor(torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), meta={"filename_or_obj": "retina_512.jpg"})


@pytest.fixture(scope="module")
def synthetic_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(domain, image (3, H, W) uint8, mask (3, H, W) uint8) for a few synthetic cases of every site."""
    cases = []
    for domain in FUNDUS_DOMAINS:
        for i in range(CASES_PER_DOMAIN):
            image, mask, _ = render_fundus(make_rng(0, "fundus", domain.name, "train", i), domain, "small")
            cases.append((domain.name, image.transpose(2, 0, 1).copy(), mask.transpose(2, 0, 1).copy()))
    return cases


# ------------------------------------------------------------------ field of view


def test_fov_mask_of_the_real_retina(retina):
    m = fov_mask(retina).numpy()
    h, w = m.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    # the retina is a disc reaching almost to the image border; the corners are black
    assert m[r < 0.47 * h].mean() > 0.999
    for corner in (m[:40, :40], m[:40, -40:], m[-40:, :40], m[-40:, -40:]):
        assert not corner.any()
    assert 0.72 < m.mean() < 0.80  # pi/4 of the square is 0.785
    out = FieldOfViewMaskd("image")({"image": retina})["fov"]
    assert out.shape == (1, h, w) and out.dtype == torch.float32 and out.meta["filename_or_obj"] == "retina_512.jpg"


def test_fov_mask_ignores_thin_bright_marks_and_fills_dark_interior():
    yy, xx = np.mgrid[0:200, 0:200]
    img = np.zeros((3, 200, 200), np.float32)
    inside = np.hypot(yy - 100, xx - 100) < 80
    img[:, inside] = 0.5
    img[:, 90:110, 90:110] = 0.01  # dark macula-like spot inside
    img[:, 5:7, 5:60] = 1.0  # thin white text line in a corner
    m = FieldOfViewMask()(torch.from_numpy(img))[0].numpy() > 0
    assert np.array_equal(m, inside)
    with pytest.raises(InvalidImageError, match="black"):
        fov_mask(torch.zeros(3, 16, 16))


def test_fov_crop_square_and_invert(retina, synthetic_cases):
    crop = FieldOfViewCrop()(retina)
    assert crop.shape[1] == crop.shape[2] and 490 <= crop.shape[1] <= 512
    # synthetic sites whose field of view is cut by the image border: the square box reaches beyond
    # the image, the outside is padded, and the inverse gives back the original exactly
    _, img, mask = next(c for c in synthetic_cases if c[0] == "Domain2")
    data = {"image": MetaTensor(torch.from_numpy(img)), "label": MetaTensor(torch.from_numpy(mask[:1]))}
    pre = Compose([FieldOfViewCropd(("image", "label"), source_key="image", margin=2)])
    out = pre(data)
    assert out["image"].shape[1] == out["image"].shape[2] > img.shape[1]
    assert out["label"].shape[1:] == out["image"].shape[1:]
    out["pred"] = out["label"].clone()
    back = Invertd("pred", pre, orig_keys="label")(out)["pred"]
    assert torch.equal(back.as_tensor(), torch.from_numpy(mask[:1]))
    # a given mask sets the box
    given = torch.zeros(1, *img.shape[1:])
    given[0, 10:30, 40:50] = 1
    assert FieldOfViewCrop(square=False)(torch.from_numpy(img), mask=given).shape == (3, 20, 10)
    with pytest.raises(LabelMismatchError):
        FieldOfViewCrop()(torch.from_numpy(img), mask=torch.ones(1, 5, 5))


# ------------------------------------------------------------------ optic disc


def test_optic_disc_of_the_real_retina_is_in_the_left_third(retina):
    row, col = locate_optic_disc(retina)
    h, w = retina.shape[1:]
    assert col < w / 3
    assert 0.35 * h < row < 0.6 * h  # the disc sits a little below the horizontal midline
    roi = OpticDiscCrop(roi_fraction=0.3)(retina)
    assert roi.shape == (3, 154, 154) and roi.meta["disc_center_source"] == "brightness"
    # the ROI is brighter than the photograph as a whole: it holds the disc
    assert float(roi.float().mean()) > float(retina.float().mean())


@pytest.mark.slow
def test_located_disc_inside_the_true_disc_on_synthetic_sites(synthetic_cases):
    hits = {}
    for domain, img, mask in synthetic_cases:
        row, col = locate_optic_disc(torch.from_numpy(img))
        disc = mask[0] <= 128
        hits.setdefault(domain, []).append(bool(disc[int(round(row)), int(round(col))]))
    total = sum(sum(v) for v in hits.values())
    assert total >= 0.9 * len(synthetic_cases), hits  # measured: all of them
    assert all(sum(v) >= CASES_PER_DOMAIN - 1 for v in hits.values()), hits


def test_optic_disc_crop_from_mask_contains_the_disc_and_inverts(synthetic_cases):
    _, img, mask = synthetic_cases[1]
    data = {"image": MetaTensor(torch.from_numpy(img)), "mask": MetaTensor(torch.from_numpy(mask))}
    pre = Compose([DecodeDiscCupd("mask", output="index"),
                   OpticDiscCropd(("image", "mask"), mask_key="mask", mask_encoding="index", roi_size=128)])
    out = pre(data)
    assert out["image"].shape == (3, 128, 128) and out["mask"].meta["disc_center_source"] == "mask"
    disc_full = int((mask[0] <= 128).sum())
    assert int((out["mask"] > 0).sum()) == disc_full  # the whole disc is inside the ROI
    rows, cols = np.nonzero(out["mask"][0].numpy() > 0)
    assert abs((rows.min() + rows.max()) / 2 - 63.5) <= 1 and abs((cols.min() + cols.max()) / 2 - 63.5) <= 1
    out["pred"] = out["mask"].clone()
    back = Invertd("pred", pre, orig_keys="mask")(out)["pred"]
    expected = DecodeDiscCup(output="index")(torch.from_numpy(mask))
    assert back.shape == expected.shape and torch.equal(back.as_tensor(), expected.as_tensor())
    # an empty mask falls back to brightness
    empty = torch.full((1, *img.shape[1:]), 255, dtype=torch.uint8)
    roi = OpticDiscCrop(roi_size=64)(torch.from_numpy(img), mask=empty)
    assert roi.meta["disc_center_source"] == "brightness"


# ------------------------------------------------------------------ green channel, CLAHE


def test_green_channel(retina):
    g = GreenChannel()(retina)
    assert g.shape == (1, 512, 512) and torch.equal(g[0], retina[1].as_tensor())
    assert GreenChanneld("image", num_channels=3)({"image": retina})["image"].shape == (3, 512, 512)
    with pytest.raises(InvalidImageError):
        GreenChannel()(torch.zeros(1, 4, 4))


def test_clahe_matches_opencv_reference(data_dir):
    crop = np.array(Image.open(data_dir / "fundus" / "retina_green_crop.png"))
    ref = np.array(Image.open(data_dir / "fundus" / "retina_green_crop_clahe_opencv.png")).astype(np.float64)
    ours = clahe(torch.from_numpy(crop).float() / 255, clip_limit=2.0, tile_grid=(8, 8)).numpy() * 255
    # OpenCV rounds its per-tile mappings to integers; ours keeps floats: within one grey level
    assert np.abs(ours - ref).max() < 1.0 + 1e-4
    assert CLAHE(tile_grid=(8, 8))(torch.from_numpy(crop)[None])[0].numpy() * 255 == pytest.approx(ours, abs=1e-4)


def test_clahe_device_path_equals_cpu_path():
    # the GPU code path (one gather per tile corner) checked on the CPU against the block path
    from medfound.transforms.intensity import (
        _interpolate_blocks,
        _interpolate_gather,
        _tile_histograms_numpy,
        _tile_histograms_torch,
    )

    rng = np.random.default_rng(3)
    bins = torch.from_numpy(rng.integers(0, 256, (77, 101)))
    lut = torch.from_numpy(np.sort(rng.random((4 * 6, 256)), axis=1).astype(np.float32))
    th, tw = 20, 17  # padded tile sizes for a 4 x 6 grid
    ours = _interpolate_gather(bins, lut, th, tw, 4, 6)
    np.testing.assert_allclose(ours.numpy(), _interpolate_blocks(bins.numpy(), lut.numpy(), th, tw, 4, 6), atol=1e-6)
    # and the two ways of counting the tile histograms (77 x 101 padded by 3 rows and 1 column)
    by_numpy = _tile_histograms_numpy(bins.numpy().astype(np.int32), 3, 1, 4, 6, 256)
    assert torch.equal(_tile_histograms_torch(bins, 3, 1, 4, 6, 256), by_numpy)
    assert float(by_numpy.sum()) == 80 * 102


def test_clahe_one_tile_without_clipping_is_histogram_equalisation():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 70)).astype(np.uint8) // 3
    ours = clahe(torch.from_numpy(img).float() / 255, clip_limit=1e6, tile_grid=(1, 1)).numpy()
    hist = np.bincount(img.ravel(), minlength=256)
    expected = np.cumsum(hist)[img] / img.size
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_clahe_properties():
    ramp = torch.linspace(0, 1, 64 * 64).reshape(64, 64)
    # clip limit -> 0 flattens every histogram: the mapping becomes (almost) the identity
    big_ramp = torch.linspace(0, 1, 256 * 256).reshape(256, 256)
    flat = clahe(big_ramp, clip_limit=1e-6, tile_grid=(2, 2))
    np.testing.assert_allclose(flat.numpy(), big_ramp.numpy(), atol=2 / 256)
    const = clahe(torch.full((40, 40), 0.3), clip_limit=2.0, tile_grid=(4, 4))
    assert float(const.max() - const.min()) < 1e-6
    # a single tile is monotone in the input
    x = torch.rand(50, 50)
    y = clahe(x, clip_limit=3.0, tile_grid=(1, 1))
    order = torch.argsort(x.flatten())
    assert bool((torch.diff(y.flatten()[order]) >= -1e-6).all())  # float rounding of the bilinear weights
    # "value" mode keeps hue: channel ratios are unchanged
    rgb = torch.rand(3, 32, 32) * 0.5 + 0.1
    out = CLAHE(tile_grid=(2, 2))(rgb)
    np.testing.assert_allclose((out[0] / out[1]).numpy(), (rgb[0] / rgb[1]).numpy(), rtol=1e-4)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    with pytest.raises(ConfigError):
        CLAHE(channels="lab")
    with pytest.raises(ConfigError):
        clahe(ramp, clip_limit=0)


# ------------------------------------------------------------------ disc / cup masks


def test_disc_cup_decoding_round_trip_exact(synthetic_cases):
    for _, _, mask in synthetic_cases:
        m = torch.from_numpy(mask)
        channels = DecodeDiscCup(strict=True)(m)
        index = DecodeDiscCup(output="index", strict=True)(m)
        assert channels.shape == (2, *mask.shape[1:]) and index.shape == (1, *mask.shape[1:])
        v = mask[0]
        np.testing.assert_array_equal(channels[0].numpy(), (v <= 128).astype(np.float32))  # disc = rim + cup
        np.testing.assert_array_equal(channels[1].numpy(), (v == 0).astype(np.float32))
        np.testing.assert_array_equal(index[0].numpy(), np.select([v == 255, v == 128, v == 0], [0, 1, 2]))
        assert torch.equal(EncodeDiscCup(num_channels=3)(channels), m)
        assert torch.equal(EncodeDiscCup(input="index", num_channels=3)(index), m)
        assert int((index == 2).sum()) > 0 and int((index == 1).sum()) > 0


def test_disc_cup_decoding_tolerance_and_errors():
    resampled = torch.tensor([[[3, 60, 70, 130, 190, 200, 250]]], dtype=torch.uint8)
    assert DecodeDiscCup(output="index")(resampled)[0, 0].tolist() == [2, 2, 1, 1, 1, 0, 0]
    with pytest.raises(LabelMismatchError, match="other than 0, 128, 255"):
        DecodeDiscCup(strict=True)(MetaTensor(resampled, meta={"filename_or_obj": "g0001.bmp"}))
    rgb = torch.zeros(3, 2, 2, dtype=torch.uint8)
    rgb[1, 0, 0] = 128
    with pytest.raises(LabelMismatchError, match="channels"):
        DecodeDiscCup()(rgb)
    with pytest.raises(LabelMismatchError):
        EncodeDiscCup(input="index")(torch.tensor([[[3]]]))
    encoded = EncodeDiscCupd("pred", input="index")({"pred": torch.tensor([[[2.0, 0.0]]])})["pred"]
    assert encoded.tolist() == [[[0, 255]]]
