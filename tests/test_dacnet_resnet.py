"""ResNet backbones: torchvision parity (names, shapes, outputs), weight loading, dilation, norms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _helpers import load_script

from medfound.errors import ConfigError, MedfoundError, WeightsError
from medfound.networks.resnet import (
    RESNET_SPECS,
    ResNet,
    adapt_input_conv,
    build_resnet,
    dilation_for_output_stride,
    load_torchvision_weights,
    make_norm,
    resnet18,
    resnet50,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal within 1e-5 of the output's magnitude (max |value|, at least 1): float32 sums over thousands
    of terms differ in the last bits with the thread count, and deep features reach |x| ~ 25."""
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(actual / scale, expected / scale, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def ref(data_dir):
    """The committed torchvision fixture: key names/shapes, outputs, and the weight recipe."""
    folder = data_dir / "networks"
    module = load_script(folder / "resnet_reference.py")
    keys = json.loads((folder / "torchvision_resnet_keys.json").read_text())
    arrays = dict(np.load(folder / "resnet_reference.npz"))
    return module, keys, arrays


@pytest.fixture(scope="module")
def r18_state(ref):
    """torchvision-format resnet18 weights (random, from the fixture's recipe)."""
    return _weights(ref, "resnet18", 18)


def _weights(ref, name: str, seed: int):
    module, keys, arrays = ref
    state = module.reference_state_dict(keys[name], seed)
    # the recipe must give the very tensors torchvision saw when the fixture was made
    expected = arrays[("resnet18" if name == "resnet18" else "resnet50_os8") + "_checksums"]
    np.testing.assert_allclose(module.checksums(state), expected, rtol=1e-6, atol=1e-6)
    return state


@pytest.mark.parametrize("name", list(RESNET_SPECS))
def test_state_dict_names_and_shapes_equal_torchvision(ref, name):
    _, keys, _ = ref
    ours = [[k, list(v.shape)] for k, v in build_resnet(name, num_classes=1000).state_dict().items()]
    assert ours == keys[name]


def test_resnet18_reproduces_torchvision_outputs(ref, r18_state):
    _, _, arrays = ref
    net = resnet18(num_classes=1000)
    net.load_state_dict(r18_state, strict=True)
    x = torch.from_numpy(arrays["resnet18_input"])
    net.eval()
    with torch.no_grad():
        feats = net.forward_features(x)
        logits = net(x)
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        _close(feats[stage], torch.from_numpy(arrays[f"resnet18_{stage}"]))
    _close(logits, torch.from_numpy(arrays["resnet18_logits"]))
    with torch.no_grad():  # training mode: batch statistics, as torchvision
        train_logits = net.train()(x)
    _close(train_logits, torch.from_numpy(arrays["resnet18_train_logits"]))


def test_resnet50_output_stride_8_reproduces_torchvision(ref):
    _, _, arrays = ref
    net = resnet50(num_classes=1000, replace_stride_with_dilation=(False, True, True)).eval()
    net.load_state_dict(_weights(ref, "resnet50", 50), strict=True)
    x = torch.from_numpy(arrays["resnet50_os8_input"])
    with torch.no_grad():
        feats = net.forward_features(x)
        logits = net(x)
    _close(feats["layer4"][:, :16], torch.from_numpy(arrays["resnet50_os8_layer4_first16"]))
    _close(logits, torch.from_numpy(arrays["resnet50_os8_logits"]))
    assert net.output_stride == 8


def test_backbone_loads_torchvision_file_without_fc(ref, r18_state, tmp_path):
    _, _, arrays = ref
    state = r18_state
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(state, path)
    net = resnet18(weights=str(path)).eval()  # no classifier: fc.* is ignored, the rest strict
    assert net.fc is None
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    with torch.no_grad():
        pooled = net(torch.from_numpy(arrays["resnet18_input"]))
    expected = torch.from_numpy(arrays["resnet18_layer4"]).mean(dim=(2, 3))
    _close(pooled, expected)


def test_wrapped_and_prefixed_checkpoints_load(ref, r18_state, tmp_path):
    state = r18_state
    path = tmp_path / "ddp.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    net = resnet18(num_classes=1000, weights=path)
    assert torch.equal(net.layer3[1].bn2.running_var, state["layer3.1.bn2.running_var"])


def test_one_channel_input_adapts_conv1(ref, r18_state):
    state = r18_state
    rgb = resnet18(num_classes=1000)
    rgb.load_state_dict(state)
    grey = load_torchvision_weights(resnet18(in_channels=1, num_classes=1000), state)
    x = torch.randn(1, 1, 40, 40)
    with torch.no_grad():
        # summed kernels on a grey image == RGB kernels on that image repeated three times
        torch.testing.assert_close(grey.eval()(x), rgb.eval()(x.repeat(1, 3, 1, 1)), atol=1e-4, rtol=1e-4)
    w = torch.arange(6.0).reshape(1, 3, 1, 2)
    assert torch.equal(adapt_input_conv(w, 1), w.sum(1, keepdim=True))
    assert torch.allclose(adapt_input_conv(w, 5), torch.cat([w, w[:, :2]], 1) * 0.6)


def test_group_norm_backbone_keeps_affine_drops_running_stats(ref, r18_state):
    state = r18_state
    net = load_torchvision_weights(resnet18(norm="group"), state)
    assert isinstance(net.bn1, torch.nn.GroupNorm) and net.bn1.num_groups == 32
    assert not any("running" in k for k in net.state_dict())
    assert torch.equal(net.layer2[0].downsample[1].weight, state["layer2.0.downsample.1.weight"])


def test_weight_errors_name_the_file(ref, r18_state, tmp_path):
    state = r18_state
    missing = dict(state)
    del missing["layer1.0.conv1.weight"]
    path = tmp_path / "broken.pth"
    torch.save(missing, path)
    with pytest.raises(WeightsError, match=r"broken\.pth.*1 missing key.*layer1\.0\.conv1\.weight"):
        resnet18(weights=path)
    with pytest.raises(WeightsError, match="shape mismatch"):
        load_torchvision_weights(resnet18(base_channels=32), state)
    with pytest.raises(WeightsError, match="unexpected key"):
        load_torchvision_weights(resnet18(), {**state, "extra.weight": torch.zeros(1)})
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="corrupt.pth cannot be read"):
        resnet18(weights=corrupt)
    with pytest.raises(WeightsError, match="absent.pth does not exist"):
        resnet18(weights=tmp_path / "absent.pth")
    with pytest.raises(ValueError):  # WeightsError is also a ValueError
        load_torchvision_weights(resnet50(), state)


