"""Microscopy transforms: channel normalisation, tiling and re-assembly (parity with MONAI's sliding window),
instance masks on real nuclei."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor
from monai.data.utils import dense_patch_slices
from monai.inferers import SlidingWindowInferer
from monai.transforms import Compose, Invertd

from medfound.errors import ConfigError, InvalidImageError, LabelMismatchError
from medfound.transforms.microscopy import (
    ChannelPercentileNormalize,
    ChannelPercentileNormalized,
    GridTile,
    GridTiled,
    InstanceMaskToBoxes,
    InstanceMaskToBoxesd,
    TileAssembler,
    instance_boxes,
    tile_positions,
)


@pytest.fixture(scope="module")
def nuclei(data_dir):
    image = tifffile.imread(data_dir / "microscopy" / "nuclei_image.tif")
    instances = tifffile.imread(data_dir / "microscopy" / "nuclei_instances.tif")
    return image, instances


# ------------------------------------------------------------------ normalisation


def test_channel_percentiles_match_numpy(nuclei):
    image, _ = nuclei
    two = np.stack([image, image.astype(np.float32) * 30 + 7]).astype(np.float32)
    out = ChannelPercentileNormalize()(torch.from_numpy(two))
    for c in range(2):
        lo, hi = np.percentile(two[c], [1, 99.8])
        np.testing.assert_allclose(out[c].numpy(), np.clip((two[c] - lo) / (hi - lo), 0, 1), atol=1e-5)
    # both channels end up on the same scale although their raw ranges differ 30-fold
    np.testing.assert_allclose(out[0].numpy(), out[1].numpy(), atol=1e-5)
    d = ChannelPercentileNormalized("image", clip=False)({"image": torch.from_numpy(two)})
    assert float(d["image"].max()) > 1.0  # unclipped: the brightest 0.2 % exceed 1


# ------------------------------------------------------------------ instances -> boxes


def test_nuclei_boxes_centroids_count(nuclei):
    _, instances = nuclei
    out = InstanceMaskToBoxes()(torch.from_numpy(instances.astype(np.int32))[None])
    assert int(out["count"]) == 125
    assert out["box"].shape == (125, 4) and out["box"].dtype == torch.float32
    assert torch.equal(out["label"], torch.zeros(125, dtype=torch.int64))
    ids = out["instance_id"].numpy()
    assert ids.tolist() == sorted(set(np.unique(instances).tolist()) - {0})
    boxes, cents = out["box"].numpy(), out["centroid"].numpy()
    inside = 0
    for k, i in enumerate(ids):
        rows, cols = np.nonzero(instances == i)
        x0, y0, x1, y1 = boxes[k]
        # the box contains the nucleus and is tight (max exclusive): x along columns, y along rows
        assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        np.testing.assert_allclose(cents[k], [cols.mean() + 0.5, rows.mean() + 0.5], atol=1e-4)
        assert x0 <= cents[k][0] <= x1 and y0 <= cents[k][1] <= y1
        on_nucleus = instances[int(cents[k][1]), int(cents[k][0])] == i
        inside += int(on_nucleus)
        if not on_nucleus:  # a nucleus cut by the image border is not convex; its centroid stays next to it
            gap = np.sqrt((cols + 0.5 - cents[k][0]) ** 2 + (rows + 0.5 - cents[k][1]) ** 2).min()
            assert gap < 1.5 and (x0 == 0 or y0 == 0 or x1 == instances.shape[1] or y1 == instances.shape[0])
    assert inside >= 124  # measured: 124 of 125; the other (id 10) is cut by the left border
    np.testing.assert_array_equal(out["area"].numpy(), [(instances == i).sum() for i in ids])


def test_instance_boxes_options_and_errors():
    m = np.zeros((6, 8), np.int64)
    m[0:2, 0:2] = 5  # 4 px
    m[3:6, 4:8] = 9  # 12 px
    sem = np.zeros_like(m)
    sem[3:6, 4:8] = 2
    sem[5, 7] = 1  # minority class inside instance 9
    r = instance_boxes(m, semantic=sem)
    assert r["class"].tolist() == [0, 2] and r["box"].tolist() == [[0, 0, 2, 2], [4, 3, 8, 6]]
    assert instance_boxes(m, min_area=5)["instance_id"].tolist() == [9]
    empty = InstanceMaskToBoxes()(torch.zeros(1, 4, 4, dtype=torch.int32))
    assert empty["box"].shape == (0, 4) and int(empty["count"]) == 0
    d = InstanceMaskToBoxesd("inst", semantic_key="sem", centroid_key=None)(
        {"inst": torch.from_numpy(m)[None], "sem": torch.from_numpy(sem)[None]})
    assert d["label"].tolist() == [0, 2] and "centroid" not in d and int(d["count"]) == 2
    with pytest.raises(LabelMismatchError):
        instance_boxes(np.array([[0.0, 1.5]]))
    with pytest.raises(InvalidImageError):
        instance_boxes(np.zeros((2, 3, 3), int))
    with pytest.raises(LabelMismatchError):
        instance_boxes(m, semantic=np.zeros((3, 3)))
    with pytest.raises(ConfigError):
        InstanceMaskToBoxesd(("a", "b"))


# ------------------------------------------------------------------ tiling


@pytest.mark.parametrize("size, tile, overlap", [((100, 70), (32, 32), 0.25), ((64, 64), (64, 64), 0.5),
                                                 ((95, 41), (16, 24), 0.6), ((20, 20, 9), (8, 8, 4), 0.25)])
def test_tile_grid_equals_monai_sliding_window_grid(size, tile, overlap):
    interval = [max(1, int(t * (1 - overlap))) if t < s else t for s, t in zip(size, tile)]
    monai_starts = sorted(tuple(sl.start for sl in p) for p in dense_patch_slices(size, tile, interval))
    assert sorted(tile_positions(size, tile, overlap)) == monai_starts


@pytest.mark.parametrize("blend", ["gaussian", "linear", "constant"])
@pytest.mark.parametrize("shape, tile, overlap", [((2, 61, 47), 16, 0.25), ((1, 40, 40), 24, 8),
                                                  ((3, 10, 30), 16, 0.5), ((1, 9, 12, 14), 5, 0.4)])
def test_identity_reassembly_reproduces_the_image(blend, shape, tile, overlap):
    img = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    tiles = GridTile(tile_size=tile, overlap=overlap)(img)
    asm = TileAssembler(img.shape[1:], tile, blend=blend)
    for t in tiles:
        asm.add(t)  # position read from the tile's metadata
    np.testing.assert_allclose(asm.result().numpy(), img.numpy(), atol=1e-6)


def test_tiles_and_gaussian_assembly_equal_monai_sliding_window_inferer():
    """A network run tile by tile on GridTile's tiles and blended by TileAssembler gives MONAI's
    SlidingWindowInferer result (same grid, same weights): the path for tiles that go through a dataset."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 5, padding=2), torch.nn.Tanh(), torch.nn.Conv2d(4, 3, 3, padding=1))
    img = torch.rand(2, 150, 113)
    for blend in ("gaussian", "constant"):
        asm = TileAssembler(img.shape[1:], (48, 40), blend=blend)
        with torch.no_grad():
            for tile in GridTile(tile_size=(48, 40), overlap=0.25)(img):
                asm.add(net(tile.as_tensor()[None])[0], start=tile.meta["tile_start"])
            ref = SlidingWindowInferer(roi_size=(48, 40), sw_batch_size=3, overlap=0.25, mode=blend)(img[None], net)[0]
        np.testing.assert_allclose(asm.result().numpy(), ref.numpy(), atol=1e-5)
    # a pixel-wise predictor: blending must reproduce the whole-image prediction exactly, for every blend
    pointwise = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.Tanh())
    with torch.no_grad():
        full = pointwise(img[None])[0]
        for blend in ("gaussian", "linear", "constant"):
            asm = TileAssembler(img.shape[1:], 64, blend=blend)
            for tile in GridTile(tile_size=64, overlap=0.5)(img):
                asm.add(pointwise(tile.as_tensor()[None])[0], start=tile.meta["tile_start"])
            np.testing.assert_allclose(asm.result().numpy(), full.numpy(), atol=1e-6)


