"""The co-training model container: sub-models A and B plus the heads that exist only in training.

:class:`DACModel` holds

- ``model_a`` (always) and ``model_b`` (co-training methods), two instances of the same
  segmentation network (any ``nn.Module`` with ``forward_features(x) -> dict`` and
  ``feature_channels``, e.g. :class:`medfound.networks.deeplabv3plus.DeepLabV3Plus`), given
  ready or built by a **network factory** that the container calls once per sub-model, each
  time with its own seed, so A and B start from different, reproducible initialisations;
- ``projector_a`` / ``projector_b`` (feature-level supervision), ``mask_head`` (task A,
  on model A) and ``rotation_head`` (task B, on model B), when the method uses them.

In a bundle config the factory is the network's config in MONAI's callable mode, which
gives a ``functools.partial``::

    "network_def": {"_target_": "medfound.networks.deeplabv3plus.DeepLabV3Plus", "_mode_": "callable",
                    "num_classes": 3, "backbone": "resnet50"},
    "dac_model": {"_target_": "medfound.dac.DACModel", "network": "@network_def", "method": "dac"}

``forward(x)`` is inference: sub-model A by default (the cost of one network),
``inference="b"`` or ``"ensemble"`` (mean of the A and B probabilities, returned as log
probabilities so ``argmax`` and ``softmax`` still apply). :meth:`DACModel.deployable` returns
the plain network to ship and :meth:`DACModel.deployable_state_dict` its weights, which load
into a freshly built network with ``strict=True``.

Example
-------
>>> import functools, torch
>>> from medfound.dac.model import DACModel
>>> from medfound.networks.deeplabv3plus import DeepLabV3Plus
>>> factory = functools.partial(DeepLabV3Plus, num_classes=3, backbone="resnet18", base_channels=8,
...                             decoder_channels=16)
>>> m = DACModel(factory).eval()
>>> m(torch.zeros(1, 3, 32, 32)).shape, sorted(m.training_heads())
(torch.Size([1, 3, 32, 32]), ['mask_head', 'projector_a', 'projector_b', 'rotation_head'])
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from medfound.dac.config import METHODS, Components, MethodConfig, default
from medfound.dac.heads import MixedRegionHead, ProjectionHead, RotationHead
from medfound.errors import ConfigError
from medfound.utils import check_choice, check_int, derive_seed

__all__ = ["DACModel", "NetworkSource"]

#: what :class:`DACModel` accepts as its networks: a factory (called once per sub-model), or the
#: ready networks (A, or A and B)
NetworkSource = Callable[[], nn.Module] | nn.Module | Sequence[nn.Module]


def _seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``factory()`` with the torch RNG seeded by ``seed``; the global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return factory()


def _check_network(net: Any, what: str) -> nn.Module:
    if not isinstance(net, nn.Module):
        raise ConfigError(f"{what} must be a torch.nn.Module, got {type(net).__name__}")
    for attr in ("forward_features", "feature_channels"):
        if not hasattr(net, attr):
            raise ConfigError(f"{what} ({type(net).__name__}) has no {attr!r}; DAC needs forward_features() "
                              "and feature_channels")
    return net


def _layer_channels(net: nn.Module, layer: str, what: str) -> int:
    channels = dict(net.feature_channels)
    if layer not in channels:
        raise ConfigError(f"{what} {layer!r} is not a feature of the network; choose from {sorted(channels)}")
    return int(channels[layer])


def _target_of(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


class DACModel(nn.Module):
    """Sub-models A (and B) with the training-only heads of the selected method.

    Defaults are those of :class:`~medfound.dac.config.MethodConfig`.

    Parameters
    ----------
    network : a factory returning a new segmentation network (e.g. a ``functools.partial`` of
        its class, or a config with ``"_mode_": "callable"``), called once per sub-model with
        the torch RNG seeded by that sub-model's entry of ``init_seeds``; or the ready
        networks: one module (single-model methods) or a sequence ``[A, B]`` (or ``[A]``).
    method : a key of :data:`medfound.dac.config.METHODS` (``"dac"``, ``"cps"``, ``"fixmatch"``,
        ``"supervised"``, ``"dac_no_feat"``, ``"dac_no_aux"``): decides which parts exist.
    feature_layer : ``forward_features`` key supervised by the feature loss.
    mask_layer : ``forward_features`` key the mixed-region head of A reads.
    rotation_layer : ``forward_features`` key the rotation head of B reads.
    projection_channels : hidden width of the projection heads.
    init_seeds : seeds of A and B; the training heads of A (B) are seeded from
        ``derive_seed(seed_a, "training_heads")`` (``seed_b``), with ready networks too.
    inference : ``"a"``, ``"b"`` or ``"ensemble"``.
    aux_head_init : ``"zero"`` (zero-initialised auxiliary heads) or ``"default"`` (PyTorch's).
    """

    def __init__(
        self,
        network: NetworkSource,
        method: str = default(MethodConfig, "name"),
        feature_layer: str = default(MethodConfig, "feature_layer"),
        mask_layer: str = default(MethodConfig, "mask_layer"),
        rotation_layer: str = default(MethodConfig, "rotation_layer"),
        projection_channels: int = default(MethodConfig, "projection_channels"),
        init_seeds: Sequence[int] = tuple(default(MethodConfig, "init_seeds")),
        inference: str = default(MethodConfig, "inference"),
        aux_head_init: str = default(MethodConfig, "aux_head_init"),
    ) -> None:
        super().__init__()
        self.method = check_choice(method, METHODS, "method")
        self.components: Components = METHODS[method]
        c = self.components
        if isinstance(init_seeds, (str, bytes)) or not isinstance(init_seeds, Sequence) or len(init_seeds) != 2:
            raise ConfigError(f"init_seeds must hold two seeds (A, B), got {init_seeds!r}")
        seed_a, seed_b = (check_int(s, "init_seeds") for s in init_seeds)
        projection_channels = check_int(projection_channels, "projection_channels", low=1)
        self.feature_layer = str(feature_layer)
        self.mask_layer, self.rotation_layer = str(mask_layer), str(rotation_layer)
        zero = check_choice(aux_head_init, ("zero", "default"), "aux_head_init") == "zero"

        self._factory: Callable[[], nn.Module] | None = None
        if isinstance(network, nn.Module):
            networks: list[nn.Module] = [network]
        elif isinstance(network, Sequence) and not isinstance(network, (str, bytes)):
            networks = list(network)
        elif callable(network):
            self._factory = network
            networks = [_seeded(network, seed_a)] + ([_seeded(network, seed_b)] if c.two_models else [])
        else:
            raise ConfigError(f"network must be a network factory or ready networks, got {type(network).__name__}")
        if len(networks) != (2 if c.two_models else 1):
            raise ConfigError(
                f"method {method!r} trains {'two sub-models' if c.two_models else 'one sub-model'}: give a network "
                f"factory or {'[A, B]' if c.two_models else 'one network'}, got {len(networks)} network(s)"
            )
        self.model_a = _check_network(networks[0], "network A")
        self.model_b = _check_network(networks[1], "network B") if c.two_models else None
        if self.model_b is self.model_a:
            raise ConfigError("networks A and B must be two separate modules")

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed_a, "training_heads"))
            if c.feature:
                ch = _layer_channels(self.model_a, self.feature_layer, "feature_layer")
                self.projector_a = ProjectionHead(ch, projection_channels)
            if c.aux_mask:
                self.mask_head = MixedRegionHead(_layer_channels(self.model_a, self.mask_layer, "mask_layer"), zero)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed_b, "training_heads"))
            if c.feature:
                self.projector_b = ProjectionHead(ch, projection_channels)
            if c.aux_rotation:
                ch_rot = _layer_channels(self.model_b, self.rotation_layer, "rotation_layer")
                self.rotation_head = RotationHead(ch_rot, zero)
        self.inference = "a"
        self.set_inference(inference)

    def set_inference(self, inference: str) -> None:
        """Choose what :meth:`forward` runs: ``"a"``, ``"b"`` or ``"ensemble"``."""
        check_choice(inference, ("a", "b", "ensemble"), "inference")
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

    def _deployed(self, which: str | None) -> nn.Module:
        which = which or ("a" if self.inference == "ensemble" else self.inference)
        models = self.sub_models()
        if which not in models:
            raise ConfigError(f"sub-model {which!r} does not exist for method {self.method!r}")
        return models[which]

    def deployable(self, which: str | None = None) -> nn.Module:
        """A copy of the network to deploy (``which`` = ``"a"`` or ``"b"``; default: the inference choice)."""
        return copy.deepcopy(self._deployed(which)).eval()

    def deployable_state_dict(self, which: str | None = None) -> dict[str, torch.Tensor]:
        """The deployable network's weights (what ``model.pt`` / ``best_model.pt`` hold; load with ``strict=True``)."""
        return {k: v.detach().clone() for k, v in self._deployed(which).state_dict().items()}

    def network_spec(self) -> dict[str, Any]:
        """Bundle-style description of the deployable network: ``_target_`` and, for a factory, its arguments."""
        factory = self._factory
        if isinstance(factory, functools.partial) and not factory.args:
            return {"_target_": _target_of(factory.func), **factory.keywords}
        return {"_target_": _target_of(type(self.model_a))}
