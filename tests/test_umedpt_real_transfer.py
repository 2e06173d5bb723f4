"""The real-image transfer study (examples/umedpt_real_transfer.py): its tasks and its reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from _helpers import EXAMPLES, load_script

from medfound.demos.real_nuclei import DATA_DIR

EXAMPLE = EXAMPLES / "umedpt_real_transfer.py"


def test_nuclei_tasks_keep_the_held_out_half_out_of_pre_training(tmp_path):
    study = load_script(EXAMPLE)
    tasks = {t["name"]: t for t in study.nuclei_tasks(tmp_path)}
    assert tasks["nuclei_bottom_count_cls"]["role"] == "transfer" and tasks["nuclei_top_seg"]["role"] == "pretrain"
    assert all(t["synthetic"] is False for t in tasks.values())
    seg = json.loads((tmp_path / "nuclei_top_seg.json").read_text())
    count = json.loads((tmp_path / "nuclei_bottom_count_cls.json").read_text())
    assert (len(seg["training"]), len(seg["validation"])) == (63, 21)  # 7 rows x (9 | 3) columns of 64 px tiles
    instances = tifffile.imread(DATA_DIR / "nuclei_instances.tif")
    centres = [np.argwhere(instances == i).mean(0) for i in np.unique(instances) if i]
    for split in ("training", "validation"):
        for item in count[split][::7]:
            y, x = (int(v) for v in Path(item["image"]).stem.split("_")[1:])
            assert y >= 256  # bottom half only: never seen in pre-training (top half, rows < 256)
            n = sum(y <= r < y + 32 and x <= c < x + 32 for r, c in centres)
            assert item["label"] == int(n >= 1)
    # test tiles are >= 32 px right of every training tile
    xs = {s: [int(Path(i["image"]).stem.split("_")[2]) for i in count[s]] for s in ("training", "validation")}
    assert max(xs["training"]) + 32 <= 384 and min(xs["validation"]) >= 416
    labels = {s: [i["label"] for i in count[s]] for s in ("training", "validation")}
    assert (labels["training"].count(0), labels["training"].count(1)) == (190, 155)
    assert (labels["validation"].count(0), labels["validation"].count(1)) == (52, 23)


@pytest.mark.slow
def test_same_seed_same_table(tmp_path):
    study = load_script(EXAMPLE)
    kwargs = dict(sources=None, quick=True, seed=3, repeats=2, min_per_class=2, finetune_fractions=(100.0,),
                  iterations_per_task=None)
    first = study.run_study(tmp_path / "a", **kwargs)
    again = study.run_study(tmp_path / "b", **kwargs)
    assert first["summary"] == again["summary"]
    rows = first["summary"]["nuclei_bottom_count_cls"]
    assert {r["mode"] for r in rows} == {"linear", "finetune"} and all(r["n_train_min"] >= 6 for r in rows)
    assert first["table"].replace(str(tmp_path / "a"), "") == again["table"].replace(str(tmp_path / "b"), "")


def _initial_network(run_dir: Path):
    """The network (shared blocks and heads) a pre-training run starts from: its ``train.json``'s
    trainer built right after the ``torch.manual_seed`` its ``initialize`` runs first."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser(json.loads((run_dir / "train.json").read_text()))
    torch.manual_seed(parser.get_parsed_content("seed"))  # what the bundle's ``initialize`` runs first
    return parser.get_parsed_content("trainer").network


