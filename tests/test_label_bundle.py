"""The app's seam to the DAC bundles (:mod:`medfound.label.bundle`, needs only MONAI): each bundle's
``inference.json`` gives the network, pre- and post-processing the app serves, without the
bundle's file writer, and its ``train.json`` takes the app's split and output folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import SaveImaged

from medfound.errors import DatasetLayoutError
from medfound.label.bundle import InferenceBundle, training_parser

ROOT = Path(__file__).resolve().parents[1]
CLASSES = {
    "dac_fundus_segmentation": ["background", "rim", "cup"],
    "dac_polyp_segmentation": ["background", "polyp"],
    "dac_scgm_segmentation": ["background", "grey_matter", "white_matter"],
}


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_inference_bundle_pieces(name):
    root = ROOT / "bundles" / name
    if not root.is_dir():
        pytest.skip(f"{root} not in this checkout (the DAC bundles branch)")
    bundle = InferenceBundle(root, overlays=["demo.json"])
    assert bundle.class_names == CLASSES[name]
    assert bundle.model_path == str(root.resolve() / "models" / "model.pt")
    assert bundle.spatial_size == [96, 96]  # demo.json over the full-size 256 x 256
    post = bundle.postprocessing()
    assert post and not any(isinstance(t, SaveImaged) for t in post)
    network = bundle.network().eval()
    in_channels = int(bundle.get("in_channels"))
    with torch.no_grad():
        out = network(torch.zeros(1, in_channels, 96, 96))
    assert out.shape == (1, len(CLASSES[name]), 96, 96)
    # a new instance each time (the app keeps one per task and loads weights into copies)
    assert bundle.network() is not network


def test_fundus_preprocessing_reads_a_photograph_at_the_working_size(tmp_path):
    from PIL import Image

    root = ROOT / "bundles" / "dac_fundus_segmentation"
    if not root.is_dir():
        pytest.skip(f"{root} not in this checkout (the DAC bundles branch)")
    Image.fromarray(np.full((50, 70, 3), 128, np.uint8)).save(tmp_path / "x.png")
    image = InferenceBundle(root, overlays=["demo.json"]).preprocessing()({"image": str(tmp_path / "x.png")})["image"]
    assert tuple(image.shape) == (3, 96, 96)


def test_training_parser_takes_the_app_overrides(tmp_path):
    root = ROOT / "bundles" / "dac_fundus_segmentation"
    if not root.is_dir():
        pytest.skip(f"{root} not in this checkout (the DAC bundles branch)")
    parser = training_parser(root, ["demo.json"], {"split_file": str(tmp_path / "split.json"),
                                                   "output_dir": str(tmp_path / "run"), "max_epochs": 1})
    assert parser.get_parsed_content("output_dir") == str(tmp_path / "run")
    assert parser.get_parsed_content("split_file") == str(tmp_path / "split.json")
    assert parser.get_parsed_content("max_epochs") == 1
    assert parser.get_parsed_content("iterations_per_epoch") == 50  # demo.json's


def test_missing_overlay_names_the_file(tmp_path):
    root = ROOT / "bundles" / "dac_fundus_segmentation"
    if not root.is_dir():
        pytest.skip(f"{root} not in this checkout (the DAC bundles branch)")
    with pytest.raises(DatasetLayoutError, match="no_such.json"):
        InferenceBundle(root, overlays=["no_such.json"])
