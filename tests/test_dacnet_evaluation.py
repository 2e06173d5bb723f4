"""Per-domain segmentation evaluation: hand-computed Dice/HD95, aggregation rules, files, model runs."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch

from medfound.errors import ConfigError, ImageReadError, LabelMismatchError
from medfound.evaluation.segmentation import (
    SegmentationResults,
    combine_results,
    dice_score,
    evaluate_segmentation,
    hd95_score,
    region_masks,
)

FUNDUS_REGIONS = {"disc": [1, 2], "cup": [2]}


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _hd95_brute_force(a: np.ndarray, b: np.ndarray, spacing=(1.0, 1.0)) -> float:
    """Symmetric HD95 over boundary pixels (4-neighbour erosion), written without MONAI or scipy."""

    def edges(m):
        padded = np.pad(m, 1)
        interior = m & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        return np.argwhere(m & ~interior) * np.asarray(spacing)

    ea, eb = edges(a), edges(b)
    d = np.sqrt(((ea[:, None, :] - eb[None, :, :]) ** 2).sum(-1))
    return float(max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95)))


def test_dice_hand_computed():
    pred = np.array([[1, 1, 0], [0, 1, 0]], bool)
    ref = np.array([[1, 0, 0], [0, 1, 1]], bool)
    assert dice_score(pred, ref) == pytest.approx(2 * 2 / (3 + 3))
    assert dice_score(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0  # both empty: 1 (documented)
    assert dice_score(np.zeros_like(ref), ref) == 0.0 and dice_score(ref, np.zeros_like(ref)) == 0.0
    with pytest.raises(LabelMismatchError, match="shapes differ"):
        dice_score(np.zeros((3, 3)), ref)


def test_hd95_hand_computed_and_against_brute_force():
    a = np.zeros((6, 7), bool)
    b = np.zeros((6, 7), bool)
    a[0, 0] = True
    b[3, 4] = True
    assert hd95_score(a, b) == pytest.approx(5.0)
    assert hd95_score(a, b, spacing=(2.0, 1.0)) == pytest.approx(math.sqrt(6**2 + 4**2))
    assert hd95_score(np.zeros((4, 4)), np.zeros((4, 4))) == 0.0
    assert math.isnan(hd95_score(a, np.zeros_like(a)))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :50]
    for _ in range(3):
        cy, cx, r = rng.uniform(12, 28), rng.uniform(12, 38), rng.uniform(5, 10)
        p = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        q = (yy - cy - rng.uniform(-3, 3)) ** 2 / 1.3 + (xx - cx) ** 2 < (r * 0.9) ** 2
        assert hd95_score(p, q) == pytest.approx(_hd95_brute_force(p, q), abs=1e-6)
        assert hd95_score(p, q, (0.5, 2.0)) == pytest.approx(_hd95_brute_force(p, q, (0.5, 2.0)), abs=1e-6)


def test_regions_are_unions_of_classes():
    label = np.array([0, 1, 2, 2, 1])
    masks = region_masks(label, FUNDUS_REGIONS)
    assert masks["disc"].tolist() == [False, True, True, True, True]
    assert masks["cup"].tolist() == [False, False, True, True, False]


def test_aggregation_mean_of_domain_means_and_nan_reporting():
    res = SegmentationResults({"fg": [1]}, metrics=("dice", "hd95"))
    ref = np.zeros((4, 4), int)
    ref[1:3, 1:3] = 1
    half = ref.copy()
    half[1:3, 2] = 0
    res.add(ref, ref, "a1", "A")  # dice 1
    res.add(half, ref, "a2", "A", subject="s2")  # dice 2*2/(2+4)
    res.add(np.zeros_like(ref), ref, "b1", "B")  # dice 0, hd95 NaN (empty prediction)
    s = res.summary()
    a = s["per_domain"]["A"]["fg"]["dice"]
    assert a["mean"] == pytest.approx((1 + 2 / 3) / 2) and a["n"] == 2 and a["n_nan"] == 0
    assert a["std"] == pytest.approx(np.std([1, 2 / 3], ddof=1))
    # overall = mean of the domain means, not the pooled case mean
    assert s["overall"]["fg"]["dice"]["mean"] == pytest.approx(((1 + 2 / 3) / 2 + 0) / 2)
    assert s["overall"]["fg"]["dice"]["n"] == 2
    b = s["per_domain"]["B"]["fg"]["hd95"]
    assert b["n"] == 1 and b["n_nan"] == 1 and math.isnan(b["mean"])
    assert s["overall"]["fg"]["hd95"]["n_nan_cases"] == 1
    table = res.format_table("hd95")
    assert "(1 NaN)" in table and "mean of domains" in table
    assert res.cases[1]["subject"] == "s2"
    with pytest.raises(LabelMismatchError, match="differ in shape"):
        res.add(ref[:3], ref, "x", "A")
    with pytest.raises(ConfigError, match="unknown metric"):
        SegmentationResults({"fg": [1]}, metrics=("iou",))


def test_json_and_csv_outputs(tmp_path):
    res = SegmentationResults(FUNDUS_REGIONS)
    ref = np.array([[0, 1, 2, 2]])
    res.add(ref, ref, "c1", "Domain1")
    res.add(np.array([[0, 1, 1, 2]]), ref, "c2", "Domain2")
    res.add_failure("c3", "Domain2", "ImageReadError: broken.png")
    path = res.to_json(tmp_path / "eval.json")
    data = json.loads(path.read_text())
    assert data["n_cases"] == 2 and data["n_skipped"] == 1 and data["skipped"][0]["case_id"] == "c3"
    assert data["per_domain"]["Domain2"]["cup"]["dice"]["mean"] == pytest.approx(2 / 3)
    cases_csv, summary_csv = res.to_csv(tmp_path / "eval.csv")
    rows = list(csv.DictReader(io.StringIO(cases_csv.read_text())))
    assert [r["case_id"] for r in rows] == ["c1", "c2"] and rows[1]["dice_cup"] == "0.6667"
    summary = list(csv.DictReader(io.StringIO(summary_csv.read_text())))
    mean_cup = next(r for r in summary if r["domain"] == "mean" and r["region"] == "cup")
    assert float(mean_cup["mean"]) == pytest.approx((1 + 2 / 3) / 2, abs=1e-4)
    combined = combine_results([res, res])
    assert len(combined.cases) == 4 and len(combined.skipped) == 2


def test_evaluate_segmentation_over_a_real_datalist(demo_root, tmp_path):
    from PIL import Image

    from medfound.data.fundus import fundus_datalist

    datalist = fundus_datalist(demo_root / "fundus", cache_dir=tmp_path / "cache")
    items = [it for it in datalist["data"] if it["split"] == "test"][::4]  # 8 cases, 4 domains
    labels = [np.asarray(Image.open(it["label"])).T for it in items]  # PIL loads (W, H) in MONAI's order

    queue = list(labels)

    def oracle(x):  # predicts the reference of the next case: Dice must be exactly 1
        y = torch.from_numpy(queue.pop(0).astype(np.int64))
        assert x.shape[-2:] == y.shape and x.shape[1] == 3 and 0 <= float(x.min()) and float(x.max()) <= 1
        return torch.nn.functional.one_hot(y, 3).permute(2, 0, 1)[None].float()

    broken = dict(items[0], image=str(tmp_path / "missing.png"), case_id="broken")
    res = evaluate_segmentation(oracle, [*items[:4], broken, *items[4:]], datalist["regions"],
                                metrics=("dice", "hd95"))
    assert len(res.cases) == 8 and [s["case_id"] for s in res.skipped] == ["broken"]
    assert res.skipped[0]["error"].startswith("ImageReadError")
    assert all(c["dice_disc"] == 1.0 and c["dice_cup"] == 1.0 and c["hd95_disc"] == 0.0 for c in res.cases)
    assert res.domains() == ["Domain1", "Domain2", "Domain3", "Domain4"]
    assert all(c["split"] == "test" for c in res.cases)

    def background(x):
        out = torch.zeros(x.shape[0], 3, *x.shape[-2:])
        out[:, 0] = 1
        return out

    res = evaluate_segmentation(background, items, datalist["regions"])
    assert all(c["dice_disc"] == 0.0 for c in res.cases)  # every reference has a disc
    with pytest.raises(ImageReadError, match=r"missing\.png: file not found \(case broken"):
        evaluate_segmentation(background, [broken], datalist["regions"], on_error="raise")


def test_evaluate_deeplab_restores_training_mode():
    from medfound.networks.deeplabv3plus import DeepLabV3Plus

    net = DeepLabV3Plus(num_classes=3, backbone="resnet18", base_channels=8, decoder_channels=16).train()
    item = {"image": torch.rand(3, 40, 52), "label": torch.randint(0, 3, (1, 40, 52)), "domain": "A", "case_id": "a"}
    res = evaluate_segmentation(net, [item, dict(item, case_id="b")], FUNDUS_REGIONS, transform=lambda d: d,
                                on_error="raise")
    assert net.training and len(res.cases) == 2
    assert res.cases[0]["dice_disc"] == res.cases[1]["dice_disc"]  # eval mode: deterministic
    assert all(0.0 <= c["dice_cup"] <= 1.0 for c in res.cases)
