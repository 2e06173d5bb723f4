"""The demo's real nuclei tasks: tiles, masks and boxes against the shipped instance mask."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from medfound.demos.real_nuclei import DATA_DIR, boxes_from_instances, write_real_nuclei_tasks
from medfound.multitask.datasets import build_task_datasets
from medfound.multitask.tasks import load_tasks


def test_real_nuclei_tiles_masks_and_boxes(tmp_path):
    tasks = write_real_nuclei_tasks(tmp_path)
    instances = tifffile.imread(DATA_DIR / "nuclei_instances.tif")
    image = tifffile.imread(DATA_DIR / "nuclei_image.tif")
    assert instances.shape == image.shape == (512, 512) and len(np.unique(instances)) - 1 == 125
    det = json.loads((tmp_path / "real_nuclei_det_datalist.json").read_text())
    assert len(det["training"]) == 48 and len(det["validation"]) == 16
    item = det["validation"][5]  # tile row 6, column 5
    assert item["image"] == "images/tile_r6_c5.tif"
    tile = instances[384:448, 320:384]
    assert item["box"] == boxes_from_instances(tile) and len(item["box"]) == len(item["label"])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / item["image"]), image[384:448, 320:384])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "labels" / "tile_r6_c5.tif"), tile > 0)
    # a box by hand: the instance with the largest id inside that tile
    i = int(tile.max())
    rows, cols = np.nonzero(tile == i)
    if rows.size >= 4:
        assert [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1] in item["box"]
    # the entries load as task definitions, and their samples go through the default pipeline
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": tasks}))
    specs = load_tasks(tmp_path / "tasks.json")
    sample = build_task_datasets(specs, "val")["real_nuclei_seg"][0]
    assert (
        sample["image"].shape == (1, 64, 64)
        and 0.0 <= float(sample["image"].min()) <= float(sample["image"].max()) <= 1
    )
