"""The co-training trainer: a MONAI ``SupervisedTrainer`` whose iteration is one DAC step.

One iteration takes a labelled batch (labelled source domain) and an unlabelled batch
(other source domains) from :class:`medfound.dac.data.CoTrainingLoader` and, depending on
the method of the :class:`~medfound.dac.model.DACModel`:

1. **weak view** (no gradient): sub-models A and B predict the unlabelled batch; their
   argmax (confidence-thresholded) are the pseudo labels, their features the feature
   targets;
2. **strong view**: colour jitter / grayscale / blur / noise (:class:`StrongAugment`), then
   CutMix between the unlabelled images (``x_mix``, :func:`~medfound.dac.aux_tasks.make_mixed_region_task`;
   the same boxes mix the pseudo labels and the feature targets). Model A sees ``x_mix``;
   with the rotation task, model B sees ``x_mix`` with a random square region rotated by
   ``k`` x 90 degrees (:func:`~medfound.dac.aux_tasks.make_rotation_task`; its targets are
   rotated alike), otherwise ``x_mix`` too. By default (``aux_rotation_view="clean"``) the
   rotated region shows the CutMix of the weak view, not of the photometric strong view, so
   the thin structures that carry orientation survive and ``k`` stays recoverable (the
   unlabelled loader should not flip: a flip makes ``k`` and ``k + 2`` alike). The views
   are built inside the step, on the training device, so the two sub-models see different
   inputs at no extra forward cost. With ``normalize="image"`` the views are built in
   [0, 1] and every network input is then standardised per image and channel
   (:func:`standardize_images`); optionally (``style_mix``) the labelled and unlabelled
   images first exchange their low-frequency Fourier amplitude (appearance);
3. one forward pass per sub-model on ``[labelled; strong]`` (``forward_features``) gives the
   supervised logits, the student logits and features, and the auxiliary heads' input;
4. losses (:class:`~medfound.dac.objective.DACObjective`): supervised Dice + CE for A and
   B; pseudo-label CE (A <- B and B <- A for co-training, A <- A for FixMatch); feature
   loss ``D(proj_A(f_A), sg(f_B))`` + ``D(proj_B(f_B), sg(f_A))``; task A (mixed-region
   BCE) and task B (region-rotation CE); one backward, one optimiser step, one scheduler
   step.

Every random number of step ``t`` comes from seeds derived from ``(seed, "step", t)``
(:func:`medfound.utils.derive_seed`), so a run resumed from a checkpoint ends with the same
weights as an uninterrupted one. AMP (``torch.autocast`` + ``GradScaler``) is used on CUDA
when ``amp=True``; the scaler's state is part of the checkpoint
(:meth:`DACTrainer.checkpoint_objects`).

As MONAI's trainers, it receives ready objects: the :class:`~medfound.dac.model.DACModel`,
the :class:`~medfound.dac.objective.DACObjective`, the loader, the handlers; the optimiser
and the learning-rate scheduler may be ready or factories (a config's
``"_mode_": "callable"``, i.e. a ``functools.partial``), called with the model's trainable
parameters and with the optimiser. Validation, checkpoints, resume, logs, TensorBoard and
the progress bar are handlers (``train_handlers``, attached in the order given, after the
trainer is complete).

Everything of the step that carries gradients (both sub-models' ``forward_features`` on
``[labelled; strong]`` and the training heads) is one call of :class:`TrainingForward`.
Under ``torchrun`` (``torch.distributed`` initialised, more than one process) that module is
wrapped in ``DistributedDataParallel``, which averages the gradients of A, B and the heads
during the backward pass; BatchNorm buffers are broadcast from rank 0 after every step, the
loader gives each rank its slice of the global batch, and ranks other than 0 draw their own
augmentation streams (:mod:`medfound.dac.distributed` explains each choice). In one process
nothing of this happens and the step is the same as without it.

``engine.state.output`` holds ``loss`` and each term (``sup``, ``pseudo``, ``feat``,
``aux_mask``, ``aux_rot``) as floats, the auxiliary tasks' accuracy (``aux_rot_acc``:
rotation accuracy, chance 0.25; ``aux_mask_iou``: mixed-region IoU, beside
``aux_mask_iou_const``, the best constant predictor's), and ``rampup``, for ``StatsHandler`` and friends
(:func:`medfound.handlers.curves.scalar_items` picks them), plus ``pseudo_counts`` for
:class:`~medfound.dac.diagnostics.PseudoLabelMonitor`.

Example
-------
>>> import functools, torch
>>> from medfound.dac import CoTrainingLoader, DACModel, DACObjective, DACTrainer
>>> from medfound.networks.deeplabv3plus import DeepLabV3Plus
>>> item = lambda i: {"image": torch.rand(3, 32, 32), "label": torch.randint(0, 3, (1, 32, 32))}
>>> loader = CoTrainingLoader([item(i) for i in range(4)], [item(i) for i in range(4)], 2, 2)
>>> model = DACModel(functools.partial(DeepLabV3Plus, num_classes=3, backbone="resnet18", base_channels=8,
...                                    decoder_channels=16))
>>> trainer = DACTrainer("cpu", 1, loader, model, functools.partial(torch.optim.SGD, lr=0.01),
...                      DACObjective(), epoch_length=1)
>>> trainer.run()
>>> sorted(k for k in trainer.state.output if k != "rampup")  # losses and the auxiliary tasks' accuracy
['aux_mask', 'aux_mask_iou', 'aux_mask_iou_const', 'aux_rot', 'aux_rot_acc', 'feat', 'loss', 'pseudo', 'sup']

:func:`medfound.dac.bundle_configs.train_bundle_config` shows every argument in a bundle
config; :func:`medfound.dac.train` builds and runs it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.engines import SupervisedTrainer
from monai.engines.workflow import Workflow
from torch import nn
from torch.optim import Optimizer

from medfound.dac.aux_tasks import (
    RotationTask,
    make_mixed_region_task,
    make_rotation_task,
    mixed_region_iou,
    rotation_accuracy,
)
from medfound.dac.config import MethodConfig, OptimConfig, default
from medfound.dac.data import CoTrainingLoader
from medfound.dac.diagnostics import pseudo_label_counts
from medfound.dac.distributed import broadcast_buffers, wrap_training_forward
from medfound.dac.losses import pseudo_labels
from medfound.dac.model import DACModel
from medfound.dac.objective import DACObjective
from medfound.dac.strong_view import StrongAugment
from medfound.errors import ConfigError, LabelMismatchError
from medfound.transforms.mixing import amplitude_mix, cutmix, rotate_regions
from medfound.utils import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_mapping,
    check_probability,
    derive_seed,
    resolve_device,
    world_size,
)
from medfound.utils.devices import rank

__all__ = ["DACTrainer", "TrainingForward", "CUTMIX_KEYS", "ROTATION_KEYS", "STYLE_MIX_KEYS", "standardize_images"]

#: keys of the ``cutmix`` argument: the options of :func:`~medfound.dac.aux_tasks.make_mixed_region_task`
CUTMIX_KEYS = tuple(inspect.signature(make_mixed_region_task).parameters)[2:]
#: keys of the ``rotation`` argument: the options of :func:`~medfound.dac.aux_tasks.make_rotation_task`
ROTATION_KEYS = tuple(inspect.signature(make_rotation_task).parameters)[2:]
#: keys of the ``style_mix`` argument: per-image probability and the spectrum window of :func:`amplitude_mix`
STYLE_MIX_KEYS = ("prob", "window")


def standardize_images(x: torch.Tensor) -> torch.Tensor:
    """Each image's channels to zero mean and unit standard deviation, for ``(B, C, H, W)`` batches.

    The batch form of MONAI's ``NormalizeIntensity(channel_wise=True)`` (population standard
    deviation; a channel of zero deviation is divided by 1), which validation and evaluation apply to
    items: the training step builds its views in [0, 1] and standardises every network input
    with this, so training and inference see the same inputs.

    Example
    -------
    >>> import torch
    >>> from monai.transforms import NormalizeIntensity
    >>> x = torch.rand(2, 3, 8, 8)
    >>> torch.allclose(standardize_images(x)[1], NormalizeIntensity(channel_wise=True)(x[1]), atol=1e-5)
    True
    >>> gained = x * torch.tensor([1.3, 0.7, 0.5]).view(1, 3, 1, 1) + 0.1   # another camera
    >>> torch.allclose(standardize_images(x), standardize_images(gained), atol=1e-4)
    True
    """
    xf = x.float()
    mean = xf.mean(dim=(-2, -1), keepdim=True)
    std = xf.std(dim=(-2, -1), keepdim=True, unbiased=False)
    std = torch.where(std == 0, torch.ones_like(std), std)
    return ((xf - mean) / std).to(x.dtype)


def _plain(x: Any) -> Any:
    """MetaTensor -> plain tensor (no metadata tracking inside the step)."""
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def _stride(feature: torch.Tensor, size: Sequence[int], what: str) -> int:
    h, w = int(size[0]), int(size[1])
    fh, fw = feature.shape[-2:]
    s = h // fh
    if s < 1 or fh * s != h or fw * s != w:
        raise ConfigError(
            f"{what}: input {h}x{w} is not a whole multiple of its {fh}x{fw} feature map; "
            "use a data.spatial_size divisible by the network's stride"
        )
    return s


def _mix_features(f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CutMix feature maps with the (area-downsampled) mixed-region mask (soft at box borders)."""
    m = F.interpolate(mask.to(f.dtype), size=f.shape[-2:], mode="area")
    return f * (1 - m) + f.roll(1, 0) * m


