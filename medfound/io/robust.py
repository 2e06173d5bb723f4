"""Loading that fails clearly, and datasets that skip bad cases instead of stopping a long run.

- :class:`SafeLoadImage` / :class:`SafeLoadImaged`: MONAI's ``LoadImage(d)`` with three changes:
  a reader given explicitly is not silently replaced by MONAI's other readers when it fails (its
  own error, naming the file, reaches you); any other failure becomes an
  :class:`~medfound.errors.ImageReadError` naming the file; and before MONAI's readers decode a
  file, the size its header declares is checked against the file and the memory limit
  (:func:`medfound.io.limits.check_image_file`); optionally NaN/inf are rejected.
- :class:`SkipBadCases`: wraps any map-style dataset (MONAI ``Dataset``, ``PersistentDataset``,
  ...). When an item fails to load or transform it is logged, appended to a JSON-lines report
  and replaced by the next good item, so every batch stays full and a DataLoader never sees a
  hole. Works with worker processes (each appends to the same report file).
- :func:`scan_cases`: check a whole datalist up front, write the report, return the good items
  (the way to go for ``CacheDataset``, which loads everything while it is built).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.transforms import LoadImage, LoadImaged
from monai.utils import ensure_tuple
from torch.utils.data import Dataset as TorchDataset

from medfound.errors import ImageReadError, MedfoundError
from medfound.io.limits import check_image_file
from medfound.io.registry import MEDFOUND_READERS
from medfound.transforms.checks import CheckFinite
from medfound.utils import atomic_write_text, check_bool, check_int

__all__ = [
    "SafeLoadImage", "SafeLoadImaged", "SafeLoadImageD", "SafeLoadImageDict",
    "SkipBadCases", "scan_cases", "read_skip_report", "root_cause",
]  # fmt: skip

logger = logging.getLogger(__name__)

#: readers that check the size a file declares themselves (medfound.io.limits)
_SELF_CHECKING = tuple(MEDFOUND_READERS.values())


def root_cause(err: BaseException) -> BaseException:
    """The innermost medfound error of an exception chain (MONAI wraps transform errors), else the deepest cause."""
    chain: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and all(cur is not c for c in chain):
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for e in reversed(chain):
        if isinstance(e, MedfoundError):
            return e
    return chain[-1]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class SafeLoadImage(LoadImage):
    """:class:`monai.transforms.LoadImage` that fails with a clear medfound error.

    Same arguments as ``LoadImage``, plus:

    Parameters
    ----------
    strict
        With readers given explicitly, try only those (MONAI would fall back to all its default
        readers, which may read the file differently, or bury the real error in a long message).
    check_finite
        Raise :class:`~medfound.errors.NonFiniteImageError` for NaN/inf in the loaded image.

    Example
    -------
    >>> from medfound.io import SafeLoadImage
    >>> load = SafeLoadImage(reader="RadiographReader", image_only=True)
    >>> load("not_a_dicom.txt")  # doctest: +SKIP
    Traceback (most recent call last):
    medfound.errors.ImageReadError: not_a_dicom.txt: not a DICOM file (...)
    """

    def __init__(
        self, reader=None, image_only: bool = True, *args, strict: bool = True, check_finite: bool = False, **kwargs
    ) -> None:
        super().__init__(reader, image_only, *args, **kwargs)
        n_user = 0 if reader is None else len(ensure_tuple(reader))
        self._user_readers: list[ImageReader] = self.readers[-n_user:] if n_user else []
        self.strict = check_bool(strict, "strict")
        self.check_finite = check_bool(check_finite, "check_finite")

    def __call__(self, filename, reader: ImageReader | None = None):
        name = str(ensure_tuple(filename)[0]) if filename is not None else "<none>"
        candidates = [reader] if reader is not None else (self._user_readers[::-1] if self.strict else [])
        if not candidates or not all(isinstance(r, _SELF_CHECKING) for r in candidates):
            # MONAI's readers decode whatever a header declares: check it first (medfound's own
            # readers check in get_data, where they know the region they read)
            for f in ensure_tuple(filename) if filename is not None else ():
                if isinstance(f, (str, os.PathLike)):
                    check_image_file(f)
        try:
            if candidates:
                out, errors = None, []
                for r in candidates:
                    try:
                        out = super().__call__(filename, r)
                        break
                    except Exception as err:
                        errors.append((r, err))
                if out is None:
                    first = next((e for _, e in errors if isinstance(e, MedfoundError)), None)
                    if first is not None:
                        raise first
                    raise ImageReadError(
                        f"{name}: cannot be read ("
                        + "; ".join(f"{type(r).__name__}: {_first_line(e)}" for r, e in errors)
                        + ")"
                    ) from errors[-1][1]
            else:
                out = super().__call__(filename, None)
        except MedfoundError:
            raise
        except Exception as err:
            raise ImageReadError(f"{name}: cannot be read ({type(err).__name__}: {_first_line(err)})") from err
        if self.check_finite:
            CheckFinite()(out if self.image_only else out[0])
        return out


class SafeLoadImaged(LoadImaged):
    """Dictionary form of :class:`SafeLoadImage`.

    Same arguments as ``LoadImaged`` plus ``strict`` and ``check_finite``.
    """

    def __init__(
        self,
        keys,
        reader=None,
        dtype=np.float32,
        meta_keys=None,
        meta_key_postfix: str = "meta_dict",
        overwriting: bool = False,
        image_only: bool = True,
        ensure_channel_first: bool = False,
        simple_keys: bool = False,
        prune_meta_pattern: str | None = None,
        prune_meta_sep: str = ".",
        allow_missing_keys: bool = False,
        expanduser: bool = True,
        *args,
        strict: bool = True,
        check_finite: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(
            keys, reader, dtype, meta_keys, meta_key_postfix, overwriting, image_only, ensure_channel_first,
            simple_keys, prune_meta_pattern, prune_meta_sep, allow_missing_keys, expanduser, *args, **kwargs,
        )  # fmt: skip
        self._loader = SafeLoadImage(
            reader, image_only, dtype, ensure_channel_first, simple_keys, prune_meta_pattern, prune_meta_sep,
            expanduser, *args, strict=strict, check_finite=check_finite, **kwargs,
        )  # fmt: skip


SafeLoadImageD = SafeLoadImageDict = SafeLoadImaged


def _describe(dataset: Any, index: int) -> Any:
    """The file names of a case, for the report (dict items: string values; else the item if a string)."""
    data = getattr(dataset, "data", None)
    try:
        item = data[index] if data is not None else None
    except Exception:
        item = None
    if isinstance(item, dict):
        return {
            str(k): (v if isinstance(v, (str, int, float)) else str(v))
            for k, v in item.items()
            if isinstance(v, (str, os.PathLike, list, tuple))
        }
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return None


def read_skip_report(path: str | os.PathLike) -> list[dict]:
    """The skipped cases recorded in a JSON-lines report, one entry per case (latest wins)."""
    p = Path(path)
    if not p.exists():
        return []
    entries: dict[Any, dict] = {}
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a killed process
            entries[json.dumps(e.get("case"), sort_keys=True) if e.get("case") is not None else e.get("index")] = e
    return sorted(entries.values(), key=lambda e: (e.get("index") is None, e.get("index")))


class SkipBadCases(TorchDataset):
    """Wrap a map-style dataset so that unreadable cases are skipped, logged and reported.

    ``dataset[i]`` is tried; if it raises one of ``errors``, the case is recorded (index, its
    file names, the error naming the file) and the next index is tried, up to ``max_consecutive``
    failures in a row. The same bad index is not retried in later epochs. The replacement keeps
    the dataset length and every batch full, so DataLoaders, samplers and distributed training
    work unchanged; the price is that a good case occasionally appears twice in an epoch.

    Parameters
    ----------
    dataset
        Any object with ``__len__`` and ``__getitem__`` (MONAI ``Dataset`` etc.).
    report_path
        JSON-lines file the skipped cases are appended to (shared by DataLoader workers);
        ``None`` keeps them in memory only (:attr:`skipped`).
    errors
        Exception types that mean "bad case" (default: medfound errors, ``OSError``,
        ``ValueError`` and ``RuntimeError``, which is how MONAI wraps transform failures).
    max_consecutive
        How many failing cases in a row are tolerated before the error is raised (a sign that the
        data or the pipeline is broken, not a few cases).

    Example
    -------
    >>> from monai.data import Dataset, DataLoader
    >>> from medfound.io import SafeLoadImaged, SkipBadCases
    >>> ds = SkipBadCases(Dataset(datalist, SafeLoadImaged("image")), report_path="skipped.jsonl")  # doctest: +SKIP
    >>> for batch in DataLoader(ds, batch_size=8, num_workers=4): ...  # doctest: +SKIP
    >>> ds.report()  # doctest: +SKIP
    [{'index': 17, 'case': {'image': 'case017.dcm'}, 'error': 'ImageReadError', 'message': 'case017.dcm: ...'}]
    """

    def __init__(
        self,
        dataset: Any,
        report_path: str | os.PathLike | None = None,
        errors: Sequence[type[BaseException]] = (MedfoundError, OSError, ValueError, RuntimeError),
        max_consecutive: int = 16,
    ) -> None:
        self.max_consecutive = check_int(max_consecutive, "max_consecutive", low=1)
        self.dataset = dataset
        self.report_path = None if report_path is None else Path(report_path)
        if self.report_path is not None:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
        self.errors = tuple(errors)
        self.skipped: list[dict] = []
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        n = len(self.dataset)
        if n == 0:
            raise IndexError("SkipBadCases: the dataset is empty")
        failures, last = 0, None
        for step in range(n):
            j = (int(index) + step) % n
            if j in self._bad:
                continue
            try:
                return self.dataset[j]
            except self.errors as err:
                self._record(j, err)
                failures, last = failures + 1, err
                if failures >= self.max_consecutive:
                    break
        cause = root_cause(last) if last is not None else None
        raise ImageReadError(
            f"SkipBadCases: {failures} case(s) in a row failed from index {index}"
            + (f"; last: {_first_line(cause)}" if cause is not None else "; every case is marked bad")
        ) from last

    def _record(self, index: int, err: BaseException) -> None:
        self._bad.add(index)
        cause = root_cause(err)
        entry = {
            "index": index,
            "case": _describe(self.dataset, index),
            "error": type(cause).__name__,
            "message": _first_line(cause),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "pid": os.getpid(),
        }
        self.skipped.append(entry)
        logger.warning("skipping case %d (%s): %s", index, entry["error"], entry["message"])
        if self.report_path is not None:
            # one short write per line with O_APPEND: lines from several workers do not interleave
            with open(self.report_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, default=str) + "\n")

    def report(self) -> list[dict]:
        """Skipped cases: from the report file (all processes) when there is one, else this process's."""
        if self.report_path is not None:
            return read_skip_report(self.report_path)
        return list(self.skipped)


