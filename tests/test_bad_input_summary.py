"""The bad-input suite of issue 14, counted: every case of ``tests/_bad_input_cases.py`` points at a
test that exists and spells out the input it claims, expects a real medfound error class, and
every defect class of the issue has cases. Run with ``-s`` to see the table of counts.

Also here, two checks of the issue that belong to no other test module: README's ``torch.load``
calls pass ``weights_only=True`` (defect 9), and the long runs show a progress bar with the time
left by default (pretrain and DAC), and the transfer protocol counts its runs with an ETA ("Also").
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from _bad_input_cases import CASES, DEFECTS, all_cases

import medfound.errors as errors

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


@cache
def _source(path: Path) -> str:
    return path.read_text()


@cache
def _test_functions(path: Path) -> frozenset[str]:
    tree = ast.parse(_source(path))
    return frozenset(n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_"))


def _spelled_out(given: str, module: Path) -> bool:
    """``given`` in the test module or in the helpers it builds its inputs with (regex escapes removed)."""
    helpers = [module, *sorted(TESTS.glob("_*.py")), TESTS / "helpers_io.py"]
    plain = given.replace("\\", "")
    return any(given in _source(p) or plain in _source(p).replace("\\", "") for p in helpers)


CASES_ALL = all_cases()


@pytest.mark.parametrize("case", CASES_ALL, ids=[c.id for c in CASES_ALL])
def test_case_points_at_an_existing_test_that_spells_out_its_input(case):
    path, _, function = case.test.partition("::")
    module = ROOT / path
    assert module.is_file(), case
    assert function in _test_functions(module), f"{case.id}: no {function} in {path}"
    assert _spelled_out(case.given, module), f"{case.id}: {case.given!r} appears neither in {path} nor its helpers"
    assert case.defect in DEFECTS, case
    if case.error is not None:
        cls = getattr(errors, case.error, None)
        assert isinstance(cls, type) and issubclass(cls, errors.MedfoundError), f"{case.id}: {case.error}"


def test_summary_counts_every_defect_class():
    ids = [c.id for c in CASES_ALL]
    assert len(ids) == len(set(ids)), sorted(i for i, n in Counter(ids).items() if n > 1)
    per_class = Counter(c.defect for c in CASES_ALL)
    errors_per_class = Counter(c.defect for c in CASES_ALL if c.error is not None)
    width = max(len(v) for v in DEFECTS.values())
    lines = [f"bad-input suite of issue 14: {len(CASES_ALL)} cases ({len(CASES)} in the table, "
             f"{len(CASES_ALL) - len(CASES)} from the tests' parameter tables), "
             f"{sum(errors_per_class.values())} of them expecting a medfound error"]
    for key, title in DEFECTS.items():
        lines.append(f"  {key:>4}  {title:<{width}}  {per_class[key]:3d} cases ({errors_per_class[key]} errors)")
    print("\n" + "\n".join(lines))
    empty = [k for k in DEFECTS if per_class[k] == 0]
    assert not empty, f"defect classes without a case: {empty}"
    assert sum(per_class.values()) == len(CASES_ALL) and set(per_class) <= set(DEFECTS)


def test_readme_loads_weights_only():
    """Defect 9: torch 2.4-2.5 unpickle anything by default; every README example says weights_only=True."""
    readme = _source(ROOT / "README.md")
    calls = re.findall(r"torch\.load\((?:[^()]|\([^()]*\))*\)", readme)
    assert calls, "README shows no torch.load: this check would be empty"
    assert all("weights_only=True" in c for c in calls), [c for c in calls if "weights_only=True" not in c]


def test_long_runs_show_a_progress_bar_by_default(tmp_path):
    """"Also": pretrain and DAC training attach ignite's ProgressBar (tqdm: elapsed < remaining) by default."""
    import inspect

    from ignite.handlers import ProgressBar

    from medfound.dac.bundle_configs import train_bundle_config
    from medfound.dac.config import DACConfig
    from medfound.multitask.pretrain import pretrain_config

    assert "{remaining}" in inspect.signature(ProgressBar.__init__).parameters["bar_format"].default  # the ETA
    bundle = pretrain_config({"tasks": "tasks.json", "device": "cpu"}, output_dir=tmp_path / "run")
    assert bundle["progress_bar"]["_target_"] == "ignite.handlers.ProgressBar"
    assert any("@progress_bar.attach(@trainer" in line for line in bundle["initialize"])

    from _dac_helpers import write_tiny_split

    split = write_tiny_split(tmp_path / "data", per_domain=3, n_validation=1)
    dac = train_bundle_config(DACConfig.from_dict({"data": {"split": split}, "train": {"output_dir": str(tmp_path)}}))
    assert "ignite.handlers.ProgressBar" in [h["_target_"] for h in dac["train"]["handlers"]]


@pytest.mark.usefixtures("single_torch_thread")
def test_transfer_logs_each_run_with_its_progress_and_eta(tmp_path, caplog):
    """"Also": the transfer protocol (many short runs) counts its runs with the time spent and left."""
    from _multitask_utils import TINY, memory_task

    from medfound.multitask.transfer import run_transfer

    task = memory_task("target", "classification", n=8)
    with caplog.at_level("INFO", logger="medfound.multitask.transfer.protocol"):
        run_transfer(task, {"r": "random"}, tmp_path, modes=["linear"], fractions=[50, 100], repeats=2,
                     network=TINY, device="cpu")
    lines = [r.getMessage() for r in caplog.records if "repeat" in r.getMessage()]
    marks = [re.search(r"\[(\d)/(\d), (\d+:\d\d:\d\d) elapsed, ETA (\d+:\d\d:\d\d)\]$", m) for m in lines]
    assert all(marks) and [(m[1], m[2]) for m in marks] == [("1", "4"), ("2", "4"), ("3", "4"), ("4", "4")], lines
    assert marks[-1][4] == "0:00:00"  # nothing left after the last run
