"""UMedPT weight import: archives built here the way MedicalMultitaskModeling writes them.

The published archive pickles whole module objects of ``mmm``, torchvision and
segmentation-models-pytorch. The tests register stand-in classes with the same module
paths, names and structure in ``sys.modules`` (only while the archive is written), save
them as ``torch.save`` of a whole module does (protocol 2, records under a random folder
prefix, one member per block in a stored zip) and convert the archive with those modules
gone. The stand-in squeezer and U-Net decoder carry the authors' forward logic, so the
imported blocks are checked against it; the Swin encoder is checked tensor by tensor
(its computation is checked against torchvision in test_swin_v2.py).
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import sys
import tempfile
import types
import zipfile
from enum import Enum
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medfound.cli import main as cli_main
from medfound.convert.umedpt import _encoder_state, convert_umedpt, read_umedpt_archive
from medfound.errors import UnsafePickleError, WeightsError
from medfound.networks import UMedPT
from medfound.networks.swin_v2 import (
    SwinTransformerV2,
    relative_coords_table,
    relative_position_index,
    swin_v2_b,
    swin_v2_t,
)

# -- stand-ins -------------------------------------------------------------------------------------


class _PydanticLike:
    """Pickles like a pydantic v2 model: NEWOBJ + BUILD with __dict__ and __pydantic_*__ entries."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __getstate__(self):
        return {
            "__dict__": dict(self.__dict__),
            "__pydantic_extra__": None,
            "__pydantic_fields_set__": set(self.__dict__),
            "__pydantic_private__": None,
        }

    def __setstate__(self, state):
        self.__dict__.update(state["__dict__"])


