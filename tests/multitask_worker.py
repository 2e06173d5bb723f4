"""Worker script of the multitask distributed and kill-and-resume tests (run by torchrun or as a subprocess).

Usage: ``python multitask_worker.py MODE OUT_DIR [KILL_AT]``; MODE is ``ddp`` (under torchrun:
each rank trains with batch 2 and saves its weights), ``single`` (one process, batch 4: the
same global batch), or ``checkpointed`` (one process with a checkpoint folder; with KILL_AT it
kills itself with SIGKILL right after that iteration).
"""

from __future__ import annotations

import os
import signal
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def tasks():
    from _multitask_utils import memory_task

    return [
        memory_task("cls", "classification", n=16, seed=1),
        memory_task("seg", "segmentation", n=16, seed=2, loss={"dice_weight": 0.0}),  # per-pixel mean: splits exactly
        memory_task("mlc", "multilabel", n=16, seed=3),
    ]


def train(local_rank: int, mode: str, out: str, kill_at: int | None) -> None:
    import functools

    import ignite.distributed as idist
    from _multitask_utils import tiny_umedpt, trainer_for
    from ignite.engine import Events

    from medfound.handlers import AtomicCheckpointSaver, CheckpointResume

    torch.set_num_threads(1)
    net = tiny_umedpt(seed=0)
    # ddp vs single: SGD, whose update is linear in the gradient, so the comparison measures the gradient
    # averaging itself (Adam divides by sqrt(v): where a gradient is ~0, float rounding of the sum can move an
    # element by 3e-5); the resume test: AdamW, whose state must come back exactly
    factory = torch.optim.AdamW if mode == "checkpointed" else torch.optim.SGD
    options = {"lr": 1e-3} if mode == "checkpointed" else {"lr": 0.05, "momentum": 0.9}
    kwargs = dict(task_order="shuffle", optimizer=functools.partial(factory, **options), seed=4, max_iterations=9)
    if mode == "checkpointed":
        net = tiny_umedpt(seed=0, head_dropout=0.3)
        trainer = trainer_for(net, tasks(), batch_size=2, **kwargs)
        state, folder = {"trainer": trainer}, os.path.join(out, "ckpt")
        CheckpointResume(os.path.join(folder, "last.pt"), state).attach(trainer)
        AtomicCheckpointSaver(folder, state, save_interval=3).attach(trainer)
        if kill_at is not None:
            trainer.add_event_handler(
                Events.ITERATION_COMPLETED(once=kill_at), lambda e: os.kill(os.getpid(), signal.SIGKILL)
            )
    else:
        batch = 4 if mode == "single" else 2
        trainer = trainer_for(net, tasks(), batch_size=batch, **kwargs)
    trainer.run()
    name = f"rank{idist.get_rank()}.pt" if mode == "ddp" else f"{mode}.pt"
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, os.path.join(out, name))


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else None
    if mode == "ddp":
        import ignite.distributed as idist

        with idist.Parallel(backend="gloo") as parallel:
            parallel.run(train, mode, out, kill_at)
    else:
        train(0, mode, out, kill_at)


if __name__ == "__main__":
    main()