def test_dilation_replaces_strides_in_basic_blocks():
    net = resnet18(replace_stride_with_dilation=dilation_for_output_stride(8), base_channels=8).eval()
    assert net.feature_strides == {"stem": 2, "layer1": 4, "layer2": 8, "layer3": 8, "layer4": 8}
    # the first block of a dilated stage keeps the previous dilation (torchvision's rule)
    assert net.layer3[0].conv1.dilation == (1, 1) and net.layer3[0].conv1.stride == (1, 1)
    assert net.layer3[1].conv1.dilation == (2, 2) and net.layer4[0].conv1.dilation == (2, 2)
    assert net.layer4[1].conv2.dilation == (4, 4) and net.layer4[1].conv2.padding == (4, 4)
    feats = net.forward_features(torch.randn(1, 3, 61, 83))
    assert feats["layer4"].shape[-2:] == feats["layer2"].shape[-2:] == (8, 11)
    assert dilation_for_output_stride(16) == (False, False, True)
    with pytest.raises(ConfigError, match="output_stride"):
        dilation_for_output_stride(4)


def test_norm_factory_and_config_errors():
    assert isinstance(make_norm("batch", 8), torch.nn.BatchNorm2d)
    assert make_norm(["group", {"num_groups": 2}], 8).num_groups == 2  # JSON list form
    inst = make_norm("instance", 8)
    assert isinstance(inst, torch.nn.InstanceNorm2d) and inst.affine
    with pytest.raises(ConfigError, match="unknown norm"):
        make_norm("layer", 8)
    with pytest.raises(ConfigError, match="do not divide"):
        make_norm(("group", {"num_groups": 3}), 8)
    with pytest.raises(ConfigError, match=r"ResNet name must be one of \['resnet18', .*'resnet101'\], got 'resnet152'"):
        build_resnet("resnet152")
    with pytest.raises(MedfoundError, match="four positive"):
        ResNet("basic", (1, 1))
    with pytest.raises(ConfigError, match="block must be"):
        ResNet("wide", (1, 1, 1, 1))


def test_zero_init_residual_makes_blocks_identity_like():
    net = resnet50(zero_init_residual=True, base_channels=8)
    assert all(float(b.bn3.weight.detach().abs().sum()) == 0 for layer in (net.layer1, net.layer4) for b in layer)
