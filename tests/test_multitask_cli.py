"""``medfound pretrain`` / ``medfound transfer`` / ``medfound demo``: end to end on tiny configs, errors."""

from __future__ import annotations

import json

import torch
from _multitask_utils import TINY

from medfound.cli import main
from medfound.multitask.pretrain import pretrain


def _config(multitask_demo, tmp_path, **trainer):
    config = {
        "tasks": str(multitask_demo / "tasks.json"),
        "roles": ["pretrain"],
        "task_names": ["ct_chest_nodule_cls", "microscopy_nuclei_seg", "xray_chest_nodule_det"],
        "device": "cpu",
        "network": dict(TINY),
        "trainer": {"max_iterations": 6, "batch_size": 4, "checkpoint_every": 3, **trainer},
        "validation": {"interval": 1, "max_batches_per_task": 1},
        "log_every": 3,
    }
    path = tmp_path / "pretrain.json"
    path.write_text(json.dumps(config))
    return path


def test_pretrain_command_writes_weights_and_resumes(multitask_demo, tmp_path, capsys):
    path = _config(multitask_demo, tmp_path)
    assert main(["pretrain", str(path), "-o", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "pre-training on 3 tasks" in out and "validation after epoch" in out
    run = tmp_path / "run"
    for name in ("model.pt", "encoder.pt", "network.json", "history.json", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    state = torch.load(run / "model.pt", weights_only=True)
    assert "shared.squeezer.norm.weight" in state and any(k.startswith("heads.ct_chest_nodule_cls.") for k in state)
    meta = json.loads((run / "network.json").read_text())
    assert meta["umedpt"]["embed_dim"] == TINY["embed_dim"] and len(meta["tasks"]) == 3
    history = json.loads((run / "history.json").read_text())
    assert history["validation"][-1]["iteration"] == 6 and "mean_score" in history["validation"][-1]
    # a second call finds the finished run and continues from it: more iterations, same file layout
    summary = pretrain(path, output_dir=run, overrides={"max_iterations": 9}, log=lambda m: None)
    assert summary["iterations"] == 9


def test_pretrain_and_transfer_errors_exit_with_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tasks": "tasks.json", "colour": "red"}))
    assert main(["pretrain", str(bad)]) == 2
    assert "unknown pre-training config keys ['colour']" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("tasks: [unclosed")
    assert main(["pretrain", str(tmp_path / "broken.yaml")]) == 2
    assert "broken.yaml" in capsys.readouterr().err
    assert main(["transfer", "--tasks", str(bad), "--encoder", "random", "-o", str(tmp_path)]) == 2
    assert "NAME=SOURCE" in capsys.readouterr().err


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
    assert "microscopy_nuclei_phenotype_cls" in capsys.readouterr().out
    result = json.loads((tmp_path / "t" / "transfer_results.json").read_text())
    assert [r["n_train"] for r in result["summary"]] == [4.0, 40.0] and len(result["runs"]) == 4
    assert (tmp_path / "t" / "transfer_plot.png").stat().st_size > 0


def test_trainer_and_evaluator_from_a_bundle_config(multitask_demo):
    from monai.bundle import ConfigParser

    names = ["ct_chest_nodule_cls", "xray_chest_findings_mlc"]
    config = {
        "tasks_file": str(multitask_demo / "tasks.json"),
        "network": {
            "_target_": "medfound.networks.umedpt.UMedPT",
            **{k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()},
        },
        "trainer": {
            "_target_": "medfound.multitask.MultiTaskTrainer",
            "device": "cpu",
            "network": "@network",
            "tasks": "@tasks_file",
            "task_names": names,
            "max_iterations": 2,
            "batch_size": 2,
            "optimizer": {"name": "AdamW", "lr": 1e-4},
            "offload_heads": True,
        },
        "evaluator": {
            "_target_": "medfound.multitask.MultiTaskEvaluator",
            "device": "cpu",
            "network": "@network",
            "tasks": "@tasks_file",
            "task_names": names,
            "max_batches_per_task": 1,
            "batch_size": 4,
        },
        "run": ["$@trainer.run()", "$@evaluator.run()"],
    }
    json.loads(json.dumps(config))  # plain JSON values only
    parser = ConfigParser(config)
    parser.get_parsed_content("run")
    trainer, evaluator = parser.get_parsed_content("trainer"), parser.get_parsed_content("evaluator")
    assert trainer.state.iteration == 2 and trainer.shared_steps == 1
    assert {"ct_chest_nodule_cls/f1_macro", "xray_chest_findings_mlc/auc_macro"} <= set(evaluator.state.metrics)
