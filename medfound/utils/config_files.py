"""Reading configuration files: JSON, or YAML by suffix, with errors that name the file.

Example
-------
>>> import json, tempfile
>>> from pathlib import Path
>>> p = Path(tempfile.mkdtemp()) / "c.json"; _ = p.write_text(json.dumps({"a": 1}))
>>> read_config_file(p)
{'a': 1}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medfound.errors import ConfigError

__all__ = ["read_config_file", "MAX_CONFIG_BYTES"]

#: a config file is text written by a person or a tool; anything larger is not one
MAX_CONFIG_BYTES = 64 * 1024 * 1024


def read_config_file(path: str | os.PathLike, expect: type | tuple[type, ...] | None = None,
                     what: str = "config file") -> Any:
    """Parse a JSON file, or YAML for ``.yaml`` / ``.yml``.

    Parameters
    ----------
    path : the file.
    expect : the type the top level must have (e.g. ``dict``); ``None``: any.
    what : how error messages call the file.

    Raises
    ------
    ConfigError
        Missing, too large, unparseable, or of the wrong top-level type; the message names
        the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {path} is {size} bytes, more than a config file can be ({MAX_CONFIG_BYTES})")
    yaml_file = path.suffix.lower() in (".yaml", ".yml")
    try:
        text = path.read_text(encoding="utf-8")
        if yaml_file:
            import yaml

            value = yaml.safe_load(text)
        else:
            value = json.loads(text)
    except Exception as err:  # noqa: BLE001 - json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError
        raise ConfigError(f"{what} {path}: not valid {'YAML' if yaml_file else 'JSON'}: {err}") from None
    if expect is not None and not isinstance(value, expect):
        names = " or ".join(t.__name__ for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise ConfigError(f"{what} {path} must hold a {names} at the top level, got {type(value).__name__}")
    return value
