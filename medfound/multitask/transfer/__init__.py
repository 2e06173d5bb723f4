"""The transfer protocol of the UMedPT paper (frozen-encoder probe and fine-tuning at data fractions).

- :mod:`~medfound.multitask.transfer.subsets`: stratified training-data subsets;
- :mod:`~medfound.multitask.transfer.encoders`: pre-trained, random or ImageNet encoders;
- :mod:`~medfound.multitask.transfer.linear_probe`: embeddings, the L-BFGS logistic-regression
  probe, LP-FT's head initialisation;
- :mod:`~medfound.multitask.transfer.finetune`: one fine-tuning run (a multi-task training config);
- :mod:`~medfound.multitask.transfer.results`: summary table, JSON, CSV and plot;
- :mod:`~medfound.multitask.transfer.protocol`: :func:`run_transfer`, the whole protocol, and
  its bundle config (:func:`transfer_config`, :func:`run_transfer_config`).
"""

from medfound.multitask.transfer.encoders import build_encoder_model, encoder_network_args  # noqa: F401
from medfound.multitask.transfer.finetune import DEFAULT_FINETUNE, HEAD_INITS, train_and_score  # noqa: F401
from medfound.multitask.transfer.linear_probe import (  # noqa: F401
    ProbeFeatures,
    extract_embeddings,
    fit_linear_probe,
    linear_probe_head,
    probe_features,
)
from medfound.multitask.transfer.protocol import (  # noqa: F401
    DEFAULT_FRACTIONS,
    DEFAULT_LINEAR,
    TRANSFER_MODES,
    run_transfer,
    run_transfer_config,
    select_target_task,
    transfer_config,
)
from medfound.multitask.transfer.results import plot_transfer, summarise_runs, write_transfer_outputs  # noqa: F401
from medfound.multitask.transfer.subsets import stratified_subset, task_targets  # noqa: F401
