"""CD-SSDG leave-one-domain-out splits: determinism, disjointness, protocol rules, files, CLI."""

from __future__ import annotations

import itertools
import json
import warnings

import pytest

from medfound.cli import main
from medfound.data.fundus import fundus_datalist
from medfound.data.splits import (
    SPLIT_PARTS,
    all_cdssdg_splits,
    load_split,
    make_cdssdg_split,
    save_split,
    split_filename,
)
from medfound.errors import ConfigError


@pytest.fixture(scope="module")
def fundus(demo_root, tmp_path_factory):
    return fundus_datalist(demo_root / "fundus", cache_dir=tmp_path_factory.mktemp("fundus_cache"))


def _generic(domains=("A", "B", "C"), n=10, subjects=None):
    items = []
    for d in domains:
        for i in range(n):
            it = {"image": f"/d/{d}/{i}.png", "label": f"/d/{d}/{i}_l.png", "domain": d, "case_id": f"{d}/{i:02d}"}
            if subjects:
                it["subject"] = f"{d}-s{i // subjects}"
            items.append(it)
    return {"dataset": "custom", "class_names": ["bg", "fg"], "regions": {"fg": [1]}, "data": items}


def _keys(part):
    return [it["case_id"] for it in part]


@pytest.mark.parametrize("ratio", [0.1, 0.2, 1.0])
def test_fundus_splits_follow_the_protocol(fundus, ratio):
    by_id = {it["case_id"]: it for it in fundus["data"]}
    for test_domain, labeled_domain in itertools.permutations(fundus["domains"], 2):
        split = make_cdssdg_split(fundus, test_domain, labeled_domain, labeled_ratio=ratio, seed=3)
        ids = [k for p in SPLIT_PARTS for k in _keys(split[p])]
        assert len(ids) == len(set(ids))  # no item in two parts
        images = [it["image"] for p in SPLIT_PARTS for it in split[p]]
        assert len(images) == len(set(images))
        # the test domain is untouched: its test folder is the test set, nothing of it elsewhere
        expected_test = sorted(k for k, it in by_id.items() if it["domain"] == test_domain and it["split"] == "test")
        assert _keys(split["test"]) == expected_test
        for part in ("labeled", "unlabeled", "validation"):
            assert all(it["domain"] != test_domain and it["split"] == "train" for it in split[part])
        assert {it["domain"] for it in split["labeled"] + split["validation"]} == {labeled_domain}
        assert all("label" in it for it in split["labeled"] + split["validation"] + split["test"])
        assert all("label" not in it and it["hidden_label"] == by_id[it["case_id"]]["label"]
                   for it in split["unlabeled"])
        # 16 training images per domain: 3 for validation, ratio of the other 13 labelled
        assert len(split["validation"]) == 3
        assert len(split["labeled"]) == max(1, round(ratio * 13))
        assert len(split["unlabeled"]) == 2 * 16 + (13 - len(split["labeled"]))
        sources = {d for d in fundus["domains"] if d != test_domain}
        assert set(split["unlabeled_domains"]) == (sources if ratio < 1 else sources - {labeled_domain})
        assert split["counts"] == {p: len(split[p]) for p in SPLIT_PARTS}
        assert (split["dataset"], split["regions"], split["synthetic"]) == ("fundus", fundus["regions"], True)
        assert (split["test_domain"], split["labeled_domain"], split["labeled_ratio"], split["seed"]) == (
            test_domain, labeled_domain, ratio, 3)


