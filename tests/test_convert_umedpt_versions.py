"""``convert-umedpt`` on archives of every published MedicalMultitaskModeling version.

The published ``encoder-1.0.4.pt.zip`` was written by mmm 1.0.4 with
segmentation-models-pytorch 0.3.x: its decoder blocks are
``segmentation_models_pytorch.decoders.unet.decoder.DecoderBlock`` and double the size in
every block, so the 16-channel pixel embedding comes out at stride 2. Later versions (smp
0.5) call the block ``UnetDecoderBlock`` and end at full size. The stand-ins here have the
same class paths, structure and forward logic as each version (see
``test_umedpt_import.py`` for the pickling machinery; ``examples/umedpt_archive_parity.py``
checks the real package 1.0.4 in its own environment).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_umedpt_import import ENC, _build_blocks, _reference_pyramid, _registered, _write_archive
from torch import nn

from medfound.convert.umedpt import UNET_DECODER_GEOMETRY, convert_umedpt
from medfound.errors import ConfigError, UnsafePickleError, WeightsError
from medfound.networks import UMedPT
from medfound.networks.umedpt import UNetDecoder

SMP_DECODER = "segmentation_models_pytorch.decoders.unet.decoder"


def _smp03_classes(conv2d_relu: type, attention: type) -> dict[str, type]:
    """segmentation-models-pytorch 0.3.x's UnetDecoder and DecoderBlock (forward as in 0.3.3)."""

    class DecoderBlock(nn.Module):
        def __init__(self, cin, skip, cout):
            super().__init__()
            self.conv1, self.attention1 = conv2d_relu(cin + skip, cout), attention(None, in_channels=cin + skip)
            self.conv2, self.attention2 = conv2d_relu(cout, cout), attention(None, in_channels=cout)

        def forward(self, x, skip=None):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if skip is not None:
                x = self.attention1(torch.cat([x, skip], dim=1))
            return self.attention2(self.conv2(self.conv1(x)))

    class UnetDecoder(nn.Module):
        def __init__(self, encoder_channels, decoder_channels):
            super().__init__()
            enc = list(encoder_channels[1:])[::-1]  # the first skip has the input's size: dropped
            ins, skips = [enc[0]] + list(decoder_channels[:-1]), enc[1:] + [0]
            self.center = nn.Identity()
            self.blocks = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder_channels))

        def forward(self, features):
            feats = features[1:][::-1]
            x, skips = self.center(feats[0]), feats[1:]
            for i, block in enumerate(self.blocks):
                x = block(x, skips[i] if i < len(skips) else None)
            return x

    return {f"{SMP_DECODER}.UnetDecoder": UnetDecoder, f"{SMP_DECODER}.DecoderBlock": DecoderBlock}


def _archive(path, version: str, block_class: str | None = None):
    """An archive as mmm ``version`` ('1.0.4' or 'current') writes it; the stand-in blocks."""
    blocks, classes = _build_blocks()
    if version == "1.0.4":
        old = _smp03_classes(
            classes["segmentation_models_pytorch.base.modules.Conv2dReLU"],
            classes["segmentation_models_pytorch.base.modules.Attention"],
        )
        del classes[f"{SMP_DECODER}.UnetDecoderBlock"]
        classes.update(old)
        smp_decoder = blocks["decoder"].model
        new = old[f"{SMP_DECODER}.UnetDecoder"]([3, 8, 16, 32, 24], smp_decoder.channels)
        new.load_state_dict(smp_decoder.decoder.state_dict())  # same parameters, 0.3's classes and forward
        smp_decoder.decoder = new
    if block_class is not None:  # a block class no published version has
        cls = classes.pop(f"{SMP_DECODER}.UnetDecoderBlock")
        classes[block_class] = cls
    with _registered(classes):
        _write_archive(path, blocks)
    return blocks


