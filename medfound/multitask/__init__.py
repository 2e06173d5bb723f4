"""UMedPT multi-task training: tasks, normalised losses, metrics, task sampling, trainer, transfer protocol.

- :mod:`~medfound.multitask.tasks`: :class:`TaskSpec`, :func:`load_tasks` (JSON/YAML task lists);
- :mod:`~medfound.multitask.losses`: losses normalised so an untrained model scores about 1;
- :mod:`~medfound.multitask.metrics`: per-task metrics and the balanced :class:`MultiTaskMetric`;
- :mod:`~medfound.multitask.task_transforms`, :mod:`~medfound.multitask.datasets`,
  :mod:`~medfound.multitask.batches`: a task's transforms, seeded datasets, collation;
- :mod:`~medfound.multitask.sampling`: :class:`CyclicTaskLoader`, :class:`BalancedValidationLoader`;
- :mod:`~medfound.multitask.trainer`: :class:`MultiTaskTrainer` (gradient accumulation, offloaded heads,
  distributed, exact resume through :mod:`medfound.handlers`);
- :mod:`~medfound.multitask.evaluator`: :class:`MultiTaskEvaluator`;
- :mod:`~medfound.multitask.handlers`: :class:`TrainingHistory`, :class:`FinalValidation`;
- :mod:`~medfound.multitask.optim`: :class:`WarmupCosineLR` and the config entries of optimisers;
- :mod:`~medfound.multitask.training_config`: :func:`training_config`, the bundle config of a run;
- :mod:`~medfound.multitask.pretrain`: :func:`pretrain`, the ``medfound pretrain`` command's API;
- :mod:`~medfound.multitask.frozen_reference`: a pre-training against the same heads on a random frozen
  encoder (:func:`~medfound.multitask.frozen_reference.random_frozen_config`, its table and seed summary);
- :mod:`~medfound.multitask.transfer`: :func:`run_transfer`, the paper's transfer protocol.
"""

from medfound.multitask.batches import collate_task_batch, prepare_task_batch  # noqa: F401
from medfound.multitask.datasets import TaskDataset, build_task_datasets  # noqa: F401
from medfound.multitask.evaluator import MultiTaskEvaluator  # noqa: F401
from medfound.multitask.handlers import FinalValidation, TrainingHistory  # noqa: F401
from medfound.multitask.losses import (  # noqa: F401
    NormalizedBCELoss,
    NormalizedCrossEntropyLoss,
    NormalizedDetectionLoss,
    NormalizedSegmentationLoss,
    build_task_loss,
)
from medfound.multitask.metrics import MultiTaskMetric, build_task_metric  # noqa: F401
from medfound.multitask.optim import WarmupCosineLR  # noqa: F401
from medfound.multitask.pretrain import pretrain, pretrain_config  # noqa: F401
from medfound.multitask.sampling import BalancedValidationLoader, CyclicTaskLoader, TaskBatchSampler  # noqa: F401
from medfound.multitask.task_transforms import default_transforms, task_transforms  # noqa: F401
from medfound.multitask.tasks import TaskSpec, load_tasks  # noqa: F401
from medfound.multitask.trainer import MultiTaskEvents, MultiTaskTrainer, RunPlan, plan_run, task_loss  # noqa: F401
from medfound.multitask.training_config import training_config  # noqa: F401
from medfound.multitask.transfer import run_transfer  # noqa: F401
