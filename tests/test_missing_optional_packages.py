"""An option that needs a package the environment lacks (TensorBoard logs, progress bars) is one
``medfound: error:`` line naming the option and the package, before the run starts; it used to be
a traceback from MONAI's config parser ("Failed to instantiate component ...")."""

from __future__ import annotations

import json
import sys

import pytest
from _dac_helpers import tiny_config
from _multitask_utils import TINY

from medfound.cli import main
from medfound.utils import check_module

#: what each option imports: the module hidden from the test, the package its message names
MODULES = {"tensorboard": ("torch.utils.tensorboard", "tensorboard"), "progress_bar": ("tqdm", "tqdm")}


@pytest.mark.parametrize("option", sorted(MODULES))
def test_pretrain_option_without_its_package_is_one_line(tmp_path, capsys, monkeypatch, multitask_demo, option):
    module, package = MODULES[option]
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    config = tmp_path / "pretrain.json"
    config.write_text(json.dumps({"tasks": str(multitask_demo / "tasks.json"), "roles": ["pretrain"],
                                  "device": "cpu", "network": dict(TINY), "trainer": {"max_iterations": 2},
                                  "validation": None, "tensorboard": False, "progress_bar": False, option: True}))
    assert main(["pretrain", str(config), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"medfound: error: {option} = true needs the {package} package") and len(
        err.splitlines()) == 1, err
    assert f"set {option} to false" in err
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("option", sorted(MODULES))
def test_dac_option_without_its_package_is_one_line(tmp_path, capsys, monkeypatch, option):
    from _dac_helpers import write_tiny_split

    module, package = MODULES[option]
    monkeypatch.setitem(sys.modules, module, None)
    cfg = tiny_config(write_tiny_split(tmp_path / "data", per_domain=3, n_validation=1), str(tmp_path / "run"))
    cfg["train"].update({"tensorboard": False, "progress_bar": False, option: True})
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg))
    assert main(["dac", "train", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"medfound: error: train.{option} = true needs the {package} package") and len(
        err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_check_module_passes_an_importable_module_and_names_the_option():
    check_module("json", "anything")
    with pytest.raises(ValueError, match=r"^x\.y = true needs the pkg package, .*pip install pkg"):
        check_module("medfound_no_such_module", "x.y", package="pkg")
