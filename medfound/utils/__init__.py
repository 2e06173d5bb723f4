"""Shared mechanisms, one implementation each; they know nothing of the rest of medfound.

- :mod:`~medfound.utils.files`: atomic writes (bytes, text, JSON, ``torch.save``, any writer
  through :func:`~medfound.utils.files.atomic_path`), clean-up of temporaries a killed write
  left behind, file names from untrusted values and paths that must stay inside a folder;
- :mod:`~medfound.utils.seeding`: the one scheme that turns ``(seed, *keys)`` into
  independent, reproducible random streams;
- :mod:`~medfound.utils.devices`: ``"auto"`` / ``"cuda"`` / ``"cpu"`` to a ``torch.device``,
  one GPU per process under ``torchrun``;
- :mod:`~medfound.utils.config_files`: JSON / YAML config files with errors naming the file;
- :mod:`~medfound.utils.checks`: option checks whose errors name the option and the value.

Example
-------
>>> from medfound.utils import check_choice, derive_seed
>>> check_choice("cosine", ("cosine", "mse"), "feature_loss")
'cosine'
>>> derive_seed(0, "fundus", 3) == derive_seed(0, "fundus", 3)
True
"""

from __future__ import annotations

from medfound.utils.checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_mapping,
    check_module,
    check_pair,
    check_probability,
)
from medfound.utils.config_files import parsed_content, read_config_file
from medfound.utils.devices import local_rank, resolve_device, world_size
from medfound.utils.files import (
    atomic_path,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_torch_file,
    remove_stale_temporaries,
    resolve_inside,
    safe_filename,
)
from medfound.utils.seeding import (
    capture_rng_state,
    derive_seed,
    make_rng,
    restore_rng_state,
    seed_entropy,
    torch_generator,
)

__all__ = [
    "atomic_path",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "load_torch_file",
    "remove_stale_temporaries",
    "resolve_inside",
    "safe_filename",
    "derive_seed",
    "make_rng",
    "seed_entropy",
    "torch_generator",
    "capture_rng_state",
    "restore_rng_state",
    "resolve_device",
    "local_rank",
    "world_size",
    "read_config_file",
    "parsed_content",
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_mapping",
    "check_module",
    "check_pair",
    "check_probability",
]