class TrainingForward(nn.Module):
    """The part of a DAC step that carries gradients, as one module call (what DDP wraps).

    ``forward(x_a, x_b=None, n_labeled=0)`` returns ``{"a": model_a.forward_features(x_a)}``,
    plus, as the method has them, ``"b"`` (``model_b.forward_features(x_b)``), ``"proj_a"`` /
    ``"proj_b"`` (projection heads on the feature layer of the items after the first
    ``n_labeled``), ``"mask"`` (the mixed-region head on A's ``mask_layer``) and
    ``"rotation"`` (the rotation head on B's ``rotation_layer``). It holds no parameters of its own: its state
    dict is the :class:`~medfound.dac.model.DACModel`'s under ``model.``.

    Example
    -------
    >>> import functools, torch
    >>> from medfound.networks.deeplabv3plus import DeepLabV3Plus
    >>> model = DACModel(functools.partial(DeepLabV3Plus, num_classes=2, backbone="resnet18", base_channels=8,
    ...                                    decoder_channels=16))
    >>> out = TrainingForward(model)(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32), n_labeled=2)
    >>> sorted(out), tuple(out["rotation"].shape)
    (['a', 'b', 'mask', 'proj_a', 'proj_b', 'rotation'], (2, 4, 2, 2))
    """

    def __init__(self, model: DACModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor | None = None, n_labeled: int = 0) -> dict[str, Any]:
        net = self.model
        comp = net.components
        out: dict[str, Any] = {"a": net.model_a.forward_features(x_a)}
        if x_b is not None:
            out["b"] = net.model_b.forward_features(x_b)
        if comp.feature:
            out["proj_a"] = net.projector_a(out["a"][net.feature_layer][n_labeled:])
            out["proj_b"] = net.projector_b(out["b"][net.feature_layer][n_labeled:])
        if comp.aux_mask:
            out["mask"] = net.mask_head(out["a"][net.mask_layer][n_labeled:])
        if comp.aux_rotation:
            out["rotation"] = net.rotation_head(out["b"][net.rotation_layer][n_labeled:])
        return out


