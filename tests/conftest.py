"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).parent / "data"


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
