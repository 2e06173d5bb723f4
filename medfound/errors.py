"""medfound's exception classes.

Every error raised on bad input is a :class:`MedfoundError` that also subclasses the
natural built-in exception, so callers can catch either ``medfound.MedfoundError`` or
e.g. ``ValueError``. Messages name the offending file or option and say what is wrong.

Example
-------
>>> from medfound.errors import ConfigError
>>> try:
...     raise ConfigError("size must be 'small' or 'medium', got 'huge'")
... except ValueError as err:
...     print(err)
size must be 'small' or 'medium', got 'huge'
"""

from __future__ import annotations

__all__ = ["MedfoundError", "ConfigError", "DatasetLayoutError", "ImageReadError", "LabelMismatchError", "ShapeError"]


class MedfoundError(Exception):
    """Base class of every error medfound raises on purpose."""


class ConfigError(MedfoundError, ValueError):
    """A configuration value or argument is invalid."""


class DatasetLayoutError(MedfoundError, FileNotFoundError):
    """A dataset folder does not follow the expected layout (missing or malformed files)."""


class ImageReadError(MedfoundError, OSError):
    """An image file cannot be read or decoded (truncated, not the claimed format, no pixel data, ...)."""


class LabelMismatchError(MedfoundError, ValueError):
    """A label or mask does not fit its image (shape, geometry or value range)."""


class ShapeError(MedfoundError, ValueError):
    """A tensor argument has the wrong shape, length or number of channels for the call."""


class WeightImportError(MedfoundError, ValueError):
    """A weight file or archive cannot be imported (not the expected format, structure or shapes)."""


class UnsafePickleError(WeightImportError):
    """A pickle asks for a global (class or function) that the restricted importer does not allow."""


__all__ += ["WeightImportError", "UnsafePickleError"]
