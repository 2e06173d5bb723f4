"""Generate the ResNet parity fixture from torchvision's own model code (run once).

torchvision's compiled ops do not load with the project's CPU torch, but its model
code is pure Python. Install the wheel outside the repository and run::

    pip install --no-deps --target /tmp/tv torchvision==0.28.0
    python tests/data/networks/make_resnet_reference.py --torchvision-dir /tmp/tv

Writes ``torchvision_resnet_keys.json`` (key names and shapes of torchvision's
resnet18/34/50/101 with the 1000-class ``fc``) and ``resnet_reference.npz`` (inputs and
torchvision's outputs for random weights from :mod:`resnet_reference`). The tests need
neither torchvision nor this script.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[2] / "examples" / "benchmarks")]  # the recipe; the reference importer
from resnet_reference import checksums, reference_state_dict  # noqa: E402
from torchvision_reference import import_torchvision_models  # noqa: E402

SEEDS = {"resnet18": 18, "resnet50_os8": 50}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torchvision-dir", required=True, help="folder holding the torchvision package")
    args = parser.parse_args()
    tv = import_torchvision_models("resnet", args.torchvision_dir)
    import torchvision  # noqa: F401  (the stand-in package, for the version file)

    keys = {}
    for name in ("resnet18", "resnet34", "resnet50", "resnet101"):
        model = getattr(tv, name)()
        keys[name] = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    (HERE / "torchvision_resnet_keys.json").write_text(json.dumps(keys, separators=(",", ":")) + "\n")

    out: dict[str, np.ndarray] = {}
    gen = torch.Generator().manual_seed(0)

    # resnet18, output stride 32, eval and train mode, odd non-square input
    model = tv.resnet18()
    state = reference_state_dict(keys["resnet18"], SEEDS["resnet18"])
    model.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 45, 67, generator=gen)
    feats = _stages(model.eval(), x)
    out["resnet18_input"] = x.numpy()
    for k, v in feats.items():
        out[f"resnet18_{k}"] = v.numpy()
    with torch.no_grad():
        out["resnet18_train_logits"] = model.train()(x).numpy()
    out["resnet18_checksums"] = np.array(checksums(state))

    # resnet50 with dilation in stages 3 and 4 (output stride 8), eval mode
    model = tv.resnet50(replace_stride_with_dilation=[False, True, True])
    state = reference_state_dict(keys["resnet50"], SEEDS["resnet50_os8"])
    model.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 35, 41, generator=gen)
    feats = _stages(model.eval(), x)
    out["resnet50_os8_input"] = x.numpy()
    out["resnet50_os8_logits"] = feats["logits"].numpy()
    out["resnet50_os8_layer4_first16"] = feats["layer4"][:, :16].numpy()
    out["resnet50_os8_checksums"] = np.array(checksums(state))
    np.savez_compressed(HERE / "resnet_reference.npz", **out)
    for k, v in out.items():
        print(f"{k:32s} {v.shape}")


def _stages(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        res = {}
        for name in ("layer1", "layer2", "layer3", "layer4"):
            h = getattr(model, name)(h)
            res[name] = h
        res["logits"] = model(x)
    return res


if __name__ == "__main__":
    main()
