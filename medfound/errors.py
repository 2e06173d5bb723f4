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


class WeightsError(MedfoundError, ValueError):
    """A weights file cannot be read or does not fit the network (missing/unexpected keys, shapes)."""


class ShapeError(MedfoundError, ValueError):
    """A tensor argument has the wrong shape, length or number of channels for the call."""


class InvalidImageError(MedfoundError, ValueError):
    """An image array cannot be used as given: wrong number of dimensions or channels,
    non-finite values, or content a transform needs that is absent (e.g. an empty field of view)."""


class UnsafePickleError(WeightsError):
    """A pickled file asks for a global (class or function) that a restricted importer does not allow."""


class UnsupportedImageError(ImageReadError):
    """A file is readable but holds what the reader does not handle (photometric interpretation,
    a transfer syntax without a decoder plugin, unknown axes, ...)."""


class NonFiniteImageError(ImageReadError):
    """An image holds NaN or infinite values."""


class SeriesGeometryError(ImageReadError):
    """The slices of an image series do not form one regular volume (mixed sizes or orientations,
    duplicate positions, missing slices or irregular spacing when checking is strict)."""


class OrientationError(ImageReadError):
    """An image's affine fails an orientation check (oblique, left-handed, sheared or degenerate)."""


class TooLargeError(ImageReadError, WeightsError):
    """A file asks for more memory than its own size can hold, or than the configured limit
    (``MEDFOUND_MAX_BYTES``, see :mod:`medfound.io.limits`) allows; it was refused before
    anything was allocated. Catch it as an image error or a weights error alike."""


class NonFiniteLossError(MedfoundError, FloatingPointError):
    """A training step gave a NaN or infinite loss; the run stopped before saving it."""


# every exception class defined above (append new classes above this line)
__all__ = [name for name, obj in list(globals().items()) if isinstance(obj, type) and issubclass(obj, MedfoundError)]
