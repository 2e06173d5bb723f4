"""What the ``umedpt_foundation`` MONAI bundle composes beyond the trainer: data, weights, inference.

- :func:`demo_tasks_file`: the synthetic multi-task demo collection, written into a cache folder
  on first use (a bundle whose ``dataset_dir`` is unset trains on it; logged as SYNTHETIC);
  :func:`tasks_file` picks ``<dataset_dir>/tasks.json`` or the demo.
- :func:`demo_inference_inputs`: two demo images and a small NIfTI volume for the inference demo;
  :func:`inference_inputs`: the datalist of a folder (images, NIfTI volumes, DICOM series folders).
- :func:`require_weights`: the weights file, or a :class:`~medfound.errors.WeightsError` that
  says how to get (``medfound convert-umedpt``) or train them; :func:`network_arguments` reads
  the architecture and task heads recorded next to ``model.pt`` (what ``network_def`` needs).
- :class:`SliceStackInferer`: 2D images as they are, 3D volumes slice by slice (MONAI's
  ``SliceInferer`` stitches spatial outputs only; embeddings and class scores are not spatial).
- :class:`SaveArrayd`: one ``.npy`` per input for outputs that are not images (embeddings, scores).
- :func:`bundle_train_config`: the bundle's ``train.json``, derived from
  :func:`~medfound.multitask.training_config.training_config` (one source of truth for the
  defaults), with the MONAI model zoo's ids (``train#trainer``, ``train#dataset#data``, ...).

Example
-------
>>> import torch
>>> inferer = SliceStackInferer(slice_batch=2)
>>> volume = torch.rand(1, 3, 8, 8, 5)                    # (B, C, H, W, D)
>>> inferer(volume, lambda x: x.mean(dim=(2, 3))).shape   # per-slice (B, C) -> (B, C, D)
torch.Size([1, 3, 5])
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.transforms import MapTransform

from medfound.errors import DatasetLayoutError, WeightsError
from medfound.multitask.training_config import training_config
from medfound.utils import atomic_path, check_int, read_config_file, safe_filename

__all__ = [
    "IMAGE_SUFFIXES",
    "SaveArrayd",
    "SliceStackInferer",
    "BUNDLE_TRAINER",
    "bundle_configs",
    "bundle_multi_gpu_overlay",
    "bundle_train_config",
    "bundle_transfer_config",
    "demo_inference_inputs",
    "demo_tasks_file",
    "inference_inputs",
    "network_arguments",
    "require_weights",
    "tasks_file",
]

logger = logging.getLogger(__name__)

#: file suffixes :func:`inference_inputs` takes as images or volumes (folders are DICOM series)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".nii", ".nii.gz", ".nrrd", ".mha", ".dcm")

#: how to get weights, in every "no weights" message
WEIGHTS_HELP = (
    "get them with `medfound convert-umedpt encoder-1.0.4.pt.zip OUT_DIR` from your own download of the "
    "authors' published encoder (MedicalMultitaskModeling; non-commercial research licence, not "
    "redistributable) and copy OUT_DIR/model.pt and OUT_DIR/umedpt_config.json into the bundle's models/, "
    "or train them with "
    "`python -m monai.bundle run --config_file configs/train.json` (writes models/model.pt and models/network.json)"
)


def demo_tasks_file(cache_dir: str | os.PathLike, size: str = "small", seed: int = 0) -> str:
    """``tasks.json`` of the synthetic multi-task demo in ``cache_dir/multitask``, written on first use.

    The collection is written to a temporary sibling and renamed, so an interrupted first run
    leaves nothing half-written behind. Logged as SYNTHETIC every time it is used.
    """
    from medfound.data.synthetic.multitask import write_multitask_demo

    root = Path(cache_dir) / "multitask"
    if not (root / "tasks.json").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".multitask.", dir=root.parent))
        try:
            write_multitask_demo(tmp, size=size, seed=seed)
            try:
                tmp.rename(root)
            except OSError:  # another process (a torchrun rank) got there first
                if not (root / "tasks.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    logger.warning("dataset_dir is not set: using the SYNTHETIC multi-task demo data in %s", root)
    return str(root / "tasks.json")


def tasks_file(dataset_dir: str | os.PathLike | None, cache_dir: str | os.PathLike) -> str:
    """``<dataset_dir>/tasks.json`` (a task file: see :func:`~medfound.multitask.tasks.load_tasks`),
    or the synthetic demo's (:func:`demo_tasks_file`) when ``dataset_dir`` is ``None`` or empty."""
    if not dataset_dir:
        return demo_tasks_file(cache_dir)
    path = Path(dataset_dir) / "tasks.json"
    if not path.is_file():
        raise DatasetLayoutError(f"dataset_dir {os.fspath(dataset_dir)!r} has no tasks.json (the task file)")
    return str(path)


