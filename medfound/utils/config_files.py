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

__all__ = ["read_config_file", "parsed_content", "MAX_CONFIG_BYTES"]

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


def parsed_content(parser: Any, id: str) -> Any:
    """``parser.get_parsed_content(id)`` of a MONAI ``ConfigParser``, re-raising a medfound error as itself.

    MONAI wraps whatever a ``_target_`` or ``$`` expression raises in
    ``RuntimeError("Failed to instantiate ...")``; a bad value or file deserves the one-line
    error that names it. Other errors (bugs) propagate unchanged.

    Example
    -------
    >>> from monai.bundle import ConfigParser
    >>> from medfound.errors import ConfigError
    >>> parser = ConfigParser({"x": "$medfound.utils.check_int('two', 'batch_size')", "imports": ["$import medfound"]})
    >>> try:
    ...     parsed_content(parser, "x")
    ... except ConfigError as err:
    ...     print(type(err).__name__, "batch_size" in str(err))
    ConfigError True
    """
    from medfound.errors import MedfoundError

    try:
        return parser.get_parsed_content(id)
    except Exception as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, MedfoundError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None