def test_random_frozen_reference_keeps_the_encoder_at_its_initial_weights(tmp_path, single_torch_thread):
    import torch

    from medfound.utils import load_torch_file

    study = load_script(EXAMPLE)
    result = study.run_study(tmp_path, sources=None, quick=True, seed=2, repeats=2, min_per_class=2,
                             finetune_fractions=(100.0,), iterations_per_task=None, random_frozen_reference=True,
                             transfer=False)
    tasks = json.loads((tmp_path / "data" / "tasks.json").read_text())["tasks"]
    pre_names = [t["name"] for t in tasks if t["role"] == "pretrain"]
    assert pre_names == ["nuclei_top_seg", "nuclei_top_det"]
    # the table: every pre-training task, no held-out one, both runs' final validation scores
    reference = json.loads((tmp_path / "pretrain_reference.json").read_text())
    assert reference == result["reference"] and reference["seed"] == 2
    assert [r["task"] for r in reference["rows"]] == pre_names
    for row, name in zip(reference["rows"], ("pretrain", "pretrain_random_frozen")):
        history = json.loads((tmp_path / name / "history.json").read_text())["validation"][-1]
        assert row["pretrained" if name == "pretrain" else "random_frozen"] == history[f"{row['task']}/{row['metric']}"]
    for row in reference["rows"]:
        assert row["difference"] == pytest.approx(row["pretrained"] - row["random_frozen"])
    text = (tmp_path / "pretrain_reference.md").read_text()
    assert all(f"| {n} | real |" in text for n in pre_names) and "nuclei_bottom_count_cls" not in text
    assert (tmp_path / "pretrain_reference_curves.png").stat().st_size > 0
    frozen_train = json.loads((tmp_path / "pretrain_random_frozen" / "train.json").read_text())
    assert frozen_train["trainer"]["frozen_shared"] is True
    assert not (tmp_path / "transfer").exists()

    # values: the frozen run's shared blocks (weights and buffers) are exactly the initial ones, its heads
    # moved; the pre-training from the same start moved the shared blocks
    starts = {}
    for name, shared_moves in (("pretrain_random_frozen", False), ("pretrain", True)):
        start = starts[name] = _initial_network(tmp_path / name).state_dict()
        final = load_torch_file(tmp_path / name / "model.pt")
        assert set(final) == set(start)
        shared = [k for k in start if not k.startswith("heads.") and start[k].is_floating_point()]
        heads = [k for k in start if k.startswith("heads.") and start[k].is_floating_point()]
        assert len(shared) > 10 and heads
        same = [torch.equal(final[k], start[k]) for k in shared]
        assert all(same) if not shared_moves else not all(same)
        assert not all(torch.equal(final[k], start[k]) for k in heads)
    # the reference starts from the pre-training's own random encoder (same seed, same config)
    assert all(torch.equal(starts["pretrain"][k], starts["pretrain_random_frozen"][k]) for k in starts["pretrain"])


def test_ct_level_task_windows_carry_the_quarter_of_their_slice(tmp_path):
    """The CT level task on a known phantom: a body rectangle (rows 40-112, columns 16-112 at
    128 px) with a lung hole; 64 px windows on a 32 px grid count when at least half is body, so
    the top row of windows (24 of 64 rows body) is left out and 2 x 3 windows per slice remain.
    Label = the quarter of the scan, validation = every 4th slice."""
    import SimpleITK as sitk

    study = load_script(EXAMPLE)
    n = 16
    hu = np.full((n, 512, 512), -1000.0, np.float32)
    hu[:, 160:448, 64:448] = 40.0  # soft tissue (x4 of the 128 px rectangle)
    hu[:, 240:360, 120:240] = -800.0  # a lung inside the body: filled into the body
    (tmp_path / "src" / "ct").mkdir(parents=True)
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(tmp_path / "src" / "ct" / "lung1_image.nrrd"))
    tasks = {t["name"]: t for t in study.ct_tasks(tmp_path / "out", tmp_path / "src")}
    level = json.loads((tmp_path / "out" / "ct_lung1_level_cls.json").read_text())
    assert tasks["ct_lung1_level_cls"]["class_names"] == ["first", "second", "third", "fourth"]
    assert tasks["ct_lung1_level_cls"]["counts"] == {"training": 12 * 6, "validation": 4 * 6}
    for split in ("training", "validation"):
        for item in level[split]:
            z, y, x = (int(v) for v in Path(item["image"]).stem.split("_")[1:])
            assert (z % 4 == 3) == (split == "validation")
            assert (y, x) in {(32, 0), (32, 32), (32, 64), (64, 0), (64, 32), (64, 64)}
            assert item["label"] == z // 4  # 16 slices: quarters of 4
            window = tifffile.imread(tmp_path / "out" / item["image"])
            assert window.shape == (64, 64)
    # the lung hole is lung in the tissue labels (inside the body), the rest of the rectangle soft tissue
    seg = tifffile.imread(tmp_path / "out" / "ct_lung1" / "seg_0.tif")
    assert seg[30, 20] == 1 and seg[50, 50] == 3 and seg[5, 5] == 0