def test_splits_are_deterministic_and_nested(fundus):
    a = make_cdssdg_split(fundus, "Domain1", "Domain2", labeled_ratio=0.2, seed=0)
    b = make_cdssdg_split(json.loads(json.dumps(fundus)), "Domain1", "Domain2", labeled_ratio=0.2, seed=0)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    other_seed = make_cdssdg_split(fundus, "Domain1", "Domain2", labeled_ratio=0.2, seed=1)
    assert _keys(other_seed["labeled"]) != _keys(a["labeled"])
    more = make_cdssdg_split(fundus, "Domain1", "Domain2", labeled_ratio=0.5, seed=0)
    # same seed: the same validation set for every ratio, and labelled sets grow by inclusion
    assert _keys(more["validation"]) == _keys(a["validation"])
    assert set(_keys(a["labeled"])) < set(_keys(more["labeled"]))
    # scan order of the datalist does not matter
    shuffled = dict(fundus, data=list(reversed(fundus["data"])))
    assert make_cdssdg_split(shuffled, "Domain1", "Domain2", labeled_ratio=0.2)["labeled"] == a["labeled"]


def test_subjects_stay_together():
    datalist = _generic(n=12, subjects=3)  # 4 subjects of 3 slices per domain
    for seed in range(5):
        split = make_cdssdg_split(datalist, "C", "A", labeled_ratio=0.5, val_ratio=0.25, seed=seed)
        where = {}
        for part in SPLIT_PARTS:
            for it in split[part]:
                where.setdefault(it["subject"], set()).add(part)
        assert all(len(parts) == 1 for parts in where.values())
        assert len(split["validation"]) == 3 and len(split["labeled"]) == 6  # 1 and 2 of 4 subjects


def test_generic_datalist_options():
    datalist = _generic()
    split = make_cdssdg_split(datalist, "B", labeled_ratio=0.5, labeled_rest="drop", keep_hidden_labels=False)
    assert split["labeled_domain"] == "A" and split["predefined_splits"] is False
    assert split["unlabeled_domains"] == ["C"] and len(split["unlabeled"]) == 10
    assert all("hidden_label" not in it for it in split["unlabeled"])
    assert len(split["test"]) == 10 and len(split["labeled"]) == 4 and len(split["validation"]) == 2
    no_val = make_cdssdg_split(datalist, "B", "C", val_ratio=0.0)
    assert no_val["validation"] == [] and len(no_val["labeled"]) == 10
    splits = list(all_cdssdg_splits(datalist))
    assert [(s["test_domain"], s["labeled_domain"]) for s in splits] == [
        ("A", "B"), ("A", "C"), ("B", "A"), ("B", "C"), ("C", "A"), ("C", "B")]
    assert split_filename(splits[0]) == "custom_test-A_lab-B_r1_s0.json"


def test_split_errors():
    datalist = _generic()
    with pytest.raises(ConfigError, match=r"test domain 'Z' is not in the datalist; domains: \['A', 'B', 'C'\]"):
        make_cdssdg_split(datalist, "Z")
    with pytest.raises(ConfigError, match="must differ"):
        make_cdssdg_split(datalist, "A", "A")
    with pytest.raises(ConfigError, match="labeled_ratio"):
        make_cdssdg_split(datalist, "A", labeled_ratio=0)
    with pytest.raises(ConfigError, match="val_ratio"):
        make_cdssdg_split(datalist, "A", val_ratio=1.0)
    with pytest.raises(ConfigError, match="at least 2 domains"):
        make_cdssdg_split(_generic(domains=("A",)), "A")
    broken = _generic()
    del broken["data"][3]["domain"]
    with pytest.raises(ConfigError, match="lack 'image' or 'domain'"):
        make_cdssdg_split(broken, "A")
    unlabeled_test = _generic()
    for it in unlabeled_test["data"]:
        if it["domain"] == "C":
            del it["label"]
    with pytest.raises(ConfigError, match=r"10 test-domain \(C\) item\(s\) have no 'label'"):
        make_cdssdg_split(unlabeled_test, "C")
    assert make_cdssdg_split(unlabeled_test, "B", "A")["counts"]["unlabeled"] == 10  # fine as unlabelled


