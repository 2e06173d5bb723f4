"""DAC workflow: config, split files, bad items, train + evaluate end to end, CLI, the run as a bundle config."""

from __future__ import annotations

import csv
import doctest
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _dac_helpers import TINY_NET, tiny_config, write_tiny_split
from _helpers import cause_chain
from PIL import Image

import medfound.dac.bundle_configs as bundle_configs_mod
import medfound.dac.config as config_mod
import medfound.dac.evaluation as evaluate_mod
import medfound.transforms.regions as regions_mod
from medfound.cli import main
from medfound.dac import DACConfig, evaluate, load_config, load_split, train
from medfound.dac.data import preprocessing
from medfound.dac.evaluation import ResizedPredictor
from medfound.errors import ConfigError, DatasetLayoutError, LabelMismatchError
from medfound.evaluation.segmentation import evaluate_segmentation

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory) -> str:
    return write_tiny_split(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("module", [config_mod, evaluate_mod, regions_mod, bundle_configs_mod])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_config_rejects_bad_values_and_reads_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        DACConfig.from_dict({"method": {"nme": "dac"}})
    with pytest.raises(ConfigError, match="unknown config section"):
        DACConfig.from_dict({"methods": {}})
    # a key of an earlier release names what replaced it
    with pytest.raises(ConfigError, match=r"method.aux_layer no longer exists.*mask_layer.*rotation_layer"):
        DACConfig.from_dict({"method": {"aux_layer": "decoder"}})
    with pytest.raises(ConfigError, match="method.name"):
        DACConfig.from_dict({"method": {"name": "mean_teacher"}})
    with pytest.raises(ConfigError, match="needs two sub-models"):
        DACConfig.from_dict({"method": {"name": "fixmatch", "inference": "ensemble"}})
    with pytest.raises(ConfigError, match="batch_size_unlabeled >= 2"):
        DACConfig.from_dict({"data": {"batch_size_unlabeled": 1}})
    assert DACConfig.from_dict({"method": {"name": "cps"}, "data": {"batch_size_unlabeled": 1}}).threshold() == 0.0
    assert DACConfig.from_dict({"method": {"name": "fixmatch"}}).threshold() == 0.95
    assert DACConfig.from_dict({"method": {"name": "fixmatch", "confidence_threshold": 0.7}}).threshold() == 0.7
    (tmp_path / "c.yaml").write_text("method:\n  name: dac_no_aux\ntrain:\n  max_epochs: 3\n")
    (tmp_path / "c.json").write_text(json.dumps({"method": {"name": "supervised"}}))
    (tmp_path / "bad.json").write_text("{not json")
    assert load_config(tmp_path / "c.yaml").method.name == "dac_no_aux"
    cfg = load_config(tmp_path / "c.json", {"train.max_epochs": 7})
    assert (cfg.method.name, cfg.train.max_epochs) == ("supervised", 7)
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        load_config(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.json")
    # every default is JSON-serialisable, so a resolved config can be written and read back
    assert DACConfig.from_dict(json.loads(json.dumps(DACConfig().to_dict()))) == DACConfig()


def test_split_file_errors_name_the_file(tmp_path, tiny_split):
    with pytest.raises(DatasetLayoutError, match="missing.json"):
        load_split(tmp_path / "missing.json")
    split = json.loads(Path(tiny_split).read_text())
    bad = dict(split, labeled=[{"image": "x.png", "domain": "D1"}])
    (tmp_path / "nolabel.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=r"nolabel.json: labeled\[0\] \(.*x.png\) has no 'label'"):
        load_split(tmp_path / "nolabel.json")
    (tmp_path / "noclasses.json").write_text(json.dumps({k: v for k, v in split.items() if k != "class_names"}))
    with pytest.raises(ConfigError, match="class_names"):
        load_split(tmp_path / "noclasses.json")
    loaded = load_split(tiny_split)
    assert Path(loaded["labeled"][0]["image"]).is_absolute() and loaded["num_classes"] == 3


def test_label_values_outside_the_classes_name_the_file(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img.png")
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "lab.png")
    det = preprocessing(3, [8, 8])
    with pytest.raises(Exception) as info:
        det({"image": str(tmp_path / "img.png"), "label": str(tmp_path / "lab.png")})
    cause = cause_chain(info.value)[-1]
    assert isinstance(cause, LabelMismatchError) and "lab.png" in str(cause) and "[7]" in str(cause)


def test_train_then_evaluate_end_to_end_skipping_bad_items(tmp_path, tiny_split):
    split = json.loads(Path(tiny_split).read_text())
    root = Path(tiny_split).parent
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    split["unlabeled"].append({"image": "broken.png", "hidden_label": "D2/lab_0.png", "domain": "D2"})
    split["test"].append({"image": "broken.png", "label": "D3/lab_0.png", "domain": "D3", "case_id": "broken"})
    (root / "split_bad.json").write_text(json.dumps(split))
    cfg = tiny_config(str(root / "split_bad.json"), str(tmp_path / "run"))
    summary = train(cfg)
    out = tmp_path / "run"
    assert summary["iterations"] == 6 and summary["skipped"] == 1
    skipped = json.loads((out / "skipped_items.json").read_text())
    assert skipped[0]["image"].endswith("broken.png") and skipped[0]["part"] == "unlabeled"
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and all(0.0 <= r["val_mean_dice"] <= 1.0 for r in log)
    assert all(r["loss"] > 0 and "aux_rot" in r for r in log)
    pseudo = [json.loads(line) for line in (out / "pseudo_labels.jsonl").read_text().splitlines()]
    assert {k.split("|")[0] for k in pseudo[0]["pseudo_labels"]} == {"D2"}  # the unlabelled source domain
    best = json.loads((out / "best_model.json").read_text())
    assert best["selected_on"].startswith("validation") and best["iteration"] in (3, 6)
    assert json.loads((out / "config.json").read_text())["method"]["name"] == "dac"

    results = evaluate(cfg)["test"]
    assert len(results.cases) == 6 and len(results.skipped) == 1 and results.skipped[0]["case_id"] == "broken"
    summary = results.summary()
    assert list(summary["per_domain"]) == ["D3"]
    for region in ("disc", "cup"):
        assert 0.0 <= summary["per_domain"]["D3"][region]["dice"]["mean"] <= 1.0
    rows = list(csv.DictReader(open(out / "evaluation" / "test_cases.csv")))
    assert len(rows) == 6 and {"case_id", "domain", "dice_disc", "dice_cup"} <= set(rows[0])
    saved = json.loads((out / "evaluation" / "test.json").read_text())
    assert saved["overall"]["disc"]["dice"]["mean"] == pytest.approx(summary["overall"]["disc"]["dice"]["mean"])
    # the deployed model is a plain network: the final model evaluates too
    last = evaluate(cfg, {"evaluate.checkpoint": "last", "evaluate.parts": ["validation"]})
    assert len(last["validation"].cases) == 2
    written = json.loads((out / "evaluation" / "evaluate_config.json").read_text())
    assert written["network"]["path"].endswith("model.pt") and written["evaluator"]["parts"] == ["validation"]
    # the A+B ensemble is rebuilt from the checkpoint; it differs from A alone
    ensemble = evaluate(cfg, {"method.inference": "ensemble", "evaluate.parts": ["validation"],
                              "evaluate.output_dir": str(tmp_path / "ensemble")})
    assert len(ensemble["validation"].cases) == 2
    assert json.loads((tmp_path / "ensemble" / "evaluate_config.json").read_text())["network"]["path"].endswith(
        "last.pt")


def test_evaluation_known_answers_at_native_resolution(tmp_path):
    rng = np.random.RandomState(0)
    items = []
    for i in range(3):
        label = np.zeros((40, 30), np.uint8)
        label[5:25, 4:20] = 1
        label[10:18, 8:14] = 2 if i < 2 else 1  # the last case has no cup
        Image.fromarray((rng.rand(40, 30, 3) * 255).astype(np.uint8)).save(tmp_path / f"i{i}.png")
        Image.fromarray(label).save(tmp_path / f"l{i}.png")
        items.append(
            {
                "image": str(tmp_path / f"i{i}.png"),
                "label": str(tmp_path / f"l{i}.png"),
                "domain": "A" if i < 2 else "B",
                "case_id": str(i),
            }
        )
    det = preprocessing(3, None)  # native resolution
    sizes = []

    class Constant(torch.nn.Module):
        def __init__(self, cls):
            super().__init__()
            self.cls = cls

        def forward(self, x):
            sizes.append(tuple(x.shape[-2:]))
            logits = torch.zeros(x.shape[0], 3, *x.shape[-2:])
            logits[:, self.cls] = 1.0
            return logits

    regions = {"disc": [1, 2], "cup": [2]}
    res = evaluate_segmentation(ResizedPredictor(Constant(2), (16, 16)), items, regions, transform=det, device="cpu")
    assert set(sizes) == {(16, 16)}  # the network runs at the training size ...
    # ... and the prediction is scored at the native 40 x 30: all cup gives
    # disc Dice = 2 |disc| / (|disc| + H W) and cup Dice = 2 |cup| / (|cup| + H W)
    disc, cup, hw = 20 * 16, 8 * 6, 40 * 30
    assert res.cases[0]["dice_disc"] == pytest.approx(2 * disc / (disc + hw))
    assert res.cases[0]["dice_cup"] == pytest.approx(2 * cup / (cup + hw))
    assert res.cases[2]["dice_cup"] == 0.0  # no cup in the reference, all cup predicted
    summary = res.summary()
    assert summary["per_domain"]["A"]["cup"]["dice"]["n"] == 2
    assert summary["overall"]["cup"]["dice"]["mean"] == pytest.approx(0.5 * (2 * cup / (cup + hw)))
    background = evaluate_segmentation(ResizedPredictor(Constant(0), (16, 16)), items, regions, transform=det)
    assert background.cases[2]["dice_cup"] == 1.0  # empty reference and empty prediction
    assert background.cases[0]["dice_disc"] == 0.0


def test_cli_train_and_evaluate(tmp_path, tiny_split, capsys):
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(tiny_config(tiny_split, str(tmp_path / "cli_run"), method="supervised")))
    assert main(["dac", "train", str(cfg_path), "--set", "train.max_epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "done: supervised, 3 iterations" in out and "best model" in out
    assert main(["dac", "evaluate", str(cfg_path), "--parts", "test", "validation"]) == 0
    out = capsys.readouterr().out
    assert "test: 6 cases" in out and "validation: 2 cases" in out and "mean of domains" in out
    assert main(["dac", "train", str(cfg_path), "--set", "method.lambda_cps=-1"]) == 2
    assert "medfound: error: method.lambda_cps must be a number >= 0, got -1" in capsys.readouterr().err
    assert main(["dac", "evaluate", str(cfg_path), "--output-dir", str(tmp_path / "nothing_here")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_config_values_of_the_wrong_type_are_one_line_errors():
    for section, key, value, message in [
        ("data", "batch_size_labeled", "two", "data.batch_size_labeled must be an integer >= 1, got 'two'"),
        ("optim", "lr", "0.01", "optim.lr must be a number > 0, got '0.01'"),
        ("optim", "lr", -0.01, "optim.lr must be a number > 0, got -0.01"),
        ("method", "rampup_aux", "yes", "method.rampup_aux must be true or false, got 'yes'"),
        ("augment", "cutmix_area_range", [0.5, 0.25], "augment.cutmix_area_range must be a pair (min, max) with"),
        ("data", "spatial_size", [4, 4], "data.spatial_size must be an integer >= 8, got 4"),
        ("train", "max_epochs", 0, "train.max_epochs must be an integer >= 1, got 0"),
        ("train", "device", 3, "train.device must be a string, got 3"),
    ]:
        with pytest.raises(ConfigError) as info:
            DACConfig.from_dict({section: {key: value}})
        assert str(info.value).startswith(message), str(info.value)
    # a whole float where an integer belongs is that integer, not an error
    assert DACConfig.from_dict({"train": {"max_epochs": 3.0}}).train.max_epochs == 3


@pytest.mark.slow
def test_a_run_written_as_a_bundle_config_trains_like_the_python_entry_point(tmp_path, demo_root, data_dir):
    """The house convention: medfound.dac.train(config) is composition over ready objects, so a JSON
    config with a _target_ for every object (network factory, DACModel, objective, optimiser and
    scheduler factories, datasets, loader, trainer, evaluator, handlers), parsed by MONAI's
    ConfigParser, trains to the same weights and losses on the same config and seed."""
    from monai.bundle import ConfigParser

    split = tmp_path / "split.json"
    assert main(["dac", "split", str(demo_root / "fundus"), "--dataset", "fundus", "--test-domain", "Domain4",
                 "--cache-dir", str(tmp_path / "cache"), "-o", str(split)]) == 0  # demo_root is shared: no cache in it
    python_cfg = {
        "data": {"split": str(split), "spatial_size": [32, 32], "batch_size_labeled": 2, "batch_size_unlabeled": 2,
                 "num_workers": 0},
        "network": {"kwargs": dict(TINY_NET)},
        "train": {"output_dir": str(tmp_path / "python"), "max_epochs": 2, "iterations_per_epoch": 2,
                  "checkpoint_interval": 2, "log_interval": 1, "device": "cpu"},
    }
    summary = train(python_cfg)
    assert summary["iterations"] == 4 and summary["skipped"] == 0

    parser = ConfigParser()
    parser.read_config(data_dir / "dac" / "train.json")
    parser["split_file"] = str(split)
    parser["output_dir"] = str(tmp_path / "bundle")
    for key in ("initialize", "run", "finalize"):  # as `python -m monai.bundle run` does
        for i in range(len(parser[key])):
            parser.get_parsed_content(f"{key}#{i}")
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 4

    a = torch.load(tmp_path / "python" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "bundle" / "last.pt", weights_only=True)
    assert a.keys() == b.keys() and a["network"].keys() == b["network"].keys()
    for name in a["network"]:
        assert torch.equal(a["network"][name], b["network"][name]), name
    for i, state in a["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
    assert a["curves"] == b["curves"] and len(a["curves"]["series"]["loss"]) == 4  # every iteration's losses
    assert a["best"] == b["best"] and a["lr_scheduler"] == b["lr_scheduler"]
    logs = [[json.loads(line) for line in (tmp_path / run / "training_log.jsonl").read_text().splitlines()]
            for run in ("python", "bundle")]
    assert logs[0] == logs[1] and {"sup", "pseudo", "feat", "aux_mask", "aux_rot", "val_mean_dice"} <= set(logs[0][0])
    ma = torch.load(tmp_path / "python" / "model.pt", weights_only=True)
    mb = torch.load(tmp_path / "bundle" / "model.pt", weights_only=True)
    assert all(torch.equal(ma[k], mb[k]) for k in ma)

    # the Python entry point ran the config it wrote next to the run: it is a bundle config too
    written = json.loads((tmp_path / "python" / "train_config.json").read_text())
    assert written["train"]["trainer"]["_target_"] == "medfound.dac.trainer.DACTrainer"
    assert written["optimizer"] == {"_target_": "torch.optim.SGD", "_mode_": "callable", "lr": 0.01, "momentum": 0.9,
                                    "weight_decay": 0.0001, "nesterov": False}
    assert {"curves.png", "tensorboard", "pseudo_labels.jsonl", "best_model.json"} <= {
        p.name for p in (tmp_path / "python").iterdir()}
