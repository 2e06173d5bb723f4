"""Task definitions: what a task is, and reading the task list from a JSON/YAML file.

A **task** is a name, a kind (``classification``, ``multilabel``, ``segmentation``,
``detection``), its class names, its data (MONAI datalists, train and validation), its
transforms, its head, its loss and its metrics. Tasks are declared in config, so adding a
task needs no code::

    {"tasks": [
      {"name": "ct_chest_nodule_cls", "kind": "classification",
       "class_names": ["no_nodule", "nodule"],
       "datalist": "ct_chest_nodule_cls/datalist.json",        # relative to this file
       "modality": "CT", "role": "pretrain",
       # all optional:
       "spatial_size": [256, 256], "batch_size": 16, "weight": 1.0,
       "intensity": {"a_min": -1000, "a_max": 1000},            # or {"lower": 0.5, "upper": 99.5}
       "augment": true,
       "preset": "ct",                                           # or {"modality": "ct", "windows": [...]}
       "transforms": {"train": [{"_target_": "LoadImaged", ...}, ...], "val": [...]},
       "loss": {"label_smoothing": 0.1}, "head": {"dropout": 0.1}, "metric": {"primary": "auc_macro"},
       "train_key": "training", "val_key": "validation"}
    ], "defaults": {"batch_size": 8}}

The synthetic demo's ``tasks.json`` (:mod:`medfound.data.synthetic.multitask`) loads as it
is. ``datalist`` names a MONAI datalist (``monai.data.load_decathlon_datalist``: paths
relative to the datalist's folder); ``training`` / ``validation`` lists may be given inline
instead. Item keys: ``image``; ``label`` (class index, list of 0/1/-1 per label, or label-map
path); for detection ``box`` (``[[x_min, y_min, x_max, y_max], ...]`` in pixels, x along the
image width, max exclusive) and ``label`` (class per box). Keys other than those above
(``description``, ``image_format``, ``counts``, ...) are kept in :attr:`TaskSpec.extra`;
other unknown keys too, with a warning (most likely a misspelt option).

Example
-------
>>> spec = TaskSpec.from_dict({"name": "finding", "kind": "multilabel", "class_names": ["a", "b"],
...                            "training": [{"image": "x.png", "label": [1, 0]}]})
>>> spec.num_classes, spec.head_config()["kind"]
(2, 'multilabel')
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from monai.data import load_decathlon_datalist
from torch import nn

from medfound.errors import ConfigError, DatasetLayoutError, LabelMismatchError
from medfound.multitask.losses import build_task_loss
from medfound.multitask.metrics import PRIMARY_METRICS, TaskMetric, build_task_metric
from medfound.utils import check_bool, check_choice, check_float, check_int, check_mapping, read_config_file

__all__ = ["TASK_KINDS", "TaskSpec", "load_tasks", "per_task"]

TASK_KINDS = ("classification", "multilabel", "segmentation", "detection")
#: informational task keys (kept in ``TaskSpec.extra`` without a warning)
INFO_KEYS = ("description", "image_format", "image_size", "counts", "synthetic", "source", "notes")


def per_task(value: Any, names: Sequence[str], what: str) -> dict[str, Any]:
    """``{task: value}`` for every task in ``names``: ``value`` itself for all, or its entries when it is
    a mapping (which must have every task).

    Example
    -------
    >>> per_task(8, ["a", "b"], "batch size"), per_task({"a": 4, "b": 2, "c": 1}, ["a", "b"], "batch size")
    ({'a': 8, 'b': 8}, {'a': 4, 'b': 2})
    """
    if isinstance(value, Mapping):
        missing = [n for n in names if n not in value]
        if missing:
            raise ConfigError(f"{what} missing for tasks {missing}")
        return {n: value[n] for n in names}
    return dict.fromkeys(names, value)


def _as_pair(value: Any, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"{what} must be an integer >= 1 or [height, width], got {value!r}")
        return check_int(value[0], f"{what}[0]", low=1), check_int(value[1], f"{what}[1]", low=1)
    side = check_int(value, what, low=1)
    return side, side


@dataclass
class TaskSpec:
    """One task of multi-task training (see the module docstring for the config keys).

    ``transforms`` may hold MONAI ``Compose``/callables (Python use) or lists of bundle-style
    ``{"_target_": ...}`` dicts (config use) under ``"train"`` and ``"val"``; ``None`` takes
    :func:`medfound.multitask.task_transforms.default_transforms`.
    """

    name: str
    kind: str
    class_names: list[str]
    datalist: str | None = None
    training: list[dict[str, Any]] | None = None
    validation: list[dict[str, Any]] | None = None
    train_key: str = "training"
    val_key: str = "validation"
    role: str = "pretrain"
    modality: str | None = None
    spatial_size: tuple[int, int] | None = None
    batch_size: int | None = None
    val_batch_size: int | None = None
    weight: float = 1.0
    intensity: dict[str, Any] | None = None
    augment: bool = True
    reader: str | None = None
    preset: str | dict[str, Any] | None = None
    transforms: dict[str, Any] | None = None
    loss: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Any] = field(default_factory=dict)
    metric: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "." in self.name or "/" in self.name:
            raise ConfigError(f"task name must be a non-empty string without '.' or '/', got {self.name!r}")
        check_choice(self.kind, TASK_KINDS, f"task {self.name!r}: kind")
        if not isinstance(self.class_names, (list, tuple)) or not self.class_names:
            raise ConfigError(f"task {self.name!r}: class_names must be a non-empty list")
        self.class_names = [str(c) for c in self.class_names]
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError(f"task {self.name!r}: class_names repeat a name: {self.class_names}")
        minimum = 2 if self.kind in ("classification", "segmentation") else 1
        if len(self.class_names) < minimum:
            raise ConfigError(f"task {self.name!r}: a {self.kind} task needs at least {minimum} classes")
        if self.datalist is None and self.training is None:
            raise ConfigError(f"task {self.name!r}: give a 'datalist' file or an inline 'training' list")
        self.spatial_size = _as_pair(self.spatial_size, f"task {self.name!r}: spatial_size")
        for key in ("batch_size", "val_batch_size"):
            setattr(self, key, check_int(getattr(self, key), f"task {self.name!r}: {key}", low=1, allow_none=True))
        self.weight = check_float(self.weight, f"task {self.name!r}: weight", low=0.0, low_open=True)
        self.augment = check_bool(self.augment, f"task {self.name!r}: augment")
        for key in ("loss", "head", "metric"):
            setattr(self, key, check_mapping(getattr(self, key), f"task {self.name!r}: {key}"))
        primary = self.metric.get("primary", PRIMARY_METRICS[self.kind])
        self.metric = {**self.metric, "primary": primary}

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, config: Mapping[str, Any], base_dir: str | os.PathLike | None = None) -> TaskSpec:
        """Build from a config dict; a relative ``datalist`` is taken relative to ``base_dir``."""
        if isinstance(config, TaskSpec):
            return config
        if not isinstance(config, Mapping):
            raise ConfigError(f"a task must be a dict, got {type(config).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in config.items() if k in known}
        extra = {k: v for k, v in config.items() if k not in known}
        unknown = sorted(k for k in extra if k not in INFO_KEYS)
        if unknown:  # kept, but most likely a typo of an option (e.g. "batchsize")
            warnings.warn(
                f"task {config.get('name')!r}: keys {unknown} are not task options; kept as information "
                f"(options: {sorted(known)})",
                stacklevel=2,
            )
        for key in ("name", "kind", "class_names"):
            if key not in kwargs:
                raise ConfigError(f"task {config.get('name', config)!r} lacks {key!r}")
        if kwargs.get("datalist") is not None and base_dir is not None and not os.path.isabs(str(kwargs["datalist"])):
            kwargs["datalist"] = os.path.join(os.fspath(base_dir), str(kwargs["datalist"]))
        return cls(**kwargs, extra=extra)

    # -- derived -------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Outputs of the task's head: classes (incl. background for segmentation) or labels."""
        return len(self.class_names)

    @property
    def primary_metric(self) -> str:
        return str(self.metric["primary"])

    def head_config(self) -> dict[str, Any]:
        """The ``UMedPT(tasks=[...])`` / ``add_task`` entry of this task."""
        return {"name": self.name, "kind": self.kind, "num_classes": self.num_classes, **self.head}

    def build_loss(self) -> nn.Module:
        """The task's normalised loss (:mod:`medfound.multitask.losses`)."""
        options = dict(self.loss)
        if self.kind == "detection" and "prior_prob" in self.head:
            options.setdefault("prior_prob", self.head["prior_prob"])
        return build_task_loss(self.kind, self.num_classes, **options)

    def build_metric(self) -> TaskMetric:
        """A fresh metric accumulator (:mod:`medfound.multitask.metrics`)."""
        options = {k: v for k, v in self.metric.items() if k != "primary"}
        return build_task_metric(self.kind, self.class_names, self.primary_metric, **options)

    # -- data ----------------------------------------------------------------------------------
    def load_split(self, split: str) -> list[dict[str, Any]]:
        """The items of ``"train"`` or ``"val"`` with absolute paths, checked for this task's kind.

        Raises :class:`~medfound.errors.DatasetLayoutError` (datalist missing or without the
        split) or :class:`~medfound.errors.LabelMismatchError` (an item's label does not fit
        the task), naming the datalist and the item.
        """
        check_choice(split, ("train", "val"), "split")
        inline = self.training if split == "train" else self.validation
        key = self.train_key if split == "train" else self.val_key
        source = f"task {self.name!r} ({key})"
        if inline is not None:
            items = [dict(item) for item in inline]
        elif self.datalist is None:
            items = []
        else:
            path = Path(self.datalist)
            source = f"{path} ({key})"
            if not path.is_file():
                raise DatasetLayoutError(f"task {self.name!r}: datalist {path} does not exist")
            try:
                items = load_decathlon_datalist(
                    path, is_segmentation=self.kind == "segmentation", data_list_key=key, base_dir=path.parent
                )
            except (ValueError, KeyError) as err:
                raise DatasetLayoutError(f"task {self.name!r}: {path} has no usable {key!r} list: {err}") from None
            except json.JSONDecodeError as err:
                raise DatasetLayoutError(f"task {self.name!r}: {path} is not valid JSON: {err}") from None
        for i, item in enumerate(items):
            self._check_item(item, f"{source} item {i}")
        return items

    def _check_item(self, item: Mapping[str, Any], where: str) -> None:
        if not isinstance(item, Mapping) or "image" not in item:
            raise DatasetLayoutError(f"{where}: an item needs an 'image' entry, got {item!r}")
        k = self.num_classes
        if self.kind == "detection":
            boxes, labels = item.get("box"), item.get("label")
            if boxes is None or labels is None:
                raise LabelMismatchError(f"{where}: detection items need 'box' and 'label' lists")
            if len(boxes) != len(labels):
                raise LabelMismatchError(f"{where}: {len(boxes)} boxes but {len(labels)} labels")
            for b in boxes:
                if len(b) != 4 or not (b[2] > b[0] and b[3] > b[1]):
                    raise LabelMismatchError(f"{where}: box {b} is not [x_min, y_min, x_max, y_max] with max > min")
            if any(not 0 <= int(c) < k for c in labels):
                raise LabelMismatchError(f"{where}: box labels {list(labels)} outside 0..{k - 1}")
            return
        if "label" not in item:
            raise LabelMismatchError(f"{where}: no 'label'")
        label = item["label"]
        if self.kind == "classification":
            if (
                isinstance(label, bool)
                or not isinstance(label, (int, float))
                or int(label) != label
                or not -1 <= int(label) < k
            ):
                raise LabelMismatchError(f"{where}: class label {label!r} is not an integer in 0..{k - 1} (or -1)")
        elif self.kind == "multilabel":
            if not isinstance(label, (list, tuple)) or len(label) != k or any(v not in (0, 1, -1) for v in label):
                raise LabelMismatchError(f"{where}: multi-label target {label!r} is not {k} values of 0/1/-1")
        elif not isinstance(label, (str, os.PathLike)) and not hasattr(label, "shape"):
            raise LabelMismatchError(f"{where}: segmentation label must be a label-map file or array, got {label!r}")


