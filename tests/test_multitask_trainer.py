"""The multi-task trainer: gradient accumulation, head optimisers, offloading, MONAI handlers, exact resume."""

from __future__ import annotations

import functools
import logging

import pytest
import torch
from _multitask_utils import (
    LogCollector,
    adamw,
    evaluator_for,
    four_tasks,
    memory_task,
    tiny_umedpt,
    trainer_for,
)
from ignite.engine import Events
from ignite.handlers import ProgressBar
from monai.handlers import (
    CheckpointLoader,
    CheckpointSaver,
    StatsHandler,
    TensorBoardStatsHandler,
    ValidationHandler,
    from_engine,
)

from medfound.errors import ConfigError, WeightsError
from medfound.handlers import AtomicCheckpointSaver, CheckpointResume
from medfound.multitask import (
    CyclicTaskLoader,
    FinalValidation,
    MultiTaskEvents,
    MultiTaskTrainer,
    TrainingHistory,
    WarmupCosineLR,
    load_tasks,
)
from medfound.multitask.batches import prepare_task_batch
from medfound.multitask.heads import split_parameters
from medfound.multitask.tasks import TaskSpec
from medfound.multitask.trainer import task_loss


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _assert_same(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=0), k


def test_window_gradients_equal_the_sum_of_per_task_gradients():
    tasks = four_tasks(n=4)
    tasks[2]["weight"] = 2.0  # task weights scale their contribution
    net = tiny_umedpt()
    sgd = functools.partial(torch.optim.SGD, lr=0.05)
    trainer = trainer_for(net, tasks, batch_size=2, optimizer=sgd, max_iterations=4, grad_clip=None)
    init = _state(net)
    batches, captured, shared_after = [], {}, []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: batches.append(e.state.batch))
    shared_names = [n for n, _ in net.named_parameters() if not n.startswith("heads.")]

    @trainer.on(MultiTaskEvents.SHARED_STEP_STARTED)
    def _grab(engine):
        captured.update(
            {n: p.grad.clone() for n, p in net.named_parameters() if n in shared_names and p.grad is not None}
        )

    @trainer.on(Events.ITERATION_COMPLETED)
    def _shared_snapshot(engine):
        shared_after.append({n: p.detach().clone() for n, p in net.named_parameters() if n in shared_names})

    trainer.run()
    assert [name for name, _ in batches] == ["cls", "seg", "mlc", "det"]
    assert trainer.shared_steps == 1 and trainer.head_steps == dict.fromkeys(["cls", "seg", "mlc", "det"], 1)
    for snap in shared_after[:3]:  # no shared update inside the window
        for n in shared_names:
            assert torch.equal(snap[n], init[n])
    assert any(not torch.equal(shared_after[3][n], init[n]) for n in shared_names)

    reference = tiny_umedpt(seed=5, tasks=[TaskSpec.from_dict(t).head_config() for t in tasks])
    reference.load_state_dict(init)
    specs = {t["name"]: TaskSpec.from_dict(t) for t in tasks}
    total = {}
    for name, batch in batches:
        reference.zero_grad(set_to_none=True)
        images, target = prepare_task_batch(specs[name].kind, batch, "cpu")
        loss = task_loss(specs[name].kind, specs[name].build_loss(), reference(images, task=name), target, images)
        (loss * specs[name].weight).backward()
        for n, p in reference.named_parameters():
            if n in shared_names and p.grad is not None:
                total[n] = total.get(n, 0) + p.grad
    assert captured.keys() == total.keys()
    for n in total:
        assert torch.allclose(captured[n], total[n], rtol=1e-5, atol=1e-7), n


def test_head_optimizers_touch_only_their_heads():
    tasks = four_tasks(n=4)
    net = tiny_umedpt()
    trainer = trainer_for(
        net,
        tasks,
        batch_size=2,
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        head_optimizer=functools.partial(torch.optim.Adam, lr=1e-2),
        max_iterations=1,
    )
    shared, heads = split_parameters(net)
    for name, opt in trainer.head_optimizers.items():
        assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in heads[name]}
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-2)
    assert {id(p) for g in trainer.shared_optimizer.param_groups for p in g["params"]} == {id(p) for p in shared}
    before = _state(net)
    trainer.run()  # one iteration: task "cls"
    after = _state(net)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("heads.cls.") for k in changed)
    assert not any(k.startswith(("heads.seg.", "heads.mlc.", "heads.det.")) for k in changed)
    assert all(not trainer.head_optimizers[n].state for n in ("seg", "mlc", "det"))


