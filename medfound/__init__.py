"""medfound: a MONAI-based toolkit for medical imaging when labelled data is scarce.

Two published methods, packaged for MONAI users:

- **UMedPT**, a 2D multi-task foundation model (Swin V2 encoder, shared decoders,
  per-task heads) and its memory-flat multi-task training loop;
- **DAC**, dual-supervised asymmetric co-training for segmentation on unseen sites
  when labels come from one site only.

Example
-------
>>> import medfound
>>> medfound.__version__
'0.1.0'
"""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("medfound")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from medfound.errors import ConfigError, DatasetLayoutError, ImageReadError, LabelMismatchError, MedfoundError

__all__ = [
    "__version__",
    "MedfoundError",
    "ConfigError",
    "DatasetLayoutError",
    "ImageReadError",
    "LabelMismatchError",
]
