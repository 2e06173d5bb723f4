"""Keep a medfound error to one line: hide the copies that ignite and MONAI's handlers log on the way out.

When a handler or a step raises, ignite logs "Engine run is terminating due to exception: ..."
(or "Current run is ...") and MONAI's ``StatsHandler`` logs the whole traceback before the exception reaches the caller.
For errors medfound raises on bad input (a :class:`~medfound.errors.MedfoundError`, whose
message names the file or key), the ``medfound`` command prints that message as its one line;
:class:`HandledErrorEcho` drops the two echoes, and nothing else, from the log handlers it is
added to (:func:`quiet_error_echoes`). Bugs (any other exception) keep every line.

Example
-------
>>> import logging, sys
>>> from medfound.errors import ConfigError
>>> echo = HandledErrorEcho()
>>> try:
...     raise ConfigError("x.json: bad")
... except ConfigError:
...     record = logging.LogRecord("monai", logging.ERROR, "", 0, "Exception: x", None, sys.exc_info())
>>> echo.filter(record)
False
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from medfound.errors import MedfoundError

__all__ = ["HandledErrorEcho", "quiet_error_echoes", "is_medfound_error"]

#: ignite's messages when a run ends with an exception (engine.py: the run, and the pass over the data)
_IGNITE_ECHOES = ("Engine run is terminating due to exception", "Current run is terminating due to exception")


def is_medfound_error(err: BaseException | None) -> bool:
    """Whether ``err`` is a medfound error or was raised from one (MONAI wraps errors of its components)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, MedfoundError):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


class HandledErrorEcho(logging.Filter):
    """Drops log records that only repeat a medfound error on its way to the caller."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and is_medfound_error(record.exc_info[1]):
            return False  # MONAI StatsHandler: logger.exception(...) of the error
        if record.name.startswith("ignite.") and record.getMessage().startswith(_IGNITE_ECHOES):
            return not is_medfound_error(sys.exc_info()[1])  # logged inside ignite's `except` block
        return True


def quiet_error_echoes(handlers: Iterable[logging.Handler]) -> None:
    """Add one :class:`HandledErrorEcho` to each of ``handlers`` (idempotent)."""
    for h in handlers:
        if not any(isinstance(f, HandledErrorEcho) for f in h.filters):
            h.addFilter(HandledErrorEcho())
