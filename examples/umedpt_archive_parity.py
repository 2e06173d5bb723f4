"""Parity of ``medfound convert-umedpt`` with the authors' own package (MedicalMultitaskModeling).

Builds UMedPT's shared blocks with the authors' package itself (default blocks as in the
published model: Swin V2 tiny encoder, squeezer with 512 channels, U-Net decoder; random
weights, norm affines randomised too), writes them with the package's own writer
(``NativeBlocks.save_to_disk``, as the published ``encoder-1.0.4.pt.zip`` was written),
converts the archive with medfound and compares the converted ``UMedPT``'s pyramid,
embedding and pixel embedding with the package's outputs on a 224x256 input. Prints the
largest absolute differences and exits non-zero if one exceeds ``--tolerance`` (1e-4).

This needs an environment that medfound's does not provide (never install these into
medfound's environment): a separate venv with medfound's requirements and

.. code-block:: bash

    pip install --no-deps medicalmultitaskmodeling==1.0.4 segmentation-models-pytorch==0.3.3 \\
        timm==0.9.2 pretrainedmodels efficientnet-pytorch huggingface_hub safetensors
    pip install "pydantic>=2.4,<3" "pydantic-settings>=2.0.3,<3" "universal-pathlib>=0.2.2,<0.3" \\
        "fsspec<2025" json5 toml deepdiff
    pip install --no-deps --target /path/to/tv torchvision==0.16.2
    MMM_LICENSE_ACCEPTED="i accept" python examples/umedpt_archive_parity.py \\
        --torchvision-dir /path/to/tv --out /tmp/umedpt_parity

torchvision is loaded from ``--torchvision-dir`` with its compiled operators stubbed (only
its pure-Python model code runs), because its wheels do not load next to a CPU-only torch
of another build; leave ``--torchvision-dir`` out where ``import torchvision`` works.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from pathlib import Path


def stub_torchvision(directory: str) -> None:
    """Import torchvision's Python code from ``directory`` without its compiled operators."""
    pkg = types.ModuleType("torchvision")
    pkg.__path__ = [str(Path(directory) / "torchvision")]
    pkg.__version__ = "stubbed"
    ext = types.ModuleType("torchvision.extension")
    ext._has_ops = lambda: False
    ext._assert_has_ops = lambda: None

    def _load_library(name: str) -> None:  # torchvision catches OSError: "no compiled library"
        raise OSError(f"torchvision's compiled {name} library is not loaded (stubbed)")

    ext._load_library = _load_library
    sys.modules["torchvision"] = pkg
    sys.modules["torchvision.extension"] = ext


def build_and_save(path: Path, seed: int):
    """The authors' default blocks with random weights, written by their NativeBlocks.save_to_disk."""
    import torch
    from mmm.data_loading.DistributedPath import DistributedPath
    from mmm.labelstudio_ext.NativeBlocks import NativeBlocks
    from mmm.mtl_modules.shared_blocks.PyramidDecoder import PyramidDecoder
    from mmm.mtl_modules.shared_blocks.PyramidEncoder import PyramidEncoder
    from mmm.mtl_modules.shared_blocks.Squeezer import Squeezer
    from mmm.neural.modules.swinformer import TorchVisionSwinformer

    torch.manual_seed(seed)
    encoder = PyramidEncoder(PyramidEncoder.Config(model=TorchVisionSwinformer.Config(variant="tiny")))
    channels = encoder.get_feature_pyramid_channels()
    squeezer = Squeezer(Squeezer.Config(out_channels=512), channels, encoder.get_strides())
    decoder = PyramidDecoder(PyramidDecoder.Config(), channels[:-1] + [squeezer.get_hidden_dim()], 32)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # norms away from their (1, 0) initialisation, so they are checked as well
        for block in (encoder, squeezer, decoder):
            for m in block.modules():
                if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and m.weight is not None:
                    m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                    m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))
    blocks = torch.nn.ModuleDict({"encoder": encoder, "squeezer": squeezer, "decoder": decoder})
    NativeBlocks.save_to_disk(DistributedPath(uri=str(path)), blocks)
    return blocks.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torchvision-dir", help="folder with a torchvision wheel's files (pip --target)")
    parser.add_argument("--out", default="umedpt_parity", help="folder for the archive and the converted files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    if args.torchvision_dir:
        stub_torchvision(args.torchvision_dir)
    os.environ.setdefault("MMM_LICENSE_ACCEPTED", "i accept")
    import torch

    torch.set_num_threads(1)
    from importlib.metadata import version

    import segmentation_models_pytorch as smp

    from medfound.convert.umedpt import convert_umedpt
    from medfound.networks import UMedPT

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    archive = out / "encoder-parity.pt.zip"
    blocks = build_and_save(archive, args.seed)
    report = convert_umedpt(archive, out / "converted")
    model = UMedPT(**report["config"]).eval()
    model.load_state_dict(torch.load(out / "converted" / "model.pt", weights_only=True), strict=True)

    x = torch.rand(2, 3, 224, 256, generator=torch.Generator().manual_seed(args.seed + 2))
    with torch.no_grad():
        pyramid = blocks["encoder"](x)  # [input, strides 4, 8, 16, 32]
        deep, embedding = blocks["squeezer"](pyramid)
        pixel = blocks["decoder"]([*pyramid[:-1], deep])
        ours_pyramid = model.encode(x)
        ours_embedding = model.forward_features(x)
        ours_pixel = model.pixel_embedding(x)
    result = {
        "versions": {
            "medicalmultitaskmodeling": version("medicalmultitaskmodeling"),
            "segmentation_models_pytorch": smp.__version__,
            "timm": version("timm"),
            "torch": torch.__version__,
        },
        "input": list(x.shape),
        "config": report["config"],
        "pixel_embedding_shape": {"package": list(pixel.shape), "medfound": list(ours_pixel.shape)},
        "max_abs_diff": {
            **{
                f"pyramid_stride{s}": float((a - b).abs().max())
                for s, a, b in zip((4, 8, 16, 32), ours_pyramid, pyramid[1:])
            },
            "embedding": float((ours_embedding - embedding.flatten(1)).abs().max()),
            "pixel_embedding": float((ours_pixel - pixel).abs().max()) if ours_pixel.shape == pixel.shape else None,
        },
    }
    print(json.dumps(result, indent=1))
    diffs = result["max_abs_diff"].values()
    ok = all(d is not None and d <= args.tolerance for d in diffs)
    print("PASS" if ok else "FAIL", f"(tolerance {args.tolerance})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