def _standins() -> dict[str, type]:
    """Classes named and nested as in the published archive (module path -> class)."""

    class Permute(nn.Module):
        def __init__(self, dims):
            super().__init__()
            self.dims = dims

    class StochasticDepth(nn.Module):
        def __init__(self, p, mode):
            super().__init__()
            self.p, self.mode = p, mode

    class MLP(nn.Sequential):
        pass

    class ShiftedWindowAttentionV2(nn.Module):
        def __init__(self, dim, window, shift, heads):
            super().__init__()
            self.window_size, self.shift_size, self.num_heads = window, shift, heads
            self.attention_dropout, self.dropout = 0.0, 0.0
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.register_buffer("relative_coords_table", relative_coords_table(tuple(window)))
            self.register_buffer("relative_position_index", relative_position_index(tuple(window)))
            self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((heads, 1, 1))))
            self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, heads, bias=False))

    class SwinTransformerBlockV2(nn.Module):
        def __init__(self, dim, heads, window, shift):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim)
            self.attn = ShiftedWindowAttentionV2(dim, window, shift, heads)
            self.stochastic_depth = StochasticDepth(0.0, "row")
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = MLP(
                nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(4 * dim, dim), nn.Dropout(0.0)
            )

    class PatchMergingV2(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.dim = dim
            self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
            self.norm = nn.LayerNorm(2 * dim)

    class SwinTransformer(nn.Module):
        def __init__(self, embed_dim, depths, heads, window):
            super().__init__()
            self.num_classes = 1000
            layers = [nn.Sequential(nn.Conv2d(3, embed_dim, 4, 4), Permute([0, 2, 3, 1]), nn.LayerNorm(embed_dim))]
            for i, (depth, h) in enumerate(zip(depths, heads)):
                dim = embed_dim * 2**i
                layers.append(
                    nn.Sequential(
                        *(
                            SwinTransformerBlockV2(dim, h, window, [0, 0] if j % 2 == 0 else [w // 2 for w in window])
                            for j in range(depth)
                        )
                    )
                )
                if i < len(depths) - 1:
                    layers.append(PatchMergingV2(dim))
            self.features = nn.Sequential(*layers)
            self.norm = nn.LayerNorm(embed_dim * 2 ** (len(depths) - 1))
            self.permute = Permute([0, 3, 1, 2])
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten(1)
            self.head = nn.Linear(embed_dim * 2 ** (len(depths) - 1), 1000)

    class ActivationFn(str, Enum):
        GeLU = "gelu"

    class GlobalPooling(str, Enum):
        AveragePooling = "average"

    class ActivationFunctionConfig(_PydanticLike):
        pass

    class GlobalPoolingConfig(_PydanticLike):
        pass

    class TorchVisionSwinformer(nn.Module):
        class Config(_PydanticLike):
            pass

        def __init__(self, embed_dim, depths, heads, window):
            super().__init__()
            self.args = TorchVisionSwinformer.Config(architecture="swinformer", pretrained=False, variant="tiny")
            self.wrapped_model = SwinTransformer(embed_dim, depths, heads, window)
            del self.wrapped_model.head  # as mmm does
            self.channels = [3] + [embed_dim * 2**i for i in range(len(depths))]
            self.strides = [1, 4, 8, 16, 32]

    class PyramidEncoder(nn.Module):
        class Config(_PydanticLike):
            pass

        def __init__(self, embed_dim, depths, heads, window):
            super().__init__()
            self.args = PyramidEncoder.Config(
                model=TorchVisionSwinformer.Config(architecture="swinformer"),
                module_name="encoder",
                pyramid_channels={},
                norm_layer="affinelayernorm",
            )
            self.next_active_task, self.task_specific_modules, self._made_mtl_compatible = "", [], True
            self.torch_device, self.training_state = "cpu", "trainable"
            self.model = TorchVisionSwinformer(embed_dim, depths, heads, window)
            self.remapper = nn.ModuleDict()

    class Squeezer(nn.Module):
        class Config(_PydanticLike):
            pass

        def __init__(self, in_channels, out_channels):
            super().__init__()
            self.args = Squeezer.Config(
                module_name="squeezer",
                out_channels=out_channels,
                norm_layer="affinelayernorm",
                activation=ActivationFunctionConfig(fn_type=ActivationFn.GeLU),
                pooling=GlobalPoolingConfig(pooling_type=GlobalPooling.AveragePooling),
                connect_latent_and_feature=False,
            )
            hidden = out_channels if out_channels > 0 else in_channels
            self.enc_out_channels, self.enc_strides = [3, in_channels], [1, 32]
            self.norm = nn.GroupNorm(1, hidden)  # BatchNorm2d converted by make_mtl_compatible
            self.conv = nn.Conv2d(in_channels, hidden, 1) if out_channels != -1 else nn.Identity()
            self.activation = nn.GELU()
            self.pool = nn.AdaptiveAvgPool2d((1, 1))

        def forward(self, pyramid):  # the authors' order
            pooled = self.activation(self.norm(self.conv(self.pool(pyramid[-1]))))
            return self.activation(self.norm(self.conv(pyramid[-1]))), pooled

    class Attention(nn.Module):
        def __init__(self, name, **params):
            super().__init__()
            self.attention = nn.Identity()

        def forward(self, x):
            return self.attention(x)

    class Conv2dReLU(nn.Sequential):
        def __init__(self, cin, cout):
            super().__init__(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(1, cout), nn.ReLU(inplace=True)
            )

    class UnetDecoderBlock(nn.Module):
        def __init__(self, cin, skip, cout):
            super().__init__()
            self.interpolation_mode = "nearest"
            self.conv1, self.attention1 = Conv2dReLU(cin + skip, cout), Attention(None, in_channels=cin + skip)
            self.conv2, self.attention2 = Conv2dReLU(cout, cout), Attention(None, in_channels=cout)

        def forward(self, x, height, width, skip=None):  # segmentation-models-pytorch 0.5
            x = F.interpolate(x, size=(height, width), mode=self.interpolation_mode)
            if skip is not None:
                x = self.attention1(torch.cat([x, skip], dim=1))
            return self.attention2(self.conv2(self.conv1(x)))

    class UnetDecoder(nn.Module):
        def __init__(self, encoder_channels, decoder_channels):
            super().__init__()
            enc = list(encoder_channels[1:])[::-1]
            ins, skips = [enc[0]] + list(decoder_channels[:-1]), enc[1:] + [0]
            self.center = nn.Identity()
            self.blocks = nn.ModuleList(UnetDecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder_channels))

        def forward(self, features):
            shapes = [f.shape[2:] for f in features][::-1]
            feats = features[1:][::-1]
            x = self.center(feats[0])
            for i, block in enumerate(self.blocks):
                x = block(x, *shapes[i + 1], skip=feats[1:][i] if i < len(feats) - 1 else None)
            return x

    class SMPUnetDecoder(nn.Module):
        class Config(_PydanticLike):
            pass

        def __init__(self, enc_out_channels, pixel=16, hidden=96):
            super().__init__()
            self.args = SMPUnetDecoder.Config(
                architecture="unetdecoder",
                pixel_embedding_dim=pixel,
                hidden_dim=hidden,
                head_kernel_size=3,
                activation=ActivationFunctionConfig(fn_type=ActivationFn.GeLU),
            )
            self.channels = [min(2**i * pixel, hidden) for i in reversed(range(len(enc_out_channels) - 1))]
            self.final_conv = nn.Conv2d(min(pixel, hidden), pixel, 3, padding=1)
            self.norm = nn.GroupNorm(1, pixel)
            self.activation = nn.GELU()
            self.decoder = UnetDecoder(enc_out_channels, self.channels)

        def forward(self, features):
            return self.activation(self.norm(self.final_conv(self.decoder(features))))

    class PyramidDecoder(nn.Module):
        class Config(_PydanticLike):
            pass

        def __init__(self, enc_out_channels, pixel, hidden):
            super().__init__()
            self.args = PyramidDecoder.Config(
                module_name="decoder", model=SMPUnetDecoder.Config(architecture="unetdecoder")
            )
            self.enc_out_channels, self.encoder_output_stride = enc_out_channels, 32
            self.model = SMPUnetDecoder(enc_out_channels, pixel, hidden)

        def forward(self, pyramid):
            return self.model(pyramid)

    tv, smp, blocks = (
        "torchvision.models.swin_transformer",
        "segmentation_models_pytorch",
        "mmm.mtl_modules.shared_blocks",
    )
    return {
        f"{tv}.SwinTransformer": SwinTransformer,
        f"{tv}.SwinTransformerBlockV2": SwinTransformerBlockV2,
        f"{tv}.ShiftedWindowAttentionV2": ShiftedWindowAttentionV2,
        f"{tv}.PatchMergingV2": PatchMergingV2,
        "torchvision.ops.misc.MLP": MLP,
        "torchvision.ops.misc.Permute": Permute,
        "torchvision.ops.stochastic_depth.StochasticDepth": StochasticDepth,
        "mmm.neural.activations.ActivationFn": ActivationFn,
        "mmm.neural.activations.ActivationFunctionConfig": ActivationFunctionConfig,
        "mmm.neural.pooling.GlobalPooling": GlobalPooling,
        "mmm.neural.pooling.GlobalPoolingConfig": GlobalPoolingConfig,
        "mmm.neural.modules.swinformer.TorchVisionSwinformer": TorchVisionSwinformer,
        f"{blocks}.PyramidEncoder.PyramidEncoder": PyramidEncoder,
        f"{blocks}.Squeezer.Squeezer": Squeezer,
        f"{blocks}.PyramidDecoder.PyramidDecoder": PyramidDecoder,
        "mmm.neural.modules.smp_modules.SMPUnetDecoder": SMPUnetDecoder,
        f"{smp}.decoders.unet.decoder.UnetDecoder": UnetDecoder,
        f"{smp}.decoders.unet.decoder.UnetDecoderBlock": UnetDecoderBlock,
        f"{smp}.base.modules.Conv2dReLU": Conv2dReLU,
        f"{smp}.base.modules.Attention": Attention,
    }


@contextlib.contextmanager
def _registered(classes: dict[str, type]):
    """Put the stand-ins into fake modules in sys.modules, and take them out again."""
    added = []
    for path, cls in classes.items():
        module_name, name = path.rsplit(".", 1)
        parts = module_name.split(".")
        for i in range(1, len(parts) + 1):
            mod_name = ".".join(parts[:i])
            if mod_name not in sys.modules:
                sys.modules[mod_name] = types.ModuleType(mod_name)
                added.append(mod_name)
        setattr(sys.modules[module_name], name, cls)
        cls.__module__, cls.__qualname__ = module_name, name
        if isinstance(getattr(cls, "Config", None), type) and cls.Config.__qualname__.endswith(".Config"):
            cls.Config.__module__, cls.Config.__qualname__ = module_name, f"{name}.Config"
    try:
        yield
    finally:
        for mod_name in added:
            del sys.modules[mod_name]


def _write_archive(path: Path, members: dict[str, object]) -> None:
    """As MedicalMultitaskModeling's NativeBlocks.save_to_disk: torch.save to a temp file, stored zip."""
    with zipfile.ZipFile(path, "w") as archive:
        for key, obj in members.items():
            with tempfile.NamedTemporaryFile() as tmp:  # its random name becomes the record prefix
                torch.save(obj, tmp.name)
                archive.write(tmp.name, f"{key}.pt")


def _randomise(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 1.0 if name.endswith("weight") and p.ndim == 1 else 0.0  # norm weights around 1
            p.copy_(scale + 0.1 * torch.randn(p.shape, generator=gen))


ENC = dict(embed_dim=8, depths=(2, 1, 2, 1), heads=(1, 2, 2, 4), window=[4, 4])


def _build_blocks(squeezer_out: int = 24, with_decoder: bool = True) -> dict[str, nn.Module]:
    classes = _standins()
    torch.manual_seed(0)
    encoder = classes["mmm.mtl_modules.shared_blocks.PyramidEncoder.PyramidEncoder"](**ENC)
    deepest = ENC["embed_dim"] * 8
    squeezer = classes["mmm.mtl_modules.shared_blocks.Squeezer.Squeezer"](deepest, squeezer_out)
    blocks = {"encoder": encoder, "squeezer": squeezer}
    if with_decoder:
        hidden = squeezer_out if squeezer_out > 0 else deepest
        blocks["decoder"] = classes["mmm.mtl_modules.shared_blocks.PyramidDecoder.PyramidDecoder"](
            [3, 8, 16, 32, hidden], pixel=4, hidden=12
        )
    for i, block in enumerate(blocks.values()):
        _randomise(block, i)
    return blocks, classes


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """An archive with encoder, squeezer, decoder and a task member; plus the stand-in blocks."""
    blocks, classes = _build_blocks()
    path = tmp_path_factory.mktemp("umedpt") / "umedpt-test.pt.zip"
    with _registered(classes):
        _write_archive(path, {**blocks, "some_task": nn.Linear(3, 2)})
    return path, blocks


def _reference_pyramid(blocks, x):
    """The authors' pyramid: torchvision Swin stages (no final norm) of the stand-in's own weights."""
    swin = SwinTransformerV2(embed_dim=8, depths=ENC["depths"], num_heads=ENC["heads"], window_size=4).eval()
    swin.load_state_dict(blocks["encoder"].model.wrapped_model.state_dict(), strict=True)
    return swin(x)


# -- tests -----------------------------------------------------------------------------------------


def test_archive_layout_is_what_mmm_writes(archive):
    path, _ = archive
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["decoder.pt", "encoder.pt", "some_task.pt", "squeezer.pt"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in z.infolist())
        inner = zipfile.ZipFile(io.BytesIO(z.read("encoder.pt")))
        prefix = inner.namelist()[0].split("/")[0]
        assert prefix.startswith("tmp") and len(prefix) > 3 and f"{prefix}/data.pkl" in inner.namelist()
        pickled = inner.read(f"{prefix}/data.pkl")
    assert pickled[:2] == b"\x80\x02"  # protocol 2
    for name in (
        b"mmm.mtl_modules.shared_blocks.PyramidEncoder",
        b"torchvision.models.swin_transformer",
        b"SwinTransformerBlockV2",
        b"getattr",
        b"Config",
    ):
        assert name in pickled


def test_convert_round_trip(archive, tmp_path):
    path, blocks = archive
    out = tmp_path / "out"
    report = convert_umedpt(path, out)
    assert not any(
        m == "mmm" or m.startswith(("mmm.", "torchvision", "segmentation_models_pytorch")) for m in sys.modules
    )
    assert report["config"] == {
        "window_size": 4,
        "embed_dim": 8,
        "depths": [2, 1, 2, 1],
        "num_heads": [1, 2, 2, 4],
        "squeezer_channels": 24,
        "pixel_embedding_channels": 4,
        "seg_hidden_channels": 12,
        "pixel_embedding_stride": 1,
    }
    assert report["imported"] == ["encoder", "seg_decoder", "squeezer"]
    assert report["initialised"] == ["det_decoder"] and report["skipped_members"] == ["some_task.pt"]
    assert json.loads((out / "umedpt_config.json").read_text()) == report

    # every tensor arrives bit for bit
    encoder = torch.load(out / "encoder.pt", weights_only=True)
    source = blocks["encoder"].model.wrapped_model.state_dict()
    assert list(encoder) == list(source) and len(encoder) == len(
        SwinTransformerV2(embed_dim=8, depths=ENC["depths"], num_heads=ENC["heads"], window_size=4).state_dict()
    )
    assert all(torch.equal(encoder[k], v) for k, v in source.items())
    squeezer = torch.load(out / "squeezer.pt", weights_only=True)
    assert all(torch.equal(squeezer[k], v) for k, v in blocks["squeezer"].state_dict().items())

    # the bundle-ready model reproduces the authors' pyramid, embedding and pixel embedding
    model = UMedPT(**report["config"]).eval()
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True), strict=True)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        pyramid = _reference_pyramid(blocks, x)
        for a, b in zip(model.shared["encoder"](x), pyramid):
            assert torch.equal(a, b)
        deep, embedding = blocks["squeezer"].eval()(pyramid)
        assert torch.allclose(model.forward_features(x), embedding.flatten(1), atol=1e-6)
        pixel = blocks["decoder"].eval()([x, *pyramid[:3], deep])
        assert pixel.shape == (2, 4, 64, 96)
        assert torch.allclose(model.pixel_embedding(x), pixel, atol=1e-5)
    model2 = UMedPT(**report["config"], encoder_weights=str(out / "encoder.pt"))
    assert all(torch.equal(a, b) for a, b in zip(model2.shared["encoder"].state_dict().values(), encoder.values()))


def test_archive_without_decoder_and_squeezer_conv(tmp_path):
    blocks, classes = _build_blocks(squeezer_out=-1, with_decoder=False)
    path = tmp_path / "enc.pt.zip"
    with _registered(classes):
        _write_archive(path, blocks)
    report = convert_umedpt(path, tmp_path / "out")
    assert report["config"]["squeezer_channels"] is None
    assert report["initialised"] == ["det_decoder", "seg_decoder"]
    model = UMedPT(**report["config"]).eval()
    model.load_state_dict(torch.load(tmp_path / "out" / "model.pt", weights_only=True))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        _, embedding = blocks["squeezer"].eval()(_reference_pyramid(blocks, x))
        assert torch.allclose(model.forward_features(x), embedding.flatten(1), atol=1e-6)


def test_malicious_members_are_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    blocks, classes = _build_blocks(with_decoder=False)
    squeezer_cls = classes["mmm.mtl_modules.shared_blocks.Squeezer.Squeezer"]

    class Sneaky:  # getattr is allowed for nested Config classes only
        def __reduce__(self):
            return (getattr, (squeezer_cls, "mro"))

    for evil, expected in (
        (Evil(), "squeezer.pt: refusing global posix.system"),
        (Sneaky(), "refusing global getattr(mmm.mtl_modules.shared_blocks.Squeezer.Squeezer, 'mro')"),
        (collections.Counter(a=1), "refusing global collections.Counter"),
    ):
        path = tmp_path / "evil.pt.zip"
        with _registered(classes):
            _write_archive(path, {"encoder": blocks["encoder"], "squeezer": evil})
        with pytest.raises(UnsafePickleError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            read_umedpt_archive(path)
        assert not marker.exists()
    assert cli_main(["convert-umedpt", str(path), str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out" / "model.pt").exists()


def test_bad_archives(tmp_path):
    bad = tmp_path / "bad.pt.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="bad.pt.zip"):
        convert_umedpt(bad, tmp_path / "out")
    with zipfile.ZipFile(tmp_path / "empty.pt.zip", "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(WeightsError, match="no encoder.pt"):
        convert_umedpt(tmp_path / "empty.pt.zip", tmp_path / "out")
    with zipfile.ZipFile(tmp_path / "junk.pt.zip", "w") as z:
        z.writestr("encoder.pt", b"junk")
    with pytest.raises(WeightsError, match="encoder.pt: not a torch checkpoint"):
        convert_umedpt(tmp_path / "junk.pt.zip", tmp_path / "out")
    # a plain state dict is not a pickled module tree
    with zipfile.ZipFile(tmp_path / "sd.pt.zip", "w") as z:
        torch.save({"w": torch.ones(2)}, tmp_path / "sd.pt")
        z.write(tmp_path / "sd.pt", "encoder.pt")
    with pytest.raises(WeightsError, match="not a pickled module"):
        convert_umedpt(tmp_path / "sd.pt.zip", tmp_path / "out")


def test_batchnorm_squeezer_is_refused(tmp_path):
    blocks, classes = _build_blocks(with_decoder=False)
    blocks["squeezer"].norm = nn.BatchNorm2d(24)  # saved with norm_layer "keepnorm"
    path = tmp_path / "bn.pt.zip"
    with _registered(classes):
        _write_archive(path, blocks)
    with pytest.raises(WeightsError, match="BatchNorm"):
        convert_umedpt(path, tmp_path / "out")


@pytest.mark.parametrize("build, variant", [(swin_v2_t, "tiny"), (swin_v2_b, "base")])
def test_variant_inference(build, variant):
    with torch.device("meta"):
        state = build().state_dict()
    classes = {
        "": "mmm.mtl_modules.shared_blocks.PyramidEncoder.PyramidEncoder",
        "model": "mmm.neural.modules.swinformer.TorchVisionSwinformer",
        "model.wrapped_model": "torchvision.models.swin_transformer.SwinTransformer",
        "model.wrapped_model.features.1.0": "torchvision.models.swin_transformer.SwinTransformerBlockV2",
    }
    tv, config = _encoder_state({f"model.wrapped_model.{k}": v for k, v in state.items()}, classes, "encoder.pt")
    assert config == {"window_size": 8, "variant": variant} and len(tv) == len(state)


def test_cli_convert(archive, tmp_path, capsys):
    path, _ = archive
    assert cli_main(["convert-umedpt", str(path), str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "imported encoder, seg_decoder, squeezer" in printed and "some_task.pt" in printed
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "encoder.pt",
        "squeezer.pt",
        "seg_decoder.pt",
        "model.pt",
        "umedpt_config.json",
    }
