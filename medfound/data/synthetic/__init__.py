"""Deterministic synthetic datasets in the real public layouts, for demos and tests.

No real multi-site fundus, polyp or spinal-cord set can be shipped, so these generators
write look-alikes **in the layouts of the public releases**, and the adapters that read
real data read them unchanged. Every dataset folder carries a ``README.md`` and a
``manifest.json`` that say it is synthetic, with generator version and seed.

Example
-------
>>> import tempfile
>>> from medfound.data.synthetic import write_demo_data
>>> written = write_demo_data(tempfile.mkdtemp(), datasets=["polyp"], size="small", seed=1)
>>> sorted(written)
['polyp']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from medfound.data.synthetic.common import GENERATOR_VERSION, SIZES, check_size
from medfound.data.synthetic.fundus import write_fundus_demo
from medfound.data.synthetic.multitask import write_multitask_demo
from medfound.data.synthetic.polyp import write_polyp_demo
from medfound.data.synthetic.scgm import write_scgm_demo
from medfound.errors import ConfigError
from medfound.utils import atomic_write_json

__all__ = [
    "GENERATOR_VERSION",
    "SIZES",
    "DEMO_DATASETS",
    "write_demo_data",
    "write_fundus_demo",
    "write_polyp_demo",
    "write_scgm_demo",
    "write_multitask_demo",
]

#: dataset name -> writer; each writes into ``<out_dir>/<name>``
DEMO_DATASETS: dict[str, Callable[..., dict[str, Any]]] = {
    "fundus": write_fundus_demo,
    "polyp": write_polyp_demo,
    "scgm": write_scgm_demo,
    "multitask": write_multitask_demo,
}


def write_demo_data(
    out_dir: str | Path,
    datasets: Iterable[str] | None = None,
    size: str = "small",
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write the synthetic demo datasets, one sub-folder each, plus a top-level index.

    Parameters
    ----------
    out_dir : destination folder (created if needed).
    datasets : names from :data:`DEMO_DATASETS`; all of them when ``None``.
    size : ``"small"`` (default, the whole set in well under a minute on 2 CPU cores) or ``"medium"``.
    seed : master seed; the same seed writes byte-identical files.
    log : optional callback receiving one progress line per dataset.

    Returns
    -------
    dict
        Dataset name -> folder it was written to.
    """
    check_size(size)
    names = list(DEMO_DATASETS) if datasets is None else list(datasets)
    unknown = [n for n in names if n not in DEMO_DATASETS]
    if unknown:
        raise ConfigError(f"unknown demo dataset(s) {unknown}; choose from {', '.join(DEMO_DATASETS)}")
    root = Path(out_dir)
    written: dict[str, Path] = {}
    for name in names:
        start = time.perf_counter()
        manifest = DEMO_DATASETS[name](root / name, size=size, seed=seed)
        written[name] = root / name
        if log is not None:
            log(f"{name:<10} {len(manifest['files']):>5} files  {time.perf_counter() - start:6.1f} s  -> {root / name}")
    atomic_write_json(root / "demo_index.json", {
        "synthetic": True,
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "size": size,
        "datasets": {name: f"{name}/manifest.json" for name in written},
    }, sort_keys=True)
    return written
