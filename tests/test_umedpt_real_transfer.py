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
