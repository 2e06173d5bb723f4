"""Configuration of DAC co-training and its baselines: every constant, its default and why.

A run is described by one :class:`DACConfig` (sections ``data``, ``network``, ``method``,
``augment``, ``optim``, ``train``, ``evaluate``), read from JSON or YAML with
:func:`load_config` or built from a plain dict with :meth:`DACConfig.from_dict` (unknown
keys are errors, so a typo never silently falls back to a default; a value of the wrong
type, such as ``"two"`` for an integer or ``"0.01"`` for a learning rate, is an error
naming the key). Switching method is one key: ``method.name``.

These dataclasses are the one source of the defaults: :func:`medfound.dac.train` turns a
config into a bundle-style config of ready objects
(:func:`medfound.dac.bundle_configs.train_bundle_config`, written next to the run as
``train_config.json``) and instantiates that with MONAI's ``ConfigParser``.

Methods (``method.name``)
-------------------------
=================  ======  ===============  ==============  =========  =================
name               models  pseudo labels    feature loss    aux tasks  threshold default
=================  ======  ===============  ==============  =========  =================
``dac``            A, B    cross (CPS)      yes             A: mask,   0.0
                                                            B: rotation
``dac_no_feat``    A, B    cross            no              yes        0.0
``dac_no_aux``     A, B    cross            yes             no         0.0
``cps``            A, B    cross            no              no         0.0
``fixmatch``       A       self (weak ->    no              no         0.95
                           strong)
``supervised``     A       none             no              no         --
=================  ======  ===============  ==============  =========  =================

FixMatch (Sohn et al. 2020, in its segmentation form as in UniMatch) is the single-model
baseline; it was preferred over mean teacher because it shares the weak/strong view
machinery with CPS and DAC, so the comparison differs only in where the pseudo labels come
from.

Defaults and why (the DAC paper's constants are not public)
-----------------------------------------------------------
- ``method.lambda_cps = 1.0``: weight of the pseudo-label term. CPS used 1.5 (VOC), FixMatch
  and UniMatch weight the unlabelled term like the supervised one (1.0); 1.0 keeps the
  supervised signal of the labelled source domain in charge when pseudo labels on shifted
  domains are poor.
- ``method.lambda_feat = 0.1``: the feature-level term regularises the shared
  representation; an order of magnitude below the segmentation terms is the usual weight
  of such a consistency term, so it shapes features without competing with segmentation.
- ``method.lambda_aux = 1.0``: both auxiliary losses are at the scale of the supervised
  Dice + CE (rotation CE ln 4 = 1.39 at chance, mixed-region BCE about 0.66 at the prior).
  With 0.1 they did not learn inside DAC (synthetic fundus, 300 iterations: rotation
  accuracy 0.45 in the last epoch, mixed-region IoU 0.372 against the constant predictor's
  0.371); with 1.0 and the choices below they learn (README, DAC results, gives the
  accuracy reached and the Dice beside the ``dac_no_aux`` ablation).
- ``method.aux_head_init = "zero"``: a zero-initialised linear head passes no gradient into
  the trunk until it has learnt something itself, so its first steps cannot disturb the
  segmentation features (a default-initialised rotation head sent a gradient 3.6x the
  supervised one into B's backbone at step 1).
- ``method.aux_rotation_view = "clean"``: B's rotated region shows the weak (pre-photometric)
  view, CutMix-ed like the rest, so the thin structures that carry orientation survive the
  blur, grayscale and noise of the strong view (a linear probe on B's features of the
  strong-view region scored 0.20 rotation accuracy, chance 0.25); the rest of B's input is
  the strong view. ``"strong"`` rotates the strong view (the former behaviour).
- ``method.mask_layer = "decoder"``, ``method.rotation_layer = "aspp"``: the layer each
  auxiliary head reads, matched to its task. The mixed-region task is a per-pixel boundary
  task: A's head reads the stride-4 decoder output. The rotation task is one label per
  region, recoverable only from the region's content against its context: B's head reads
  the ASPP output (stride 16, the widest receptive field), which B's classifier sees only
  through the decoder. On the decoder, where B's classifier, its pseudo labels and its
  feature targets also act, the rotation task stopped sub-model B from segmenting at all:
  on the fundus demo bundle (64 px, 200 iterations, seeds 0-2) B labelled every pixel
  background, its pseudo labels on the unlabelled domains had disc and cup Dice 0.000 in
  every epoch, and A was trained on those all-background cross pseudo labels; with the
  same run as ``cps`` or ``dac_no_aux`` B segmented. With the rotation head on ``aspp``
  B segments in all three seeds (last-epoch pseudo-label disc Dice 0.58-0.82 on the
  unlabelled domains) and both tasks learn (last-epoch rotation accuracy 0.54 / 0.55 / 0.70,
  mixed-region IoU 0.42-0.45 against the constant predictor's 0.37). Measured and not
  chosen (seed 0 unless said): both heads on ``backbone`` (layer4, seeds 0-2) or
  ``low_level``: B segments but neither task learns (rotation accuracy 0.25-0.36, IoU
  0.34-0.40 against the constant predictor's 0.37); both on ``aspp``: the mixed-region task does not learn
  there (IoU 0.375 against 0.371); heads on the decoder with ``lambda_aux`` 0.3: B's pseudo
  labels find the disc only from the fourth of five epochs (0.21, then 0.69), with a head
  learning-rate scale of 1: only 0.11 at the end. B starts later than A in every
  co-training method here (``cps`` too); swapping ``init_seeds`` swaps which one lags.
  Masking the rotated region out of B's feature and pseudo-label losses was measured
  earlier and did not raise the rotation accuracy (0.56 against 0.63 at the same epoch),
  so B keeps its pseudo-label supervision everywhere.
- ``method.confidence_threshold = None``: method default, 0.0 for CPS-style co-training (the
  original CPS uses every pixel: the peer's argmax is already a hard target) and 0.95 for
  FixMatch (its published value). DAC and CPS share one value so the ablation isolates the
  feature loss and the auxiliary tasks.
- ``method.rampup_fraction = 0.3``: sigmoid ramp-up exp(-5 (1 - t)^2) (Laine & Aila 2017,
  mean teacher) of the unsupervised terms over the first 30 % of iterations, so the
  pseudo labels start to count once the supervised branch is past its first, noisy phase.
- ``method.feature_layer = "decoder"``: the DeepLabV3+ decoder output (stride 4, 256
  channels), the last representation before the classifier, closest to what both models
  must agree on and still spatial (its features align with the CutMix mask and rotation).
- ``method.feature_loss = "cosine"``: scale-free (BYOL / SimSiam); ``"mse"`` is available.
- ``method.projection_channels = 128``: hidden width of the two-layer 1x1 projection
  (predictor) head; a bottleneck as in SimSiam, cheap next to the decoder.
- ``method.init_seeds = (0, 1)``: different initialisations of A and B (as in CPS).
- ``method.inference = "a"``: deploy sub-model A alone (cost of one DeepLabV3+);
  ``"ensemble"`` averages the probabilities of A and B.
- ``method.dice_include_background = False``: background covers most of the image, its
  Dice is near 1 and adds no signal; cross-entropy covers it.
- ``augment.cutmix_*``: one box covering 25-50 % of the image, every unlabelled image mixed,
  aspect ratios 0.3-3.3: the defaults of :mod:`medfound.transforms.mixing`
  (``CUTMIX_AREA_RANGE`` etc., where the reasons are given), referred to, not repeated.
- ``augment.rotation_side_range = (0.5, 0.75)`` of the shorter side, ``rotation_align = 16``
  (:data:`~medfound.dac.aux_tasks.ROTATION_ALIGN`): the rotation of a region is recoverable
  only from its content relative to its context (vessels that stop at the region border,
  the illumination fall-off and the field of view that point to the image centre); with
  sides of 25-50 % (the default of :mod:`medfound.transforms.mixing`) the task stayed
  at chance even trained alone (held-out accuracy 0.24 after 200 SGD steps), with 50-75 %
  it reached 0.52 after 300 and 0.77 after 600 SGD steps. Aligned to the output stride so
  the region maps exactly onto every feature layer.
- ``augment.unlabeled_flip_prob = 0.0``: the unlabelled weak view is not flipped, so no
  global augmentation makes a region rotated by ``k`` look like one rotated by ``k + 2``
  (flips on both axes with p 0.5 show whole images under identity, h-flip, v-flip and
  180 degrees). The labelled view keeps ``flip_prob``; the option applies to every
  semi-supervised method, so the comparison stays fair (``None``: ``flip_prob``).
- ``augment.style_mix_prob = 0.0`` (off), ``style_mix_window = 0.1``: Fourier amplitude
  (style) mixing between the labelled and the unlabelled batch
  (:func:`~medfound.transforms.mixing.amplitude_mix`, as EPL does): each image takes on the
  low-frequency amplitude (site appearance) of an image of the other batch with a weight
  uniform in [0, 1], keeping its phase (content, hence labels). An option of the
  semi-supervised methods (it needs unlabelled images); off by default: per-image
  standardisation (``data.normalize``) already removes the per-channel part of a site's
  appearance, and no run here has shown the mixing to add Dice on top of it, so it stays
  an option to measure on real sites (``examples/dac_evidence.py --style-mix 0.5``).
- strong view: colour jitter (brightness, contrast, saturation 0.5) with p 0.8, grayscale
  p 0.2, Gaussian blur sigma 0.1-2.0 with p 0.5 (the FixMatch / UniMatch strong
  augmentation), plus Gaussian noise std up to 0.05 with p 0.5 (noise is the third
  appearance shift named by the method).
- weak view: flips, rotation up to 15 degrees, scaling 0.9-1.1 (applied to image and label
  alike, before the strong view is derived, so views stay aligned).
- ``data.spatial_size = (256, 256)``: a common working size for fundus ROIs and polyp
  frames; the large structures survive downsampling and two ResNet-50 DeepLabV3+ models
  with batch 8 + 8 fit one 24 GB GPU.
- ``data.batch_size_labeled = batch_size_unlabeled = 8`` (CPS / UniMatch per-GPU practice).
- ``optim``: SGD, lr 0.01, momentum 0.9, weight decay 1e-4, poly schedule with power 0.9
  per iteration: the DeepLab training recipe. ``optim.head_lr_scale = 10``: the
  training-only heads (projectors, auxiliary heads) are new layers and learn at 10x the
  trunk's rate, as UniMatch trains its new layers; with zero-initialised auxiliary heads
  this is what lets them carry signal within a few hundred iterations.
- ``data.normalize = "image"``: each image's channels are standardised with their own mean
  and standard deviation (MONAI ``NormalizeIntensity(channel_wise=True)``). A site's
  camera (colour balance, exposure, contrast) acts mostly as a per-channel gain and
  offset, which this removes exactly and a fixed (ImageNet) normalisation keeps. On the
  synthetic fundus demo the unseen Domain2 (red cast, gamma 1.3) scored Dice 0.00 (disc
  and cup) with every method under the fixed normalisation because of its colour balance
  alone (Domain1 rendered with Domain2's channel gains and gamma: 0.00; Domain2 with
  Domain1's colour: 0.93 disc). The training step builds its views in [0, 1] and
  standardises every network input; validation and evaluation standardise in the
  pipeline, so training and inference see the same inputs. ``"fixed"``
  (``normalize_mean`` / ``normalize_std``, ImageNet by default) remains for comparison.
- ``train.max_epochs = 100`` x ``iterations_per_epoch = 200`` (20 000 iterations), validation
  on the held-out part of the labelled source domain after every epoch (never on the test
  domain), a checkpoint every 200 iterations.
- ``train.amp = None``: mixed precision when a CUDA device is used, off on CPU.
- ``train.tensorboard = True``, ``train.progress_bar = True``: TensorBoard logs under
  ``output_dir/tensorboard`` and a progress bar with ETA (ignite ``ProgressBar``).

Example
-------
>>> from medfound.dac.config import DACConfig
>>> cfg = DACConfig.from_dict({"method": {"name": "cps"}, "train": {"max_epochs": 2}})
>>> cfg.components().feature, cfg.components().two_models, cfg.threshold()
(False, True, 0.0)
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medfound.dac.aux_tasks import ROTATION_ALIGN
from medfound.errors import ConfigError
from medfound.transforms.mixing import (
    CUTMIX_AREA_RANGE,
    CUTMIX_ASPECT_RATIO_RANGE,
    CUTMIX_NUM_BOXES,
    CUTMIX_PROB,
)
from medfound.utils import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_mapping,
    check_pair,
    check_probability,
    read_config_file,
)

__all__ = [
    "METHODS",
    "NETWORKS",
    "check_network",
    "Components",
    "DataConfig",
    "NetworkConfig",
    "MethodConfig",
    "AugmentConfig",
    "OptimConfig",
    "TrainConfig",
    "EvaluateConfig",
    "DACConfig",
    "default",
    "load_config",
]


@dataclass(frozen=True)
class Components:
    """What a method switches on."""

    two_models: bool
    pseudo: str | None  # "cross" (CPS), "self" (FixMatch) or None (supervised only)
    feature: bool
    aux_mask: bool
    aux_rotation: bool
    default_threshold: float = 0.0


#: method name -> components; one key of the config selects a baseline or ablation
METHODS: dict[str, Components] = {
    "dac": Components(True, "cross", True, True, True),
    "dac_no_feat": Components(True, "cross", False, True, True),
    "dac_no_aux": Components(True, "cross", True, False, False),
    "cps": Components(True, "cross", False, False, False),
    "fixmatch": Components(False, "self", False, False, False, default_threshold=0.95),
    "supervised": Components(False, None, False, False, False),
}


#: segmentation networks a DAC config may name in ``network.target``, by name or by import path.
#: Any other import path runs code the config chooses: it needs ``allow_any_network``
#: (``medfound dac train --allow-any-network``). Register your own class here, from your own code.
NETWORKS: dict[str, str] = {"deeplabv3plus": "medfound.networks.deeplabv3plus.DeepLabV3Plus"}

#: first characters MONAI's ConfigParser evaluates ($ expression, @ reference, % macro) and the keys
#: it instantiates or interprets: a DAC config is plain data, so neither may appear in its values
_CONFIG_SYNTAX = ("$", "@", "%")
_RESERVED_KEYS = ("_target_", "_mode_", "_requires_", "_disabled_", "_desc_")


def _plain_data(value: Any, where: str) -> None:
    """Refuse MONAI config syntax in a value: the bundle config built from it would run it as code."""
    if isinstance(value, str) and value.startswith(_CONFIG_SYNTAX):
        raise ConfigError(
            f"{where}: {value[:40]!r} starts with {value[0]!r}, MONAI config syntax that runs as code; "
            "a DAC config holds plain values only"
        )
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k) in _RESERVED_KEYS:
                raise ConfigError(
                    f"{where}.{k}: MONAI config keys (_target_, ...) build objects from code; "
                    "a DAC config holds plain values only"
                )
            _plain_data(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _plain_data(v, f"{where}[{i}]")


def check_network(config: DACConfig, allow_any_network: bool = False) -> str:
    """The import path of the configured network; anything but a :data:`NETWORKS` entry needs ``allow_any_network``.

    Example
    -------
    >>> check_network(DACConfig.from_dict({"network": {"target": "deeplabv3plus"}}))
    'medfound.networks.deeplabv3plus.DeepLabV3Plus'
    >>> try:
    ...     check_network(DACConfig.from_dict({"network": {"target": "os.system"}}))
    ... except ValueError as err:
    ...     print(str(err)[:61])
    network.target 'os.system' is not a registered network (deepl
    """
    target = config.network.target
    if target in NETWORKS.values() or check_bool(allow_any_network, "allow_any_network"):
        return target
    raise ConfigError(
        f"network.target {target!r} is not a registered network ({', '.join(sorted(NETWORKS))}); importing any "
        "other class runs code the config chooses: allow it with --allow-any-network (allow_any_network=True) "
        "for configs you wrote yourself"
    )


@dataclass
class DataConfig:
    """Data: the split file and how items are read and batched."""

    split: str = ""  #: split JSON from ``medfound dac split`` (keys labeled/unlabeled/validation/test)
    spatial_size: list[int] = field(default_factory=lambda: [256, 256])  #: training and inference size (H, W)
    in_channels: int = 3  #: image channels the network takes (grey images are repeated to this)
    intensity: str = "uint8"  #: "uint8" (divide by 255), "minmax" (per image) or "none"
    normalize_mean: list[float] | None = field(default_factory=lambda: [0.485, 0.456, 0.406])  #: ImageNet
    normalize_std: list[float] | None = field(default_factory=lambda: [0.229, 0.224, 0.225])
    normalize: str = "image"  #: network input: "image" (per-image channel z-score) or "fixed" (mean/std above)
    label_values: list[int] | None = None  #: raw label values in class order (e.g. [255, 128, 0]); None = indices
    batch_size_labeled: int = 8
    batch_size_unlabeled: int = 8
    num_workers: int = 4
    cache_rate: float = 1.0  #: > 0: keep every decoded, resized item in memory; 0: re-read files each time
    #: a bad item (unreadable, non-finite, 3D, mask of another size): "skip" and list it, or "raise"
    on_error: str = "skip"


@dataclass
class NetworkConfig:
    """The segmentation network of each sub-model (any class with ``forward_features``)."""

    target: str = "medfound.networks.deeplabv3plus.DeepLabV3Plus"  #: a NETWORKS name or import path
    num_classes: int | None = None  #: None: from the split's ``class_names``
    kwargs: dict[str, Any] = field(default_factory=lambda: {"backbone": "resnet50", "output_stride": 16})


@dataclass
class MethodConfig:
    """The method (or baseline) and its loss constants."""

    name: str = "dac"
    lambda_cps: float = 1.0
    lambda_feat: float = 0.1
    lambda_aux: float = 1.0
    confidence_threshold: float | None = None  #: None: the method's default (0.0, FixMatch 0.95)
    rampup_fraction: float = 0.3
    rampup_aux: bool = False  #: ramp the auxiliary terms too (their targets are exact, so off by default)
    feature_layer: str = "decoder"
    feature_loss: str = "cosine"
    projection_channels: int = 128
    mask_layer: str = "decoder"  #: layer the mixed-region head of A reads
    rotation_layer: str = "aspp"  #: layer the rotation head of B reads
    aux_head_init: str = "zero"  #: "zero" or "default" (PyTorch's) initialisation of the auxiliary heads
    aux_rotation_view: str = "clean"  #: B's rotated region from the "clean" (pre-photometric) or "strong" view
    lambda_dice: float = 1.0
    lambda_ce: float = 1.0
    dice_include_background: bool = False
    init_seeds: list[int] = field(default_factory=lambda: [0, 1])
    inference: str = "a"  #: "a", "b" or "ensemble"


@dataclass
class AugmentConfig:
    """Weak view (data pipeline), strong view and mixing (training step)."""

    flip_prob: float = 0.5
    rotate_degrees: float = 15.0
    scale_range: list[float] = field(default_factory=lambda: [0.9, 1.1])
    affine_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])
    noise_prob: float = 0.5
    noise_std: float = 0.05
    cutmix_prob: float = CUTMIX_PROB
    cutmix_num_boxes: int = CUTMIX_NUM_BOXES
    cutmix_area_range: list[float] = field(default_factory=lambda: list(CUTMIX_AREA_RANGE))
    cutmix_aspect_ratio_range: list[float] = field(default_factory=lambda: list(CUTMIX_ASPECT_RATIO_RANGE))
    rotation_side_range: list[float] = field(default_factory=lambda: [0.5, 0.75])
    rotation_align: int = ROTATION_ALIGN
    unlabeled_flip_prob: float | None = 0.0  #: flips of the unlabelled weak view (None: flip_prob)
    style_mix_prob: float = 0.0  #: per-image probability of a Fourier amplitude (style) mix with the other batch
    style_mix_window: float = 0.1  #: fraction of each spectrum side (centred) whose amplitude is mixed


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (one optimiser over both sub-models and heads)."""

    name: str = "sgd"  #: "sgd", "adam" or "adamw"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "poly"  #: "poly" or "constant"
    poly_power: float = 0.9
    head_lr_scale: float = 10.0  #: learning-rate multiplier of the training-only heads (new layers)


@dataclass
class TrainConfig:
    """Budget, validation, checkpoints, device."""

    output_dir: str = "runs/dac"
    max_epochs: int = 100
    iterations_per_epoch: int = 200
    validation_interval: int = 1  #: epochs between validations on the source validation part
    checkpoint_interval: int = 200  #: iterations between checkpoints (``last.pt``, written atomically)
    seed: int = 0
    device: str = "auto"  #: "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...
    amp: bool | None = None  #: None: on for CUDA, off on CPU
    resume: bool = True  #: continue from ``output_dir/last.pt`` when it exists
    log_interval: int = 20  #: iterations between log lines (and TensorBoard points)
    track_pseudo_labels: bool = True  #: score pseudo labels against labels of unlabelled items when they exist
    tensorboard: bool = True  #: TensorBoard event files under ``output_dir/tensorboard``
    progress_bar: bool = True  #: a progress bar with ETA per epoch (ignite ``ProgressBar``, on stderr)


@dataclass
class EvaluateConfig:
    """Evaluation of a trained model on parts of the split."""

    parts: list[str] = field(default_factory=lambda: ["test"])
    checkpoint: str = "best"  #: "best" (source-validation selection), "last", or a path to a model file
    output_dir: str | None = None  #: None: ``train.output_dir/evaluation``


def _string(value: Any, name: str, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string{' or null' if allow_none else ''}, got {value!r}")
    return value


def _float_list(value: Any, name: str, allow_none: bool = False, **bounds: Any) -> list[float] | None:
    if value is None and allow_none:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{name} must be a list of numbers{' or null' if allow_none else ''}, got {value!r}")
    return [check_float(v, name, **bounds) for v in value]


def _pair(value: Any, name: str, **bounds: Any) -> list:
    return list(check_pair(value, name, **bounds))


def _validate_data(d: DataConfig) -> None:
    d.split = _string(d.split, "data.split")
    if isinstance(d.spatial_size, (str, bytes)) or not isinstance(d.spatial_size, (list, tuple)) \
            or len(d.spatial_size) != 2:
        raise ConfigError(f"data.spatial_size must be [H, W] with sides >= 8, got {d.spatial_size!r}")
    d.spatial_size = [check_int(v, "data.spatial_size", low=8) for v in d.spatial_size]
    d.in_channels = check_int(d.in_channels, "data.in_channels", low=1)
    d.intensity = check_choice(d.intensity, ("uint8", "minmax", "none"), "data.intensity")
    d.normalize = check_choice(d.normalize, ("image", "fixed"), "data.normalize")
    d.normalize_mean = _float_list(d.normalize_mean, "data.normalize_mean", allow_none=True)
    d.normalize_std = _float_list(d.normalize_std, "data.normalize_std", allow_none=True, low=0.0, low_open=True)
    if (d.normalize_mean is None) != (d.normalize_std is None):
        raise ConfigError("data.normalize_mean and data.normalize_std must be both set or both null")
    if d.label_values is not None:
        if isinstance(d.label_values, (str, bytes)) or not isinstance(d.label_values, (list, tuple)):
            raise ConfigError(f"data.label_values must be a list of integers or null, got {d.label_values!r}")
        d.label_values = [check_int(v, "data.label_values") for v in d.label_values]
    d.batch_size_labeled = check_int(d.batch_size_labeled, "data.batch_size_labeled", low=1)
    d.batch_size_unlabeled = check_int(d.batch_size_unlabeled, "data.batch_size_unlabeled", low=1)
    d.num_workers = check_int(d.num_workers, "data.num_workers", low=0)
    d.cache_rate = check_probability(d.cache_rate, "data.cache_rate")
    d.on_error = check_choice(d.on_error, ("skip", "raise"), "data.on_error")


def _validate_network(n: NetworkConfig) -> None:
    n.target = NETWORKS.get(_string(n.target, "network.target"), n.target)  # a registered name -> its path
    if "." not in n.target:
        raise ConfigError(f"network.target must be a dotted path 'package.module.Class', got {n.target!r}")
    n.num_classes = check_int(n.num_classes, "network.num_classes", low=2, allow_none=True)
    n.kwargs = check_mapping(n.kwargs, "network.kwargs")


def _validate_method(m: MethodConfig) -> None:
    m.name = check_choice(m.name, METHODS, "method.name")
    for key in ("lambda_cps", "lambda_feat", "lambda_aux", "lambda_dice", "lambda_ce"):
        setattr(m, key, check_float(getattr(m, key), f"method.{key}", low=0.0))
    m.confidence_threshold = check_float(m.confidence_threshold, "method.confidence_threshold", low=0.0, high=1.0,
                                         high_open=True, allow_none=True)
    m.rampup_fraction = check_probability(m.rampup_fraction, "method.rampup_fraction")
    m.rampup_aux = check_bool(m.rampup_aux, "method.rampup_aux")
    m.feature_layer = _string(m.feature_layer, "method.feature_layer")
    m.feature_loss = check_choice(m.feature_loss, ("cosine", "mse"), "method.feature_loss")
    m.projection_channels = check_int(m.projection_channels, "method.projection_channels", low=1)
    m.mask_layer = _string(m.mask_layer, "method.mask_layer")
    m.rotation_layer = _string(m.rotation_layer, "method.rotation_layer")
    m.aux_head_init = check_choice(m.aux_head_init, ("zero", "default"), "method.aux_head_init")
    m.aux_rotation_view = check_choice(m.aux_rotation_view, ("clean", "strong"), "method.aux_rotation_view")
    m.dice_include_background = check_bool(m.dice_include_background, "method.dice_include_background")
    if isinstance(m.init_seeds, (str, bytes)) or not isinstance(m.init_seeds, (list, tuple)) or len(m.init_seeds) != 2:
        raise ConfigError(f"method.init_seeds must hold two seeds (A, B), got {m.init_seeds!r}")
    m.init_seeds = [check_int(v, "method.init_seeds") for v in m.init_seeds]
    m.inference = check_choice(m.inference, ("a", "b", "ensemble"), "method.inference")


def _validate_augment(a: AugmentConfig) -> None:
    for key in ("flip_prob", "affine_prob", "jitter_prob", "grayscale_prob", "blur_prob", "noise_prob", "cutmix_prob"):
        setattr(a, key, check_probability(getattr(a, key), f"augment.{key}"))
    for key in ("rotate_degrees", "brightness", "contrast", "saturation", "noise_std"):
        setattr(a, key, check_float(getattr(a, key), f"augment.{key}", low=0.0))
    a.scale_range = _pair(a.scale_range, "augment.scale_range", low=0.0)
    a.blur_sigma = _pair(a.blur_sigma, "augment.blur_sigma", low=0.0)
    a.cutmix_num_boxes = check_int(a.cutmix_num_boxes, "augment.cutmix_num_boxes", low=1)
    a.cutmix_area_range = _pair(a.cutmix_area_range, "augment.cutmix_area_range", low=0.0, high=1.0)
    a.cutmix_aspect_ratio_range = _pair(a.cutmix_aspect_ratio_range, "augment.cutmix_aspect_ratio_range", low=1e-6)
    a.rotation_side_range = _pair(a.rotation_side_range, "augment.rotation_side_range", low=0.0, high=1.0)
    a.rotation_align = check_int(a.rotation_align, "augment.rotation_align", low=1)
    if a.unlabeled_flip_prob is not None:
        a.unlabeled_flip_prob = check_probability(a.unlabeled_flip_prob, "augment.unlabeled_flip_prob")
    a.style_mix_prob = check_probability(a.style_mix_prob, "augment.style_mix_prob")
    a.style_mix_window = check_float(a.style_mix_window, "augment.style_mix_window", low=0.0, high=1.0,
                                     low_open=True)


def _validate_optim(o: OptimConfig) -> None:
    o.name = check_choice(o.name, ("sgd", "adam", "adamw"), "optim.name")
    o.lr = check_float(o.lr, "optim.lr", low=0.0, low_open=True)
    o.momentum = check_float(o.momentum, "optim.momentum", low=0.0)
    o.weight_decay = check_float(o.weight_decay, "optim.weight_decay", low=0.0)
    o.nesterov = check_bool(o.nesterov, "optim.nesterov")
    o.betas = _pair(o.betas, "optim.betas", low=0.0, high=1.0, ordered=False)
    o.schedule = check_choice(o.schedule, ("poly", "constant"), "optim.schedule")
    o.poly_power = check_float(o.poly_power, "optim.poly_power", low=0.0)
    o.head_lr_scale = check_float(o.head_lr_scale, "optim.head_lr_scale", low=0.0, low_open=True)


def _validate_train(t: TrainConfig) -> None:
    t.output_dir = _string(t.output_dir, "train.output_dir")
    for key in ("max_epochs", "iterations_per_epoch", "validation_interval", "checkpoint_interval", "log_interval"):
        setattr(t, key, check_int(getattr(t, key), f"train.{key}", low=1))
    t.seed = check_int(t.seed, "train.seed")
    t.device = _string(t.device, "train.device")
    t.amp = None if t.amp is None else check_bool(t.amp, "train.amp")
    for key in ("resume", "track_pseudo_labels", "tensorboard", "progress_bar"):
        setattr(t, key, check_bool(getattr(t, key), f"train.{key}"))


def _validate_evaluate(e: EvaluateConfig) -> None:
    if isinstance(e.parts, (str, bytes)) or not isinstance(e.parts, (list, tuple)) or not e.parts:
        raise ConfigError(f"evaluate.parts must be a non-empty list of split parts, got {e.parts!r}")
    e.parts = [_string(p, "evaluate.parts") for p in e.parts]
    e.checkpoint = _string(e.checkpoint, "evaluate.checkpoint")
    e.output_dir = _string(e.output_dir, "evaluate.output_dir", allow_none=True)


_SECTIONS = {
    "data": DataConfig,
    "network": NetworkConfig,
    "method": MethodConfig,
    "augment": AugmentConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
}


#: keys a former release had, with what replaces them (named in the error, so an old config says how to update)
_REPLACED_KEYS = {("method", "aux_layer"): "method.mask_layer (A's mixed-region head, default 'decoder') and "
                                          "method.rotation_layer (B's rotation head, default 'aspp')"}


def _build_section(cls: type, values: Any, where: str):
    if values is None:
        return cls()
    if isinstance(values, cls):
        return values
    for (section, key), replacement in _REPLACED_KEYS.items():
        if where == section and isinstance(values, Mapping) and key in values:
            raise ConfigError(f"{section}.{key} no longer exists: it is replaced by {replacement}")
    values = check_mapping(values, f"config section {where!r}", known=[f.name for f in dataclasses.fields(cls)])
    return cls(**values)


@dataclass
class DACConfig:
    """A whole run: data, network, method, augmentation, optimiser, training, evaluation."""

    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None = None) -> DACConfig:
        """Build from plain JSON-like values; unknown sections or keys raise :class:`ConfigError`."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(_SECTIONS))
        if unknown:
            raise ConfigError(f"unknown config section(s) {unknown}; known: {sorted(_SECTIONS)}")
        return cls(**{name: _build_section(sec, values.get(name), name) for name, sec in _SECTIONS.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values."""
        return dataclasses.asdict(self)

    def components(self) -> Components:
        """The parts the selected method switches on."""
        return METHODS[self.method.name]

    def threshold(self) -> float:
        """Confidence threshold of the pseudo labels (the method's default unless set)."""
        t = self.method.confidence_threshold
        return self.components().default_threshold if t is None else float(t)

    def validate(self) -> None:
        """Check every value (type and range) so nothing fails deep inside a run; errors name the key."""
        _validate_data(self.data)
        _validate_network(self.network)
        _validate_method(self.method)
        _validate_augment(self.augment)
        _validate_optim(self.optim)
        _validate_train(self.train)
        _validate_evaluate(self.evaluate)
        for name in _SECTIONS:
            _plain_data(dataclasses.asdict(getattr(self, name)), name)
        m, d = self.method, self.data
        if m.inference != "a" and not METHODS[m.name].two_models:
            raise ConfigError(f"method.inference={m.inference!r} needs two sub-models; {m.name!r} trains one")
        if d.normalize_mean is not None and not (len(d.normalize_mean) == len(d.normalize_std) == d.in_channels):
            raise ConfigError(
                f"data.normalize_mean/std need one value per channel (in_channels={d.in_channels}), "
                f"got {d.normalize_mean} / {d.normalize_std}"
            )
        if METHODS[m.name].aux_mask and d.batch_size_unlabeled < 2:
            raise ConfigError(
                "the mixed-region task needs data.batch_size_unlabeled >= 2 (CutMix pastes another image's region)"
            )


def default(section: type, key: str) -> Any:
    """The documented default of ``section.key``, e.g. ``default(MethodConfig, "lambda_cps")``.

    The constructors that take the same value (the objective, the model, the strong view, the
    data pipeline) use it as their default, so every default has one definition.

    Example
    -------
    >>> default(MethodConfig, "lambda_cps"), default(AugmentConfig, "blur_sigma")
    (1.0, [0.1, 2.0])
    """
    for f in dataclasses.fields(section):
        if f.name == key:
            if f.default is not dataclasses.MISSING:
                return f.default
            return f.default_factory()  # type: ignore[misc]
    raise KeyError(f"{section.__name__} has no key {key!r}")


def load_config(path: str | os.PathLike | dict[str, Any] | DACConfig,
                overrides: dict[str, Any] | None = None) -> DACConfig:
    """Read a :class:`DACConfig` from a JSON or YAML file (or pass a dict / config through).

    ``overrides`` maps dotted keys to values, e.g. ``{"method.name": "cps", "train.max_epochs": 5}``.

    Example
    -------
    >>> cfg = load_config({"train": {"seed": 3}}, overrides={"method.name": "supervised"})
    >>> cfg.train.seed, cfg.method.name
    (3, 'supervised')
    """
    if isinstance(path, DACConfig):
        values = path.to_dict()
    elif isinstance(path, dict):
        values = copy.deepcopy(path)
    elif isinstance(path, (str, os.PathLike)):
        values = read_config_file(path, expect=dict, what="config file")
    else:
        raise ConfigError(f"a DAC config is a file path, a dict or a DACConfig, got {type(path).__name__}")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if not key:
            raise ConfigError(f"override {dotted!r} must be 'section.key'")
        values.setdefault(section, {})
        if not isinstance(values[section], dict):
            raise ConfigError(f"override {dotted!r}: section {section!r} is not a mapping")
        values[section][key] = value
    return DACConfig.from_dict(values)
