"""Two processes (torchrun, gloo on CPU) against one; and a run killed with SIGKILL, then resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("multitask_worker.py")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_total_batch(tmp_path):
    ddp = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), "ddp", str(tmp_path)])
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = _run([str(WORKER), "single", str(tmp_path)])
    assert single.returncode == 0, single.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    one = torch.load(tmp_path / "single.pt", weights_only=True)
    for k in one:
        assert torch.equal(r0[k], r1[k]), f"ranks differ in {k}"  # identical across ranks
        assert torch.allclose(r0[k], one[k], atol=1e-6, rtol=1e-5), f"{k}: {(r0[k] - one[k]).abs().max()}"
    init = __import__("_multitask_utils").tiny_umedpt(seed=0).state_dict()
    assert any(not torch.allclose(init[k], one[k]) for k in init)  # training did move the shared weights


@pytest.mark.slow
def test_run_killed_with_sigkill_resumes_to_the_same_weights(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    full.mkdir()
    cut.mkdir()
    assert _run([str(WORKER), "checkpointed", str(full)]).returncode == 0
    killed = _run([str(WORKER), "checkpointed", str(cut), "5"])
    assert killed.returncode == -signal.SIGKILL
    assert (cut / "ckpt" / "last.pt").is_file() and not (cut / "checkpointed.pt").exists()
    assert [p.name for p in (cut / "ckpt").iterdir()] == ["last.pt"]  # no half-written files left
    resumed = _run([str(WORKER), "checkpointed", str(cut)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(full / "checkpointed.pt", weights_only=True)
    b = torch.load(cut / "checkpointed.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
