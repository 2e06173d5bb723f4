"""The one place where the MONAI Label app reads a DAC bundle (the seam between app and bundles).

A DAC bundle (``bundles/dac_<dataset>_segmentation``) is the single source of truth for what
the app serves and trains:

- ``configs/inference.json`` defines ``bundle_root``, ``device``, ``network_def`` (the
  DeepLabV3+ of the bundle, with ``num_classes`` and ``dropout``), ``spatial_size``,
  ``class_names``, ``preprocessing`` (a ``Compose`` over key ``"image"``), ``inferer`` and
  ``postprocessing`` (a ``Compose`` whose last transform is ``SaveImaged``), and loads
  ``$@bundle_root + '/models/model.pt'``;
- ``configs/train.json`` builds the DAC pieces under the ids of
  :mod:`medfound.dac.bundle_configs` and reads its split from ``split_file``.

:class:`InferenceBundle` parses ``inference.json`` (plus overlay files such as the bundle's
``configs/demo.json``) and hands out the pieces the infer task needs, without the
``SaveImaged`` step (the app writes the result itself, in the input's format).
:func:`training_parser` gives the parser of ``train.json`` with the same overlays and the
app's overrides (``split_file``, ``output_dir``, ``ckpt_dir``, budget). Only the ids named
here are resolved, so nothing else of the bundle (its demo datalist, its evaluator) is built.

This module needs only MONAI (no MONAI Label), so it is importable anywhere.

Example
-------
.. code-block:: python

    from medfound.label.bundle import InferenceBundle
    bundle = InferenceBundle("bundles/dac_fundus_segmentation", overlays=["demo.json"])
    bundle.class_names, bundle.model_path        # (['background', 'rim', 'cup'], '.../models/model.pt')
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser
from monai.transforms import Compose, SaveImaged

from medfound.errors import ConfigError, DatasetLayoutError

__all__ = ["BUNDLE_WEIGHTS", "InferenceBundle", "training_parser", "config_files"]

#: the deployable weights of a bundle, relative to its root (a plain state dict of ``network_def``)
BUNDLE_WEIGHTS = "models/model.pt"


def config_files(bundle_root: str | os.PathLike, config: str, overlays: Sequence[str] = ()) -> list[str]:
    """``configs/<config>.json`` of the bundle followed by the overlay files (names in ``configs/`` or paths).

    Raises
    ------
    DatasetLayoutError
        The bundle folder or one of the files does not exist.
    """
    root = Path(bundle_root)
    files = [root / "configs" / f"{config}.json"]
    for overlay in overlays:
        path = Path(overlay)
        files.append(path if path.is_absolute() or path.exists() else root / "configs" / overlay)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DatasetLayoutError(f"bundle {root}: missing config file(s) {missing}")
    return [str(f) for f in files]


def _parser(bundle_root: str | os.PathLike, config: str, overlays: Sequence[str],
            overrides: Mapping[str, Any] | None) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(config_files(bundle_root, config, overlays))
    parser["bundle_root"] = str(Path(bundle_root).resolve())
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


def training_parser(bundle_root: str | os.PathLike, overlays: Sequence[str] = (),
                    overrides: Mapping[str, Any] | None = None) -> ConfigParser:
    """The parser of the bundle's ``train.json`` (with ``overlays`` and ``overrides``; nothing built yet).

    The app overrides ``split_file`` (the split it wrote from the datastore), ``output_dir``
    (the run folder), ``ckpt_dir`` (where the trained network is published) and the budget.
    """
    return _parser(bundle_root, "train", overlays, overrides)


class InferenceBundle:
    """The inference pieces of a DAC bundle, parsed from its ``configs/inference.json``.

    Parameters
    ----------
    bundle_root : the bundle folder.
    overlays : extra config files merged over ``inference.json`` (names in ``configs/`` or paths),
        e.g. ``["demo.json"]`` for the small demo network; training must use the same ones.
    overrides : ids to set (e.g. ``{"device": "cpu"}``).
    """

    def __init__(self, bundle_root: str | os.PathLike, overlays: Sequence[str] = (),
                 overrides: Mapping[str, Any] | None = None) -> None:
        self.root = Path(bundle_root).resolve()
        self.name = self.root.name
        self.overlays = list(overlays)
        self.parser = _parser(self.root, "inference", self.overlays, overrides)
        missing = [k for k in ("network_def", "preprocessing", "postprocessing", "class_names")
                   if k not in self.parser]
        if missing:
            raise ConfigError(f"bundle {self.root}: inference.json lacks {missing}")

    def get(self, id: str) -> Any:
        """The parsed (instantiated) content of ``id``."""
        return self.parser.get_parsed_content(id)

    @property
    def class_names(self) -> list[str]:
        """Class names, background first (class index = position)."""
        return [str(c) for c in self.get("class_names")]

    @property
    def spatial_size(self) -> list[int] | None:
        """The working size of the network (``None`` when the bundle does not set one)."""
        return [int(v) for v in self.get("spatial_size")] if "spatial_size" in self.parser else None

    @property
    def model_path(self) -> str:
        """The bundle's deployable weights, ``bundle_root/models/model.pt``."""
        return str(self.root / BUNDLE_WEIGHTS)

    def network(self) -> Any:
        """A new instance of ``network_def`` (on the CPU, untrained)."""
        return self.parser.get_parsed_content("network_def", instantiate=True, lazy=False)

    def preprocessing(self) -> Compose:
        """The bundle's ``preprocessing`` (one instance, shared with ``Invertd`` in :meth:`postprocessing`)."""
        return self.get("preprocessing")

    def inferer(self) -> Any:
        """The bundle's ``inferer`` (``SimpleInferer`` when the bundle has none)."""
        if "inferer" in self.parser:
            return self.get("inferer")
        from monai.inferers import SimpleInferer

        return SimpleInferer()

    def postprocessing(self) -> list:
        """The transforms of ``postprocessing`` without the trailing ``SaveImaged``."""
        post = self.get("postprocessing")
        transforms = list(post.transforms if isinstance(post, Compose) else post)
        while transforms and isinstance(transforms[-1], SaveImaged):
            transforms.pop()
        return transforms
