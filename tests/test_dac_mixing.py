"""Mixing transforms for DAC: CutMix box masks and region rotation (known answers)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd

import medfound.transforms.mixing as mixing
from medfound.errors import ConfigError, LabelMismatchError
from medfound.transforms.mixing import (
    RandCutMix,
    RandCutMixd,
    RandRegionRotate90,
    RandRegionRotate90d,
    RegionRotate90,
    cutmix,
    cutmix_masks,
    rotate_regions,
    sample_cutmix_boxes,
    sample_square_regions,
    square_region_masks,
)


def test_docstring_examples():
    result = doctest.testmod(mixing, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0


@pytest.mark.parametrize("area_range", [(0.02, 0.4), (0.25, 0.5), (0.5, 0.6)])
def test_box_area_within_range(area_range):
    rng = np.random.RandomState(0)
    for size in [(64, 64), (48, 80), (37, 53)]:
        for _ in range(200):
            ((y0, x0, y1, x1),) = sample_cutmix_boxes(rng, size, 1, area_range)
            assert 0 <= y0 < y1 <= size[0] and 0 <= x0 < x1 <= size[1]
            frac = (y1 - y0) * (x1 - x0) / (size[0] * size[1])
            assert area_range[0] <= frac <= area_range[1]


def test_multiple_boxes_and_prob():
    rng = np.random.RandomState(1)
    boxes = sample_cutmix_boxes(rng, (64, 64), num_boxes=3, area_range=(0.05, 0.1))
    assert len(boxes) == 3
    union = mixing.boxes_to_mask(boxes, (64, 64)).float().mean().item()
    assert 0.05 <= union <= 0.3
    masks = cutmix_masks(np.random.RandomState(2), 400, (16, 16), prob=0.5)
    mixed = (masks.flatten(1).sum(1) > 0).float().mean().item()
    assert 0.4 < mixed < 0.6  # about half the samples are mixed
    assert set(masks.unique().tolist()) <= {0.0, 1.0}


def test_cutmix_pixels_come_from_the_right_source():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 20, 24)
    labels = torch.randint(0, 3, (4, 20, 24))
    masks = cutmix_masks(np.random.RandomState(0), 4, (20, 24))
    mixed, mixed_labels = cutmix(x, masks), cutmix(labels, masks)
    for i in range(4):
        src = (i - 1) % 4
        inside = masks[i, 0].bool()
        assert inside.any() and (~inside).any()
        assert torch.equal(mixed[i][:, inside], x[src][:, inside])
        assert torch.equal(mixed[i][:, ~inside], x[i][:, ~inside])
        assert torch.equal(mixed_labels[i][inside], labels[src][inside])
        assert torch.equal(mixed_labels[i][~inside], labels[i][~inside])
    assert mixed_labels.dtype == labels.dtype
    with pytest.raises(LabelMismatchError):
        cutmix(x, masks[:, :, :10])


def test_rand_cutmix_array_reproducible_and_labels_follow():
    img = MetaTensor(torch.zeros(3, 32, 32), meta={"filename_or_obj": "a.png"})
    src = torch.ones(3, 32, 32)
    a = RandCutMix(area_range=(0.1, 0.4), num_boxes=2).set_random_state(5)
    b = RandCutMix(area_range=(0.1, 0.4), num_boxes=2).set_random_state(5)
    mixed_a, mask_a = a(img, src)
    mixed_b, mask_b = b(img, src)
    assert torch.equal(mask_a, mask_b) and torch.equal(mixed_a, mixed_b)
    assert isinstance(mixed_a, MetaTensor) and mixed_a.meta["filename_or_obj"] == "a.png"
    assert mask_a.shape == (1, 32, 32) and mask_a.dtype == torch.float32
    assert torch.equal(mixed_a, mask_a.expand(3, -1, -1))
    lab, lab_src = torch.zeros(1, 32, 32, dtype=torch.uint8), torch.full((1, 32, 32), 2, dtype=torch.uint8)
    mixed_lab, mask_lab = a(lab, lab_src, randomize=False)
    assert torch.equal(mask_lab, mask_a) and mixed_lab.dtype == torch.uint8
    assert torch.equal(mixed_lab.float(), 2 * mask_a)
    # batch mode
    batch = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 2, 16, 16).clone()
    out, masks = RandCutMix().set_random_state(0)(batch)
    assert masks.shape == (3, 1, 16, 16)
    for i in range(3):
        inside = masks[i, 0].bool()
        assert (out[i][:, inside] == (i - 1) % 3).all() and (out[i][:, ~inside] == i).all()
    with pytest.raises(LabelMismatchError):
        RandCutMix()(torch.zeros(3, 8, 8))  # no source and not a batch
    with pytest.raises(ConfigError):
        RandCutMix(area_range=(0.5, 0.2))
    # prob 0: nothing mixed
    out0, mask0 = RandCutMix(prob=0.0)(img, src)
    assert torch.equal(out0, img) and mask0.sum() == 0


def test_rand_cutmixd_pairs_and_batch_and_missing_keys():
    t = RandCutMixd(["image", "label"], ["image_2", "label_2"], area_range=(0.2, 0.3)).set_random_state(3)
    d = {"image": torch.zeros(3, 24, 24), "image_2": torch.ones(3, 24, 24),
         "label": torch.zeros(1, 24, 24, dtype=torch.long), "label_2": torch.ones(1, 24, 24, dtype=torch.long)}
    out = t(d)
    m = out["cutmix_mask"]
    assert 0.2 <= m.mean().item() <= 0.3
    assert torch.equal(out["label"], m.long()) and torch.equal(out["image"], m.expand(3, -1, -1))
    t2 = RandCutMixd(["image", "label"], ["image_2", "label_2"], area_range=(0.2, 0.3)).set_random_state(3)
    assert torch.equal(t2(d)["cutmix_mask"], m)  # set_random_state reproduces the draw
    tb = RandCutMixd(["image"], mask_key="m").set_random_state(0)
    ob = tb({"image": torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 8, 8)})
    assert ob["m"].shape == (2, 1, 8, 8) and torch.equal(ob["image"][0], ob["m"][0])
    with pytest.raises(KeyError):
        t({"image": torch.zeros(3, 8, 8), "image_2": torch.zeros(3, 8, 8)})
    ta = RandCutMixd(["image", "label"], ["image_2", "label_2"], allow_missing_keys=True)
    assert "label" not in ta({"image": torch.zeros(3, 8, 8), "image_2": torch.ones(3, 8, 8)})


def test_square_regions_aligned_and_uniform_k():
    boxes, ks = sample_square_regions(np.random.RandomState(0), 2000, (96, 128), (0.25, 0.5), align=16)
    assert (boxes % 16 == 0).all()
    assert (boxes[:, 2] >= 24).all() and (boxes[:, 2] <= 48).all()
    assert (boxes[:, 0] + boxes[:, 2] <= 96).all() and (boxes[:, 1] + boxes[:, 2] <= 128).all()
    counts = np.bincount(ks, minlength=4)
    assert counts.min() > 400  # uniform over {0, 1, 2, 3}
    with pytest.raises(ConfigError):
        sample_square_regions(np.random.RandomState(0), 1, (16, 16), (0.25, 0.5), align=16)


def test_rotate_regions_equals_rot90_and_rest_untouched():
    torch.manual_seed(1)
    x = torch.rand(3, 2, 32, 40)
    boxes, ks = sample_square_regions(np.random.RandomState(4), 3, (32, 40), (0.3, 0.6))
    ks = np.array([1, 2, 3])
    y = rotate_regions(x, boxes, ks)
    masks = square_region_masks(boxes, (32, 40))
    for i, ((y0, x0, s), k) in enumerate(zip(boxes.tolist(), ks.tolist())):
        assert torch.equal(y[i, :, y0:y0 + s, x0:x0 + s], torch.rot90(x[i, :, y0:y0 + s, x0:x0 + s], k, (1, 2)))
        outside = masks[i, 0] == 0
        assert torch.equal(y[i][:, outside], x[i][:, outside])
        assert masks[i].sum() == s * s
    # k = 0 is the identity; inverse rotation restores the input
    assert torch.equal(rotate_regions(x, boxes, [0, 0, 0]), x)
    assert torch.equal(rotate_regions(y, boxes, (4 - ks) % 4), x)
    # feature maps at stride 4: the region scales exactly
    fb, fk = sample_square_regions(np.random.RandomState(0), 3, (32, 40), (0.3, 0.6), align=4)
    f = torch.rand(3, 5, 8, 10)
    g = rotate_regions(f, fb, fk, scale=4)
    for i, ((y0, x0, s), k) in enumerate(zip((fb // 4).tolist(), fk.tolist())):
        assert torch.equal(g[i, :, y0:y0 + s, x0:x0 + s], torch.rot90(f[i, :, y0:y0 + s, x0:x0 + s], k, (1, 2)))
    with pytest.raises(ConfigError):
        rotate_regions(f, np.array([[2, 0, 4]] * 3), [1, 1, 1], scale=4)


def test_region_rotate_array_and_dict_invertible():
    x = MetaTensor(torch.rand(2, 16, 16), meta={"filename_or_obj": "img.png"})
    rot = RandRegionRotate90(side_range=(0.5, 0.75)).set_random_state(7)
    y = rot(x)
    (y0, x0, s), k = rot.box, rot.k
    region = (slice(None), slice(y0, y0 + s), slice(x0, x0 + s))
    assert torch.equal(y[region].as_tensor(), torch.rot90(x[region], k, (1, 2)).as_tensor())
    op = y.applied_operations[-1]
    assert op["class"] == "RandRegionRotate90" and op["extra_info"]["k"] == k
    assert isinstance(y, MetaTensor) and y.meta["filename_or_obj"] == "img.png"
    assert torch.equal(rot.inverse(y).as_tensor(), x.as_tensor())
    assert len(y.applied_operations) == 0  # the inverse popped its record
    fixed = RegionRotate90(k=3, box=(4, 4, 8))
    w = torch.rand(1, 16, 16)
    z = fixed(w)
    assert torch.equal(z[:, 4:12, 4:12].as_tensor(), torch.rot90(w[:, 4:12, 4:12], 3, (1, 2)))
    assert torch.equal(fixed.inverse(z).as_tensor(), w)

    td = RandRegionRotate90d(["image", "label"], side_range=(0.25, 0.5), align=4).set_random_state(2)
    image = MetaTensor(torch.rand(3, 32, 32))
    label = MetaTensor(torch.randint(0, 3, (1, 32, 32)).float())
    d = td({"image": image, "label": label})
    k, (y0, x0, s) = d["rotation_k"], d["rotation_box"]
    assert s % 4 == 0 and y0 % 4 == 0 and x0 % 4 == 0
    for key, orig in (("image", image), ("label", label)):
        assert torch.equal(d[key][:, y0:y0 + s, x0:x0 + s].as_tensor(),
                           torch.rot90(orig[:, y0:y0 + s, x0:x0 + s], k, (1, 2)).as_tensor())
    # Invertd restores the label through the pipeline's record
    pipeline = Compose([td])
    d2 = pipeline({"image": MetaTensor(image.clone()), "label": MetaTensor(label.clone())})
    d2["pred"] = MetaTensor(d2["label"].clone())
    d2["pred"].applied_operations = list(d2["label"].applied_operations)
    inv = Invertd(keys="pred", transform=pipeline, orig_keys="label")(d2)
    assert torch.equal(inv["pred"].as_tensor(), label.as_tensor())
    # skipped transform: k = 0, empty box, data unchanged, still invertible
    sk = RandRegionRotate90d(["image"], prob=0.0)
    ds = sk({"image": MetaTensor(image.clone())})
    assert ds["rotation_k"] == 0 and ds["rotation_box"] == [0, 0, 0] and torch.equal(ds["image"], image)
    assert torch.equal(sk.inverse(ds)["image"].as_tensor(), image.as_tensor())
