"""ResNet 18/34/50/101 backbones with torchvision's parameter names, returning stage features.

The state dict of :class:`ResNet` (default width, ``num_classes=1000``) has exactly the
keys and shapes of ``torchvision.models.resnet18/34/50/101``, so an ImageNet state dict
in torchvision format loads with ``load_state_dict(strict=True)``; without a classifier
(``num_classes=None``, the backbone use) :func:`load_torchvision_weights` drops the
``fc.*`` keys and loads the rest strictly. No torchvision import is needed.

Differences from torchvision, none of which changes a parameter name or shape:

- ``replace_stride_with_dilation`` also works for the basic-block variants (ResNet-18/34),
  which torchvision refuses; segmentation backbones need it for output stride 16 or 8.
- ``norm`` selects the normalisation layer (``"batch"`` as published; ``"group"`` or
  ``"instance"`` for small batches). Group/instance norms have no running statistics, so
  loading ImageNet weights into them keeps the affine parameters and drops the
  ``running_mean``/``running_var``/``num_batches_tracked`` buffers.
- ``in_channels`` other than 3: the loader adapts ImageNet ``conv1`` weights (see
  :func:`adapt_input_conv`).
- ``base_channels`` scales the width (64 as published) for fast tests and CPU demos;
  names stay the same, shapes then differ from torchvision's.

Example
-------
>>> import torch
>>> from medfound.networks.resnet import resnet50
>>> net = resnet50(replace_stride_with_dilation=(False, False, True))  # output stride 16
>>> feats = net.forward_features(torch.zeros(1, 3, 64, 96))
>>> {k: tuple(v.shape[1:]) for k, v in feats.items()}["layer4"]
(2048, 4, 6)
>>> net.output_stride
16
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.networks.layers.factories import split_args
from torch import Tensor, nn

from medfound.errors import ConfigError, ShapeError, WeightsError
from medfound.utils.checks import check_choice
from medfound.utils.files import load_torch_file

__all__ = [
    "NormSpec",
    "make_norm",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "RESNET_SPECS",
    "build_resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "dilation_for_output_stride",
    "read_state_dict",
    "adapt_input_conv",
    "load_torchvision_weights",
]

#: a norm name (``"batch"``, ``"group"``, ``"instance"``) or MONAI-style ``(name, kwargs)``
NormSpec = str | Sequence[Any]


def make_norm(norm: NormSpec, channels: int) -> nn.Module:
    """A 2D normalisation layer for ``channels`` channels.

    Parameters
    ----------
    norm : ``"batch"`` (``nn.BatchNorm2d``), ``"group"`` (``nn.GroupNorm``; 32 groups, or the
        largest divisor of 32 that divides ``channels``) or ``"instance"``
        (``nn.InstanceNorm2d`` with affine parameters), or a MONAI-style pair such as
        ``("group", {"num_groups": 8})`` whose dict is passed to the layer (JSON lists work).
    channels : number of channels.

    Example
    -------
    >>> make_norm(("group", {"num_groups": 4}), 48).num_groups
    4
    >>> make_norm("group", 48).num_groups
    16
    """
    try:
        name, kwargs = split_args(tuple(norm) if isinstance(norm, list) else norm)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"norm must be a name or (name, kwargs), got {norm!r}") from err
    kwargs = dict(kwargs)
    name = str(name).lower()
    if name in ("batch", "batchnorm"):
        return nn.BatchNorm2d(channels, **kwargs)
    if name in ("group", "groupnorm"):
        groups = kwargs.pop("num_groups", math.gcd(32, channels))
        if channels % groups:
            raise ConfigError(f"GroupNorm: {groups} groups do not divide {channels} channels")
        return nn.GroupNorm(groups, channels, **kwargs)
    if name in ("instance", "instancenorm"):
        kwargs.setdefault("affine", True)
        return nn.InstanceNorm2d(channels, **kwargs)
    raise ConfigError(f"unknown norm {name!r}; choose 'batch', 'group' or 'instance'")


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34); dilation allowed."""

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        norm: NormSpec = "batch",
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = make_norm(norm, planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = make_norm(norm, planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 bottleneck (ResNet-50/101), stride on the 3x3 conv (ResNet v1.5, as torchvision)."""

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        norm: NormSpec = "batch",
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = make_norm(norm, planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = make_norm(norm, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


#: variant name -> (block, blocks per stage), as torchvision
RESNET_SPECS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}

_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def dilation_for_output_stride(output_stride: int) -> tuple[bool, bool, bool]:
    """``replace_stride_with_dilation`` giving ``output_stride`` (8, 16 or 32).

    Example
    -------
    >>> dilation_for_output_stride(16)
    (False, False, True)
    """
    table = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}
    return table[check_choice(output_stride, tuple(table), "output_stride")]


class ResNet(nn.Module):
    """ResNet backbone (torchvision parameter names) returning its stage features.

    Parameters
    ----------
    block : ``"basic"`` / ``"bottleneck"`` or the block class.
    layers : blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
    in_channels : input channels (3 for ImageNet weights).
    num_classes : size of the ``fc`` classifier (1000 as torchvision); ``None`` (default) builds
        no classifier, and :meth:`forward` returns the globally pooled features.
    replace_stride_with_dilation : for stages 2, 3, 4: replace the stride-2 by dilation, as
        torchvision (see :func:`dilation_for_output_stride`).
    norm : normalisation layer, see :func:`make_norm`.
    base_channels : stem width and planes of stage 1 (64 as published; stages double it).
    zero_init_residual : zero the last norm of each residual branch (torchvision's option).
    weights : optional path to a torchvision-format state dict, loaded with
        :func:`load_torchvision_weights` (strict; ``fc`` ignored when there is no classifier).

    Attributes
    ----------
    feature_channels, feature_strides : channels and stride of each :meth:`forward_features` key.
    output_stride : stride of ``layer4`` (32, 16 or 8).

    Example
    -------
    >>> import torch
    >>> net = ResNet("basic", (2, 2, 2, 2), num_classes=1000)  # == torchvision resnet18's state dict
    >>> net(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 1000])
    >>> net.feature_channels
    {'stem': 64, 'layer1': 64, 'layer2': 128, 'layer3': 256, 'layer4': 512}
    """

    def __init__(
        self,
        block: str | type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        in_channels: int = 3,
        num_classes: int | None = None,
        replace_stride_with_dilation: Sequence[bool] = (False, False, False),
        norm: NormSpec = "batch",
        base_channels: int = 64,
        zero_init_residual: bool = False,
        weights: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if isinstance(block, str):
            block = _BLOCKS[check_choice(block, sorted(_BLOCKS), "block")]
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ConfigError(f"layers must be four positive block counts, got {list(layers)}")
        dilate = [bool(d) for d in replace_stride_with_dilation]
        if len(dilate) != 3:
            raise ConfigError(f"replace_stride_with_dilation must have 3 entries, got {list(dilate)}")
        self.norm = norm
        self._block = block
        self._inplanes = base_channels
        self._dilation = 1

        self.conv1 = nn.Conv2d(in_channels, base_channels, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = [base_channels * 2**i for i in range(4)]
        self.layer1 = self._make_layer(widths[0], layers[0])
        self.layer2 = self._make_layer(widths[1], layers[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(widths[2], layers[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(widths[3], layers[3], stride=2, dilate=dilate[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = widths[3] * block.expansion
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else None

        self.in_channels = in_channels
        self.feature_channels = {"stem": base_channels, **{
            f"layer{i + 1}": w * block.expansion for i, w in enumerate(widths)}}
        strides, s = {"stem": 2, "layer1": 4}, 4
        for i, d in enumerate(dilate):
            s = s if d else s * 2
            strides[f"layer{i + 2}"] = s
        self.feature_strides = strides
        self.output_stride = strides["layer4"]

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                last = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, BasicBlock) else None
                if last is not None and getattr(last, "weight", None) is not None:
                    nn.init.zeros_(last.weight)
        if weights is not None:
            load_torchvision_weights(self, weights)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        block = self._block
        previous_dilation = self._dilation
        if dilate:  # as torchvision: the stage's first block keeps the previous dilation
            self._dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._inplanes, planes * block.expansion, stride),
                make_norm(self.norm, planes * block.expansion),
            )
        modules = [block(self._inplanes, planes, stride, downsample, previous_dilation, self.norm)]
        self._inplanes = planes * block.expansion
        modules += [block(self._inplanes, planes, dilation=self._dilation, norm=self.norm) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """Stage features: ``stem`` (stride 2, before max-pooling) and ``layer1``..``layer4``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            # list(), not tuple(): torch.jit.script cannot size a tuple of a runtime shape
            raise ShapeError(f"ResNet expects (B, {self.in_channels}, H, W) input, got {list(x.shape)}")
        stem = self.relu(self.bn1(self.conv1(x)))
        c1 = self.layer1(self.maxpool(stem))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return {"stem": stem, "layer1": c1, "layer2": c2, "layer3": c3, "layer4": c4}

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)`` when there is a classifier, else pooled features ``(B, C)``."""
        pooled = torch.flatten(self.avgpool(self.forward_features(x)["layer4"]), 1)
        return pooled if self.fc is None else self.fc(pooled)


def build_resnet(name: str, **kwargs: Any) -> ResNet:
    """The ResNet variant ``name`` (``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``).

    Keyword arguments go to :class:`ResNet`.

    Example
    -------
    >>> build_resnet("resnet34").feature_channels["layer4"]
    512
    """
    block, layers = RESNET_SPECS[check_choice(name, tuple(RESNET_SPECS), "ResNet name")]
    return ResNet(block, layers, **kwargs)


def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (basic blocks, 2-2-2-2); keyword arguments go to :class:`ResNet`."""
    return build_resnet("resnet18", **kwargs)


def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 (basic blocks, 3-4-6-3); keyword arguments go to :class:`ResNet`."""
    return build_resnet("resnet34", **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 (bottlenecks, 3-4-6-3); keyword arguments go to :class:`ResNet`."""
    return build_resnet("resnet50", **kwargs)


def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101 (bottlenecks, 3-4-23-3); keyword arguments go to :class:`ResNet`."""
    return build_resnet("resnet101", **kwargs)


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict saved with ``torch.save`` (tensors only, ``weights_only=True``).

    Unwraps the usual containers (``{"state_dict": ...}``, ``{"model": ...}``) and a
    ``module.`` prefix left by ``DataParallel``/DDP.
    """
    obj = load_torch_file(path, what="weights file")
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return OrderedDict(obj)


def adapt_input_conv(weight: Tensor, in_channels: int) -> Tensor:
    """Adapt first-conv weights ``(O, 3, k, k)`` to ``in_channels`` inputs.

    One channel: the sum over RGB (a grey image repeated three times gives the same
    response). Otherwise the RGB kernels are tiled and scaled by ``3 / in_channels`` so the
    response to a constant image keeps its magnitude.

    Example
    -------
    >>> w = torch.ones(8, 3, 7, 7)
    >>> adapt_input_conv(w, 1)[0, 0, 0, 0].item(), adapt_input_conv(w, 6)[0, 0, 0, 0].item()
    (3.0, 0.5)
    """
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_channels / weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def load_torchvision_weights(
    model: ResNet, weights: str | os.PathLike | Mapping[str, Tensor], strict: bool = True
) -> ResNet:
    """Load a torchvision-format ResNet state dict into ``model``.

    ``fc.*`` keys are ignored when the model has no classifier; batch-norm running
    statistics are dropped when the model uses group/instance norm; ``conv1.weight`` is
    adapted when ``model.in_channels != 3`` (:func:`adapt_input_conv`). Everything else
    must match (missing or unexpected keys, or shape mismatches, raise
    :class:`~medfound.errors.WeightsError` naming the source).

    Example
    -------
    >>> src = resnet18(num_classes=1000).state_dict()   # stands in for an ImageNet file
    >>> net = load_torchvision_weights(resnet18(in_channels=1), src)
    >>> net.conv1.weight.shape
    torch.Size([64, 1, 7, 7])
    """
    source = str(weights) if isinstance(weights, (str, os.PathLike)) else "state dict"
    state = read_state_dict(weights) if isinstance(weights, (str, os.PathLike)) else OrderedDict(weights)
    if model.fc is None:
        state = OrderedDict((k, v) for k, v in state.items() if not k.startswith("fc."))
    own = model.state_dict()
    if not any(k.endswith("running_mean") for k in own):
        state = OrderedDict((k, v) for k, v in state.items() if not k.endswith(_BN_BUFFERS))
    if "conv1.weight" in state and state["conv1.weight"].ndim == 4:
        state["conv1.weight"] = adapt_input_conv(state["conv1.weight"], model.in_channels)
    if strict:
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise WeightsError(
                f"{source}: not a torchvision-format weights file for this ResNet: "
                f"{len(missing)} missing key(s) {missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}"
            )
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if wrong:
        raise WeightsError(f"{source}: shape mismatch (file vs model) for {len(wrong)} tensor(s): {wrong[:5]}")
    model.load_state_dict(state, strict=strict)
    return model
