"""Head offloading, checked on the CPU: every move of a head and its optimiser state, in order.

The CUDA test in test_multitask_trainer.py shows where heads live between iterations, but is
skipped without a GPU. Here the offload device is ``cpu:0``, a device torch tells apart from
the training device ``cpu``, and the trainer's moves are recorded through
``MultiTaskEvents.HEAD_MOVED`` next to each head's forward (a forward pre-hook) and its
optimiser's step (a step pre-hook): a run that never brings the active head to the training
device before its forward, or never sends it back after its step, fails. What ``move_head``
does to the tensors is checked with a real move to the meta device.
"""

from __future__ import annotations

import functools

import torch
from _multitask_utils import four_tasks, tiny_umedpt, trainer_for
from torch import nn

from medfound.multitask.heads import move_head
from medfound.multitask.trainer import MultiTaskEvents

TRAIN, OFFLOAD = torch.device("cpu"), torch.device("cpu", 0)


def _optimizer_tensors(optimizer):
    return [v for s in optimizer.state.values() for k, v in s.items() if torch.is_tensor(v) and k != "step"]


def _run(offload: bool, iterations: int = 8):
    net = tiny_umedpt()
    trainer = trainer_for(
        net,
        four_tasks(n=4),
        batch_size=2,
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        max_iterations=iterations,
        offload_heads=offload,
        offload_device=OFFLOAD,
    )
    events = []

    @trainer.on(MultiTaskEvents.HEAD_MOVED)
    def _moved(engine):
        name, device = engine.state.head_move
        events.append(("move", engine.state.iteration, name, device))

    for name, head in net.heads.items():
        head.register_forward_pre_hook(
            lambda module, args, name=name: events.append(("forward", trainer.state.iteration, name))
        )
        trainer.head_optimizers[name].register_step_pre_hook(
            lambda opt, args, kwargs, name=name: events.append(("step", trainer.state.iteration, name))
        )
    trainer.run()
    return net, trainer, events


def test_each_head_moves_to_the_training_device_for_its_step_and_back():
    net, trainer, events = _run(offload=True)
    assert trainer.offload_device == OFFLOAD
    order = trainer.task_names
    assert len(events) == 8 * 4
    for i in range(8):
        name = order[i % len(order)]
        move_in, forward, step, move_out = events[4 * i : 4 * i + 4]
        assert move_in == ("move", i + 1, name, TRAIN)
        assert forward == ("forward", i + 1, name)
        assert step == ("step", i + 1, name)
        assert move_out == ("move", i + 1, name, OFFLOAD)
    assert all(_optimizer_tensors(trainer.head_optimizers[n]) for n in order)  # Adam state that moved with them


def test_without_offloading_nothing_moves():
    _, _, events = _run(offload=False, iterations=4)
    assert [e[0] for e in events] == ["forward", "step"] * 4


def test_offloaded_training_equals_plain_training():
    plain, _, _ = _run(offload=False)
    offloaded, _, _ = _run(offload=True)
    a, b = plain.state_dict(), offloaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _head_with_adam_state():
    net = nn.Module()
    net.body = nn.Linear(3, 3)
    net.heads = nn.ModuleDict({"a": nn.Linear(3, 2), "b": nn.Linear(3, 2)})
    opt = torch.optim.Adam(net.heads["a"].parameters(), lr=0.1)
    net.heads["a"](torch.rand(4, 3)).sum().backward()
    opt.step()
    return net, opt


def test_move_head_copies_parameters_and_optimizer_state_keeping_identity():
    net, opt = _head_with_adam_state()
    params = list(net.heads["a"].parameters())
    before = [(p.data_ptr(), p.detach().clone()) for p in params]
    state = opt.state[params[0]]
    moment_ptr, moment = state["exp_avg"].data_ptr(), state["exp_avg"].clone()
    others = [p.data_ptr() for p in [*net.heads["b"].parameters(), *net.body.parameters()]]
    move_head(net, "a", OFFLOAD, opt)  # cpu -> cpu:0 copies every tensor
    assert [id(p) for p in net.heads["a"].parameters()] == [id(p) for p in params]  # the optimiser's parameters
    assert all(p.data_ptr() != ptr and torch.equal(p, value) for p, (ptr, value) in zip(params, before))
    assert state["exp_avg"].data_ptr() != moment_ptr and torch.equal(state["exp_avg"], moment)
    assert others == [p.data_ptr() for p in [*net.heads["b"].parameters(), *net.body.parameters()]]


def test_move_head_moves_to_the_given_device():
    """One way to the meta device (no way back from it) shows where every tensor went."""
    net, opt = _head_with_adam_state()
    state = opt.state[next(net.heads["a"].parameters())]
    move_head(net, "a", "meta", opt)
    assert all(p.device.type == "meta" for p in net.heads["a"].parameters())
    assert state["exp_avg"].device.type == state["exp_avg_sq"].device.type == "meta"
    assert state["step"].device.type == "cpu"  # Adam's scalar step stays on the CPU
    assert all(p.device.type == "cpu" for p in [*net.heads["b"].parameters(), *net.body.parameters()])
