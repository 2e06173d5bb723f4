"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config):
    """Give each xdist worker its share of the cores: oversubscribed torch threads make small
    convolutions many times slower on a 2-core CI machine."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


DATA_DIR = Path(__file__).parent / "data"

# tests/data holds fixtures and the scripts that regenerated them (they need torchvision and change
# sys.path when imported): not test modules, so not collected, also not for doctests.
collect_ignore = ["data"]


@pytest.fixture
def single_torch_thread():
    """One intra-op thread for a test, or for a whole module with
    ``pytestmark = pytest.mark.usefixtures("single_torch_thread")``: the tiny networks of the
    tests gain nothing from more, and on a shared 2-core machine, also without xdist, two
    spinning OpenMP threads per process make small convolutions 10-20x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of small committed fixtures (see tests/data/README.md for provenance)."""
    return DATA_DIR


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """All synthetic demo datasets at the small size, seed 0, written once per session."""
    from medfound.data.synthetic import write_demo_data

    root = tmp_path_factory.mktemp("demo")
    write_demo_data(root, size="small", seed=0)
    return root


@pytest.fixture(scope="session")
def multitask_demo(tmp_path_factory) -> Path:
    """The synthetic multi-task collection alone (small, seed 0): folder holding tasks.json."""
    from medfound.data.synthetic.multitask import write_multitask_demo

    root = tmp_path_factory.mktemp("multitask_demo")
    write_multitask_demo(root, size="small", seed=0)
    return root