class DACTrainer(SupervisedTrainer):
    """MONAI ``SupervisedTrainer`` running DAC, CPS, FixMatch or supervised-only steps.

    Parameters
    ----------
    device : training device (``"auto"``, ``"cpu"``, ``"cuda"``, or a ``torch.device``).
    max_epochs : epochs to run (an epoch is ``epoch_length`` iterations).
    train_data_loader : a :class:`CoTrainingLoader` (any iterable of ``{"labeled": {...},
        "unlabeled": {...}}`` batches works; the loader is attached to the trainer so that a
        resumed run draws the right batches).
    network : the :class:`DACModel` (on ``device``); its method decides the step.
    optimizer : an optimiser over the model's parameters, or a factory called with its
        trainable parameters (e.g. ``functools.partial(torch.optim.SGD, lr=0.01)``).
    loss_function : the :class:`DACObjective`.
    epoch_length : iterations per epoch.
    lr_scheduler : a scheduler, or a factory called with the optimiser; stepped once per
        iteration inside the step (so a checkpoint always holds a consistent optimiser /
        scheduler pair).
    strong_augment : photometric strong view (default :class:`StrongAugment` with defaults).
    cutmix : arguments of :func:`~medfound.dac.aux_tasks.make_mixed_region_task` (keys
        :data:`CUTMIX_KEYS`; defaults from :mod:`medfound.transforms.mixing`).
    rotation : arguments of :func:`~medfound.dac.aux_tasks.make_rotation_task` (keys
        :data:`ROTATION_KEYS`).
    normalize : ``"image"``: the loader gives images in [0, 1] and the step standardises
        every network input per image and channel (:func:`standardize_images`), after its
        views are built; ``"none"``: the loader's images go in as they are (e.g. normalised
        in the pipeline with fixed statistics; the strong view then needs its ``mean``/``std``).
    aux_rotation_view : ``"clean"``: B's rotated region shows the weak (pre-photometric)
        view, CutMix-ed like the rest, so its rotation stays recoverable; ``"strong"``: the
        strong view is rotated.
    head_lr_scale : learning-rate multiplier of the training-only heads (projectors,
        auxiliary heads), applied when ``optimizer`` is a factory (it is then called with two
        parameter groups, trunk and heads).
    style_mix : Fourier amplitude (style) mixing between the labelled and the unlabelled
        batch (:func:`~medfound.transforms.mixing.amplitude_mix`, keys :data:`STYLE_MIX_KEYS`):
        with probability ``prob`` per image, a labelled image takes the low-frequency
        amplitude of an unlabelled one and the strong view of an unlabelled image that of a
        labelled one, with a weight uniform in [0, 1]. Default off.
    seed : seed of every random number the step draws.
    regions : ``{name: [class indices]}`` for the pseudo-label diagnostics.
    track_pseudo_labels : score pseudo labels against labels of unlabelled items, if present.
    amp : mixed precision (CUDA only).
    distributed : run the step under ``DistributedDataParallel`` (``None``: when
        ``torch.distributed`` is initialised with more than one process; in one process it is
        a no-op either way). The loader must then be sharded alike (``CoTrainingLoader``
        shards by default).
    ddp_kwargs : further ``DistributedDataParallel`` arguments
        (:func:`medfound.dac.distributed.wrap_training_forward`).
    inferer : ``SupervisedTrainer``'s inferer (default ``SimpleInferer``), kept as ``self.inferer``
        for handlers that run the network; the co-training step itself calls
        :class:`TrainingForward`, which needs the sub-models' features, not an inferer's output.
    train_handlers : handlers with ``attach(engine)``, attached in this order once the trainer
        is complete (so checkpoint handlers see its optimiser, scheduler and scaler).
    amp_kwargs, non_blocking, optim_set_to_none : as ``SupervisedTrainer``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: CoTrainingLoader,
        network: DACModel,
        optimizer: Optimizer | Callable[..., Optimizer],
        loss_function: DACObjective,
        epoch_length: int,
        lr_scheduler: Any | None = None,
        strong_augment: StrongAugment | None = None,
        cutmix: Mapping[str, Any] | None = None,
        rotation: Mapping[str, Any] | None = None,
        normalize: str = "none",
        aux_rotation_view: str = default(MethodConfig, "aux_rotation_view"),
        head_lr_scale: float = default(OptimConfig, "head_lr_scale"),
        style_mix: Mapping[str, Any] | None = None,
        seed: int = 0,
        regions: Mapping[str, Sequence[int]] | None = None,
        track_pseudo_labels: bool = False,
        amp: bool = False,
        distributed: bool | None = None,
        ddp_kwargs: Mapping[str, Any] | None = None,
        inferer: Any | None = None,
        train_handlers: Sequence | None = None,
        amp_kwargs: dict | None = None,
        non_blocking: bool = False,
        optim_set_to_none: bool = True,
    ) -> None:
        if not isinstance(network, DACModel):
            raise ConfigError(f"DACTrainer needs a DACModel as network, got {type(network).__name__}")
        if not isinstance(loss_function, DACObjective):
            raise ConfigError(f"DACTrainer needs a DACObjective as loss_function, got {type(loss_function).__name__}")
        device = resolve_device(device, what="trainer device")
        amp = check_bool(amp, "amp") and device.type == "cuda"
        head_lr_scale = check_float(head_lr_scale, "head_lr_scale", low=0.0, low_open=True)
        if not isinstance(optimizer, Optimizer):
            if not callable(optimizer):
                raise ConfigError(f"optimizer must be an optimiser or a factory, got {type(optimizer).__name__}")
            optimizer = optimizer(self._parameter_groups(network, head_lr_scale))
            for group in optimizer.param_groups:  # before the scheduler records its base rates
                group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
        if lr_scheduler is not None and not (hasattr(lr_scheduler, "step") and hasattr(lr_scheduler, "state_dict")):
            if not callable(lr_scheduler):
                raise ConfigError(f"lr_scheduler must be a scheduler or a factory, got {type(lr_scheduler).__name__}")
            lr_scheduler = lr_scheduler(optimizer)
        super().__init__(
            device=device,
            max_epochs=check_int(max_epochs, "max_epochs", low=1),
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            epoch_length=check_int(epoch_length, "epoch_length", low=1),
            non_blocking=non_blocking,
            inferer=inferer,
            train_handlers=None,  # attached below, once this trainer is complete
            amp=amp,
            decollate=False,
            optim_set_to_none=optim_set_to_none,
            amp_kwargs=amp_kwargs,
        )
        self.lr_scheduler = lr_scheduler
        self.strong_augment = strong_augment or StrongAugment()
        self.cutmix_args = check_mapping(cutmix or {}, "cutmix", known=CUTMIX_KEYS)
        self.rotation_args = check_mapping(rotation or {}, "rotation", known=ROTATION_KEYS)
        self.normalize = check_choice(normalize, ("image", "none"), "normalize")
        self.aux_rotation_view = check_choice(aux_rotation_view, ("clean", "strong"), "aux_rotation_view")
        style = check_mapping(style_mix or {}, "style_mix", known=STYLE_MIX_KEYS)
        self.style_mix = {"prob": check_probability(style.get("prob", 0.0), "style_mix.prob"),
                          "window": check_float(style.get("window", 0.1), "style_mix.window", low=0.0, high=1.0,
                                                low_open=True)}
        self.seed = check_int(seed, "seed")
        self.regions = dict(regions or {})
        self.track_pseudo_labels = check_bool(track_pseudo_labels, "track_pseudo_labels")
        n = world_size()
        wanted = n > 1 if distributed is None else check_bool(distributed, "distributed")
        self.distributed = wanted and n > 1
        shards = getattr(train_data_loader, "world_size", None)
        if self.distributed and shards is not None and int(shards) != n:
            raise ConfigError(f"the training loader is sharded for {shards} process(es) but the run has {n}: "
                              "give CoTrainingLoader world_size=None (the default) or the run's world size")
        #: rank whose random streams this process draws (0 in one process)
        self.rank = rank() if self.distributed else 0
        forward = TrainingForward(network)
        self.training_forward = wrap_training_forward(forward, device, ddp_kwargs) if self.distributed else forward
        # one scaler for the whole run (Trainer.run would make a fresh one), saved in checkpoints
        self.scaler = torch.amp.GradScaler("cuda") if amp else None
        if hasattr(train_data_loader, "attach"):
            train_data_loader.attach(self)
        if train_handlers:
            self._register_handlers(train_handlers)

    @staticmethod
    def _parameter_groups(network: DACModel, head_lr_scale: float) -> list[dict[str, Any]]:
        """Trainable parameters as two groups: the sub-models, and the training-only heads (``lr_scale``)."""
        head_ids = {id(p) for h in network.training_heads().values() for p in h.parameters()}
        trainable = [p for p in network.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trainable if id(p) not in head_ids]}]
        heads = [p for p in trainable if id(p) in head_ids]
        if heads:
            groups.append({"params": heads, "lr_scale": head_lr_scale})
        return groups

    def run(self) -> None:  # type: ignore[override]
        """Run (or continue) training; keeps the GradScaler and its state across calls."""
        Workflow.run(self)

    def checkpoint_objects(self) -> dict[str, Any]:
        """Everything a checkpoint must hold for an exact resume (``name -> object with state_dict``)."""
        objs: dict[str, Any] = {"trainer": self, "network": self.network, "optimizer": self.optimizer}
        if self.lr_scheduler is not None:
            objs["lr_scheduler"] = self.lr_scheduler
        if self.scaler is not None:
            objs["scaler"] = self.scaler
        return objs

    # -----------------------------------------------------------------------------------------
    def _to(self, x: Any) -> torch.Tensor:
        return _plain(x).to(self.state.device, non_blocking=self.non_blocking)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """A view as the network takes it (standardised per image with ``normalize="image"``)."""
        return standardize_images(x) if self.normalize == "image" else x

    def _style_mixed(self, x: torch.Tensor, sources: torch.Tensor, rng: np.random.RandomState) -> torch.Tensor:
        """``x`` with, per image (probability ``style_mix.prob``), a random image of ``sources``' amplitude."""
        n = x.shape[0]
        chosen = rng.uniform(size=n) < self.style_mix["prob"]
        index = rng.randint(0, sources.shape[0], size=n)
        ratio = np.where(chosen, rng.uniform(0.0, 1.0, size=n), 0.0)
        if not chosen.any():
            return x
        return amplitude_mix(x, sources[torch.as_tensor(index, device=x.device)], ratio, self.style_mix["window"])

    def _iteration(self, engine: DACTrainer, batchdata: Mapping[str, Any]) -> dict:  # type: ignore[override]
        if batchdata is None or "labeled" not in batchdata:
            raise ValueError("DACTrainer needs batches {'labeled': {...}, 'unlabeled': {...}} (see CoTrainingLoader)")
        step = int(engine.state.iteration)  # 1-based index of this iteration
        own = () if self.rank == 0 else ("rank", self.rank)  # ranks > 0 draw their own views
        rng = np.random.RandomState(derive_seed(self.seed, "step", step, *own))
        torch.manual_seed(derive_seed(self.seed, "step_torch", step, *own))  # dropout and other torch sampling

        net: DACModel = self.network
        comp = net.components
        objective: DACObjective = self.loss_function
        lab = batchdata["labeled"]
        if "label" not in lab:
            raise LabelMismatchError("the labelled batch has no 'label' (check the split's 'labeled' items)")
        xl, yl = self._to(lab["image"]).float(), self._to(lab["label"])
        unl = batchdata.get("unlabeled")
        if comp.pseudo is not None and (unl is None or "image" not in unl):
            raise ConfigError(f"method {net.method!r} needs unlabelled batches; the split's 'unlabeled' part is empty")

        net.train()
        self.optimizer.zero_grad(set_to_none=self.optim_set_to_none)
        terms: dict[str, torch.Tensor] = {}
        diagnostics: dict = {}
        metrics: dict[str, float] = {}
        with torch.autocast(self.state.device.type, enabled=self.amp, **self.amp_kwargs):
            if comp.pseudo is None:
                terms["sup"] = objective.supervised(self.training_forward(self._input(xl))["a"]["logits"], yl)
            else:
                terms.update(self._semi_supervised_terms(net, objective, xl, yl, unl, rng, step, diagnostics,
                                                         metrics))
        loss = objective.total(terms, step - 1)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        if self.distributed:
            broadcast_buffers(net)  # BatchNorm statistics: rank 0's, as DDP's own rule
        out = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()},
               "rampup": objective.rampup(step - 1), **metrics}
        if diagnostics:
            out["pseudo_counts"] = diagnostics
        engine.state.output = out
        return out

    def _semi_supervised_terms(
        self,
        net: DACModel,
        objective: DACObjective,
        xl: torch.Tensor,
        yl: torch.Tensor,
        unl: Mapping[str, Any],
        rng: np.random.RandomState,
        step: int,
        diagnostics: dict,
        metrics: dict[str, float],
    ) -> dict[str, torch.Tensor]:
        comp = net.components
        xu = self._to(unl["image"]).float()
        nl, nu = xl.shape[0], xu.shape[0]
        size = xu.shape[-2:]
        if xl.shape[1:] != xu.shape[1:]:
            raise LabelMismatchError(
                f"labelled images {tuple(xl.shape[1:])} and unlabelled images {tuple(xu.shape[1:])} differ in shape"
            )
        thr = objective.confidence_threshold
        feat_layer = net.feature_layer

        # 0. style bridging (option): each batch takes on the other's low-frequency amplitude
        xu_styled = xu
        if self.style_mix["prob"] > 0:
            xu_styled = self._style_mixed(xu, xl, rng)
            xl = self._style_mixed(xl, xu, rng)
        xl, xw = self._input(xl), self._input(xu)

        # 1. weak view: pseudo labels and feature targets, no gradient
        with torch.no_grad():
            weak_a = net.model_a.forward_features(xw)
            weak_b = net.model_b.forward_features(xw) if comp.two_models else None
        pl_a, valid_a, _ = pseudo_labels(weak_a["logits"], thr)
        if weak_b is not None:
            pl_b, valid_b, _ = pseudo_labels(weak_b["logits"], thr)
        if self.track_pseudo_labels and "label" in unl:
            y_true = self._to(unl["label"])
            domains = list(unl.get("domain", ["unknown"] * nu))
            diagnostics.update(pseudo_label_counts(pl_a, y_true, valid_a, self.regions, domains, "a"))
            if weak_b is not None:
                diagnostics.update(pseudo_label_counts(pl_b, y_true, valid_b, self.regions, domains, "b"))

        # 2. strong view: photometric, then CutMix between unlabelled images (task A's view);
        #    B's view adds the rotated region (task B's view)
        xs = self.strong_augment(xu_styled, rng)
        view_a = make_mixed_region_task(xs, rng, **self.cutmix_args)
        mask, xs_a = view_a.mask, view_a.images
        view_b: RotationTask | None = make_rotation_task(xs_a, rng, **self.rotation_args) if comp.aux_rotation else None
        xs_b = xs_a if view_b is None else view_b.images
        if view_b is not None and self.aux_rotation_view == "clean":
            # the rotated region shows the clean mixed image (thin structures survive), the rest the strong view
            clean = rotate_regions(cutmix(xu, mask), view_b.boxes, view_b.ks)
            xs_b = torch.where(view_b.region_mask > 0, clean, xs_b)
        xs_a, xs_b = self._input(xs_a), self._input(xs_b)

        def for_b(t: torch.Tensor, scale: int = 1) -> torch.Tensor:
            return t if view_b is None else rotate_regions(t, view_b.boxes, view_b.ks, scale=scale)

        # targets of A come from B (co-training) or from A itself (FixMatch)
        src_labels, src_valid = (pl_b, valid_b) if comp.pseudo == "cross" else (pl_a, valid_a)
        target_a = (cutmix(src_labels, mask), cutmix(src_valid, mask))

        # 3. one forward pass per sub-model on [labelled; strong], the training heads on their layers
        out = self.training_forward(torch.cat([xl, xs_a]), torch.cat([xl, xs_b]) if comp.two_models else None, nl)
        out_a = out["a"]
        terms = {"sup": objective.supervised(out_a["logits"][:nl], yl)}
        pseudo = objective.pseudo(out_a["logits"][nl:], *target_a)
        if comp.two_models:
            out_b = out["b"]
            terms["sup"] = terms["sup"] + objective.supervised(out_b["logits"][:nl], yl)
            target_b = (for_b(cutmix(pl_a, mask)), for_b(cutmix(valid_a, mask)))
            pseudo = pseudo + objective.pseudo(out_b["logits"][nl:], *target_b)
        terms["pseudo"] = pseudo

        # 4. feature-level supervision: each model's projected features -> the other's weak features
        if comp.feature:
            s = _stride(out_a[feat_layer], size, f"feature_layer {feat_layer!r}")
            tgt_a = _mix_features(weak_b[feat_layer], mask)
            tgt_b = for_b(_mix_features(weak_a[feat_layer], mask), scale=s)
            terms["feat"] = objective.feature(out["proj_a"], tgt_a) + objective.feature(out["proj_b"], tgt_b)

        # 5. asymmetric auxiliary tasks: A localises the mixed region, B predicts the rotation
        #    (and their accuracy: mixed-region IoU beside the best constant predictor's, rotation accuracy)
        if comp.aux_mask:
            terms["aux_mask"] = objective.mixed_region(out["mask"], mask)
            metrics.update(mixed_region_iou(out["mask"].detach(), mask))
        if comp.aux_rotation:
            terms["aux_rot"] = objective.rotation(out["rotation"], view_b.region_mask, view_b.ks)
            metrics["aux_rot_acc"] = rotation_accuracy(out["rotation"].detach(), view_b.region_mask, view_b.ks)
        return terms
