"""CUDA training steps with mixed precision, for both trainers (skipped without a CUDA GPU).

CI has no GPU, so these run only where one is lent (see the README's "GPU checks"): they show
that autocast + gradient scaling train on a real device, that the scaler's state reaches the
checkpoint, and that a CUDA forward pass matches the CPU one the rest of the suite checks.
"""

from __future__ import annotations

import pytest
import torch
from _dac_helpers import tiny_config, tiny_network, write_tiny_split
from _multitask_utils import four_tasks, tiny_umedpt, trainer_for

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _finite(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v) and v.is_floating_point())


def test_multitask_amp_training_step_on_cuda():
    from ignite.engine import Events

    net = tiny_umedpt()
    losses: list[float] = []
    # 48 iterations = 12 shared steps: GradScaler starts at 2**16 and skips the steps whose
    # fp16 gradients overflow while it backs off, so a handful of steps would prove nothing
    trainer = trainer_for(net, four_tasks(n=8), batch_size=4, device="cuda", amp=True, max_iterations=48)
    before = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}  # the heads exist from here
    trainer.add_event_handler(Events.ITERATION_COMPLETED,
                              lambda e: losses.append(float(e.state.output[0]["loss"])))
    assert trainer.amp_enabled
    trainer.run()
    after = net.state_dict()
    assert all(v.device.type == "cuda" for v in after.values())
    assert _finite(after) and len(losses) == 48 and all(torch.isfinite(torch.tensor(losses)))
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k].cpu())]
    assert any(k.startswith("shared.") for k in changed) and any(k.startswith("heads.") for k in changed)
    scaler = trainer.state_dict()["grad_scaler"]
    assert 0 < scaler["scale"] <= 2.0**16 and scaler["_growth_tracker"] >= 0


@pytest.fixture
def no_tf32():
    """Full fp32 on the GPU (cuDNN convolutions default to TF32, 10-bit mantissas) for parity checks."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_multitask_cuda_forward_matches_cpu(no_tf32):
    net = tiny_umedpt().eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net.forward_features(x)
        net.cuda()
        got = net.forward_features(x.cuda()).cpu()
        with torch.autocast("cuda", dtype=torch.float16):
            half = net.forward_features(x.cuda()).float().cpu()
    assert ref.shape == got.shape and ref.abs().max() > 0
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(half, ref, atol=2e-2, rtol=2e-2)


def test_dac_amp_training_on_cuda_checkpoints_the_scaler(tmp_path):
    from medfound.dac.workflow import train

    split = write_tiny_split(tmp_path / "data")
    summary = train(tiny_config(split, str(tmp_path / "run"), device="cuda", amp=True))
    assert summary["iterations"] == 6 and summary["method"] == "dac"
    last = torch.load(summary["checkpoint"], weights_only=True)
    assert "scaler" in last and last["scaler"]["scale"] > 0
    assert _finite(last["network"])
    model = torch.load(summary["final_model"], weights_only=True)
    assert _finite(model)


def test_dac_network_cuda_forward_matches_cpu(no_tf32):
    net = tiny_network(3)().eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(x)
        got = net.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
