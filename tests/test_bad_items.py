"""Bad items are checked one by one before batching (skipped and listed, or named), and a
non-finite loss stops a run with an error naming its batch, keeping the last good checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from _helpers import cause_chain
from ignite.engine import Engine
from monai.data import MetaTensor, list_data_collate
from PIL import Image

from medfound.dac.data import PreparedDataset, prepare_items, preprocessing
from medfound.errors import (
    ImageReadError,
    InvalidImageError,
    LabelMismatchError,
    NonFiniteImageError,
    NonFiniteLossError,
)
from medfound.handlers import AtomicCheckpointSaver, StopOnNonFiniteLoss
from medfound.utils import load_torch_file

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture()
def bad_folder(tmp_path) -> Path:
    """A good PNG pair and one bad item of each kind the issue lists (NaN, 3D, wrong-size mask, TIFF)."""
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "img.png")
    Image.fromarray((rng.random((32, 32)) * 3).astype(np.uint8)).save(tmp_path / "lab.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "lab16.png")
    nan = rng.random((32, 32)).astype(np.float32)
    nan[3, 4] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan)
    inf = rng.random((32, 32)).astype(np.float32)
    inf[0, 0] = np.inf
    np.save(tmp_path / "inf.npy", inf)
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 5), np.float32), np.eye(4)), tmp_path / "vol.nii.gz")
    tifffile.imwrite(tmp_path / "rgb.tif", (rng.random((32, 32, 3)) * 255).astype(np.uint8), photometric="rgb")
    return tmp_path


def _items(folder: Path) -> list[dict]:
    f = lambda name: str(folder / name)  # noqa: E731
    return [
        {"image": f("nan.tif"), "label": f("lab.png")},
        {"image": f("inf.npy"), "label": f("lab.png")},
        {"image": f("img.png"), "label": f("lab16.png")},
        {"image": f("vol.nii.gz"), "label": f("lab.png")},
        {"image": f("rgb.tif"), "label": f("lab.png")},
        {"image": f("img.png"), "label": f("lab.png")},
    ]


def test_dac_items_are_checked_one_by_one_and_skipped_with_their_file(bad_folder):
    logged: list[str] = []
    good, skipped = prepare_items(_items(bad_folder), preprocessing(3, [32, 32]), part="labeled", log=logged.append)
    errors = [s["error"].split(":")[0] for s in skipped]
    assert errors == ["NonFiniteImageError", "NonFiniteImageError", "LabelMismatchError", "InvalidImageError"]
    assert [Path(s["image"]).name for s in skipped] == ["nan.tif", "inf.npy", "img.png", "vol.nii.gz"]
    assert "nan.tif: 1 NaN" in skipped[0]["error"] and "lab16.png" in skipped[2]["error"]
    assert len(logged) == 4 and all("skipping labeled item" in m for m in logged)
    # a TIFF among PNGs collates with them (the same channels, size and metadata layout)
    batch = list_data_collate(good)
    assert batch["image"].shape == (2, 3, 32, 32) and batch["label"].shape == (2, 1, 32, 32)
    assert [Path(n).name for n in batch["image"].meta["filename_or_obj"]] == ["rgb.tif", "img.png"]
    assert torch.isfinite(batch["image"]).all()


@pytest.mark.parametrize(
    ("index", "error", "name"),
    [(0, NonFiniteImageError, "nan.tif"), (2, LabelMismatchError, "lab16.png"), (3, InvalidImageError, "vol.nii.gz")],
)
def test_dac_raise_mode_names_the_file(bad_folder, index, error, name):
    with pytest.raises(error, match=name):
        PreparedDataset([_items(bad_folder)[index]], preprocessing(3, [32, 32]), on_error="raise")


def test_dac_raise_mode_names_the_item_when_the_error_does_not(bad_folder):
    def explode(item):
        raise KeyError("something deep")

    with pytest.raises(ImageReadError, match=r"labeled item .*img\.png: KeyError"):
        prepare_items([{"image": str(bad_folder / "img.png")}], explode, part="labeled", on_error="raise")


def test_mask_of_another_size_is_a_label_mismatch_not_a_resize(bad_folder):
    det = preprocessing(3, [64, 64])  # both would be resized to 64 x 64 without the check
    with pytest.raises(Exception) as info:
        det({"image": str(bad_folder / "img.png"), "label": str(bad_folder / "lab16.png")})
    cause = cause_chain(info.value)[-1]
    assert isinstance(cause, LabelMismatchError) and "(16, 16)" in str(cause) and "lab16.png" in str(cause)


def _engine_with_nan_at(iteration: int, net: torch.nn.Linear) -> Engine:
    def step(engine, batch):
        net.weight.data.add_(1.0)
        loss = float("nan") if engine.state.iteration == iteration else 1.0
        return {"loss": loss, "task": "seg_a"}

    return Engine(step)


def test_non_finite_loss_stops_naming_task_and_items_and_keeps_the_last_good_checkpoint(tmp_path):
    net = torch.nn.Linear(1, 1, bias=False)
    net.weight.data.zero_()
    engine = _engine_with_nan_at(3, net)
    StopOnNonFiniteLoss(checkpoint=tmp_path / "last.pt").attach(engine)  # before the saver
    AtomicCheckpointSaver(tmp_path, {"network": net, "trainer": engine}, save_interval=1).attach(engine)
    batches = [{"image": MetaTensor(torch.zeros(2, 1), meta={"filename_or_obj": [f"b{i}_0.png", f"b{i}_1.png"]})}
               for i in range(5)]
    with pytest.raises(NonFiniteLossError) as info:
        engine.run(batches, max_epochs=1)
    msg = str(info.value)
    assert "iteration 3" in msg and "'seg_a'" in msg and "b2_0.png, b2_1.png" in msg and "last.pt" in msg
    saved = load_torch_file(tmp_path / "last.pt")
    assert float(saved["network"]["weight"]) == 2.0  # iteration 2's state, not the NaN step's
    assert saved["trainer"]["iteration"] == 2
    assert not (tmp_path / "model.pt").exists() and not list(tmp_path.glob("*.tmp*"))


def test_ignite_terminate_on_nan_would_have_overwritten_it(tmp_path):
    """Why the handler raises: with ignite's TerminateOnNan the NaN step's state is saved."""
    from ignite.handlers import TerminateOnNan

    net = torch.nn.Linear(1, 1, bias=False)
    net.weight.data.zero_()
    engine = _engine_with_nan_at(3, net)
    engine.add_event_handler(
        __import__("ignite").engine.Events.ITERATION_COMPLETED, TerminateOnNan(lambda out: out["loss"]))
    AtomicCheckpointSaver(tmp_path, {"network": net}, save_interval=1).attach(engine)
    engine.run([0] * 5, max_epochs=1)  # no error
    assert float(load_torch_file(tmp_path / "last.pt")["network"]["weight"]) == 3.0


def test_dac_bundle_attaches_the_finite_loss_stop_first(tmp_path):
    from _dac_helpers import tiny_config, write_tiny_split

    from medfound.dac.bundle_configs import train_bundle_config
    from medfound.dac.config import DACConfig

    cfg = DACConfig.from_dict(tiny_config(write_tiny_split(tmp_path, per_domain=2, n_validation=1), str(tmp_path)))
    handlers = train_bundle_config(cfg)["train"]["handlers"]  # a list, in the order they are attached
    assert handlers[0]["_target_"] == "medfound.handlers.StopOnNonFiniteLoss"
    assert [h["_target_"] for h in handlers].count("medfound.handlers.StopOnNonFiniteLoss") == 1
    assert json.dumps(handlers)  # plain data
