"""UMedPT multi-task training: task definitions, normalised losses, metrics, task sampling, trainer.

- :mod:`~medfound.multitask.tasks`: :class:`TaskSpec`, :func:`load_tasks` (JSON/YAML task lists);
- :mod:`~medfound.multitask.losses`: losses normalised so an untrained model scores about 1;
- :mod:`~medfound.multitask.metrics`: per-task metrics and the balanced :class:`MultiTaskMetric`;
- :mod:`~medfound.multitask.data`: default transforms, seeded datasets, samplers, collation;
- :mod:`~medfound.multitask.sampling`: :class:`CyclicTaskLoader`, :class:`BalancedValidationLoader`;
- :mod:`~medfound.multitask.trainer`: :class:`MultiTaskTrainer` (gradient accumulation, offloaded heads,
  distributed, atomic checkpoints, exact resume);
- :mod:`~medfound.multitask.evaluator`: :class:`MultiTaskEvaluator`;
- :mod:`~medfound.multitask.pretrain`: :func:`pretrain`, the ``medfound pretrain`` command's API.
"""

from medfound.multitask.data import TaskBatchSampler, TaskDataset, collate_task_batch, default_transforms  # noqa: F401
from medfound.multitask.evaluator import MultiTaskEvaluator  # noqa: F401
from medfound.multitask.losses import (  # noqa: F401
    NormalizedBCELoss,
    NormalizedCrossEntropyLoss,
    NormalizedDetectionLoss,
    NormalizedSegmentationLoss,
    build_task_loss,
)
from medfound.multitask.metrics import MultiTaskMetric, build_task_metric  # noqa: F401
from medfound.multitask.pretrain import pretrain  # noqa: F401
from medfound.multitask.sampling import BalancedValidationLoader, CyclicTaskLoader  # noqa: F401
from medfound.multitask.tasks import TaskSpec, load_tasks  # noqa: F401
from medfound.multitask.trainer import MultiTaskEvents, MultiTaskTrainer  # noqa: F401
