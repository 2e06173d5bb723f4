"""DeepLabV3+ (Chen et al., ECCV 2018) with a ResNet backbone, for 2D segmentation.

Structure, as published:

- **backbone**: :class:`~medfound.networks.resnet.ResNet` 18/34/50/101 with torchvision
  parameter names (ImageNet weights in torchvision format load strictly), output stride
  16 (stage 4 dilated) or 8 (stages 3 and 4 dilated);
- **ASPP** on the deepest features: a 1x1 branch, three 3x3 atrous branches with rates
  6/12/18 at output stride 16 (12/24/36 at output stride 8) and an image-pooling branch,
  concatenated and projected to ``decoder_channels`` by a 1x1 conv, then dropout;
- **decoder**: ASPP output upsampled (bilinear) to stride 4, concatenated with the
  stride-4 backbone features projected to 48 channels, then two 3x3 convs with
  ``decoder_channels`` channels;
- **classifier**: 1x1 conv to ``num_classes``; logits upsampled (bilinear) to the input size.

Every conv is followed by the selected norm and ReLU. Any input size works (features are
resized to the skip's size, logits to the input's).

:meth:`DeepLabV3Plus.forward` returns the logits tensor (what a MONAI bundle's
``network_def`` must return); :meth:`DeepLabV3Plus.forward_features` returns every
intermediate a co-training method supervises.

Example
-------
>>> import torch
>>> from medfound.networks.deeplabv3plus import DeepLabV3Plus
>>> net = DeepLabV3Plus(num_classes=3, backbone="resnet18", output_stride=16).eval()
>>> net(torch.zeros(1, 3, 96, 128)).shape
torch.Size([1, 3, 96, 128])
>>> feats = net.forward_features(torch.zeros(1, 3, 96, 128))
>>> tuple(feats["decoder"].shape), tuple(feats["aspp"].shape)
((1, 256, 24, 32), (1, 256, 6, 8))
>>> net.feature_channels
{'decoder': 256, 'aspp': 256, 'low_level': 64, 'backbone': 512}
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfound.errors import ShapeError
from medfound.networks.resnet import (
    NormSpec,
    build_resnet,
    dilation_for_output_stride,
    load_torchvision_weights,
    make_norm,
)
from medfound.utils.checks import check_choice, check_int

__all__ = ["ConvNormAct", "ASPP", "DeepLabV3Plus", "ASPP_RATES"]

#: atrous rates of the three 3x3 ASPP branches per output stride (the paper's; doubled at 8)
ASPP_RATES: dict[int, tuple[int, int, int]] = {16: (6, 12, 18), 8: (12, 24, 36)}


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> norm -> ReLU; ``padding = dilation * (kernel_size // 2)`` keeps the size."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, dilation: int = 1, norm: NormSpec = "batch") -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation, bias=False),
            make_norm(norm, cout),
            nn.ReLU(inplace=True),
        )


class _ImagePooling(nn.Module):
    """Global average pooling -> 1x1 conv -> norm -> ReLU, broadcast back to the input size.

    The pooled map has one pixel, where instance norm (and group norm with one channel per
    group) is undefined, so this branch then has no norm (documented choice).
    """

    def __init__(self, cin: int, cout: int, norm: NormSpec) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        layer = make_norm(norm, cout)
        # a 1x1 map: instance norm, or group norm with one channel per group, would be undefined
        per_sample_single = isinstance(layer, nn.InstanceNorm2d) or (
            isinstance(layer, nn.GroupNorm) and layer.num_groups == layer.num_channels)
        self.norm = nn.Identity() if per_sample_single else layer
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1 and isinstance(self.norm, nn.BatchNorm2d):
            raise ShapeError(
                "DeepLabV3Plus with norm='batch' cannot train on a batch of one image (the image-pooling "
                "branch's BatchNorm would see one value per channel): use batches of 2 or more "
                "(drop_last=True), or norm='group'")
        y = self.act(self.norm(self.conv(self.pool(x))))
        return y.expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1 + three atrous 3x3 + image pooling, projected by 1x1.

    Parameters
    ----------
    in_channels : channels of the backbone features.
    out_channels : channels of every branch and of the output.
    rates : dilation rates of the three 3x3 branches.
    norm : normalisation, see :func:`~medfound.networks.resnet.make_norm`.

    Example
    -------
    >>> aspp = ASPP(64, 32, rates=(6, 12, 18)).eval()
    >>> aspp(torch.zeros(2, 64, 5, 7)).shape
    torch.Size([2, 32, 5, 7])
    >>> [branch[0].dilation for branch in aspp.convs]
    [(1, 1), (6, 6), (12, 12), (18, 18)]
    """

    def __init__(self, in_channels: int, out_channels: int = 256, rates: Sequence[int] = (6, 12, 18),
                 norm: NormSpec = "batch") -> None:
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        self.convs = nn.ModuleList(
            [ConvNormAct(in_channels, out_channels, 1, norm=norm)]
            + [ConvNormAct(in_channels, out_channels, 3, dilation=r, norm=norm) for r in self.rates]
        )
        self.pooling = _ImagePooling(in_channels, out_channels, norm)
        self.project = ConvNormAct(out_channels * (len(self.rates) + 2), out_channels, 1, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([conv(x) for conv in self.convs] + [self.pooling(x)], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ with a ResNet backbone.

    Parameters
    ----------
    num_classes : output channels (class logits; background included).
    backbone : ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` (default) or ``"resnet101"``.
    output_stride : 16 (default) or 8; ASPP rates follow (:data:`ASPP_RATES`).
    in_channels : input channels.
    backbone_weights : optional path to a torchvision-format ResNet state dict (e.g. the
        ImageNet ``resnet50-*.pth``); loaded strictly, ``fc.*`` ignored, ``conv1``
        adapted when ``in_channels != 3``.
    decoder_channels : channels of ASPP and decoder (256 as published).
    dropout : dropout after the ASPP projection (0.1).
    norm : ``"batch"`` (default, as published), ``"group"`` or ``"instance"`` (better for
        batches of 1-2 images), or ``(name, kwargs)``; used in backbone, ASPP and decoder.
    base_channels : backbone width (64 as published; smaller for tests and CPU demos).
    low_level_channels : channels of the stride-4 skip projection (48 as published).

    Attributes
    ----------
    feature_channels : channels of the :meth:`forward_features` keys except ``"logits"``.
    output_stride : the backbone's output stride.

    Example
    -------
    >>> net = DeepLabV3Plus(num_classes=2, backbone="resnet18", output_stride=8, norm="group").eval()
    >>> net(torch.zeros(1, 3, 50, 70)).shape
    torch.Size([1, 2, 50, 70])
    >>> net.aspp.rates
    (12, 24, 36)
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        output_stride: int = 16,
        in_channels: int = 3,
        backbone_weights: str | os.PathLike | None = None,
        decoder_channels: int = 256,
        dropout: float = 0.1,
        norm: NormSpec = "batch",
        base_channels: int = 64,
        low_level_channels: int = 48,
    ) -> None:
        super().__init__()
        output_stride = check_choice(output_stride, tuple(ASPP_RATES), "DeepLabV3Plus output_stride")
        self.num_classes = check_int(num_classes, "DeepLabV3Plus num_classes", low=1)
        self.output_stride = int(output_stride)
        self.backbone = build_resnet(
            backbone, in_channels=in_channels, num_classes=None, norm=norm, base_channels=base_channels,
            replace_stride_with_dilation=dilation_for_output_stride(output_stride),
        )
        deep_ch = self.backbone.feature_channels["layer4"]
        low_ch = self.backbone.feature_channels["layer1"]
        self.aspp = ASPP(deep_ch, decoder_channels, ASPP_RATES[output_stride], norm)
        self.dropout = nn.Dropout(dropout)
        self.low_level_project = ConvNormAct(low_ch, low_level_channels, 1, norm=norm)
        self.decoder = nn.Sequential(
            ConvNormAct(decoder_channels + low_level_channels, decoder_channels, 3, norm=norm),
            ConvNormAct(decoder_channels, decoder_channels, 3, norm=norm),
        )
        self.classifier = nn.Conv2d(decoder_channels, self.num_classes, 1)
        self.feature_channels = {"decoder": decoder_channels, "aspp": decoder_channels,
                                 "low_level": low_ch, "backbone": deep_ch}

        for name, m in self.named_modules():
            if name.startswith("backbone"):
                continue  # the backbone has torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        if backbone_weights is not None:
            load_torchvision_weights(self.backbone, backbone_weights)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """All intermediates of one forward pass.

        Returns
        -------
        dict
            ``"logits"`` ``(B, num_classes, H, W)`` as :meth:`forward`; ``"decoder"``
            ``(B, decoder_channels, ceil(H/4), ceil(W/4))``, the decoder output before the
            classifier; ``"aspp"`` ``(B, decoder_channels, H/os, W/os)``, the ASPP output
            before dropout; ``"low_level"``, the stride-4 backbone features (``layer1``);
            ``"backbone"``, the deepest backbone features (``layer4``).
        """
        if x.ndim != 4:
            # list(), not tuple(): torch.jit.script cannot size a tuple of a runtime shape
            raise ShapeError(f"DeepLabV3Plus expects (B, C, H, W) input, got shape {list(x.shape)}")
        stages = self.backbone.forward_features(x)
        low, deep = stages["layer1"], stages["layer4"]
        aspp = self.aspp(deep)
        up = F.interpolate(self.dropout(aspp), size=low.shape[-2:], mode="bilinear", align_corners=False)
        decoder = self.decoder(torch.cat([up, self.low_level_project(low)], dim=1))
        logits = F.interpolate(self.classifier(decoder), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"logits": logits, "decoder": decoder, "aspp": aspp, "low_level": low, "backbone": deep}

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes, H, W)`` at the input size."""
        return self.forward_features(x)["logits"]
