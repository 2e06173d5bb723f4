"""DeepLabV3+: the contract with the DAC trainer, shapes at OS8/16, dilation, weights, gradients, learning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import load_script
from monai.bundle import ConfigParser

from medfound.errors import ConfigError, ShapeError, WeightsError
from medfound.networks.deeplabv3plus import ASPP_RATES, DeepLabV3Plus

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _small(**kw) -> DeepLabV3Plus:
    """A narrow network: same structure, test-friendly size."""
    kw.setdefault("backbone", "resnet18")
    kw.setdefault("base_channels", 8)
    kw.setdefault("decoder_channels", 16)
    return DeepLabV3Plus(**kw)


@pytest.mark.parametrize("output_stride", [16, 8])
@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_contract_shapes_non_square(backbone, output_stride):
    net = _small(num_classes=3, backbone=backbone, output_stride=output_stride).eval()
    x = torch.randn(2, 3, 72, 100)
    with torch.no_grad():
        feats = net.forward_features(x)
        logits = net(x)
    assert set(feats) == {"logits", "decoder", "aspp", "low_level", "backbone"}
    assert logits.shape == feats["logits"].shape == (2, 3, 72, 100)
    torch.testing.assert_close(logits, feats["logits"])
    assert feats["decoder"].shape == (2, 16, 18, 25)
    assert feats["aspp"].shape == (2, 16, -(-72 // output_stride), -(-100 // output_stride))
    expansion = 4 if backbone == "resnet50" else 1
    assert net.feature_channels == {"decoder": 16, "aspp": 16, "low_level": 8 * expansion, "backbone": 64 * expansion}
    for key, channels in net.feature_channels.items():
        assert feats[key].shape[1] == channels
    assert feats["low_level"].shape[-2:] == (18, 25)
    assert net.output_stride == output_stride


def test_default_is_resnet50_os16_256_channels():
    net = DeepLabV3Plus(num_classes=2).eval()
    assert net.output_stride == 16 and net.aspp.rates == (6, 12, 18)
    assert net.feature_channels == {"decoder": 256, "aspp": 256, "low_level": 256, "backbone": 2048}
    assert net.low_level_project[0].out_channels == 48
    assert net.dropout.p == 0.1
    assert isinstance(net.backbone.layer4[0].bn3, torch.nn.BatchNorm2d)
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 65, 33)).shape == (1, 2, 65, 33)  # odd sizes come back exactly


@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilation_rates_as_specified(output_stride):
    net = _small(num_classes=2, output_stride=output_stride)
    rates = ASPP_RATES[output_stride]
    assert rates == ((6, 12, 18) if output_stride == 16 else (12, 24, 36))
    assert [b[0].dilation[0] for b in net.aspp.convs] == [1, *rates]
    assert [b[0].padding[0] for b in net.aspp.convs] == [0, *rates]
    assert len(net.aspp.convs) == 4 and net.aspp.project[0].in_channels == 5 * 16  # + image pooling
    # backbone: stage 4 dilated by 2 at OS16; stages 3 and 4 by 2 and 4 at OS8
    assert net.backbone.layer4[1].conv2.dilation[0] == (2 if output_stride == 16 else 4)
    assert net.backbone.layer3[1].conv2.dilation[0] == (1 if output_stride == 16 else 2)
    assert [blk[0].kernel_size for blk in net.decoder] == [(3, 3), (3, 3)]


def test_image_pooling_branch_is_global():
    net = _small(num_classes=2).eval()
    x = torch.randn(1, 64, 5, 7)
    with torch.no_grad():
        pooled = net.aspp.pooling(x)
        expected = net.aspp.pooling.act(net.aspp.pooling.norm(net.aspp.pooling.conv(x.mean(dim=(2, 3), keepdim=True))))
    torch.testing.assert_close(pooled, expected.expand_as(pooled))


def test_classifier_bias_known_answer():
    # zero classifier weights: logits are the bias everywhere, at the input size
    net = _small(num_classes=3).eval()
    with torch.no_grad():
        net.classifier.weight.zero_()
        net.classifier.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
        logits = net(torch.randn(1, 3, 37, 53))
    assert logits.shape == (1, 3, 37, 53)
    torch.testing.assert_close(logits, torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1).expand(1, 3, 37, 53))


def test_backbone_weights_torchvision_format(data_dir, tmp_path):
    folder = data_dir / "networks"
    ref = load_script(folder / "resnet_reference.py")
    keys = json.loads((folder / "torchvision_resnet_keys.json").read_text())["resnet18"]
    arrays = np.load(folder / "resnet_reference.npz")
    state = ref.reference_state_dict(keys, 18)  # full torchvision resnet18 state dict, fc included
    path = tmp_path / "resnet18_tv.pth"
    torch.save(state, path)
    net = DeepLabV3Plus(num_classes=3, backbone="resnet18", backbone_weights=str(path)).eval()
    for k, v in net.backbone.state_dict().items():
        assert torch.equal(v, state[k]), k
    with torch.no_grad():
        low = net.forward_features(torch.from_numpy(arrays["resnet18_input"]))["low_level"]
    # stride-4 features are untouched by dilation: equal to torchvision's layer1 output
    expected = torch.from_numpy(arrays["resnet18_layer1"])
    scale = float(expected.abs().max())  # within 1e-5 of the feature magnitude
    torch.testing.assert_close(low / scale, expected / scale, atol=1e-5, rtol=0)
    with pytest.raises(WeightsError, match="resnet18_tv.pth"):
        DeepLabV3Plus(num_classes=3, backbone="resnet34", backbone_weights=str(path))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = _small(num_classes=3, output_stride=8).train()
    x = torch.randn(2, 3, 48, 64)
    y = torch.randint(0, 3, (2, 48, 64))
    F.cross_entropy(net(x), y).backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or float(p.grad.abs().sum()) == 0]
    assert no_grad == []


@pytest.mark.parametrize("norm", ["group", "instance", ["group", {"num_groups": 4}]])
def test_norms_for_small_batches(norm):
    net = _small(num_classes=2, norm=norm).train()
    out = net(torch.randn(1, 3, 40, 40))  # batch of one trains with per-sample norms
    assert out.shape == (1, 2, 40, 40)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_batch_norm_with_one_image_says_what_to_do():
    net = _small(num_classes=2).train()
    with pytest.raises(ShapeError, match="batch of one image.*norm='group'"):
        net(torch.randn(1, 3, 40, 40))
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 40, 40)).shape == (1, 2, 40, 40)  # inference is fine


def test_state_dict_round_trip(tmp_path):
    torch.manual_seed(1)
    a = _small(num_classes=2).eval()
    path = tmp_path / "net.pt"
    torch.save(a.state_dict(), path)
    b = _small(num_classes=2).eval()
    b.load_state_dict(torch.load(path, weights_only=True), strict=True)
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_constructible_from_bundle_config():
    config = {"network_def": {"_target_": "medfound.networks.deeplabv3plus.DeepLabV3Plus", "num_classes": 3,
                              "backbone": "resnet34", "output_stride": 8, "in_channels": 1,
                              "norm": ["group", {"num_groups": 8}], "base_channels": 16, "decoder_channels": 32}}
    parser = ConfigParser(config)
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, DeepLabV3Plus) and net.output_stride == 8
    assert net.backbone.bn1.num_groups == 8
    with torch.no_grad():
        assert net.eval()(torch.zeros(1, 1, 40, 56)).shape == (1, 3, 40, 56)


def test_bad_arguments():
    with pytest.raises(ConfigError, match=r"output_stride must be one of \[16, 8\], got 32"):
        DeepLabV3Plus(num_classes=2, output_stride=32)
    with pytest.raises(ConfigError, match="num_classes"):
        DeepLabV3Plus(num_classes=0)
    with pytest.raises(ConfigError, match="ResNet name must be one of"):
        DeepLabV3Plus(num_classes=2, backbone="vgg16")
    with pytest.raises(ValueError, match=r"expects \(B, 3, H, W\)"):
        _small(num_classes=2)(torch.zeros(1, 1, 32, 32))


@pytest.mark.slow
def test_learns_a_toy_segmentation():
    """Real learning: a small network fits bright discs on noise (Dice > 0.85 after 150 steps)."""
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    images, labels = [], []
    for _ in range(8):
        cy, cx, r = (torch.rand(3, generator=gen) * torch.tensor([20.0, 20.0, 6.0]) + torch.tensor([14.0, 14.0, 6.0]))
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).long()
        images.append(disc.float()[None].repeat(3, 1, 1) + 0.3 * torch.randn(3, 48, 48, generator=gen))
        labels.append(disc)
    x, y = torch.stack(images), torch.stack(labels)
    torch.manual_seed(0)
    net = _small(num_classes=2, norm="group")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    with torch.no_grad():
        pred = net.eval()(x).argmax(1)
    dice = 2 * ((pred == 1) & (y == 1)).sum() / ((pred == 1).sum() + (y == 1).sum())
    assert dice > 0.85
