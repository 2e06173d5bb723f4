"""What a DAC bundle hands on: the deployable weights in ``models/`` and the evaluation tables.

- :func:`publish_model`: at the end of training, copy the run's selected network
  (``best_model.pt``, chosen on the labelled source domain's held-out part; the final
  ``model.pt`` when the split has no validation items) to the bundle's ``models/model.pt``,
  the file the inference and evaluation configs (and MONAI Label) load, with a
  ``model.json`` that says where it came from;
- :func:`require_weights`: the inference config's first step: a missing ``models/model.pt``
  is an error that says how to train it;
- :func:`print_results`: the per-domain Dice tables of an evaluation, printed.

Example
-------
>>> import tempfile, torch
>>> run, models = tempfile.mkdtemp(), tempfile.mkdtemp()
>>> _ = torch.save({"w": torch.ones(1)}, run + "/model.pt")
>>> publish_model(run, models).name
'model.pt'
>>> require_weights(models + "/model.pt").endswith("model.pt")
True
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medfound.dac.bundle_configs import BEST_MODEL, LAST_MODEL
from medfound.errors import DatasetLayoutError
from medfound.utils import atomic_write_bytes, atomic_write_json
from medfound.utils.devices import rank

__all__ = ["DEPLOYED_MODEL", "publish_model", "require_weights", "print_results"]

logger = logging.getLogger(__name__)

#: the bundle's deployable weights (a plain state dict of ``network_def``)
DEPLOYED_MODEL = "model.pt"


def publish_model(run_dir: str | os.PathLike, ckpt_dir: str | os.PathLike, name: str = DEPLOYED_MODEL) -> Path | None:
    """Copy the run's selected network to ``ckpt_dir/name`` (rank 0 only); returns the path written.

    ``best_model.pt`` (model selection on source validation) when it exists, else the final
    ``model.pt``. ``ckpt_dir/<stem>.json`` records the source file and, for a selected model,
    the validation metric and iteration (``best_model.json``).

    Raises
    ------
    DatasetLayoutError
        The run folder holds neither file (training has not finished).
    """
    if rank() != 0:
        return None
    run, out = Path(run_dir), Path(ckpt_dir) / name
    source = run / BEST_MODEL if (run / BEST_MODEL).is_file() else run / LAST_MODEL
    if not source.is_file():
        raise DatasetLayoutError(f"{run} holds neither {BEST_MODEL} nor {LAST_MODEL}: the training did not finish")
    atomic_write_bytes(out, source.read_bytes())
    info: dict[str, Any] = {"source": str(source.resolve())}
    described = source.with_suffix(".json")
    if described.is_file():
        info.update(json.loads(described.read_text()))
    else:
        info["selected_on"] = "none (final network: the split has no validation items)"
    atomic_write_json(out.with_suffix(".json"), info, default=str)
    logger.info("deployable network %s -> %s", source, out)
    return out


def require_weights(path: str | os.PathLike, train_command: str | None = None) -> str:
    """``path`` if the weights file exists; otherwise a :class:`DatasetLayoutError` saying how to get it.

    Parameters
    ----------
    path : the weights the config loads (``$@bundle_root + '/models/model.pt'``).
    train_command : the command that trains them (shown in the message).
    """
    p = Path(path)
    if not p.is_file():
        how = train_command or "python -m monai.bundle run --config_file configs/train.json"
        raise DatasetLayoutError(
            f"no trained weights at {p}: no download exists for this bundle; train them (on the synthetic demo "
            f"data unless dataset_dir is set) with `{how}`, which writes {p.name} into the bundle's models/ "
            "folder, or point the checkpoint path at your own weights")
    return str(p)


def print_results(results: Mapping[str, Any], title: str = "") -> Mapping[str, Any]:
    """Print the per-domain Dice table of each evaluated part; returns ``results``."""
    for part, res in results.items():
        head = f"{title} " if title else ""
        print(f"\n{head}Dice on the '{part}' part (per domain: mean ± std over cases; mean of domains last)")
        print(res.format_table())
    return results