def test_tiles_invert_and_dict_form():
    img = MetaTensor(torch.arange(2 * 30 * 20, dtype=torch.float32).reshape(2, 30, 20),
                     affine=torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0])), meta={"filename_or_obj": "slide.tif"})
    lab = MetaTensor((torch.rand(1, 30, 20) > 0.5).float(), affine=img.affine.clone())
    pre = Compose([GridTiled(("image", "label"), tile_size=16, overlap=0.25)])
    items = pre({"image": img, "label": lab, "case": "slide-1"})
    # rows: starts 0, 12, 14 (stride 12, last tile flush with the border, as MONAI's grid); columns: 0, 4
    assert len(items) == len(tile_positions((30, 20), 16, 0.25)) == 6
    item = items[5]
    start = item["image"].meta["tile_start"]
    assert start == [14, 4] and item["case"] == "slide-1"
    assert torch.equal(item["image"], img[:, 14:30, 4:20].as_tensor())
    np.testing.assert_allclose(item["image"].affine[:2, 3].numpy(), [7.0, 2.0])
    item["pred"] = item["label"].clone()
    back = Invertd("pred", pre, orig_keys="label")(item)["pred"]
    assert back.shape == (1, 30, 20) and torch.equal(back.affine, img.affine)
    assert torch.equal(back[:, 14:, 4:], lab[:, 14:, 4:].as_tensor()) and float(back[:, :14].sum()) == 0.0
    # a small image is padded, and the padding is cut off again in the assembler
    small = torch.rand(1, 10, 7)
    tiles = GridTile(tile_size=16)(small)
    assert len(tiles) == 1 and tiles[0].shape == (1, 16, 16) and float(tiles[0][:, 10:].sum()) == 0.0
    asm = TileAssembler((10, 7), 16)
    asm.add(tiles[0])
    assert torch.allclose(asm.result(), small)
    for mode in ("constant", "replicate", "reflect"):
        asm = TileAssembler((10, 7), (16, 8))
        for tile in GridTile(tile_size=(16, 8), pad_mode=mode)(small):
            asm.add(3 * tile)
        assert torch.allclose(asm.result(), 3 * small)


def test_assembler_errors():
    asm = TileAssembler((20, 20), 8)
    with pytest.raises(ConfigError, match="before any tile"):
        asm.result()
    asm.add(torch.ones(1, 8, 8), start=(0, 0))
    with pytest.raises(ConfigError, match="covered by no tile"):
        asm.result()
    with pytest.raises(InvalidImageError):
        asm.add(torch.ones(1, 9, 8), start=(0, 0))
    with pytest.raises(InvalidImageError):
        asm.add(torch.ones(2, 8, 8), start=(8, 8))
    with pytest.raises(ConfigError):
        asm.add(torch.ones(1, 8, 8))
    full = TileAssembler((8, 8), 8)
    full.add(torch.full((1, 8, 8), 2.0), start=(0, 0))
    assert torch.equal(full.result(), full.result())  # repeated calls return the same result
    with pytest.raises(ConfigError, match="after result"):
        full.add(torch.ones(1, 8, 8), start=(0, 0))
    with pytest.raises(ConfigError):
        TileAssembler((20, 20), 8, blend="median")
    with pytest.raises(ConfigError):
        tile_positions((20, 20), 8, overlap=8)