def test_saved_split_reads_with_monai(fundus, tmp_path):
    from monai.data import load_decathlon_datalist

    split = make_cdssdg_split(fundus, "Domain4", "Domain1", labeled_ratio=0.2)
    path = save_split(tmp_path / "splits" / split_filename(split), split)
    for part in SPLIT_PARTS:
        assert load_decathlon_datalist(path, data_list_key=part) == split[part]
        assert load_split(path, part) == split[part]
    assert load_split(path)["test_domain"] == "Domain4"
    # a domain name that is also a folder next to the file: warned, and load_split is safe
    (tmp_path / "splits" / "Domain1").mkdir()
    with pytest.warns(UserWarning, match="load_split"):
        save_split(tmp_path / "splits" / "again.json", split)
    with pytest.raises(ConfigError, match="unknown split part"):
        load_split(path, "train")


def test_cli_datalist_and_split(demo_root, tmp_path, capsys):
    root = demo_root / "fundus"
    datalist = tmp_path / "fundus.json"
    assert main(["dac", "datalist", "fundus", str(root), "-o", str(datalist), "--cache-dir",
                 str(tmp_path / "cache")]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    assert main(["dac", "split", str(datalist), "-o", str(tmp_path / "all"), "--labeled-ratio", "0.2"]) == 0
    files = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert files == [f"fundus_test-Domain{t}_lab-Domain{1 if t != 1 else 2}_r0.2_s0.json" for t in range(1, 5)]
    one = tmp_path / "one.json"
    assert main(["dac", "split", str(root), "--dataset", "fundus", "--cache-dir", str(tmp_path / "cache"),
                 "--test-domain", "Domain3", "--labeled-domain", "Domain4", "--seed", "2", "-o", str(one)]) == 0
    split = load_split(one)
    assert (split["test_domain"], split["labeled_domain"], split["seed"]) == ("Domain3", "Domain4", 2)
    expected = make_cdssdg_split(fundus_datalist(root, cache_dir=tmp_path / "cache"), "Domain3", "Domain4", seed=2)
    assert split["labeled"] == expected["labeled"] and split["test"] == expected["test"]
    assert main(["dac", "split", str(datalist), "-o", str(tmp_path / "pairs"), "--all-labeled-domains"]) == 0
    assert len(list((tmp_path / "pairs").iterdir())) == 12
    capsys.readouterr()
    assert main(["dac", "split", str(datalist), "--test-domain", "Domain9", "-o", str(tmp_path / "x")]) == 2
    assert "medfound: error: test domain 'Domain9'" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["dac", "datalist", "fundus", str(tmp_path / "absent"), "-o", str(tmp_path / "y.json")]) == 2


def test_data_side_constructible_from_a_bundle_config(demo_root, tmp_path):
    """Datalist, split and a SCGM-style transform chain from ``_target_`` configs with JSON arguments."""
    from monai.bundle import ConfigParser

    config = {
        "dataset_dir": str(demo_root / "fundus"),
        "datalist": {"_target_": "medfound.data.fundus.fundus_datalist", "root": "@dataset_dir",
                     "cache_dir": str(tmp_path / "cache")},
        "split": {"_target_": "medfound.data.splits.make_cdssdg_split", "datalist": "@datalist",
                  "test_domain": "Domain2", "labeled_domain": "Domain3", "labeled_ratio": 0.5, "seed": 1},
        "test_items": "$@split['test']",
        "spinal": {"_target_": "Compose", "transforms": [
            {"_target_": "medfound.transforms.spinal.MajorityVoted", "keys": "label", "tie": "foreground"},
            {"_target_": "medfound.transforms.spinal.CordCenteredCropd", "keys": ["label"], "source_key": "label",
             "roi_size": [4, 4]},
            {"_target_": "medfound.transforms.spinal.NormalizePerSliced", "keys": "label", "axis": None,
             "mode": "minmax"}]},
    }
    parser = ConfigParser(config)
    split = parser.get_parsed_content("split")
    assert (split["test_domain"], split["labeled_domain"], split["labeled_ratio"]) == ("Domain2", "Domain3", 0.5)
    assert parser.get_parsed_content("test_items") == split["test"]
    import torch

    out = parser.get_parsed_content("spinal")({"label": torch.tensor([[[2, 0], [1, 0]], [[2, 0], [0, 0]]])})
    assert out["label"].shape == (1, 4, 4)
