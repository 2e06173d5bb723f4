"""Command-line values and configs that used to escape, vanish or end in a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medfound.cli import main
from medfound.dac.config import DACConfig, check_network
from medfound.errors import ConfigError


def _datalist(tmp_path: Path, domains) -> Path:
    items = [{"image": f"/d/{d}_{i}.png", "label": f"/d/{d}_{i}_l.png", "domain": d, "case_id": f"{d}/{i}"}
             for d in domains for i in range(4)]
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"name": "x", "data": items}))
    return path


def test_split_file_names_never_leave_the_output_folder(tmp_path, capsys):
    evil = "x/../../../../elsewhere/ESCAPED"
    datalist = _datalist(tmp_path, ["A", evil])
    out = tmp_path / "deep" / "out"
    assert main(["dac", "split", str(datalist), "-o", str(out)]) == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json") if p != datalist)
    assert len(written) == 2 and all(w.startswith("deep/out/") and w.count("/") == 2 for w in written)
    assert not list(tmp_path.rglob("ESCAPED*")) or all("deep/out" in str(p) for p in tmp_path.rglob("ESCAPED*"))


@pytest.mark.parametrize(
    ("domains", "extra", "message"),
    [([], [], "no items"), (["A"], [], "at least 2 domains"),
     (["A", "B"], ["--test-domain", "A", "--labeled-domain", "A"], "must differ from the test domain")],
)
def test_splits_that_make_nothing_are_errors(tmp_path, capsys, domains, extra, message):
    datalist = _datalist(tmp_path, domains)
    out = tmp_path / "out"
    assert main(["dac", "split", str(datalist), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medfound: error:") and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_dac_network_must_be_registered_unless_allowed():
    assert check_network(DACConfig.from_dict({"network": {"target": "deeplabv3plus"}})).endswith("DeepLabV3Plus")
    cfg = DACConfig.from_dict({"network": {"target": "collections.OrderedDict"}})
    with pytest.raises(ConfigError, match=r"not a registered network.*--allow-any-network"):
        check_network(cfg)
    assert check_network(cfg, allow_any_network=True) == "collections.OrderedDict"


@pytest.mark.parametrize(
    ("values", "where"),
    [({"data": {"intensity": "$__import__('os').system('true')"}}, "data.intensity"),
     ({"network": {"kwargs": {"backbone": {"_target_": "os.system"}}}}, "network.kwargs.backbone._target_"),
     ({"data": {"on_error": "ignore"}}, "data.on_error")],
)
def test_dac_config_is_plain_data(values, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        DACConfig.from_dict(values)


def test_set_can_repeat_and_leaves_the_config_path_alone(tmp_path, capsys):
    from medfound.cli import build_parser

    args = build_parser().parse_args(["dac", "train", "--set", "train.max_epochs=5", "--set", "data.seed=1",
                                      str(tmp_path / "cfg.json")])
    assert args.config == str(tmp_path / "cfg.json") and args.set == ["train.max_epochs=5", "data.seed=1"]


def test_help_says_configs_are_code(capsys):
    with pytest.raises(SystemExit):
        main(["dac", "train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "run only configs you wrote" in out and "--allow-any-network" in out


def test_convert_umedpt_output_folder_that_cannot_be_created_is_one_line(tmp_path, capsys):
    import zipfile

    archive = tmp_path / "a.pt.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "no encoder")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should go")
    assert main(["convert-umedpt", str(archive), str(blocker / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medfound: error: cannot create the output folder") and str(blocker / "out") in err
    assert len(err.splitlines()) == 1


def test_evaluate_uses_the_run_as_it_was_trained(tmp_path, caplog):
    """The run's config.json (with its --set overrides) rebuilds the network; only evaluation keys come from CONFIG."""
    from medfound.dac.workflow import evaluation_config

    run = tmp_path / "run"
    run.mkdir()
    split = tmp_path / "s.json"
    trained = DACConfig.from_dict({"data": {"split": str(split), "spatial_size": [48, 48]},
                                   "network": {"kwargs": {"backbone": "resnet18"}},
                                   "train": {"output_dir": str(run), "max_epochs": 7}})
    (run / "config.json").write_text(json.dumps(trained.to_dict()))
    given = {"data": {"split": str(split)}, "train": {"output_dir": str(run), "device": "cpu"},
             "evaluate": {"parts": ["validation"]}}
    with caplog.at_level("WARNING", logger="medfound.dac"):
        cfg = evaluation_config(given, {"evaluate.checkpoint": "last"})
    assert cfg.network.kwargs["backbone"] == "resnet18" and list(cfg.data.spatial_size) == [48, 48]
    assert cfg.train.max_epochs == 7 and cfg.train.device == "cpu"
    assert cfg.evaluate.parts == ["validation"] and cfg.evaluate.checkpoint == "last"
    assert "data.spatial_size" in caplog.text and "network.kwargs" in caplog.text


@pytest.mark.usefixtures("single_torch_thread")
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_truncated_last_pt_is_one_line_naming_it(tmp_path, capsys, command):
    from _dac_helpers import tiny_config, write_tiny_split

    split = write_tiny_split(tmp_path / "data", per_domain=3, n_validation=1)
    run = tmp_path / "run"
    run.mkdir()
    name = "last.pt" if command == "train" else "model.pt"  # evaluate --checkpoint last: the final model
    (run / name).write_bytes(b"PK\x03\x04 torn in the middle of a write")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(split, str(run))))
    extra = ["--checkpoint", "last", "--parts", "validation"] if command == "evaluate" else []
    assert main(["dac", command, str(config), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medfound: error:") and name in err and len(err.splitlines()) == 1, err