def _run_recording_devices(device: str, offload: bool, iterations: int):
    """Train 4 tasks; after every iteration record where the heads and their optimiser states are."""
    net = tiny_umedpt()
    trainer = trainer_for(
        net,
        four_tasks(n=4),
        batch_size=2,
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        device=device,
        max_iterations=iterations,
        offload_heads=offload,
    )
    seen = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _where(engine):
        heads = {p.device.type for p in net.heads.parameters()}
        states = {
            v.device.type
            for o in trainer.head_optimizers.values()
            for s in o.state.values()
            for k, v in s.items()
            if torch.is_tensor(v) and k != "step"
        }
        seen.append((heads, states))

    trainer.run()
    return net, {k: v.cpu() for k, v in _state(net).items()}, seen


def test_offloaded_heads_give_the_same_result_on_cpu():
    _, plain, _ = _run_recording_devices("cpu", False, 6)
    _, offloaded, seen = _run_recording_devices("cpu", True, 6)
    assert all(heads == {"cpu"} and states <= {"cpu"} for heads, states in seen)
    _assert_same(plain, offloaded)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_offloaded_heads_live_on_the_cpu_between_their_iterations_cuda():
    _, plain, seen_plain = _run_recording_devices("cuda", False, 8)
    net, offloaded, seen = _run_recording_devices("cuda", True, 8)
    assert all(heads == {"cuda"} for heads, _ in seen_plain)
    assert all(heads == {"cpu"} and states <= {"cpu"} for heads, states in seen)
    assert all(p.device.type == "cuda" for p in net.shared.parameters())
    _assert_same(plain, offloaded, atol=1e-5)


def test_frozen_shared_blocks_stay_fixed_while_heads_learn():
    net = tiny_umedpt(stochastic_depth_prob=0.2)
    trainer = trainer_for(net, four_tasks(n=4)[:2], batch_size=2, max_iterations=4, frozen_shared=True)
    before = _state(net)
    trainer.run()
    after = _state(net)
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("heads."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("heads.cls."))
    assert not net.shared.training and net.heads.training  # shared blocks ran in eval mode (no stochastic depth)


def test_amp_is_ignored_on_cpu_and_bad_configs_fail_clearly():
    task = [memory_task("c", "classification", 4)]
    trainer = trainer_for(tiny_umedpt(), task, max_epochs=1, amp=True)
    assert not trainer.amp_enabled and trainer.window == 1
    with pytest.raises(ConfigError, match="exactly one"):
        trainer_for(tiny_umedpt(), task)
    net = tiny_umedpt(tasks=[{"name": "c", "kind": "segmentation", "num_classes": 2}])
    with pytest.raises(ConfigError, match="head is for segmentation"):
        trainer_for(net, task, max_epochs=1)
    with pytest.raises(ConfigError, match="window must be an integer >= 1, got 0"):
        trainer_for(tiny_umedpt(), task, max_epochs=1, window=0)
    with pytest.raises(ConfigError, match="max_iterations must be an integer >= 1, got 'four'"):
        trainer_for(tiny_umedpt(), task, max_iterations="four")
    with pytest.raises(ConfigError, match="grad_clip must be a number >= 0"):
        trainer_for(tiny_umedpt(), task, max_epochs=1, grad_clip=-1.0)
    # ready objects must fit: the loader's tasks, the optimiser's parameters
    specs = load_tasks(task)
    other = CyclicTaskLoader.from_tasks(load_tasks([memory_task("d", "classification", 4)]))
    with pytest.raises(ConfigError, match="differ"):
        MultiTaskTrainer("cpu", tiny_umedpt(), other, specs, adamw(), max_epochs=1)
    net = tiny_umedpt(tasks=[specs[0].head_config()])
    wrong = torch.optim.SGD(net.parameters(), lr=0.1)  # the head's parameters too: not the shared blocks alone
    with pytest.raises(ConfigError, match="exactly the parameters"):
        MultiTaskTrainer("cpu", net, CyclicTaskLoader.from_tasks(specs), specs, wrong, max_epochs=1,
                         head_optimizer=adamw())
    right = torch.optim.SGD(split_parameters(net)[0], lr=0.1)
    with pytest.raises(ConfigError, match="give head_optimizer"):  # a ready optimiser cannot serve the heads
        MultiTaskTrainer("cpu", net, CyclicTaskLoader.from_tasks(specs), specs, right, max_epochs=1)


