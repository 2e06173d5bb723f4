"""Balanced multi-task validation: a MONAI ``Evaluator`` over every task's validation data.

Each task's validation set is run once (up to ``max_batches_per_task`` batches), tasks
interleaved; each task's metrics are computed on its own data (:mod:`medfound.multitask.metrics`)
and the key metric ``mean_score`` is the unweighted mean of the tasks' primary metrics, so a
large task does not outweigh a small one. ``engine.state.metrics`` holds every number flat
(``"<task>/<metric>"``), which MONAI's ``StatsHandler`` and ``TensorBoardStatsHandler``
log; a ``ValidationHandler`` on the trainer runs it. Detection outputs are decoded with
:class:`~medfound.networks.fcos.FCOSPostprocessor` (options in ``detection_postprocessing``)
and clipped to each image's size before padding.

Under ``torch.distributed`` every process evaluates all validation data (no sharding), so all
processes report the same numbers.

Example
-------
>>> import torch
>>> from medfound.networks.umedpt import UMedPT
>>> from medfound.multitask import BalancedValidationLoader, load_tasks
>>> net = UMedPT(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
...              squeezer_channels=16, seg_hidden_channels=16, det_channels=16)
>>> tasks = load_tasks([{"name": "a", "kind": "classification", "class_names": ["x", "y"], "training": [],
...                      "validation": [{"image": torch.rand(1, 32, 32), "label": i % 2} for i in range(4)],
...                      "transforms": {"val": lambda d: d}}])
>>> evaluator = MultiTaskEvaluator("cpu", net, BalancedValidationLoader.from_tasks(tasks, batch_size=2), tasks)
>>> evaluator.run()
>>> sorted(k for k in evaluator.state.metrics if k.startswith("a/"))[:3]
['a/accuracy', 'a/auc/x', 'a/auc/y']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.engines import Evaluator
from monai.engines.utils import IterationEvents
from torch import nn

from medfound.errors import ConfigError
from medfound.multitask.batches import prepare_task_batch
from medfound.multitask.heads import ensure_heads, move_head
from medfound.multitask.metrics import MultiTaskMetric
from medfound.multitask.outputs import to_cpu_targets
from medfound.multitask.sampling import BalancedValidationLoader
from medfound.multitask.tasks import TaskSpec
from medfound.networks.fcos import FCOSPostprocessor
from medfound.utils import check_bool, resolve_device

__all__ = ["MultiTaskEvaluator"]


class MultiTaskEvaluator(Evaluator):
    """Evaluate a multi-task network on every task's validation data.

    Parameters
    ----------
    device : ``"cuda"``, ``"cpu"``, a ``torch.device`` or ``"auto"``.
    network : the UMedPT-like model (shared with the trainer when validating during training);
        heads missing for a task are added as the trainer does.
    val_loader : the :class:`~medfound.multitask.sampling.BalancedValidationLoader` of the
        tasks' validation data (e.g. ``BalancedValidationLoader.from_tasks``).
    tasks : the :class:`~medfound.multitask.tasks.TaskSpec` of the tasks (a superset of the
        loader's): kinds and metrics.
    offload_heads : keep heads on the CPU except while their task runs (as in training).
    amp : autocast on CUDA.
    detection_postprocessing : options of ``FCOSPostprocessor`` (``score_thresh``, ``nms_thresh``, ...).
    val_handlers, additional_metrics, non_blocking, amp_kwargs : as MONAI's evaluators.
    """

    def __init__(
        self,
        device: str | torch.device,
        network: nn.Module,
        val_loader: BalancedValidationLoader,
        tasks: Sequence[TaskSpec],
        offload_heads: bool = False,
        amp: bool = False,
        detection_postprocessing: Mapping[str, Any] | None = None,
        val_handlers: Sequence | None = None,
        additional_metrics: dict | None = None,
        non_blocking: bool = False,
        amp_kwargs: dict | None = None,
    ) -> None:
        device = resolve_device(device)
        specs = list(tasks.values()) if isinstance(tasks, Mapping) else list(tasks)
        if not all(isinstance(s, TaskSpec) for s in specs):
            raise ConfigError("tasks must be TaskSpec objects (medfound.multitask.load_tasks)")
        self.specs = {s.name: s for s in specs}
        if not isinstance(val_loader, BalancedValidationLoader):
            raise ConfigError(f"val_loader must be a BalancedValidationLoader, got {type(val_loader).__name__}")
        unknown = [n for n in val_loader.names if n not in self.specs]
        if unknown:
            raise ConfigError(f"val_loader has tasks {unknown} that are not among the evaluator's {list(self.specs)}")
        ensure_heads(network, specs)
        self.network = network
        self.offload_heads = check_bool(offload_heads, "offload_heads")
        self.amp_enabled = check_bool(amp, "amp") and device.type == "cuda"
        self.postprocessor = FCOSPostprocessor(**dict(detection_postprocessing or {}))
        metric = MultiTaskMetric({n: self.specs[n].build_metric() for n in val_loader.names})
        super().__init__(
            device=device,
            val_data_loader=val_loader,
            epoch_length=len(val_loader),
            non_blocking=non_blocking,
            key_val_metric={"mean_score": metric},
            additional_metrics=additional_metrics,
            val_handlers=val_handlers,
            amp=self.amp_enabled,
            decollate=False,
            amp_kwargs=amp_kwargs,
        )

    def _iteration(self, engine: MultiTaskEvaluator, batchdata: tuple[str, Any]) -> dict[str, Any]:
        name, batch = batchdata
        spec = self.specs[name]
        images, target = prepare_task_batch(spec.kind, batch, engine.state.device, engine.non_blocking)
        if self.offload_heads:
            move_head(self.network, name, engine.state.device)
        self.network.eval()
        with torch.no_grad(), torch.autocast(engine.state.device.type, enabled=self.amp_enabled, **engine.amp_kwargs):
            pred = self.network(images, task=name)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        if spec.kind == "detection":
            sizes = [tuple(int(v) for v in s) for s in batch["image_size"]]
            pred = [{k: v.cpu() for k, v in d.items()} for d in self.postprocessor(pred, image_size=sizes)]
        else:
            pred = pred.float().cpu()
        if self.offload_heads:
            move_head(self.network, name, "cpu")
        engine.state.output = {"task": name, "pred": pred, "label": to_cpu_targets(spec.kind, target)}
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
