"""Two small REAL tasks for the UMedPT demo, cut from one fluorescence nuclei image.

The image and its instance mask ship with medfound (``medfound/demos/data``, from the PyPI
package ``stardist`` 0.9.2, originally the 2018 Data Science Bowl; see the README there).
:func:`write_real_nuclei_tasks` cuts them into tiles and writes MONAI datalists for
``real_nuclei_seg`` (foreground mask) and ``real_nuclei_det`` (one box per nucleus, clipped
to the tile), with the tile rows split into training and validation so that no nucleus is
in both.

Example
-------
>>> import tempfile
>>> tasks = write_real_nuclei_tasks(tempfile.mkdtemp())
>>> [(t["name"], t["counts"]["training"], t["counts"]["validation"]) for t in tasks]
[('real_nuclei_seg', 48, 16), ('real_nuclei_det', 48, 16)]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from medfound.utils import atomic_path, atomic_write_json

__all__ = ["DATA_DIR", "write_real_nuclei_tasks", "boxes_from_instances"]

DATA_DIR = Path(__file__).with_name("data")


def boxes_from_instances(instances: np.ndarray, min_pixels: int = 4) -> list[list[int]]:
    """``[x_min, y_min, x_max, y_max]`` (x = column, max exclusive) of every instance id with >= ``min_pixels``."""
    boxes = []
    for i in np.unique(instances):
        if i == 0:
            continue
        rows, cols = np.nonzero(instances == i)
        if rows.size >= min_pixels:
            boxes.append([int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1])
    return boxes


def write_real_nuclei_tasks(out_dir: str | Path, tile: int = 64, val_rows: int = 2) -> list[dict[str, Any]]:
    """Write the tiles and two datalists into ``out_dir``; return the two task entries (``tasks.json`` style).

    The last ``val_rows`` rows of tiles are the validation split. Datalist paths are relative
    to ``out_dir``; the entries' ``datalist`` is relative to ``out_dir`` too.
    """
    out = Path(out_dir)
    image = tifffile.imread(DATA_DIR / "nuclei_image.tif")
    instances = tifffile.imread(DATA_DIR / "nuclei_instances.tif")
    rows, cols = image.shape[0] // tile, image.shape[1] // tile
    seg: dict[str, list] = {"training": [], "validation": []}
    det: dict[str, list] = {"training": [], "validation": []}
    for r in range(rows):
        split = "validation" if r >= rows - val_rows else "training"
        for c in range(cols):
            window = (slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile))
            stem = f"tile_r{r}_c{c}.tif"
            for sub, array in (("images", image[window]), ("labels", (instances[window] > 0).astype(np.uint8))):
                with atomic_path(out / sub / stem) as tmp:
                    tifffile.imwrite(tmp, np.ascontiguousarray(array), compression="zlib")
            seg[split].append({"image": f"images/{stem}", "label": f"labels/{stem}"})
            boxes = boxes_from_instances(instances[window])
            det[split].append({"image": f"images/{stem}", "box": boxes, "label": [0] * len(boxes)})
    common = {
        "modality": "fluorescence microscopy",
        "role": "pretrain",
        "synthetic": False,
        "source": "stardist 0.9.2 data/images (2018 Data Science Bowl), see medfound/demos/data/README.md",
    }
    tasks = []
    for name, kind, classes, lists in (
        ("real_nuclei_seg", "segmentation", ["background", "nucleus"], seg),
        ("real_nuclei_det", "detection", ["nucleus"], det),
    ):
        atomic_write_json(out / f"{name}_datalist.json", {"name": name, "kind": kind, **lists}, indent=1)
        tasks.append(
            {
                "name": name,
                "kind": kind,
                "class_names": classes,
                "datalist": f"{name}_datalist.json",
                "counts": {k: len(v) for k, v in lists.items()},
                "image_size": [tile, tile],
                **common,
            }
        )
    return tasks