def test_ready_optimisers_and_schedules_equal_factories():
    """A trainer given ready optimisers and schedules trains exactly as one given factories."""
    tasks = four_tasks(n=4)[:2]
    sched = functools.partial(WarmupCosineLR, total_steps=3, warmup_steps=1)
    by_factory = tiny_umedpt(tasks=[TaskSpec.from_dict(t).head_config() for t in tasks])
    trainer_for(by_factory, tasks, batch_size=2, max_iterations=6, lr_scheduler=sched, head_lr_scheduler=sched).run()
    ready = tiny_umedpt(tasks=[TaskSpec.from_dict(t).head_config() for t in tasks])
    shared, heads = split_parameters(ready)
    optimizer = adamw()(shared)
    head_optimizers = {n: adamw()(p) for n, p in heads.items()}
    trainer = trainer_for(
        ready,
        tasks,
        batch_size=2,
        optimizer=optimizer,
        head_optimizer=head_optimizers,
        max_iterations=6,
        lr_scheduler=sched(optimizer),
        head_lr_scheduler={n: sched(o) for n, o in head_optimizers.items()},
    )
    assert trainer.shared_optimizer is optimizer and trainer.head_optimizers["cls"] is head_optimizers["cls"]
    trainer.run()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine down to 0 after 3 steps
    _assert_same(_state(by_factory), _state(ready))


def test_monai_handlers_work_with_the_trainer(tmp_path):
    tasks = four_tasks(n=4)
    net = tiny_umedpt()
    evaluator = evaluator_for(net, tasks, batch_size=4)
    trainer = trainer_for(
        net,
        tasks,
        batch_size=2,
        max_epochs=2,
        epoch_length=4,
        train_handlers=[
            StatsHandler(name="mt_test", tag_name="train_loss", output_transform=from_engine(["loss"], first=True)),
            TensorBoardStatsHandler(log_dir=str(tmp_path / "tb"), output_transform=from_engine(["loss"], first=True)),
            ValidationHandler(interval=1, validator=evaluator),
        ],
    )
    saver = CheckpointSaver(
        str(tmp_path / "ckpt"), save_dict={"trainer": trainer}, save_final=True, final_filename="final.pt"
    )
    saver.attach(trainer)
    ProgressBar(persist=False).attach(trainer, output_transform=from_engine(["loss"], first=True))
    StatsHandler(name="mt_val", output_transform=lambda x: None, iteration_log=False).attach(evaluator)
    collected = LogCollector()
    for name in ("mt_test", "mt_val"):
        logging.getLogger(name).addHandler(collected)
    try:
        trainer.run()
    finally:
        for name in ("mt_test", "mt_val"):
            logging.getLogger(name).removeHandler(collected)
    assert trainer.state.iteration == 8 and trainer.shared_steps == 2
    metrics = evaluator.state.metrics
    assert {"cls/accuracy", "seg/dice/fg", "mlc/auc_macro", "det/map_50", "mean_score"} <= set(metrics)
    assert evaluator.state.best_metric_epoch in (1, 2)
    assert sum("train_loss" in m for m in collected.messages) == 8  # one line per iteration
    assert any("mean_score" in m and "seg/dice/fg" in m for m in collected.messages)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))

    fresh_net = tiny_umedpt(seed=9)
    fresh = trainer_for(fresh_net, tasks, batch_size=2, max_epochs=2, epoch_length=4)
    CheckpointLoader(str(tmp_path / "ckpt" / "final.pt"), load_dict={"trainer": fresh}).attach(fresh)
    fresh.run()  # loads at STARTED; nothing left to run
    assert fresh.state.iteration == 8 and fresh.shared_steps == 2
    _assert_same(_state(net), _state(fresh_net))