def _is_input(path: Path) -> bool:
    name = path.name.lower()
    return path.is_dir() or (not name.startswith(".") and name.endswith(IMAGE_SUFFIXES))


def inference_inputs(folder: str | os.PathLike) -> list[dict[str, str]]:
    """``[{"image": path}]`` for the images, volumes (suffixes :data:`IMAGE_SUFFIXES`) and
    subfolders (DICOM series) of ``folder``, sorted by name; a single file gives one item."""
    path = Path(folder)
    if path.is_file():
        return [{"image": str(path)}]
    if not path.is_dir():
        raise DatasetLayoutError(f"inference input {os.fspath(folder)!r} is neither a file nor a folder")
    items = [{"image": str(p)} for p in sorted(path.iterdir()) if _is_input(p)]
    if not items:
        raise DatasetLayoutError(f"no images, volumes or DICOM series folders in {os.fspath(folder)!r}")
    return items


def demo_inference_inputs(cache_dir: str | os.PathLike, num_images: int = 2, num_slices: int = 6) -> str:
    """A folder with ``num_images`` demo X-ray PNGs and one NIfTI volume stacked from
    ``num_slices`` demo CT slices (all SYNTHETIC), written into ``cache_dir`` on first use."""
    import nibabel as nib

    out = Path(cache_dir) / "inference_inputs"
    if out.is_dir() and any(out.iterdir()):
        logger.warning("dataset_dir is not set: SYNTHETIC demo inputs in %s", out)
        return str(out)
    root = Path(demo_tasks_file(cache_dir)).parent
    pngs = sorted((root / "xray_chest_findings_mlc").rglob("*.png"))[:num_images]
    ct = sorted((root / "ct_abdomen_organs_seg").rglob("*image*.nii.gz"))[:num_slices] or sorted(
        p for p in (root / "ct_abdomen_organs_seg").rglob("*.nii.gz") if "label" not in p.name)[:num_slices]
    if len(pngs) < num_images or len(ct) < num_slices:
        raise DatasetLayoutError(f"the demo collection in {root} has too few X-ray or CT files")
    out.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(pngs):
        shutil.copyfile(p, out / f"xray_{i}.png")
    slices = [np.asarray(nib.load(p).dataobj, dtype=np.float32).squeeze() for p in ct]
    volume = np.stack(slices, axis=-1)  # (H, W, D): axial slices along the last axis
    with atomic_path(out / "ct_volume.nii.gz") as tmp:
        nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 2.5, 1.0])), str(tmp) + ".nii.gz")
        os.replace(str(tmp) + ".nii.gz", tmp)
    logger.warning("dataset_dir is not set: SYNTHETIC demo inputs in %s", out)
    return str(out)


def require_weights(path: str | os.PathLike) -> str:
    """``path`` when it is a file; else a :class:`~medfound.errors.WeightsError` saying how to get it."""
    if not Path(path).is_file():
        raise WeightsError(f"no UMedPT weights at {os.fspath(path)}: {WEIGHTS_HELP}")
    return os.fspath(path)