def scan_cases(
    data: Sequence[Any],
    transform: Callable[[Any], Any],
    report_path: str | os.PathLike | None = None,
    errors: Sequence[type[BaseException]] = (MedfoundError, OSError, ValueError, RuntimeError),
    workers: int = 1,
) -> tuple[list[Any], list[dict]]:
    """Apply ``transform`` (e.g. the loading + checking part of a pipeline) to every case up front.

    Returns the good cases (in order) and the report entries of the bad ones; with
    ``report_path`` the report is also written there as JSON lines (replacing an old one).

    Example
    -------
    >>> from medfound.io import SafeLoadImaged, scan_cases
    >>> from medfound.transforms import CheckLabelMatchd
    >>> from monai.transforms import Compose
    >>> check = Compose([SafeLoadImaged(["image", "label"], ensure_channel_first=True), CheckLabelMatchd("label")])
    >>> good, bad = scan_cases(datalist, check, report_path="skipped.jsonl")  # doctest: +SKIP
    """
    errors = tuple(errors)

    def run(i: int) -> BaseException | None:
        try:
            transform(data[i])
        except errors as err:
            return err
        return None

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(run, range(len(data))))
    else:
        results = [run(i) for i in range(len(data))]
    good, bad = [], []
    for i, (item, err) in enumerate(zip(data, results)):
        if err is None:
            good.append(item)
            continue
        cause = root_cause(err)
        case = (
            {str(k): (v if isinstance(v, (str, int, float)) else str(v)) for k, v in item.items()}
            if isinstance(item, dict)
            else str(item)
        )
        bad.append({"index": i, "case": case, "error": type(cause).__name__, "message": _first_line(cause)})
        logger.warning("bad case %d (%s): %s", i, type(cause).__name__, _first_line(cause))
    if report_path is not None:
        atomic_write_text(report_path, "".join(json.dumps(e, default=str) + "\n" for e in bad))
    return good, bad
