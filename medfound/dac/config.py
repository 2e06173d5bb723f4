"""Configuration of DAC co-training and its baselines: every constant, its default and why.

A run is described by one :class:`DACConfig` (sections ``data``, ``network``, ``method``,
``augment``, ``optim``, ``train``, ``evaluate``), read from JSON or YAML with
:func:`load_config` or built from a plain dict with :meth:`DACConfig.from_dict` (unknown
keys are errors, so a typo never silently falls back to a default). Switching method is
one key: ``method.name``.

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
- ``method.lambda_feat = 0.1`` and ``method.lambda_aux = 0.1``: the feature-level and
  auxiliary self-supervised terms regularise the shared representation; an order of
  magnitude below the segmentation terms is the usual weight of auxiliary losses, so they
  shape features without competing with the segmentation objective.
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
- ``method.aux_layer = "decoder"``: the 1x1 auxiliary heads read the same features.
- ``method.init_seeds = (0, 1)``: different initialisations of A and B (as in CPS).
- ``method.inference = "a"``: deploy sub-model A alone (cost of one DeepLabV3+);
  ``"ensemble"`` averages the probabilities of A and B.
- ``method.dice_include_background = False``: background covers most of the image, its
  Dice is near 1 and adds no signal; cross-entropy covers it.
- ``augment.cutmix_area_range = (0.25, 0.5)``, one box, every unlabelled image mixed: the
  box-mask proportions of CPS (from French et al. 2020); aspect ratios 0.3-3.3 as in
  UniMatch.
- ``augment.rotation_side_range = (0.25, 0.5)`` of the shorter side, ``rotation_align = 16``:
  a region large enough to carry orientation cues, aligned to the output stride so it
  maps exactly onto every feature layer.
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
  per iteration: the DeepLab training recipe.
- ``train.max_epochs = 100`` x ``iterations_per_epoch = 200`` (20 000 iterations), validation
  on the held-out part of the labelled source domain after every epoch (never on the test
  domain), a checkpoint every 200 iterations.
- ``train.amp = None``: mixed precision when a CUDA device is used, off on CPU.

Example
-------
>>> from medfound.dac.config import DACConfig
>>> cfg = DACConfig.from_dict({"method": {"name": "cps"}, "train": {"max_epochs": 2}})
>>> cfg.components().feature, cfg.components().two_models, cfg.threshold()
(False, True, 0.0)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfound.errors import ConfigError

__all__ = [
    "METHODS",
    "Components",
    "DataConfig",
    "NetworkConfig",
    "MethodConfig",
    "AugmentConfig",
    "OptimConfig",
    "TrainConfig",
    "EvaluateConfig",
    "DACConfig",
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


@dataclass
class DataConfig:
    """Data: the split file and how items are read and batched."""

    split: str = ""  #: split JSON from ``medfound dac split`` (keys labeled/unlabeled/validation/test)
    spatial_size: list[int] = field(default_factory=lambda: [256, 256])  #: training and inference size (H, W)
    in_channels: int = 3  #: image channels the network takes (grey images are repeated to this)
    intensity: str = "uint8"  #: "uint8" (divide by 255), "minmax" (per image) or "none"
    normalize_mean: list[float] | None = field(default_factory=lambda: [0.485, 0.456, 0.406])  #: ImageNet
    normalize_std: list[float] | None = field(default_factory=lambda: [0.229, 0.224, 0.225])
    label_values: list[int] | None = None  #: raw label values in class order (e.g. [255, 128, 0]); None = indices
    batch_size_labeled: int = 8
    batch_size_unlabeled: int = 8
    num_workers: int = 4
    cache_rate: float = 1.0  #: > 0: keep every decoded, resized item in memory; 0: re-read files each time


@dataclass
class NetworkConfig:
    """The segmentation network of each sub-model (any class with ``forward_features``)."""

    target: str = "medfound.networks.deeplabv3plus.DeepLabV3Plus"
    num_classes: int | None = None  #: None: from the split's ``class_names``
    kwargs: dict[str, Any] = field(default_factory=lambda: {"backbone": "resnet50", "output_stride": 16})


@dataclass
class MethodConfig:
    """The method (or baseline) and its loss constants."""

    name: str = "dac"
    lambda_cps: float = 1.0
    lambda_feat: float = 0.1
    lambda_aux: float = 0.1
    confidence_threshold: float | None = None  #: None: the method's default (0.0, FixMatch 0.95)
    rampup_fraction: float = 0.3
    rampup_aux: bool = False  #: ramp the auxiliary terms too (their targets are exact, so off by default)
    feature_layer: str = "decoder"
    feature_loss: str = "cosine"
    projection_channels: int = 128
    aux_layer: str = "decoder"
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
    cutmix_prob: float = 1.0
    cutmix_num_boxes: int = 1
    cutmix_area_range: list[float] = field(default_factory=lambda: [0.25, 0.5])
    cutmix_aspect_ratio_range: list[float] = field(default_factory=lambda: [0.3, 1 / 0.3])
    rotation_side_range: list[float] = field(default_factory=lambda: [0.25, 0.5])
    rotation_align: int = 16


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
    log_interval: int = 20  #: iterations between log lines
    track_pseudo_labels: bool = True  #: score pseudo labels against labels of unlabelled items when they exist


@dataclass
class EvaluateConfig:
    """Evaluation of a trained model on parts of the split."""

    parts: list[str] = field(default_factory=lambda: ["test"])
    checkpoint: str = "best"  #: "best" (source-validation selection), "last", or a path to a model file
    output_dir: str | None = None  #: None: ``train.output_dir/evaluation``


_SECTIONS = {
    "data": DataConfig,
    "network": NetworkConfig,
    "method": MethodConfig,
    "augment": AugmentConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
}


def _build_section(cls: type, values: Any, where: str):
    if values is None:
        return cls()
    if isinstance(values, cls):
        return values
    if not isinstance(values, dict):
        raise ConfigError(f"config section {where!r} must be a mapping, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in config section {where!r}; known: {sorted(names)}")
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
        """Check values that would otherwise fail deep inside a run."""
        m, a, d, t, o = self.method, self.augment, self.data, self.train, self.optim
        if m.name not in METHODS:
            raise ConfigError(f"method.name must be one of {sorted(METHODS)}, got {m.name!r}")
        if m.feature_loss not in ("cosine", "mse"):
            raise ConfigError(f"method.feature_loss must be 'cosine' or 'mse', got {m.feature_loss!r}")
        if m.inference not in ("a", "b", "ensemble"):
            raise ConfigError(f"method.inference must be 'a', 'b' or 'ensemble', got {m.inference!r}")
        if m.inference != "a" and not METHODS[m.name].two_models:
            raise ConfigError(f"method.inference={m.inference!r} needs two sub-models; {m.name!r} trains one")
        if m.confidence_threshold is not None and not 0.0 <= m.confidence_threshold < 1.0:
            raise ConfigError(f"method.confidence_threshold must be in [0, 1), got {m.confidence_threshold}")
        if not 0.0 <= m.rampup_fraction <= 1.0:
            raise ConfigError(f"method.rampup_fraction must be in [0, 1], got {m.rampup_fraction}")
        for name in ("lambda_cps", "lambda_feat", "lambda_aux", "lambda_dice", "lambda_ce"):
            if getattr(m, name) < 0:
                raise ConfigError(f"method.{name} must be >= 0, got {getattr(m, name)}")
        if len(m.init_seeds) != 2:
            raise ConfigError(f"method.init_seeds must hold two seeds (A, B), got {m.init_seeds}")
        if len(d.spatial_size) != 2 or min(d.spatial_size) < 8:
            raise ConfigError(f"data.spatial_size must be [H, W] with sides >= 8, got {d.spatial_size}")
        if d.intensity not in ("uint8", "minmax", "none"):
            raise ConfigError(f"data.intensity must be 'uint8', 'minmax' or 'none', got {d.intensity!r}")
        if (d.normalize_mean is None) != (d.normalize_std is None):
            raise ConfigError("data.normalize_mean and data.normalize_std must be both set or both null")
        if d.normalize_mean is not None and not (len(d.normalize_mean) == len(d.normalize_std) == d.in_channels):
            raise ConfigError(
                f"data.normalize_mean/std need one value per channel (in_channels={d.in_channels}), "
                f"got {d.normalize_mean} / {d.normalize_std}"
            )
        if d.batch_size_labeled < 1 or d.batch_size_unlabeled < 1:
            raise ConfigError("data.batch_size_labeled and data.batch_size_unlabeled must be >= 1")
        comp = METHODS[m.name]
        if comp.aux_mask and d.batch_size_unlabeled < 2:
            raise ConfigError(
                "the mixed-region task needs data.batch_size_unlabeled >= 2 (CutMix pastes another image's region)"
            )
        if o.name not in ("sgd", "adam", "adamw"):
            raise ConfigError(f"optim.name must be 'sgd', 'adam' or 'adamw', got {o.name!r}")
        if o.schedule not in ("poly", "constant"):
            raise ConfigError(f"optim.schedule must be 'poly' or 'constant', got {o.schedule!r}")
        if t.max_epochs < 1 or t.iterations_per_epoch < 1 or t.checkpoint_interval < 1 or t.validation_interval < 1:
            raise ConfigError(
                "train.max_epochs, iterations_per_epoch, checkpoint_interval and validation_interval must be >= 1"
            )
        if a.rotation_align < 1:
            raise ConfigError(f"augment.rotation_align must be >= 1, got {a.rotation_align}")

    @property
    def max_iterations(self) -> int:
        return self.train.max_epochs * self.train.iterations_per_epoch


def load_config(path: str | Path | dict[str, Any] | DACConfig, overrides: dict[str, Any] | None = None) -> DACConfig:
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
        values = json.loads(json.dumps(path))  # a deep copy of plain values
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        text = p.read_text()
        try:
            if p.suffix.lower() in (".yaml", ".yml"):
                import yaml

                values = yaml.safe_load(text) or {}
            else:
                values = json.loads(text)
        except Exception as err:  # noqa: BLE001 - any parser error is a bad config file
            raise ConfigError(f"config file {p} cannot be parsed: {err}") from err
        if not isinstance(values, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(values).__name__}")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if not key:
            raise ConfigError(f"override {dotted!r} must be 'section.key'")
        values.setdefault(section, {})
        if not isinstance(values[section], dict):
            raise ConfigError(f"override {dotted!r}: section {section!r} is not a mapping")
        values[section][key] = value
    return DACConfig.from_dict(values)