@pytest.mark.parametrize(("version", "stride"), [("1.0.4", 2), ("current", 1)])
def test_each_version_converts_with_its_decoder_geometry(tmp_path, version, stride):
    path = tmp_path / f"encoder-{version}.pt.zip"
    blocks = _archive(path, version)
    report = convert_umedpt(path, tmp_path / "out")
    assert report["config"]["pixel_embedding_stride"] == stride
    assert report["imported"] == ["encoder", "seg_decoder", "squeezer"]
    model = UMedPT(**report["config"]).eval()
    model.load_state_dict(torch.load(tmp_path / "out" / "model.pt", weights_only=True), strict=True)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        pyramid = _reference_pyramid(blocks, x)
        deep, embedding = blocks["squeezer"].eval()(pyramid)
        reference = blocks["decoder"].eval()([x, *pyramid[:3], deep])  # the version's own forward
        ours = model.pixel_embedding(x)
        assert reference.shape == ours.shape == (2, 4, 64 // stride, 96 // stride)
        assert torch.allclose(ours, reference, atol=1e-5)
        assert torch.allclose(model.forward_features(x), embedding.flatten(1), atol=1e-6)
        assert all(torch.equal(a, b) for a, b in zip(model.encode(x), pyramid))
        # a segmentation head still answers at the input's size, whatever the geometry
        model.add_task("organs", "segmentation", 3)
        assert model(torch.rand(1, 3, 50, 70), task="organs").shape == (1, 3, 50, 70)


def test_geometry_table_names_both_published_blocks():
    assert UNET_DECODER_GEOMETRY[f"{SMP_DECODER}.DecoderBlock"]["pixel_embedding_stride"] == 2
    assert UNET_DECODER_GEOMETRY[f"{SMP_DECODER}.UnetDecoderBlock"]["pixel_embedding_stride"] == 1


def test_unknown_decoder_block_class_names_member_and_class(tmp_path):
    path = tmp_path / "encoder-future.pt.zip"
    _archive(path, "current", block_class=f"{SMP_DECODER}.UnetDecoderBlockV2")
    member = r"encoder-future\.pt\.zip:decoder\.pt"
    with pytest.raises(UnsafePickleError, match=rf"{member}: refusing global {SMP_DECODER}\.UnetDecoderBlockV2"):
        convert_umedpt(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_mixed_decoder_blocks_are_refused(tmp_path):
    """Blocks of two versions in one decoder: no geometry fits, the member is named."""
    path = tmp_path / "mixed.pt.zip"
    blocks, classes = _build_blocks()
    old = _smp03_classes(
        classes["segmentation_models_pytorch.base.modules.Conv2dReLU"],
        classes["segmentation_models_pytorch.base.modules.Attention"],
    )
    classes[f"{SMP_DECODER}.DecoderBlock"] = old[f"{SMP_DECODER}.DecoderBlock"]
    unet = blocks["decoder"].model.decoder
    unet.blocks[0] = old[f"{SMP_DECODER}.DecoderBlock"](24, 32, 12)
    with _registered(classes):
        _write_archive(path, blocks)
    with pytest.raises(WeightsError, match=r"mixed\.pt\.zip:decoder\.pt: U-Net decoder blocks of class .*DecoderBlock"):
        convert_umedpt(path, tmp_path / "out")


def test_stride2_decoder_geometry_in_the_network():
    torch.manual_seed(0)
    dec = UNetDecoder([8, 16, 32, 24], 4, 12, output_stride=2)
    feats = [torch.rand(1, c, 64 // s, 96 // s) for c, s in zip((8, 16, 32, 24), (4, 8, 16, 32))]
    assert dec(feats, (64, 96)).shape == (1, 4, 32, 48)
    full = UNetDecoder([8, 16, 32, 24], 4, 12)
    full.load_state_dict(dec.state_dict())  # same parameters: only the last upsampling differs
    assert full(feats, (64, 96)).shape == (1, 4, 64, 96)
    with pytest.raises(ConfigError, match="output_stride"):
        UNetDecoder([8, 16, 32, 24], 4, 12, output_stride=4)
    model = UMedPT(
        embed_dim=8,
        depths=ENC["depths"],
        num_heads=ENC["heads"],
        window_size=4,
        squeezer_channels=24,
        pixel_embedding_channels=4,
        seg_hidden_channels=12,
        det_channels=16,
        pixel_embedding_stride=2,
    ).eval()
    with torch.no_grad():
        assert model.pixel_embedding(torch.rand(1, 3, 50, 70)).shape == (1, 4, 25, 35)
        assert model.pixel_embedding(torch.rand(1, 3, 51, 71)).shape == (1, 4, 26, 36)
