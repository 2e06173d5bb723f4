"""UMedPT: the multi-task foundation model (Swin V2 encoder, shared decoders, per-task heads).

The structure follows the published model (Schaefer et al., Nat. Comput. Sci. 2024) and its
code (MedicalMultitaskModeling), so imported weights reproduce it:

- ``shared["encoder"]``: :class:`~medfound.networks.swin_v2.SwinTransformerV2`, the pyramid
  at strides 4, 8, 16, 32 without the final norm;
- ``shared["squeezer"]``: :class:`Squeezer`, optional 1x1 conv to ``squeezer_channels``,
  ``GroupNorm(1, C)``, GELU. It gives the **embedding** (applied after global average
  pooling of the deepest map, the authors' order: pool, conv, norm, GELU) and the deepest
  **feature map** the decoders use instead of the encoder's (conv, norm, GELU per pixel);
- ``shared["seg_decoder"]``: :class:`UNetDecoder`, U-Net over strides 32/16/8/4 with encoder
  skips (conv-GroupNorm(1, C)-ReLU pairs as segmentation-models-pytorch's ``UnetDecoder``),
  then a 3x3 conv, ``GroupNorm(1, 16)`` and GELU: a 16-channel pixel embedding at full
  input resolution (``pixel_embedding_stride=2``: at half resolution, the geometry of the
  published encoder-1.0.4, whose segmentation-models-pytorch 0.3 decoder ends at stride 2);
- ``shared["det_decoder"]``: :class:`FPNDecoder`, FPN over strides 8/16/32 plus two extra
  levels (64, 128) and one classification and one box tower of 4 conv-GroupNorm-GELU layers
  shared by all levels;
- ``heads[name]``: classification / multi-label: dropout + linear on the embedding
  (optionally standardised first);
  segmentation: 3x3 conv on the pixel embedding; detection: FCOS
  (:class:`medfound.networks.fcos.FCOSHead`) on the towers' outputs.

Norms in shared blocks are per sample (``GroupNorm(1, C)``, never BatchNorm) because a batch
comes from one task at a time; :func:`batchnorm_to_groupnorm` converts modules that have
BatchNorm. Inputs are 3-channel images in [0, 1] (the published model takes them as they
are: no mean/std normalisation inside; ``input_normalization="imagenet"`` applies ImageNet
mean/std for torchvision ImageNet encoder weights). Sides are zero-padded at the bottom and
right to multiples of ``size_divisor`` (32) and per-pixel outputs are cropped back.

**Border effect of the padding**: the padded zeros take part in the computation: in
convolutions near the bottom/right border, in every attention window that contains padded
tokens (at stride 32 one window spans 256 pixels, i.e. most of a typical image) and in the
per-sample GroupNorm statistics of the squeezer and decoders. Outputs on the valid region
are exactly those of the zero-padded image (cropped), but they differ slightly from what an
image of a padded-free size would give; feed sides that are multiples of 32 (as the
published model was trained) to avoid it. Detection outputs cover the padded image (box
distances are in input pixels from the top-left corner, so they need no shift).

Example
-------
>>> import torch
>>> from medfound.networks.umedpt import UMedPT
>>> model = UMedPT(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
...                squeezer_channels=32, det_channels=16, seg_hidden_channels=16,
...                tasks=[{"name": "organs", "kind": "segmentation", "num_classes": 3},
...                       {"name": "finding", "kind": "classification", "num_classes": 2}])
>>> x = torch.rand(2, 3, 60, 70)
>>> tuple(model(x, task="organs").shape), tuple(model(x, task="finding").shape)
((2, 3, 60, 70), (2, 2))
>>> tuple(model.forward_features(x).shape)
(2, 32)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medfound.errors import ConfigError, ShapeError, WeightsError
from medfound.networks.fcos import DEFAULT_STRIDES, FCOSHead, fcos_locations
from medfound.networks.swin_v2 import SWIN_V2_VARIANTS, SwinTransformerV2, strip_classifier
from medfound.utils.checks import check_choice, check_float, check_int
from medfound.utils.files import load_torch_file

__all__ = [
    "TASK_KINDS",
    "DETECTION_STRIDES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "UMedPT",
    "Squeezer",
    "UNetDecoder",
    "FPNDecoder",
    "ClassificationHead",
    "SegmentationHead",
    "UMedPTEmbedding",
    "UMedPTFeatureNet",
    "UMedPTTaskOutput",
    "batchnorm_to_groupnorm",
    "detection_points",
]

#: the task kinds UMedPT has heads for
TASK_KINDS = ("classification", "multilabel", "segmentation", "detection")
#: strides of the detection levels (P3-P7), those of the FCOS head
DETECTION_STRIDES = tuple(DEFAULT_STRIDES)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def batchnorm_to_groupnorm(module: nn.Module, copy_affine: bool = True) -> nn.Module:
    """Replace every BatchNorm (1d/2d/3d, SyncBatchNorm) in ``module`` by ``GroupNorm(1, C)``.

    A batch of multi-task training holds one task only, so batch statistics would be
    task-specific; ``GroupNorm(1, C)`` normalises each sample over all its channels and
    positions instead (what MedicalMultitaskModeling's ``affinelayernorm`` setting does).
    The learned scale and shift are carried over when ``copy_affine`` (running statistics
    have no counterpart and are dropped). Returns the module (replaced itself if it is a
    BatchNorm).

    Example
    -------
    >>> from torch import nn
    >>> net = batchnorm_to_groupnorm(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()))
    >>> type(net[1]).__name__, net[1].num_groups
    ('GroupNorm', 1)
    """

    def convert(bn: nn.modules.batchnorm._BatchNorm) -> nn.GroupNorm:
        gn = nn.GroupNorm(1, bn.num_features, eps=bn.eps, affine=bn.affine)
        if bn.affine and copy_affine:
            with torch.no_grad():
                gn.weight.copy_(bn.weight)
                gn.bias.copy_(bn.bias)
        if bn.affine:
            gn.to(device=bn.weight.device, dtype=bn.weight.dtype)
        return gn

    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return convert(module)
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, convert(child))
        else:
            batchnorm_to_groupnorm(child, copy_affine)
    return module


class Squeezer(nn.Module):
    """Optional 1x1 conv, ``GroupNorm(1, C)``, GELU: the embedding and the decoders' deepest map.

    Parameters
    ----------
    in_channels : channels of the encoder's deepest map.
    out_channels : channels after the 1x1 conv (``None``: no conv, ``in_channels``).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.out_channels = int(out_channels or in_channels)
        self.conv = nn.Conv2d(in_channels, self.out_channels, 1) if out_channels else nn.Identity()
        self.norm = nn.GroupNorm(1, self.out_channels)
        self.act = nn.GELU()

    def embed(self, deepest: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, out_channels)``: pool, conv, norm, GELU (the authors' order)."""
        return self.act(self.norm(self.conv(deepest.mean(dim=(2, 3), keepdim=True)))).flatten(1)

    def feature_map(self, deepest: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, out_channels, H, W)``: conv, norm, GELU per position."""
        return self.act(self.norm(self.conv(deepest)))

    def forward(self, deepest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both outputs, ``(feature_map, embedding)``, as the authors' squeezer returns them."""
        return self.feature_map(deepest), self.embed(deepest)


def _conv_norm_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    # segmentation-models-pytorch's Conv2dReLU with its BatchNorm made per-sample
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(1, out_channels),
        nn.ReLU(inplace=True),
    )