def network_arguments(models_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``UMedPT`` arguments (task heads included) of the weights in ``models_dir``: those a
    training run recorded in ``network.json`` (``{"umedpt": {...}, "tasks": [...]}``), else those
    ``medfound convert-umedpt`` wrote to ``umedpt_config.json`` (no heads), else ``{}`` (the
    published architecture, Swin V2 tiny)."""
    folder = Path(models_dir)
    if (folder / "network.json").is_file():
        meta = read_config_file(folder / "network.json", expect=dict, what="network description")
        return {**dict(meta.get("umedpt") or {}), "tasks": list(meta.get("tasks") or [])}
    if (folder / "umedpt_config.json").is_file():
        return dict(read_config_file(folder / "umedpt_config.json", expect=dict, what="UMedPT config"))
    return {}


class SliceStackInferer(Inferer):
    """Run a 2D network on ``(B, C, H, W)`` inputs as they are and on ``(B, C, H, W, D)`` volumes
    slice by slice (``slice_batch`` slices per call), stacking the outputs along a new last axis:
    an embedding ``(B, E)`` per slice becomes ``(B, E, D)``, a segmentation ``(B, K, H, W)`` becomes
    ``(B, K, H, W, D)`` (MONAI's channel-first, slices-last layout, so ``SaveImaged`` writes it
    with the input's affine).

    MONAI's ``SliceInferer`` does the volume case for networks with spatial outputs only (it
    stitches sliding-window patches); UMedPT's embeddings and class scores have none.
    """

    def __init__(self, slice_batch: int = 16) -> None:
        super().__init__()
        self.slice_batch = check_int(slice_batch, "slice_batch", low=1)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        if inputs.ndim == 4:
            return network(inputs, *args, **kwargs)
        if inputs.ndim != 5:
            raise ValueError(f"SliceStackInferer takes (B, C, H, W) or (B, C, H, W, D), got {tuple(inputs.shape)}")
        b, depth = inputs.shape[0], inputs.shape[-1]
        plain = inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs  # slices share no meta data
        slices = plain.permute(0, 4, 1, 2, 3).reshape(b * depth, *inputs.shape[1:4])
        step = self.slice_batch
        out = torch.cat([network(slices[i : i + step], *args, **kwargs) for i in range(0, len(slices), step)])
        out = out.reshape(b, depth, *out.shape[1:]).movedim(1, -1)
        if isinstance(inputs, MetaTensor) and out.shape[2:] == inputs.shape[2:]:  # spatial: keep the geometry
            out = MetaTensor(out, meta=inputs.meta, applied_operations=inputs.applied_operations)
        return out


class SaveArrayd(MapTransform):
    """Save ``data[key]`` of one item as ``<output_dir>/<input stem>_<postfix>.npy`` (float32).

    The stem is the input file's (or DICOM folder's) name without its suffixes, from the
    ``filename_or_obj`` of ``meta_key``'s meta data. For outputs that are not images
    (embeddings, class scores); masks go through MONAI's ``SaveImaged``.
    """

    def __init__(self, keys: Any, output_dir: str | os.PathLike, postfix: str = "pred", meta_key: str = "image",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir, self.postfix, self.meta_key = Path(output_dir), safe_filename(postfix), meta_key

    def _stem(self, data: Mapping[str, Any]) -> str:
        src = data.get(self.meta_key)
        meta = getattr(src, "meta", None) or data.get(f"{self.meta_key}_meta_dict") or {}
        name = Path(str(meta.get("filename_or_obj", "item"))).name
        for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        return safe_filename(name or "item")

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        d = dict(data)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for key in self.key_iterator(d):
            array = torch.as_tensor(d[key]).detach().cpu().float().numpy()
            target = self.output_dir / f"{self._stem(d)}_{self.postfix}.npy"
            with atomic_path(target) as tmp, open(tmp, "wb") as f:
                np.save(f, array)
        return d


#: the ids of :func:`training_config` and where the bundle's train.json keeps them
BUNDLE_IDS = {
    "network": "network_def",
    "trainer": "train#trainer",
    "train_loader": "train#dataloader",
    "train_handlers": "train#handlers",
    "evaluator": "validate#evaluator",
    "val_loader": "validate#dataloader",
    "val_handlers": "validate#handlers",
}


def _rename_refs(value: Any, ids: Mapping[str, str]) -> Any:
    """Rewrite ``@old`` references (whole ids only) in strings of a config tree."""
    if isinstance(value, dict):
        return {k: _rename_refs(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename_refs(v, ids) for v in value]
    if isinstance(value, str) and "@" in value:
        return re.sub(r"@([A-Za-z_][\w#]*)", lambda m: "@" + ids.get(m.group(1), m.group(1)), value)
    return value


def bundle_train_config(
    network: Mapping[str, Any] | None = None,
    trainer: Mapping[str, Any] | None = None,
    validation: Mapping[str, Any] | None = None,
    log_every: int = 50,
) -> dict[str, Any]:
    """The ``umedpt_foundation`` bundle's ``train.json``: :func:`training_config` with the model
    zoo's ids and the bundle's data and output folders (arguments as :func:`training_config`'s).

    Ids: ``bundle_root``; ``dataset_dir`` (a folder with ``tasks.json``; ``null``: the synthetic
    demo, written into ``cache_dir``); ``output_dir`` (``<bundle_root>/models``: ``last.pt``,
    ``model.pt``, ``encoder.pt``, ``network.json``, ``history.json``, ``curves.png``,
    ``tensorboard/``); ``network_args`` (UMedPT arguments) and ``network_def``
    (:class:`~medfound.networks.UMedPTFeatureNet` of them, with ``network_def#dropout``);
    ``train#dataset#data`` (the task file), ``train#dataset#roles`` / ``#names``; ``tasks``; ``train#dataloader``,
    ``train#inferer``, ``train#handlers``, ``train#trainer`` (``#max_epochs`` or
    ``#max_iterations``); ``validate#dataloader``, ``validate#inferer``, ``validate#handlers``,
    ``validate#evaluator``; ``val_interval`` (epochs); the others as :func:`training_config`
    names them.

    Example
    -------
    >>> cfg = bundle_train_config(trainer={"max_iterations": 5})
    >>> cfg["max_iterations"], cfg["train"]["trainer"]["network"], cfg["val_interval"]
    (5, '@network_def', 1)
    """
    base = copy.deepcopy(training_config(
        tasks="TASKS", network=network, trainer=trainer,
        validation=validation if validation is not None else {"interval": 1},
        output_dir="OUTPUT_DIR", log_every=log_every, tensorboard=True, progress_bar=True))
    network_args = {k: v for k, v in base.pop("network").items() if k != "_target_"}
    base.pop("output_dir")
    tasks = base.pop("tasks")
    tasks.update(source="@train#dataset#data", roles="@train#dataset#roles", names="@train#dataset#names")
    cfg: dict[str, Any] = {
        "imports": ["$import os", "$import medfound.multitask.bundle", "$import medfound.networks",
                    "$import medfound.utils", "$import medfound", *base.pop("imports")],
        "bundle_root": ".",
        "dataset_dir": None,
        "cache_dir": "$@bundle_root + '/cache'",
        "output_dir": "$@bundle_root + '/models'",
        "network_args": network_args,
        "network_def": {"_target_": "medfound.networks.UMedPTFeatureNet.from_arguments",
                        "arguments": "@network_args", "dropout": 0.0},
        "tasks": tasks,
        "train": {
            "dataset": {"data": "$medfound.multitask.bundle.tasks_file(@dataset_dir, @cache_dir)",
                        "roles": ["pretrain"], "names": None},
            "inferer": {"_target_": "SimpleInferer"},
        },
        "validate": {},
    }
    for old, new in BUNDLE_IDS.items():
        if old in base:
            section, key = new.split("#") if "#" in new else (None, new)
            (cfg[section] if section else cfg)[key] = base.pop(old)
    cfg.update(base)
    cfg["train"]["trainer"]["inferer"] = "@train#inferer"
    # the model zoo sets the run length with train#trainer#max_epochs: epochs given there (or as
    # max_epochs) replace the default iteration count, and the schedule follows the trainer's length
    cfg["train"]["trainer"]["max_iterations"] = "$None if @train#trainer#max_epochs else @max_iterations"
    cfg["run_plan"] = ("$plan_run(@train#dataloader, @train#trainer#max_epochs, @train#trainer#max_iterations, "
                       "@epoch_length, @window)")
    if cfg["validate"]:
        cfg["validate"]["inferer"] = {"_target_": "SimpleInferer"}
        cfg["validate"]["evaluator"]["inferer"] = "@validate#inferer"
        handler = next(h for h in cfg["train"]["handlers"]  # training_config's ValidationHandler
                       if str(h.get("_target_", "")).endswith("ValidationHandler"))
        cfg["val_interval"] = handler["interval"]
        handler["interval"] = "@val_interval"
    cfg["curves"] = {"_target_": "medfound.handlers.CurvePlot", "path": "$@output_dir + '/curves.png'",
                     "evaluator": "@validate#evaluator" if cfg["validate"] else None}
    cfg["initialize"] = [
        "$os.makedirs(@output_dir, exist_ok=True)", *cfg["initialize"], "$@curves.attach(@trainer)",
        # written by rank 0 only, like the handlers' files: under torchrun rank 0's checkpoint saver removes
        # the temporaries of interrupted writes in output_dir when it attaches, which would delete another
        # rank's network.json temporary in flight (that rank then dies at its rename, FileNotFoundError)
        "$medfound.utils.atomic_write_json(@output_dir + '/network.json', "
        "{'umedpt': dict(@network_args), 'tasks': [s.head_config() for s in @tasks]}) "
        "if medfound.utils.devices.rank() == 0 else None",
    ]
    return _rename_refs(cfg, BUNDLE_IDS)


def bundle_transfer_config(**options: Any) -> dict[str, Any]:
    """The ``umedpt_foundation`` bundle's ``transfer.json``:
    :func:`~medfound.multitask.transfer.protocol.transfer_config` (``options`` are
    :func:`~medfound.multitask.transfer.run_transfer`'s keyword arguments) on the bundle's
    folders: the target task (role ``"transfer"``, or ``task_name``) of ``train#dataset#data``'s
    task file (``dataset_dir``, or the synthetic demo), encoders ``umedpt`` (the bundle's
    ``models/``: ``model.pt`` + ``network.json`` of a training run) and ``random``; outputs
    (``transfer_results.json``, ``transfer_summary.csv``, ``transfer_plot.png``) in
    ``<bundle_root>/eval/transfer``.

    Example
    -------
    >>> cfg = bundle_transfer_config(fractions=[10, 100], repeats=1)
    >>> cfg["transfer"]["fractions"], cfg["encoders"]["umedpt"]
    ([10.0, 100.0], "$@bundle_root + '/models'")
    """
    from medfound.multitask.transfer.protocol import transfer_config

    base = transfer_config("TASKS", {"umedpt": "MODELS", "random": "random"}, "OUTPUT_DIR", **options)
    cfg: dict[str, Any] = {
        "imports": ["$import medfound.multitask.bundle", "$import medfound"],
        "bundle_root": ".",
        "dataset_dir": None,
        "cache_dir": "$@bundle_root + '/cache'",
        "task_file": "$medfound.multitask.bundle.tasks_file(@dataset_dir, @cache_dir)",
        **base,
    }
    cfg["output_dir"] = "$@bundle_root + '/eval/transfer'"
    cfg["task"]["task"] = "@task_file"
    cfg["encoders"] = {"umedpt": "$@bundle_root + '/models'", "random": "random"}
    if options.get("note") is None:  # the plot and the JSON say when the data are the synthetic demo
        cfg["transfer"]["note"] = "$None if @dataset_dir else 'SYNTHETIC demo data'"
    return cfg


def bundle_multi_gpu_overlay(train: Mapping[str, Any]) -> dict[str, Any]:
    """``multi_gpu_train.json``: the overlay of ``train`` (a :func:`bundle_train_config`) for
    ``torchrun`` (one process per GPU; gloo on CPU-only machines).

    The process group starts before anything else is built: the task loaders shard every
    global batch by rank when they are built, and :class:`~medfound.multitask.MultiTaskTrainer`
    averages gradients over processes itself (:mod:`medfound.multitask.distributed`: one task per
    iteration, backward at once, shared gradients all-reduced once per accumulation window), so the
    network is not wrapped in ``DistributedDataParallel``. Logging, TensorBoard and the progress
    bar run on rank 0 only; checkpoints, history and curves are written by rank 0 (their handlers
    know the rank), and so is ``network.json``; validation runs on every rank.

    Example
    -------
    >>> overlay = bundle_multi_gpu_overlay(bundle_train_config())
    >>> overlay["initialize"][1]
    '$dist.is_initialized() or dist.init_process_group(backend=@dist_backend)'
    """
    initialize = []
    for line in train["initialize"]:
        if "@progress_bar.attach" in line:  # one bar, on rank 0
            line = f"{line} if dist.get_rank() == 0 else None"
        initialize.append(line)
    return {
        "dist_backend": "$'nccl' if torch.cuda.is_available() else 'gloo'",
        "device": "$torch.device('cuda', medfound.utils.local_rank()) if torch.cuda.is_available() "
                  "else torch.device('cpu')",
        "train#trainer#train_handlers": "$@train#handlers if dist.get_rank() == 0 else @train#handlers[:1]",
        "validate#evaluator#val_handlers": "$@validate#handlers if dist.get_rank() == 0 else []",
        "initialize": [
            "$import torch.distributed as dist",
            "$dist.is_initialized() or dist.init_process_group(backend=@dist_backend)",
            "$torch.cuda.set_device(@device) if torch.cuda.is_available() else None",
            *initialize,
        ],
        "finalize": ["$dist.is_initialized() and dist.destroy_process_group()"],
    }


#: the full-size training options of the bundle's train.json (the published recipe's scale, on a GPU)
BUNDLE_TRAINER: dict[str, Any] = {"max_iterations": 100000, "batch_size": 32, "amp": True, "offload_heads": True,
                                  "scheduler": "cosine", "checkpoint_every": 1000}


def bundle_configs() -> dict[str, dict[str, Any]]:
    """The generated configs of the ``umedpt_foundation`` bundle, by file name (``train.json``,
    ``transfer.json``); a test checks that the committed files are exactly these. To rewrite them:
    ``python -m medfound.multitask.bundle bundles/umedpt_foundation/configs``."""
    train = bundle_train_config(trainer=BUNDLE_TRAINER)
    return {"train.json": train, "multi_gpu_train.json": bundle_multi_gpu_overlay(train),
            "transfer.json": bundle_transfer_config()}


if __name__ == "__main__":  # pragma: no cover - the command named in bundle_configs' docstring
    import json
    import sys

    for name, config in bundle_configs().items():
        Path(sys.argv[1], name).write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
