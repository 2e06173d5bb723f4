"""The co-training model container: sub-models A and B plus the heads that exist only in training.

:class:`DACModel` holds

- ``model_a`` (always) and ``model_b`` (co-training methods), two instances of the same
  segmentation network (by default :class:`medfound.networks.deeplabv3plus.DeepLabV3Plus`;
  any ``nn.Module`` with ``forward_features(x) -> dict`` and ``feature_channels`` works),
  built with different seeds so they start from different initialisations;
- ``projector_a`` / ``projector_b`` (feature-level supervision), ``mask_head`` (task A,
  on model A) and ``rotation_head`` (task B, on model B), when the method uses them.

``forward(x)`` is inference: sub-model A by default (the cost of one network),
``inference="b"`` or ``"ensemble"`` (mean of the A and B probabilities, returned as log
probabilities so ``argmax`` and ``softmax`` still apply). :meth:`DACModel.deployable` returns
the plain network to ship, and :meth:`DACModel.save_deployable` writes its state dict
atomically; it loads into a freshly built network with ``strict=True``.

Example
-------
>>> import torch
>>> from medfound.dac.model import DACModel
>>> m = DACModel(num_classes=3, network_kwargs={"backbone": "resnet18", "base_channels": 8,
...              "decoder_channels": 16}).eval()
>>> m(torch.zeros(1, 3, 32, 32)).shape, sorted(m.training_heads())
(torch.Size([1, 3, 32, 32]), ['mask_head', 'projector_a', 'projector_b', 'rotation_head'])
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.utils import optional_import
from torch import nn

from medfound.dac.config import METHODS, Components
from medfound.dac.heads import MixedRegionHead, ProjectionHead, RotationHead
from medfound.errors import ConfigError

__all__ = ["DACModel", "build_network", "atomic_torch_save"]

DEFAULT_NETWORK = "medfound.networks.deeplabv3plus.DeepLabV3Plus"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: never a torn file.

    Example
    -------
    >>> import tempfile, torch
    >>> p = atomic_torch_save({"w": torch.ones(1)}, tempfile.mkdtemp() + "/x.pt")
    >>> torch.load(p)["w"].tolist()
    [1.0]
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _locate(target: str) -> type:
    module, _, name = target.rpartition(".")
    if not module:
        raise ConfigError(f"network target must be a dotted path 'package.module.Class', got {target!r}")
    obj, found = optional_import(module, name=name)
    if not found:
        raise ConfigError(f"cannot import network {target!r}")
    return obj


def build_network(num_classes: int, target: str = DEFAULT_NETWORK, kwargs: Mapping[str, Any] | None = None,
                  seed: int | None = None) -> nn.Module:
    """Build ``target(num_classes=..., **kwargs)``, seeding its initialisation when ``seed`` is given.

    The global random state is left as it was (the seeding happens in a forked RNG).
    """
    cls = _locate(target)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        net = cls(num_classes=int(num_classes), **dict(kwargs or {}))
    for attr in ("forward_features", "feature_channels"):
        if not hasattr(net, attr):
            raise ConfigError(f"network {target!r} has no {attr!r}; DAC needs forward_features() and feature_channels")
    return net


def _layer_channels(net: nn.Module, layer: str, what: str) -> int:
    channels = dict(net.feature_channels)
    if layer not in channels:
        raise ConfigError(f"{what} {layer!r} is not a feature of the network; choose from {sorted(channels)}")
    return int(channels[layer])


class DACModel(nn.Module):
    """Sub-models A (and B) with the training-only heads of the selected method.

    Parameters
    ----------
    num_classes : classes of the segmentation output (background included).
    method : a key of :data:`medfound.dac.config.METHODS` (``"dac"``, ``"cps"``, ``"fixmatch"``,
        ``"supervised"``, ``"dac_no_feat"``, ``"dac_no_aux"``): decides which parts exist.
    network_target : dotted path of the network class.
    network_kwargs : JSON arguments of the network (e.g. ``{"backbone": "resnet50"}``).
    feature_layer : ``forward_features`` key supervised by the feature loss.
    aux_layer : ``forward_features`` key the auxiliary heads read.
    projection_channels : hidden width of the projection heads.
    init_seeds : seeds of A and B (their heads are seeded from them too).
    inference : ``"a"``, ``"b"`` or ``"ensemble"``.
    """

    def __init__(
        self,
        num_classes: int,
        method: str = "dac",
        network_target: str = DEFAULT_NETWORK,
        network_kwargs: Mapping[str, Any] | None = None,
        feature_layer: str = "decoder",
        aux_layer: str = "decoder",
        projection_channels: int = 128,
        init_seeds: tuple[int, int] | list[int] = (0, 1),
        inference: str = "a",
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f"method must be one of {sorted(METHODS)}, got {method!r}")
        self.method = method
        self.components: Components = METHODS[method]
        self.num_classes = int(num_classes)
        self.network_target = network_target
        self.network_kwargs = dict(network_kwargs or {})
        self.feature_layer, self.aux_layer = feature_layer, aux_layer
        if len(init_seeds) != 2:
            raise ConfigError(f"init_seeds must hold two seeds, got {init_seeds!r}")
        seed_a, seed_b = (int(s) for s in init_seeds)
        c = self.components
        self.model_a = build_network(num_classes, network_target, self.network_kwargs, seed_a)
        self.model_b = build_network(num_classes, network_target, self.network_kwargs, seed_b) if c.two_models else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_a + 10_007)
            if c.feature:
                ch = _layer_channels(self.model_a, feature_layer, "feature_layer")
                self.projector_a = ProjectionHead(ch, projection_channels)
            if c.aux_mask:
                self.mask_head = MixedRegionHead(_layer_channels(self.model_a, aux_layer, "aux_layer"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_b + 10_007)
            if c.feature:
                self.projector_b = ProjectionHead(ch, projection_channels)
            if c.aux_rotation:
                self.rotation_head = RotationHead(_layer_channels(self.model_b, aux_layer, "aux_layer"))
        self.inference = "a"
        self.set_inference(inference)

    def set_inference(self, inference: str) -> None:
        """Choose what :meth:`forward` runs: ``"a"``, ``"b"`` or ``"ensemble"``."""
        if inference not in ("a", "b", "ensemble"):
            raise ConfigError(f"inference must be 'a', 'b' or 'ensemble', got {inference!r}")
        if inference != "a" and self.model_b is None:
            raise ConfigError(f"inference={inference!r} needs sub-model B; method {self.method!r} has only A")
        self.inference = inference

    def sub_models(self) -> dict[str, nn.Module]:
        """``{"a": model_a, "b": model_b}`` (``b`` only for co-training methods)."""
        return {"a": self.model_a} if self.model_b is None else {"a": self.model_a, "b": self.model_b}

    def training_heads(self) -> dict[str, nn.Module]:
        """The heads that exist only in training, by attribute name."""
        names = ("projector_a", "projector_b", "mask_head", "rotation_head")
        return {n: getattr(self, n) for n in names if hasattr(self, n)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference logits ``(B, num_classes, H, W)`` of the chosen sub-model (or the ensemble)."""
        if self.inference == "a":
            return self.model_a(x)
        if self.inference == "b":
            return self.model_b(x)
        prob = 0.5 * (torch.softmax(self.model_a(x).float(), 1) + torch.softmax(self.model_b(x).float(), 1))
        return torch.log(prob.clamp_min(1e-8))

    def deployable(self, which: str | None = None) -> nn.Module:
        """A copy of the network to deploy (``which`` = ``"a"`` or ``"b"``; default: the inference choice)."""
        which = which or ("a" if self.inference == "ensemble" else self.inference)
        models = self.sub_models()
        if which not in models:
            raise ConfigError(f"sub-model {which!r} does not exist for method {self.method!r}")
        return copy.deepcopy(models[which]).eval()

    def save_deployable(self, path: str | os.PathLike, which: str | None = None) -> Path:
        """Write the deployable network's state dict atomically (loads with ``strict=True``)."""
        return atomic_torch_save(self.deployable(which).state_dict(), path)

    def network_spec(self) -> dict[str, Any]:
        """JSON description of the deployable network: ``_target_`` and arguments (bundle style)."""
        return {"_target_": self.network_target, "num_classes": self.num_classes, **self.network_kwargs}