def load_tasks(
    source: str | os.PathLike | Mapping[str, Any] | Sequence[Any],
    roles: Sequence[str] | str | None = None,
    names: Sequence[str] | None = None,
) -> list[TaskSpec]:
    """Read task definitions.

    Parameters
    ----------
    source : a JSON/YAML file (a list of tasks or ``{"tasks": [...], "defaults": {...}}``), such
        a dict, or a list of task dicts / :class:`TaskSpec`.
    roles : keep tasks with these roles (e.g. ``"pretrain"``); ``None`` keeps all.
    names : keep these tasks, in this order; ``None`` keeps all.

    Example
    -------
    >>> tasks = load_tasks({"tasks": [{"name": "a", "kind": "classification", "class_names": ["x", "y"],
    ...                                "training": [], "role": "transfer"}], "defaults": {"batch_size": 4}})
    >>> [(t.name, t.batch_size, t.role) for t in tasks]
    [('a', 4, 'transfer')]
    """
    base_dir: str | None = None
    config: Any = source
    if isinstance(source, (str, os.PathLike)):
        base_dir = os.path.dirname(os.path.abspath(os.fspath(source)))
        config = read_config_file(source, what="task file")
    defaults: Mapping[str, Any] = {}
    if isinstance(config, Mapping):
        if "tasks" not in config:
            raise ConfigError(f"task config {source if base_dir else ''} has no 'tasks' list".replace("  ", " "))
        defaults = config.get("defaults") or {}
        entries = config["tasks"]
    else:
        entries = config
    if not isinstance(entries, Sequence) or isinstance(entries, (str, bytes)):
        raise ConfigError("'tasks' must be a list of task definitions")
    tasks = [e if isinstance(e, TaskSpec) else TaskSpec.from_dict({**defaults, **e}, base_dir) for e in entries]
    seen: set[str] = set()
    for t in tasks:
        if t.name in seen:
            raise ConfigError(f"task name {t.name!r} appears twice")
        seen.add(t.name)
    if roles is not None:
        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        tasks = [t for t in tasks if t.role in roles]
    if names is not None:
        by_name = {t.name: t for t in tasks}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ConfigError(f"no task named {missing}; tasks: {sorted(by_name)}")
        tasks = [by_name[n] for n in names]
    if not tasks:
        raise ConfigError(f"no tasks left (roles={roles}, names={names})")
    return tasks
