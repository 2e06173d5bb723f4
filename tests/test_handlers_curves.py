"""medfound.handlers.curves: the curve PNG, its history across a resume, the scalar output transform."""

from __future__ import annotations

import doctest

import torch
from ignite.engine import Engine, Events
from PIL import Image

import medfound.handlers.curves as curves_mod
from medfound.handlers import CurvePlot, scalar_items


def test_docstring_examples():
    result = doctest.testmod(curves_mod)
    assert result.attempted > 0 and result.failed == 0


def _trainer_and_evaluator():
    evaluator = Engine(lambda engine, batch: None)

    @evaluator.on(Events.EPOCH_COMPLETED)
    def score(engine):
        engine.state.metrics = {"val_dice": 0.5, "details": [1, 2]}

    trainer = Engine(lambda engine, batch: {"loss": float(engine.state.iteration), "counts": {"a": 1}})
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run([0]))  # as ValidationHandler
    return trainer, evaluator


def test_curves_record_outputs_and_validation_and_resume_their_history(tmp_path):
    trainer, evaluator = _trainer_and_evaluator()
    plot = CurvePlot(tmp_path / "curves.png", evaluator=evaluator, iteration_interval=2)
    plot.attach(trainer)
    trainer.run(range(4), max_epochs=2)
    assert plot.series == {"loss": [(2, 2.0), (4, 4.0), (6, 6.0), (8, 8.0)]}
    assert [i for i, _ in plot.metrics["val_dice"]] == [4, 8]  # validation placed at the trainer's iteration
    width, height = Image.open(tmp_path / "curves.png").size
    assert width > 300 and height > 200

    # a resumed run (its state from the checkpoint) continues the same curves
    trainer2, evaluator2 = _trainer_and_evaluator()
    again = CurvePlot(tmp_path / "again.png", evaluator=evaluator2, iteration_interval=2)
    again.load_state_dict(torch.load(_saved(plot.state_dict(), tmp_path), weights_only=True))
    again.attach(trainer2)
    trainer2.load_state_dict({"iteration": 8, "epoch_length": 4, "max_epochs": 2})  # as CheckpointResume does
    trainer2.run(range(4), max_epochs=3)
    assert [i for i, _ in again.series["loss"]] == [2, 4, 6, 8, 10, 12]
    assert [i for i, _ in again.metrics["val_dice"]] == [4, 8, 12]


def _saved(state, folder):
    path = folder / "state.pt"
    torch.save(state, path)  # the checkpoint's format: weights-only loadable
    return path


def test_scalar_items_keeps_numbers_only():
    assert scalar_items({"loss": 1, "t": torch.tensor(0.5), "v": torch.ones(2), "ok": True, "s": "x"}) == {
        "loss": 1.0, "t": 0.5}
    assert scalar_items(0.25) == {"loss": 0.25} and scalar_items(None) == {}
