"""``medfound pretrain`` / ``medfound transfer``: end to end on tiny configs, the bundle config they
compose (a hand-written JSON config trains the same weights), bad values, reproducibility, resume."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from _multitask_utils import TINY, LogCollector

from medfound.cli import main
from medfound.multitask.pretrain import pretrain

NAMES = ["ct_chest_nodule_cls", "microscopy_nuclei_seg", "xray_chest_nodule_det"]


def _config(multitask_demo, tmp_path, **trainer):
    config = {
        "tasks": str(multitask_demo / "tasks.json"),
        "roles": ["pretrain"],
        "task_names": NAMES,
        "device": "cpu",
        "network": dict(TINY),
        "trainer": {"max_iterations": 6, "batch_size": 4, "checkpoint_every": 3, **trainer},
        "validation": {"interval": 1, "max_batches_per_task": 1},
        "log_every": 3,
        "progress_bar": False,
    }
    path = tmp_path / "pretrain.json"
    path.write_text(json.dumps(config))
    return path


def _weights(path):
    return torch.load(path, weights_only=True)


def _assert_equal_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.usefixtures("single_torch_thread")
def test_pretrain_command_writes_weights_and_resumes_with_the_whole_history(multitask_demo, tmp_path, capsys):
    path = _config(multitask_demo, tmp_path)
    stats = LogCollector()
    loggers = [logging.getLogger(f"medfound.multitask.{n}") for n in ("train", "validation")]
    for log in loggers:
        log.addHandler(stats)
    try:
        assert main(["pretrain", str(path), "-o", str(tmp_path / "run")]) == 0
    finally:
        for log in loggers:
            log.removeHandler(stats)
    out = capsys.readouterr().out
    assert "pre-training on 3 tasks" in out and "seed 0" in out  # the defaulted seed is reported ...
    # StatsHandler: losses, metrics; an epoch is 3 tasks x the largest task's 40 batches (160 nodule images / 4)
    assert [m.split(" -- ")[0] for m in stats.messages if "loss: " in m] == [
        "Epoch: 1/1, Iter: 3/120", "Epoch: 1/1, Iter: 6/120"]
    assert any("mean_score: " in m for m in stats.messages)
    run = tmp_path / "run"
    for name in ("train.json", "model.pt", "encoder.pt", "network.json", "history.json", "last.pt"):
        assert (run / name).is_file(), name
    assert json.loads((run / "train.json").read_text())["seed"] == 0  # ... and recorded
    state = _weights(run / "model.pt")
    assert "shared.squeezer.norm.weight" in state and any(k.startswith("heads.ct_chest_nodule_cls.") for k in state)
    assert _weights(run / "encoder.pt").keys() == {k[len("shared.encoder."):] for k in state
                                                   if k.startswith("shared.encoder.")}
    meta = json.loads((run / "network.json").read_text())
    assert meta["umedpt"]["embed_dim"] == TINY["embed_dim"] and [t["name"] for t in meta["tasks"]] == NAMES
    history = json.loads((run / "history.json").read_text())
    assert [r["iteration"] for r in history["loss"]] == [3, 6]
    assert [r["iteration"] for r in history["validation"]] == [6] and "mean_score" in history["validation"][-1]
    # a second call finds the finished run and continues from it; history.json keeps what came before
    summary = pretrain(path, output_dir=run, overrides={"max_iterations": 9})
    assert summary["iterations"] == 9 and summary["last_validation"]["iteration"] == 9
    again = json.loads((run / "history.json").read_text())
    assert again["loss"][:2] == history["loss"] and [r["iteration"] for r in again["loss"]] == [3, 6, 9]
    assert again["validation"][0] == history["validation"][0]
    assert [r["iteration"] for r in again["validation"]] == [6, 9]
    assert sorted(p.name for p in run.iterdir()) == [
        "encoder.pt", "history.json", "last.pt", "model.pt", "network.json", "train.json"]  # no temporaries left


def _hand_written_bundle(multitask_demo, out) -> dict:
    """A MONAI bundle config written by hand (not by medfound's composer): ``_target_`` for every object."""
    return {
        "imports": ["$import functools"],
        "seed": 0,
        "device": "$torch.device('cpu')",
        "network": {"_target_": "medfound.networks.umedpt.UMedPT",
                    **{k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}},
        "tasks": {"_target_": "medfound.multitask.load_tasks", "source": str(multitask_demo / "tasks.json"),
                  "names": NAMES},
        "train_loader": {"_target_": "medfound.multitask.CyclicTaskLoader.from_tasks", "tasks": "@tasks",
                         "batch_size": 4, "seed": "@seed"},
        "val_loader": {"_target_": "medfound.multitask.BalancedValidationLoader.from_tasks", "tasks": "@tasks",
                       "batch_size": 4, "max_batches_per_task": 1},
        "optimizer": {"_target_": "torch.optim.AdamW", "_mode_": "callable", "lr": 1e-3, "weight_decay": 0.05},
        "lr_scheduler": {"_target_": "medfound.multitask.WarmupCosineLR", "_mode_": "callable", "total_steps": 2,
                         "warmup_steps": 1},
        "evaluator": {"_target_": "medfound.multitask.MultiTaskEvaluator", "device": "@device",
                      "network": "@network", "val_loader": "@val_loader", "tasks": "@tasks"},
        "trainer": {
            "_target_": "medfound.multitask.MultiTaskTrainer",
            "device": "@device",
            "network": "@network",
            "train_loader": "@train_loader",
            "tasks": "@tasks",
            "optimizer": "@optimizer",
            "lr_scheduler": "@lr_scheduler",
            "head_lr_scheduler": "@lr_scheduler",
            "max_iterations": 6,
            "train_handlers": [
                {"_target_": "ValidationHandler", "interval": 1, "validator": "@evaluator"},
                {"_target_": "StatsHandler", "tag_name": "loss",
                 "output_transform": "$monai.handlers.from_engine(['loss'], first=True)"},
            ],
        },
        "final_validation": {"_target_": "medfound.multitask.FinalValidation", "validator": "@evaluator"},
        "saver": {"_target_": "medfound.handlers.AtomicCheckpointSaver", "save_dir": str(out),
                  "save_dict": {"trainer": "@trainer"}, "final_files": {"model.pt": "@network"}},
        "initialize": ["$torch.manual_seed(@seed)", "$@final_validation.attach(@trainer)", "$@saver.attach(@trainer)"],
        "run": ["$@trainer.run()"],
    }


@pytest.mark.usefixtures("single_torch_thread")
def test_a_json_bundle_config_trains_the_weights_of_the_python_entry_point(multitask_demo, tmp_path):
    from monai.bundle import ConfigParser
    from monai.bundle import run as bundle_run

    config = {
        "tasks": str(multitask_demo / "tasks.json"),
        "task_names": NAMES,
        "device": "cpu",
        "network": dict(TINY),
        "trainer": {"max_iterations": 6, "batch_size": 4, "scheduler": {"name": "cosine", "warmup_steps": 1},
                    "optimizer": {"name": "AdamW", "lr": 1e-3, "weight_decay": 0.05}},
        "validation": {"max_batches_per_task": 1},
        "progress_bar": False,
    }  # no seed: it defaults to 0
    summary = pretrain(config, output_dir=tmp_path / "python")
    assert summary["seed"] == 0 and summary["iterations"] == 6 and summary["shared_steps"] == 2
    python = _weights(tmp_path / "python" / "model.pt")

    path = tmp_path / "hand.json"
    path.write_text(json.dumps(_hand_written_bundle(multitask_demo, tmp_path / "hand")))
    parser = ConfigParser()
    parser.read_config(path)
    parser.get_parsed_content("initialize")
    parser.get_parsed_content("run")
    trainer = parser.get_parsed_content("trainer")
    assert trainer.state.iteration == 6 and trainer.shared_steps == 2
    assert "mean_score" in parser.get_parsed_content("evaluator").state.metrics
    _assert_equal_weights(python, {k: v.detach() for k, v in parser.get_parsed_content("network").state_dict().items()})
    _assert_equal_weights(python, _weights(tmp_path / "hand" / "model.pt"))
    initial = {k: v.detach() for k, v in ConfigParser(json.loads(path.read_text())).get_parsed_content(
        "network").state_dict().items()}
    assert any(not torch.equal(initial[k], python[k]) for k in initial)  # training did move the weights

    # the bundle config pretrain wrote (train.json) runs with MONAI's runner, into another folder: same weights
    bundle_run(run_id="run", init_id="initialize", config_file=str(tmp_path / "python" / "train.json"),
               output_dir=str(tmp_path / "again"))
    _assert_equal_weights(python, _weights(tmp_path / "again" / "model.pt"))


BAD_PRETRAIN = [
    ({"trainer": {"bach_size": 4}}, "unknown key(s) ['bach_size'] in trainer"),
    ({"trainer": {"batch_size": 0}}, "trainer.batch_size must be an integer >= 1, got 0"),
    ({"trainer": {"batch_size": -2}}, "trainer.batch_size must be an integer >= 1, got -2"),
    ({"trainer": {"batch_size": "four"}}, "trainer.batch_size must be an integer >= 1, got 'four'"),
    ({"trainer": {"max_iterations": 0}}, "trainer.max_iterations must be an integer >= 1 or null, got 0"),
    ({"trainer": {"optimizer": {"name": "AdamW", "lr": -1e-4}}}, "trainer.optimizer.lr must be a number >= 0"),
    ({"trainer": {"optimizer": {"name": "Adamm"}}}, "trainer.optimizer.name 'Adamm' is not a torch.optim.Optimizer"),
    ({"trainer": {"scheduler": "cosin"}}, "trainer.scheduler.name must be one of ['constant', 'cosine']"),
    ({"trainer": {"amp": "yes"}}, "trainer.amp must be true or false, got 'yes'"),
    ({"network": {"embed_dim": 0}}, "network.embed_dim must be an integer >= 1, got 0"),
    ({"network": {"embed_dims": 8}}, "unknown key(s) ['embed_dims'] in network"),
    ({"log_every": 0}, "log_every must be an integer >= 1, got 0"),
    ({"device": "tpu:7"}, "device 'tpu:7' is not a device"),
    ({"seed": "abc"}, "seed must be an integer >= 0, got 'abc'"),
    ({"validation": {"interval": 0}}, "validation.interval must be an integer >= 1 or null, got 0"),
    ({"validation": {"max_batches": 2}}, "unknown key(s) ['max_batches'] in validation"),
    ({"colour": "red"}, "unknown pre-training config keys ['colour']"),
    ({"roles": []}, "roles must be a name or a non-empty list of names"),
]


@pytest.mark.parametrize("change, message", BAD_PRETRAIN, ids=[m.split(" ")[0] for _, m in BAD_PRETRAIN])
def test_bad_pretrain_values_are_one_line_naming_the_key(tmp_path, capsys, change, message):
    config = {"tasks": "tasks.json", "network": dict(TINY), "trainer": {"max_iterations": 2}}
    for key, value in change.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    assert main(["pretrain", str(path), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()  # refused before anything was written


BAD_COMMANDS = [
    (["pretrain", "CONFIG", "--max-iterations", "0"], "--max-iterations must be an integer >= 1, got 0"),
    (["pretrain", "CONFIG", "--max-epochs", "-1"], "--max-epochs must be an integer >= 1, got -1"),
    (["transfer", "--tasks", "TASKS", "--encoder", "r=random", "-o", "OUT", "--batch-size", "0"],
     "--batch-size must be an integer >= 1, got 0"),
    (["transfer", "--tasks", "TASKS", "--encoder", "r=random", "-o", "OUT", "--finetune-epochs", "0"],
     "--finetune-epochs must be an integer >= 1, got 0"),
    (["transfer", "--tasks", "TASKS", "--encoder", "a=random", "--encoder", "a=OUT", "-o", "OUT"],
     "--encoder name 'a' is given twice"),
    (["transfer", "--tasks", "TASKS", "--encoder", "random", "-o", "OUT"], "NAME=SOURCE"),
    (["transfer", "--tasks", "TASKS", "--encoder", "r=random", "-o", "OUT", "--network", '{"embed_dim": 8,'],
     "--network is not valid JSON"),
    (["transfer", "--tasks", "TASKS", "--encoder", "r=random", "-o", "OUT", "--repeats", "0"],
     "repeats must be an integer >= 1, got 0"),
    (["transfer", "--tasks", "TASKS", "--encoder", "r=random", "-o", "OUT", "--fractions", "0"],
     "fractions (percent) must be a number > 0 and <= 100, got 0.0"),
]


@pytest.mark.parametrize("argv, message", BAD_COMMANDS, ids=[m.split(" ")[0] for _, m in BAD_COMMANDS])
def test_bad_command_values_are_rejected_not_dropped(tmp_path, capsys, argv, message):
    (tmp_path / "config.json").write_text(json.dumps({"tasks": "tasks.json"}))
    paths = {"CONFIG": tmp_path / "config.json", "TASKS": tmp_path / "tasks.json", "OUT": tmp_path / "out"}
    assert main([str(paths.get(a, a)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_config_file_errors_name_the_file(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("tasks: [unclosed")
    assert main(["pretrain", str(tmp_path / "broken.yaml")]) == 2
    assert "broken.yaml" in capsys.readouterr().err
    (tmp_path / "list.json").write_text("[1, 2]")
    assert main(["pretrain", str(tmp_path / "list.json")]) == 2
    assert "list.json must hold a dict" in capsys.readouterr().err


@pytest.mark.usefixtures("single_torch_thread")
def test_transfer_command_on_the_demo_task(multitask_demo, tmp_path, capsys):
    argv = [
        "transfer",
        "--tasks",
        str(multitask_demo / "tasks.json"),
        "--encoder",
        "random=random",
        "-o",
        str(tmp_path / "t"),
        "--modes",
        "linear",
        "--fractions",
        "10",
        "100",
        "--repeats",
        "2",
        "--network",
        json.dumps(TINY),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "microscopy_nuclei_phenotype_cls" in out and "repeat 1: f1_macro" in out
    result = json.loads((tmp_path / "t" / "transfer_results.json").read_text())
    assert [r["n_train"] for r in result["summary"]] == [4.0, 40.0] and len(result["runs"]) == 4
    assert (tmp_path / "t" / "transfer_plot.png").stat().st_size > 0
    bundle = json.loads((tmp_path / "t" / "transfer.json").read_text())  # the protocol as a bundle config
    assert bundle["transfer"]["_target_"] == "medfound.multitask.transfer.run_transfer"
    assert bundle["transfer"]["repeats"] == 2 and bundle["network"]["embed_dim"] == TINY["embed_dim"]


@pytest.mark.usefixtures("single_torch_thread")
def test_pretrain_without_validation_on_inline_tasks(tmp_path):
    from _multitask_utils import memory_task

    config = {"tasks": [memory_task("a", "classification", 4), memory_task("b", "multilabel", 4)],
              "network": dict(TINY), "trainer": {"max_iterations": 3, "batch_size": 2}, "validation": None,
              "progress_bar": False, "log_every": 2}
    summary = pretrain(config, output_dir=tmp_path / "run")
    assert summary["iterations"] == 3 and summary["shared_steps"] == 2 and summary["last_validation"] is None
    bundle = json.loads((tmp_path / "run" / "train.json").read_text())
    assert "evaluator" not in bundle and bundle["history"]["evaluator"] is None
    assert bundle["tasks"]["source"][0]["transforms"]["train"] == "<function: not JSON>"  # recorded, not runnable
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [r["iteration"] for r in history["loss"]] == [2, 3] and history["validation"] == []
