"""Regenerate ``swin_v2_parity.pt``: torchvision Swin V2 models, their weights, inputs and outputs.

This script runs torchvision's own (pure-Python) Swin V2 code; it is a development tool,
not a test dependency. torchvision's compiled ops do not load with the CPU torch of this
project's machines, so the wheel is installed into a separate folder and imported without
its extension module::

    pip install --no-deps --target /tmp/tv torchvision==0.28.0
    python tests/data/networks/make_swin_v2_parity.py --torchvision-dir /tmp/tv

Two small models (seeded): ``main`` (embed_dim 8, depths 2-2-2-2, heads 1-2-4-8, window 8,
10 classes; inputs 2x3x64x96, where the second stage shifts along one axis only and the
last stages are smaller than a window, and 1x3x100x84, whose odd sides exercise the padding
before patch merging) and ``nonsquare`` (embed_dim 8, depths 1-1-2-1, heads 1-1-2-2, window 6x4,
10 classes, input 1x3x72x100).
The weights are perturbed away from their initialisation so that every parameter matters:
per-head logit scales (some above the clamp at log(100)), a non-zero key bias (Swin V2
ignores it), LayerNorm affine terms and the position-bias MLP. For every input the file
holds every ``features.i`` output, ``norm`` and the logits computed in float64 (the float32
weights run in double precision): the test compares medfound in float64 against them at a
tolerance far below 1e-5, which separates algorithmic from rounding differences, and
medfound in float32 at 1e-5.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

# the torchvision reference importer lives with the benchmarks (tooling, not the package)
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples" / "benchmarks"))
from torchvision_reference import import_torchvision_models  # noqa: E402

CONFIGS = {
    "main": dict(
        embed_dim=8,
        depths=[2, 2, 2, 2],
        num_heads=[1, 2, 4, 8],
        window_size=[8, 8],
        num_classes=10,
        inputs=[(2, 3, 64, 96), (1, 3, 100, 84)],
    ),
    "nonsquare": dict(
        embed_dim=8,
        depths=[1, 1, 2, 1],
        num_heads=[1, 1, 2, 2],
        window_size=[6, 4],
        num_classes=10,
        inputs=[(1, 3, 72, 100)],
    ),
}


def perturb(model: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                # around log(10), a few above the clamp at log(100) ~ 4.6
                p.copy_(2.3 + 1.5 * torch.randn(p.shape, generator=gen))
                p.view(-1)[0] = 5.0
            elif name.endswith("qkv.bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))  # key third included
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif "norm" in name and name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "cpb_mlp" in name:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))


def run(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    outs = {}
    h = x
    for i, layer in enumerate(model.features):
        h = layer(h)
        outs[f"features.{i}"] = h.clone()
    outs["norm"] = model.norm(h)
    outs["logits"] = model(x)
    return outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torchvision-dir", required=True, help="folder holding the torchvision package")
    parser.add_argument("--out", default=str(Path(__file__).with_name("swin_v2_parity.pt")))
    args = parser.parse_args()
    sw = import_torchvision_models("swin_transformer", args.torchvision_dir)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20261121)
    result = {"torch_version": str(torch.__version__), "models": {}}
    for name, cfg in CONFIGS.items():
        torch.manual_seed(len(result["models"]))
        model = sw.SwinTransformer(
            patch_size=[4, 4],
            embed_dim=cfg["embed_dim"],
            depths=cfg["depths"],
            num_heads=cfg["num_heads"],
            window_size=cfg["window_size"],
            stochastic_depth_prob=0.0,
            num_classes=cfg["num_classes"],
            block=sw.SwinTransformerBlockV2,
            downsample_layer=sw.PatchMergingV2,
        ).eval()
        perturb(model, gen)
        entry = {
            "config": {k: v for k, v in cfg.items() if k != "inputs"},
            "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
            "cases": [],
        }
        for shape in cfg["inputs"]:
            x = torch.rand(shape, generator=gen)
            with torch.no_grad():
                out64 = run(model.double(), x.double())
                model.float()
            entry["cases"].append({"input": x, "float64": out64})
        result["models"][name] = entry
    torch.save(result, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
