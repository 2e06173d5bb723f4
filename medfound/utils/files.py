"""Atomic file writes, clean-up of their temporaries, and paths that stay inside a folder.

Every file medfound writes that a later step reads (checkpoints, model weights, datalists,
split files, caches, reports) is written here: to a temporary file in the target's folder,
flushed to disk, then renamed over the target with ``os.replace``. A process killed at any
moment leaves either the previous file or the new one, never a torn one; the temporary it
may leave behind is named ``.<name>.<token>.tmp[<suffixes>]`` so that
:func:`remove_stale_temporaries` can find it on the next start.

File names built from values a user or a dataset supplies (a domain name, a task name) go
through :func:`safe_filename`, and :func:`resolve_inside` refuses any path that would land
outside the folder the user named.

Example
-------
>>> import json, tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> p = atomic_write_json(folder / "run" / "summary.json", {"dice": 0.9})
>>> json.loads(p.read_text())
{'dice': 0.9}
>>> safe_filename("x/../../elsewhere/ESCAPED")
'x_.._.._elsewhere_ESCAPED'
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medfound.errors import ConfigError, WeightsError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "load_torch_file",
    "remove_stale_temporaries",
    "safe_filename",
    "resolve_inside",
]

#: temporaries written by :func:`atomic_path`: ``.<name>.<8 hex>.tmp`` plus, optionally, the target's suffixes
_TEMP_PATTERN = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(\.[A-Za-z0-9]+)*$")


def _fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - a writer that removed its own output
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    For writers that take a file name (``nibabel.save``, ``PIL.Image.save``, ``np.save``).
    The parent folder is created. On an exception the temporary is removed and nothing at
    ``path`` changes.

    Parameters
    ----------
    path : the final file.
    keep_suffix : end the temporary's name with ``path``'s suffixes (``.nii.gz``), for
        writers that pick the format from the name.

    Example
    -------
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if keep_suffix else ""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, sort_keys: bool = False,
                      default: Any = None) -> Path:
    """Write ``obj`` as JSON (with a trailing newline) to ``path`` atomically; returns ``path``."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically; returns ``path``.

    Example
    -------
    >>> import tempfile, torch
    >>> p = atomic_torch_save({"w": torch.ones(1)}, tempfile.mkdtemp() + "/x.pt")
    >>> torch.load(p, weights_only=True)["w"].tolist()
    [1.0]
    """
    import torch

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return path


def load_torch_file(path: str | os.PathLike, map_location: Any = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``; a missing, truncated or unsafe file raises
    :class:`~medfound.errors.WeightsError` naming it (never a raw unpickling traceback).

    ``weights_only=True`` is passed explicitly: torch 2.4-2.5 default to full unpickling,
    which runs code from the file.

    Example
    -------
    >>> import tempfile
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "last.pt"; _ = p.write_bytes(b"PK\\x03\\x04 torn")
    >>> try:
    ...     load_torch_file(p)
    ... except ValueError as err:
    ...     print(type(err).__name__, "cannot be read" in str(err), str(p) in str(err))
    WeightsError True True
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - RuntimeError, UnpicklingError, EOFError, zipfile errors, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(
            f"{what} {path} cannot be read (truncated, not a torch file, or holding objects other than "
            f"tensors and plain values): {first}"
        ) from None


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries an interrupted atomic write left in ``folder`` (not recursive).

    Call at the start of a run that writes into ``folder``, before any writer of this
    process is active. Returns the removed paths.

    Example
    -------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp()); _ = (d / ".last.pt.0a1b2c3d.tmp").write_bytes(b"torn")
    >>> [p.name for p in remove_stale_temporaries(d)]
    ['.last.pt.0a1b2c3d.tmp']
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in sorted(folder.iterdir()):
        if p.is_file() and _TEMP_PATTERN.match(p.name):
            p.unlink()
            removed.append(p)
    return removed


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(value: Any, max_length: int = 100) -> str:
    """A file name (no folder part) from an untrusted value: runs of other characters become ``_``.

    Path separators, ``..`` as a whole name, leading dots and empty names cannot come out, so
    the result never leaves the folder it is joined to.

    Example
    -------
    >>> safe_filename("Domain 1/test"), safe_filename(".."), safe_filename("")
    ('Domain_1_test', '_', '_')
    """
    name = _UNSAFE.sub("_", str(value)).lstrip(".")
    name = name[:max_length] or "_"
    return "_" if name in (".", "..") else name


def resolve_inside(root: str | os.PathLike, *parts: str | os.PathLike) -> Path:
    """``root / parts``, resolved; :class:`~medfound.errors.ConfigError` if it leaves ``root``.

    Example
    -------
    >>> resolve_inside("/runs", "a", "b.json").as_posix()
    '/runs/a/b.json'
    >>> try:
    ...     resolve_inside("/runs", "../etc/passwd")
    ... except ValueError as err:
    ...     print(err)
    path ../etc/passwd leaves the output folder /runs
    """
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        shown = Path(*parts).as_posix() if parts else ""
        raise ConfigError(f"path {shown} leaves the output folder {root}")
    return target
