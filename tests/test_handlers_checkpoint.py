"""medfound.handlers.checkpoint: atomic last.pt, exact resume, clear errors for torn or foreign files."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from medfound.errors import WeightsError
from medfound.handlers import AtomicCheckpointSaver, CheckpointResume


def _trainer(net: torch.nn.Linear, opt: torch.optim.Optimizer) -> Engine:
    def step(engine, batch):
        opt.zero_grad()
        loss = (net(batch) ** 2).mean()
        loss.backward()
        opt.step()
        return float(loss)

    return Engine(step)


def _data() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(4, 3, generator=g) for _ in range(5)]


def test_resume_equals_uninterrupted_run(tmp_path):
    torch.manual_seed(0)
    ref = torch.nn.Linear(3, 2)
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    opt = torch.optim.Adam(ref.parameters(), lr=0.1)
    _trainer(ref, opt).run(_data(), max_epochs=4)

    # first run stops after 2 epochs (a killed run resumes from its last epoch end the same way)
    net = torch.nn.Linear(3, 2)
    net.load_state_dict(init)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    t1 = _trainer(net, opt)
    AtomicCheckpointSaver(tmp_path, {"trainer": t1, "network": net, "optimizer": opt},
                          final_files={"model.pt": net}).attach(t1)
    t1.run(_data(), max_epochs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "model.pt"]

    net2 = torch.nn.Linear(3, 2)  # other initial weights: the checkpoint must replace them
    opt2 = torch.optim.Adam(net2.parameters(), lr=0.1)
    t2 = _trainer(net2, opt2)
    resume = CheckpointResume(tmp_path / "last.pt", {"trainer": t2, "network": net2, "optimizer": opt2})
    resume.attach(t2)
    t2.run(_data(), max_epochs=4)
    assert resume.resumed and t2.state.iteration == 20
    for k, v in ref.state_dict().items():
        assert torch.equal(v, net2.state_dict()[k]), k


def test_interval_saves_and_stale_temporary_removed(tmp_path):
    (tmp_path / ".last.pt.0123abcd.tmp").write_bytes(b"left by a killed write")
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trainer = _trainer(net, opt)
    saver = AtomicCheckpointSaver(tmp_path, {"trainer": trainer}, save_interval=2, epoch_level=False)
    saver.attach(trainer)
    saved = []  # whether last.pt existed after each iteration (registered after the saver: sees its write)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: saved.append(saver.path.exists()))
    assert not (tmp_path / ".last.pt.0123abcd.tmp").exists()
    trainer.run(_data(), max_epochs=1)
    assert saved == [False, True, True, True, True]
    assert torch.load(saver.path, weights_only=True)["trainer"]["iteration"] == 5  # the final save


@pytest.mark.parametrize(
    "content, match",
    [(b"PK\x03\x04 torn zip", "cannot be read"), ("list", "not a checkpoint dict"), ("foreign", "lacks"),
     ("shape", "does not fit this run")],
)
def test_bad_checkpoint_is_a_clear_error(tmp_path, content, match):
    path = tmp_path / "last.pt"
    if content == "list":
        torch.save([1, 2], path)
    elif content == "foreign":
        torch.save({"something": {}}, path)
    elif content == "shape":
        torch.save({"network": torch.nn.Linear(5, 2).state_dict()}, path)
    else:
        path.write_bytes(content)
    net = torch.nn.Linear(3, 2)
    resume = CheckpointResume(path, {"network": net})
    with pytest.raises(WeightsError, match=match) as info:
        resume()
    assert str(path) in str(info.value)


def test_malicious_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran code from a checkpoint",))

    path = tmp_path / "last.pt"
    torch.save({"network": Evil()}, path)
    with pytest.raises(WeightsError, match="cannot be read"):
        CheckpointResume(path, {"network": torch.nn.Linear(3, 2)})()