class _UNetBlock(nn.Module):
    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_norm_relu(in_channels + skip_channels, out_channels)
        self.conv2 = _conv_norm_relu(out_channels, out_channels)

    def forward(self, x: torch.Tensor, size: Sequence[int], skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, size=tuple(size), mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """U-Net decoder from the stride-32 map up to a pixel embedding at full resolution.

    Blocks upsample (nearest) to the next skip's size (strides 16, 8, 4), concatenate the
    skip and apply two conv-GroupNorm(1, C)-ReLU layers; the last block goes without a skip
    to the input size (``output_stride=1``, segmentation-models-pytorch 0.5's geometry) or
    doubles the stride-4 map (``output_stride=2``, smp 0.3.x's ``scale_factor=2`` blocks, as
    in the published encoder-1.0.4). Then a 3x3 conv, ``GroupNorm(1, C)`` and GELU give the pixel
    embedding. Block widths follow the published decoder: ``min(2**i * pixel_channels,
    hidden_channels)`` from the deepest block down, i.e. 96, 64, 32, 16.

    Parameters
    ----------
    encoder_channels : channels of the maps at strides 4, 8, 16, 32 (the last one the
        squeezer's feature map).
    pixel_embedding_channels : channels of the output.
    hidden_channels : the widest block.
    output_stride : 1 (output at the input size) or 2 (at half of it, rounded as the stride-4
        map doubled).
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        pixel_embedding_channels: int = 16,
        hidden_channels: int = 96,
        output_stride: int = 1,
    ) -> None:
        super().__init__()
        check_choice(output_stride, (1, 2), "UNetDecoder output_stride")
        self.output_stride = int(output_stride)
        encoder_channels = [int(c) for c in encoder_channels]
        if len(encoder_channels) < 2:
            raise ConfigError(f"UNetDecoder needs at least 2 encoder levels, got {encoder_channels}")
        n = len(encoder_channels)
        self.channels = [min(2**i * pixel_embedding_channels, hidden_channels) for i in reversed(range(n))]
        in_channels = [encoder_channels[-1]] + self.channels[:-1]
        skip_channels = list(reversed(encoder_channels[:-1])) + [0]
        self.blocks = nn.ModuleList(_UNetBlock(i, s, o) for i, s, o in zip(in_channels, skip_channels, self.channels))
        self.final_conv = nn.Conv2d(self.channels[-1], pixel_embedding_channels, 3, padding=1)
        self.norm = nn.GroupNorm(1, pixel_embedding_channels)
        self.act = nn.GELU()
        self.out_channels = int(pixel_embedding_channels)

    def forward(self, features: Sequence[torch.Tensor], output_size: Sequence[int]) -> torch.Tensor:
        """``features``: maps at strides 4, 8, 16, 32; returns ``(B, C_pix, *output_size)``
        (``output_stride=2``: twice the stride-4 map's size)."""
        x = features[-1]
        skips = list(reversed(features[:-1]))
        for i, block in enumerate(self.blocks):
            skip = skips[i] if i < len(skips) else None
            if skip is not None:
                size = skip.shape[-2:]
            else:
                size = output_size if self.output_stride == 1 else [2 * d for d in x.shape[-2:]]
            x = block(x, size, skip)
        return self.act(self.norm(self.final_conv(x)))


def _groups(channels: int, preferred: int = 32) -> int:
    """Largest divisor of ``channels`` up to ``preferred`` leaving >= 2 channels per group (1x1 maps at stride 128)."""
    groups = math.gcd(channels, preferred)
    while groups > 1 and channels // groups < 2:
        groups //= 2
    return groups


class FPNDecoder(nn.Module):
    """FPN with extra levels and shared FCOS towers: per-level class and box features.

    The FPN takes the maps at strides 8, 16, 32 (1x1 lateral convs, top-down nearest
    upsampling and addition, 3x3 output convs) and adds levels at strides 64 and 128 by
    stride-2 3x3 convs on the stride-32 output (ReLU before the second), as MMDetection's
    ``FPN(start_level=1, add_extra_convs="on_output", relu_before_extra_convs=True)`` that
    the published model used. Each level then runs through one classification tower and
    one box tower (``num_convs`` x conv 3x3, GroupNorm, GELU), shared by all levels.

    Parameters
    ----------
    in_channels : channels at strides 8, 16, 32.
    out_channels : FPN and tower channels.
    num_levels : output levels (5: strides 8-128).
    num_convs : layers per tower.
    norm_groups : GroupNorm groups in the towers (largest divisor of the channels up to it).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int = 256,
        num_levels: int = 5,
        num_convs: int = 4,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        if num_levels < len(in_channels):
            raise ConfigError(f"FPNDecoder num_levels {num_levels} < number of inputs {len(in_channels)}")
        self.out_channels = int(out_channels)
        self.num_levels = int(num_levels)
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.extra_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1) for _ in range(num_levels - len(in_channels))
        )
        groups = _groups(out_channels, norm_groups)

        def tower() -> nn.Sequential:
            return nn.Sequential(
                *(
                    nn.Sequential(
                        nn.Conv2d(out_channels, out_channels, 3, padding=1),
                        nn.GroupNorm(groups, out_channels),
                        nn.GELU(),
                    )
                    for _ in range(num_convs)
                )
            )

        self.cls_tower = tower()
        self.reg_tower = tower()
        # MMDetection's initialisation: Xavier for the FPN, N(0, 0.01) for the FCOS towers
        for part, init in (
            (self.lateral_convs, nn.init.xavier_uniform_),
            (self.fpn_convs, nn.init.xavier_uniform_),
            (self.extra_convs, nn.init.xavier_uniform_),
            (self.cls_tower, None),
            (self.reg_tower, None),
        ):
            for m in part.modules():
                if isinstance(m, nn.Conv2d):
                    init(m.weight) if init else nn.init.normal_(m.weight, std=0.01)
                    nn.init.zeros_(m.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``features``: maps at strides 8, 16, 32; returns ``(cls_feats, reg_feats)``, one per level."""
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        levels = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]
        for j, conv in enumerate(self.extra_convs):
            levels.append(conv(levels[-1] if j == 0 else F.relu(levels[-1])))
        return [self.cls_tower(p) for p in levels], [self.reg_tower(p) for p in levels]


class ClassificationHead(nn.Module):
    """Dropout + linear on the embedding; logits (softmax for single-label, sigmoid for multi-label at use).

    Parameters
    ----------
    in_channels : embedding channels.
    num_classes : outputs (classes, or labels for multi-label).
    dropout : dropout probability on the (standardised) embedding.
    standardize : ``True``: subtract the fixed buffers ``input_mean`` and divide by ``input_std``
        first (zeros and ones until set, e.g. from a linear probe's training features by the
        transfer protocol). ``"batch"``: standardise each channel with the statistics of the
        task's own batches (``BatchNorm1d`` without affine parameters; running estimates in
        evaluation), for heads trained from scratch during multi-task pre-training. A batch holds
        one task, so these statistics are the task's. An embedding can vary across the images of a
        task by a small fraction of its per-channel offset (measured in the demo's pre-training:
        between-image std / mean 0.006 after 450 iterations); without standardisation dropout noise
        on that offset drowns the signal and the head predicts the class prior. The buffers are
        part of the state dict only when ``standardize`` is set, so plain heads keep their keys.
    """

    def __init__(
        self, in_channels: int, num_classes: int, dropout: float = 0.2, standardize: bool | str = False
    ) -> None:
        super().__init__()
        if standardize not in (False, True, "batch"):
            raise ConfigError(f"standardize must be False, True or 'batch', got {standardize!r}")
        self.batch_norm = nn.BatchNorm1d(in_channels, affine=False) if standardize == "batch" else None
        self.standardize = standardize is True
        # always present (TorchScript compiles both branches of forward), saved only when used
        self.register_buffer("input_mean", torch.zeros(in_channels), persistent=self.standardize)
        self.register_buffer("input_std", torch.ones(in_channels), persistent=self.standardize)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        if self.standardize:
            embedding = (embedding - self.input_mean) / self.input_std
        if self.batch_norm is not None:
            embedding = self.batch_norm(embedding)
        return self.fc(self.dropout(embedding))


class SegmentationHead(nn.Module):
    """Optional channel dropout + ``kernel_size`` conv on the pixel embedding: per-pixel logits."""

    def __init__(self, in_channels: int, num_classes: int, kernel_size: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size, padding=kernel_size // 2)

    def forward(self, pixel_embedding: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(pixel_embedding))


def detection_points(
    height: int, width: int, size_divisor: int = 32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Location of every detection prediction of :class:`UMedPTTaskOutput`, ``(L, 3)``: x, y, stride.

    Cell centres (:func:`medfound.networks.fcos.fcos_locations`) of the levels at strides
    8-128 of a ``height x width`` input padded to ``size_divisor``, level by level,
    row-major: the order of the flattened detection output.

    Example
    -------
    >>> detection_points(32, 32)[:2].tolist()
    [[4.0, 4.0, 8.0], [12.0, 4.0, 8.0]]
    """
    ph, pw = -(-height // size_divisor) * size_divisor, -(-width // size_divisor) * size_divisor
    sizes = [(-(-ph // s), -(-pw // s)) for s in DETECTION_STRIDES]
    points = fcos_locations(sizes, DETECTION_STRIDES, device=device)
    return torch.cat(
        [torch.cat([p, p.new_full((len(p), 1), float(s))], dim=1) for p, s in zip(points, DETECTION_STRIDES)]
    )


def _load_encoder_weights(encoder: SwinTransformerV2, path: str | os.PathLike) -> None:
    """Load a torchvision-format Swin V2 state dict (head entries ignored) strictly into ``encoder``."""
    state = load_torch_file(path, what="encoder_weights")
    if not isinstance(state, Mapping):
        raise WeightsError(f"encoder_weights {path}: holds a {type(state).__name__}, not a state dict")
    try:
        encoder.load_state_dict(strip_classifier(state), strict=True)
    except RuntimeError as err:
        raise WeightsError(f"encoder_weights {path} do not fit this Swin V2 encoder: {err}") from None


class UMedPT(nn.Module):
    """The UMedPT model: shared encoder, squeezer and decoders, and one head per task.

    Parameters
    ----------
    variant : Swin V2 encoder size, ``"tiny"`` (published), ``"small"`` or ``"base"``.
    squeezer_channels : channels of the squeezer's 1x1 conv, i.e. of the embedding (512 as
        published); ``None``: no conv, the encoder's deepest channels (768 for tiny).
    pixel_embedding_channels : channels of the segmentation decoder's output (16).
    det_channels : FPN and tower channels of the detection decoder.
    det_num_convs : layers per detection tower.
    head_dropout : dropout of new classification / multi-label heads.
    encoder_weights : path of a torchvision-format Swin V2 state dict to load into the
        encoder (torchvision's ImageNet weights, or ``encoder.pt`` written by
        :func:`medfound.convert.umedpt.convert_umedpt`); ``None``: random initialisation.
    tasks : task heads to create, each ``{"name", "kind", "num_classes", ...head options}``.
    embed_dim, depths, num_heads, window_size, stochastic_depth_prob : override the
        variant's encoder configuration (small test models).
    seg_hidden_channels : widest segmentation decoder block (96 as published).
    pixel_embedding_stride : 1 (pixel embedding at the input size) or 2 (at half size, as the
        published encoder-1.0.4's decoder; segmentation logits are then upsampled bilinearly
        to the input size after the head).
    input_normalization : ``None`` (inputs in [0, 1] as the published model takes them) or
        ``"imagenet"`` (mean/std normalisation, for torchvision ImageNet encoder weights).
    size_divisor : sides are zero-padded to multiples of it (32: five halvings).
    fused_attention : scaled-dot-product attention in the encoder.

    All arguments are plain JSON values, so a MONAI bundle builds the model with
    ``{"_target_": "medfound.networks.UMedPT", ...}``.

    Example
    -------
    >>> import torch
    >>> model = UMedPT(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
    ...                squeezer_channels=None, seg_hidden_channels=16, det_channels=16)
    >>> head = model.add_task("lesions", "multilabel", 5)
    >>> sorted(model.shared), model.task_kinds
    (['det_decoder', 'encoder', 'seg_decoder', 'squeezer'], {'lesions': 'multilabel'})
    >>> model(torch.rand(1, 3, 64, 64), task="lesions").shape
    torch.Size([1, 5])
    """

    def __init__(
        self,
        variant: str = "tiny",
        squeezer_channels: int | None = 512,
        pixel_embedding_channels: int = 16,
        det_channels: int = 256,
        det_num_convs: int = 4,
        head_dropout: float = 0.2,
        encoder_weights: str | os.PathLike | None = None,
        tasks: Sequence[Mapping[str, Any]] | None = None,
        embed_dim: int | None = None,
        depths: Sequence[int] | None = None,
        num_heads: Sequence[int] | None = None,
        window_size: int | Sequence[int] = 8,
        stochastic_depth_prob: float | None = None,
        seg_hidden_channels: int = 96,
        pixel_embedding_stride: int = 1,
        input_normalization: str | None = None,
        size_divisor: int = 32,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        check_choice(variant, sorted(SWIN_V2_VARIANTS), "UMedPT variant")
        check_choice(input_normalization, (None, "imagenet"), "input_normalization")
        size_divisor = check_int(size_divisor, "size_divisor", low=1)
        enc_cfg = dict(SWIN_V2_VARIANTS[variant])
        for key, value in (
            ("embed_dim", embed_dim),
            ("depths", depths),
            ("num_heads", num_heads),
            ("stochastic_depth_prob", stochastic_depth_prob),
        ):
            if value is not None:
                enc_cfg[key] = value
        encoder = SwinTransformerV2(window_size=window_size, fused_attention=fused_attention, **enc_cfg)
        if len(encoder.out_channels) != 4:
            raise ConfigError(f"UMedPT needs a 4-stage encoder (strides 4-32), got depths {encoder.depths}")
        if encoder_weights is not None:
            _load_encoder_weights(encoder, encoder_weights)
        squeezer = Squeezer(encoder.out_channels[-1], squeezer_channels)
        c4, c8, c16, _ = encoder.out_channels
        self.shared = nn.ModuleDict(
            {
                "encoder": encoder,
                "squeezer": squeezer,
                "seg_decoder": UNetDecoder(
                    [c4, c8, c16, squeezer.out_channels],
                    pixel_embedding_channels,
                    seg_hidden_channels,
                    output_stride=pixel_embedding_stride,
                ),
                "det_decoder": FPNDecoder(
                    [c8, c16, squeezer.out_channels], det_channels, len(DETECTION_STRIDES), det_num_convs
                ),
            }
        )
        batchnorm_to_groupnorm(self.shared)
        self.heads = nn.ModuleDict()
        self.task_kinds: dict[str, str] = {}
        self._task_specs: dict[str, dict[str, Any]] = {}
        self.head_dropout = float(head_dropout)
        self.input_normalization = input_normalization
        self.size_divisor = int(size_divisor)
        self.embedding_channels = squeezer.out_channels
        if input_normalization == "imagenet":
            self.register_buffer("input_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("input_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for task in tasks or ():
            task = dict(task)
            try:
                name, kind, num_classes = task.pop("name"), task.pop("kind"), task.pop("num_classes")
            except KeyError as err:
                raise ConfigError(f"UMedPT task {task} lacks {err.args[0]!r} (needs name, kind, num_classes)") from None
            self.add_task(name, kind, num_classes, **task)

    # -- tasks ---------------------------------------------------------------------------------
    def add_task(self, name: str, kind: str, num_classes: int, **head_kwargs: Any) -> nn.Module:
        """Create the head of a new task and return it.

        ``head_kwargs``: classification / multilabel: ``dropout`` (default ``head_dropout``),
        ``standardize`` (see :class:`ClassificationHead`);
        segmentation: ``kernel_size`` (3), ``dropout`` (0); detection: ``FCOSHead`` options
        (``prior_prob``, ...). The head is created on the device and dtype of the shared blocks.
        """
        if not isinstance(name, str) or not name or "." in name:
            raise ConfigError(f"task name must be a non-empty string without '.', got {name!r}")
        if name in self.heads:
            raise ConfigError(f"task {name!r} exists already")
        check_choice(kind, TASK_KINDS, f"task {name!r}: kind")
        num_classes = check_int(num_classes, f"task {name!r}: num_classes", low=1)
        spec_kwargs = dict(head_kwargs)
        try:
            if kind in ("classification", "multilabel"):
                head: nn.Module = ClassificationHead(
                    self.embedding_channels,
                    num_classes,
                    dropout=head_kwargs.pop("dropout", self.head_dropout),
                    **head_kwargs,
                )
            elif kind == "segmentation":
                head = SegmentationHead(self.shared["seg_decoder"].out_channels, num_classes, **head_kwargs)
            else:
                head = FCOSHead(
                    self.shared["det_decoder"].out_channels,
                    num_classes,
                    num_levels=len(DETECTION_STRIDES),
                    **head_kwargs,
                )
        except TypeError as err:
            raise ConfigError(f"task {name!r} ({kind}): bad head option: {err}") from None
        ref = next(self.shared.parameters())
        head.to(device=ref.device, dtype=ref.dtype)
        self.heads[name] = head
        self.task_kinds[name] = kind
        self._task_specs[name] = {"name": name, "kind": kind, "num_classes": num_classes, **spec_kwargs}
        return head

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """The tasks as ``UMedPT(tasks=...)`` takes them (JSON): ``UMedPT(..., tasks=model.tasks)`` rebuilds heads."""
        return [dict(spec) for spec in self._task_specs.values()]

    def remove_task(self, name: str) -> nn.Module:
        """Remove a task's head and return it."""
        if name not in self.heads:
            raise ConfigError(f"no task {name!r}; tasks: {sorted(self.heads)}")
        self.task_kinds.pop(name)
        self._task_specs.pop(name)
        return self.heads.pop(name)

    # -- forward -------------------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ShapeError(f"UMedPT expects (B, 3, H, W) images in [0, 1], got {tuple(x.shape)}")
        if self.input_normalization == "imagenet":
            x = (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)
        h, w = x.shape[-2:]
        d = self.size_divisor
        pad_b, pad_r = (-h) % d, (-w) % d
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        return x

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder pyramid (strides 4, 8, 16, 32) of the normalised, padded input."""
        return self.shared["encoder"](self._prepare(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The image embedding, ``(B, embedding_channels)``: what classification heads see."""
        return self.shared["squeezer"].embed(self.encode(x)[-1])

    def _padded_pixel_embedding(self, x: torch.Tensor) -> torch.Tensor:
        xp = self._prepare(x)
        pyramid = self.shared["encoder"](xp)
        deep = self.shared["squeezer"].feature_map(pyramid[-1])
        return self.shared["seg_decoder"]([*pyramid[:3], deep], xp.shape[-2:])

    def pixel_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The segmentation decoder's ``(B, pixel_embedding_channels, H, W)`` output, cropped to the input.

        With ``pixel_embedding_stride=2`` it is ``(B, C, ceil(H / 2), ceil(W / 2))``.
        """
        s = self.shared["seg_decoder"].output_stride
        h, w = x.shape[-2:]
        return self._padded_pixel_embedding(x)[..., : -(-h // s), : -(-w // s)]

    def detection_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The detection towers' per-level outputs ``(cls_feats, reg_feats)`` at strides 8-128 (padded input)."""
        pyramid = self.encode(x)
        deep = self.shared["squeezer"].feature_map(pyramid[-1])
        return self.shared["det_decoder"]([pyramid[1], pyramid[2], deep])

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor | dict[str, list[torch.Tensor]]:
        """One task's output; only the shared blocks that task needs run.

        classification / multilabel: logits ``(B, K)``; segmentation: logits ``(B, K, H, W)``
        at input size; detection: the ``FCOSHead`` dict (``cls_logits``, ``box_regression``,
        ``centerness``: lists over strides 8-128 of the padded input).
        """
        if task not in self.heads:
            raise ConfigError(f"no task {task!r}; tasks: {sorted(self.heads)}")
        kind, head = self.task_kinds[task], self.heads[task]
        if kind in ("classification", "multilabel"):
            return head(self.forward_features(x))
        if kind == "segmentation":  # crop after the head, so its kernel sees the padded embedding
            h, w = x.shape[-2:]
            logits = head(self._padded_pixel_embedding(x))
            if self.shared["seg_decoder"].output_stride != 1:  # half-size embedding: logits to the padded size
                padded = [d + (-d) % self.size_divisor for d in (h, w)]
                logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
            return logits[..., :h, :w]
        return head(*self.detection_features(x))


class UMedPTEmbedding(nn.Module):
    """Tensor-returning face of :meth:`UMedPT.forward_features` for bundles, TorchScript and ONNX.

    ``model``: a :class:`UMedPT`, or ``None`` to build one from ``umedpt_kwargs``. The
    state dict is that of the wrapped model under ``model.``; load weights into the
    :class:`UMedPT` (e.g. a bundle's ``network_def``) and wrap it.

    Example
    -------
    >>> import torch
    >>> net = UMedPTEmbedding(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
    ...                       squeezer_channels=16, seg_hidden_channels=16, det_channels=16)
    >>> net(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 16])
    """

    def __init__(self, model: UMedPT | None = None, **umedpt_kwargs: Any) -> None:
        super().__init__()
        self.model = model if model is not None else UMedPT(**umedpt_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


class UMedPTFeatureNet(UMedPT):
    """A :class:`UMedPT` whose ``forward(x)`` is the image embedding: a bundle's ``network_def``.

    MONAI bundles need a ``network_def`` that returns one tensor and loads ``models/model.pt``
    as its own state dict. This subclass has exactly :class:`UMedPT`'s parameters and state
    dict (a ``model.pt`` written by ``medfound convert-umedpt`` or by a pre-training run loads
    with ``strict=True``), so unlike :class:`UMedPTEmbedding` (whose keys carry ``model.``) it
    needs no key mapping. ``forward(x, task=name)`` is still one task's output.

    ``dropout`` (default 0: off) is applied to the embedding, for Monte Carlo dropout (MONAI
    Label's epistemic scoring sets a bundle's ``network_def#dropout``); it has no parameters.
    :meth:`from_arguments` builds the network from a dict of UMedPT arguments, so a bundle
    config keeps them in one entry and still names ``dropout`` on its own.

    Example
    -------
    >>> import torch
    >>> args = dict(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
    ...             squeezer_channels=16, seg_hidden_channels=16, det_channels=16)
    >>> net = UMedPTFeatureNet.from_arguments(args, dropout=0.1)
    >>> net(torch.rand(2, 3, 32, 32)).shape, sorted(net.state_dict()) == sorted(UMedPT(**args).state_dict())
    (torch.Size([2, 16]), True)
    """

    def __init__(self, *args: Any, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dropout = nn.Dropout(check_float(dropout, "dropout", low=0.0, high=1.0, high_open=True))

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any] | None = None, dropout: float = 0.0) -> UMedPTFeatureNet:
        """``cls(**arguments, dropout=dropout)``."""
        return cls(**dict(arguments or {}), dropout=dropout)

    def forward(self, x: torch.Tensor, task: str | None = None) -> Any:  # type: ignore[override]
        if task is None:
            return self.dropout(self.forward_features(x))
        return super().forward(x, task)


class UMedPTTaskOutput(nn.Module):
    """Tensor-returning face of one task's output, for bundles, TorchScript and ONNX.

    classification / multilabel: logits ``(B, K)`` (``activation="softmax"`` /
    ``"sigmoid"`` for probabilities); segmentation: logits ``(B, K, H, W)`` (or
    probabilities); detection: ``(B, L, 5 + K)`` with, per location, the box distances
    ``left, top, right, bottom`` (input pixels), the centerness logit and the K class
    logits (sigmoid probabilities with ``activation="sigmoid"``), locations level by level
    (strides 8-128), row-major: :func:`detection_points` gives their centres.

    Example
    -------
    >>> import torch
    >>> model = UMedPT(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
    ...                squeezer_channels=16, seg_hidden_channels=16, det_channels=16,
    ...                tasks=[{"name": "seg", "kind": "segmentation", "num_classes": 2}])
    >>> probs = UMedPTTaskOutput(model, "seg", activation="softmax")(torch.rand(1, 3, 40, 40))
    >>> probs.shape, probs.sum(1).allclose(torch.ones(1, 40, 40))
    (torch.Size([1, 2, 40, 40]), True)
    """

    def __init__(
        self, model: UMedPT | None = None, task: str = "", activation: str | None = None, **umedpt_kwargs: Any
    ) -> None:
        super().__init__()
        self.model = model if model is not None else UMedPT(**umedpt_kwargs)
        if task not in self.model.heads:
            raise ConfigError(f"UMedPTTaskOutput: no task {task!r}; tasks: {sorted(self.model.heads)}")
        check_choice(activation, (None, "softmax", "sigmoid"), "activation")
        self.task, self.kind, self.activation = task, self.model.task_kinds[task], activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x, task=self.task)
        if self.kind == "detection":
            cls = torch.cat([t.flatten(2) for t in out["cls_logits"]], dim=2)
            if self.activation == "sigmoid":
                cls = torch.sigmoid(cls)
            box = torch.cat([t.flatten(2) for t in out["box_regression"]], dim=2)
            ctr = torch.cat([t.flatten(2) for t in out["centerness"]], dim=2)
            return torch.cat([box, ctr, cls], dim=1).transpose(1, 2)
        if self.activation == "softmax":
            return torch.softmax(out, dim=1)
        if self.activation == "sigmoid":
            return torch.sigmoid(out)
        return out