def _resume_tasks():
    return [
        memory_task("cls", "classification", 6),
        memory_task("seg", "segmentation", 6, three_classes=True),
        memory_task("mlc", "multilabel", 6),
    ]


def _resume_trainer(net, tmp, **kw):
    sched = functools.partial(WarmupCosineLR, total_steps=4, warmup_steps=1)  # 11 iterations, window 3
    trainer = trainer_for(
        net,
        _resume_tasks(),
        batch_size=2,
        task_order="shuffle",
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        max_iterations=11,
        lr_scheduler=sched,
        head_lr_scheduler=sched,
        **kw,
    )
    if tmp is not None:  # checkpoints and exact resume are handlers
        state = {"trainer": trainer}
        CheckpointResume(tmp / "last.pt", state).attach(trainer)
        AtomicCheckpointSaver(tmp, state, save_interval=3, final_files={"model.pt": net}).attach(trainer)
    return trainer


def test_stopped_run_resumes_to_the_same_weights(tmp_path):
    # head dropout makes the torch RNG matter; 11 iterations end in a partial window
    full = tiny_umedpt(head_dropout=0.3)
    _resume_trainer(full, tmp_path / "full").run()
    assert (tmp_path / "full" / "model.pt").is_file()

    net = tiny_umedpt(head_dropout=0.3)
    first = _resume_trainer(net, tmp_path / "cut")
    first.add_event_handler(Events.ITERATION_COMPLETED(once=7), lambda e: e.terminate())
    first.run()
    assert first.state.iteration == 7
    resumed_net = tiny_umedpt(seed=123, head_dropout=0.3)  # other initial weights: the checkpoint must win
    second = _resume_trainer(resumed_net, tmp_path / "cut")
    second.run()  # continues from last.pt (iteration 7, saved when the first run stopped)
    assert second.state.iteration == 11 and second.shared_steps == 4
    _assert_same(_state(full), _state(resumed_net))
    done_net = tiny_umedpt(seed=5, head_dropout=0.3)
    done = _resume_trainer(done_net, tmp_path / "cut")
    done.run()  # resumed at its end: no iteration, the same weights
    assert done.state.iteration == 11 and done.shared_steps == 4
    _assert_same(_state(full), _state(done_net))
    final = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    _assert_same(_state(full), final)


def test_mid_window_state_dict_resumes_exactly(tmp_path):
    full = tiny_umedpt(head_dropout=0.3)
    _resume_trainer(full, None).run()
    net = tiny_umedpt(head_dropout=0.3)
    first = _resume_trainer(net, None)
    saved = {}

    @first.on(Events.ITERATION_COMPLETED(once=4))
    def _cut(engine):
        saved.update(engine.state_dict())  # iteration 4 is inside the second window
        engine.terminate()

    first.run()
    assert saved["accumulated_grads"]
    other = tiny_umedpt(seed=77, head_dropout=0.3)
    second = _resume_trainer(other, None)
    second.load_state_dict(saved)
    second.run()
    _assert_same(_state(full), _state(other))
    with pytest.raises(WeightsError, match="format"):
        second.load_state_dict({"format": "x"})


@pytest.mark.parametrize("iterations, validated_at, losses_at", [(6, [4, 6], [3, 6]), (8, [4, 8], [3, 6, 8])])
def test_final_validation_runs_once_when_the_run_ends(iterations, validated_at, losses_at):
    tasks = four_tasks(n=4)[:2]
    net = tiny_umedpt()
    evaluator = evaluator_for(net, tasks, batch_size=4)
    trainer = trainer_for(net, tasks, batch_size=2, max_iterations=iterations, epoch_length=4,
                          train_handlers=[ValidationHandler(interval=1, validator=evaluator)])
    FinalValidation(evaluator).attach(trainer)
    history = TrainingHistory(log_every=3, evaluator=evaluator)
    history.attach(trainer)
    trainer.run()
    assert [r["iteration"] for r in history.validation] == validated_at  # never twice at one iteration
    assert [r["iteration"] for r in history.loss] == losses_at  # every 3 iterations and at the end
    assert history.validation[-1]["mean_score"] == evaluator.state.metrics["mean_score"]
