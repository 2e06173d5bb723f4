"""DAC model container, auxiliary tasks and strong view: method switches, inference path, export."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from _dac_helpers import TINY_NET, tiny_network

import medfound.dac.aux_tasks as aux_mod
import medfound.dac.diagnostics as diagnostics_mod
import medfound.dac.heads as heads_mod
import medfound.dac.model as model_mod
import medfound.dac.strong_view as strong_mod
import medfound.dac.trainer as trainer_mod
from medfound.dac.aux_tasks import (
    MixedRegionLoss,
    RotationLoss,
    make_mixed_region_task,
    make_rotation_task,
    pool_rotation_logits,
)
from medfound.dac.config import METHODS
from medfound.dac.model import DACModel
from medfound.dac.strong_view import StrongAugment
from medfound.errors import ConfigError
from medfound.networks.deeplabv3plus import DeepLabV3Plus
from medfound.transforms.intensity import gaussian_blur

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.mark.parametrize("module", [aux_mod, heads_mod, strong_mod, model_mod, diagnostics_mod, trainer_mod])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_mixed_region_task_labels():
    torch.manual_seed(0)
    images = torch.rand(3, 3, 32, 32)
    task = make_mixed_region_task(images, np.random.RandomState(1), area_range=(0.25, 0.5))
    for i in range(3):
        inside = task.mask[i, 0].bool()
        assert 0.25 <= inside.float().mean() <= 0.5
        assert torch.equal(task.images[i][:, inside], images[(i - 1) % 3][:, inside])
        assert torch.equal(task.images[i][:, ~inside], images[i][:, ~inside])
    # a perfect predictor of the mask has (almost) zero loss, a constant one has ln 2
    assert MixedRegionLoss()(30 * (2 * task.mask - 1), task.mask).item() < 1e-6
    assert MixedRegionLoss()(torch.zeros(3, 1, 8, 8), task.mask).item() == pytest.approx(np.log(2), abs=1e-6)


def test_rotation_task_labels_and_pooled_loss():
    torch.manual_seed(0)
    images = torch.rand(64, 1, 64, 64)
    task = make_rotation_task(images, np.random.RandomState(2), side_range=(0.25, 0.5), align=16)
    assert set(task.ks.tolist()) == {0, 1, 2, 3}
    for i, ((y0, x0, s), k) in enumerate(zip(task.boxes.tolist(), task.ks.tolist())):
        region = (slice(None), slice(y0, y0 + s), slice(x0, x0 + s))
        assert torch.equal(task.images[i][region], torch.rot90(images[i][region], k, (1, 2)))
        assert task.region_mask[i].sum() == s * s and y0 % 16 == 0 and s % 16 == 0
        outside = task.region_mask[i, 0] == 0
        assert torch.equal(task.images[i][:, outside], images[i][:, outside])
    # logits at stride 4 that say "k" inside the region and something else outside
    logits = torch.zeros(64, 4, 16, 16)
    for i, ((y0, x0, s), k) in enumerate(zip(task.boxes.tolist(), task.ks.tolist())):
        logits[i, (k + 1) % 4] = 40.0
        logits[i, :, y0 // 4:(y0 + s) // 4, x0 // 4:(x0 + s) // 4] = 0.0
        logits[i, k, y0 // 4:(y0 + s) // 4, x0 // 4:(x0 + s) // 4] = 40.0
    pooled = pool_rotation_logits(logits, task.region_mask)
    assert torch.equal(pooled.argmax(1), task.ks)
    assert RotationLoss()(logits, task.region_mask, task.ks).item() < 1e-6
    assert RotationLoss()(torch.zeros(64, 4, 16, 16), task.region_mask, task.ks).item() == pytest.approx(np.log(4))


def test_strong_augment_reproducible_and_identity_when_off():
    x = torch.rand(4, 3, 24, 24)
    a = StrongAugment()(x, np.random.RandomState(5))
    b = StrongAugment()(x, np.random.RandomState(5))
    c = StrongAugment()(x, np.random.RandomState(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    off = StrongAugment(jitter_prob=0, grayscale_prob=0, blur_prob=0, noise_prob=0)
    assert torch.allclose(off(x, np.random.RandomState(0)), x, atol=1e-6)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    xn = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    off_n = StrongAugment(0, grayscale_prob=0, blur_prob=0, noise_prob=0, mean=mean, std=std)
    assert torch.allclose(off_n(xn, np.random.RandomState(0)), xn, atol=1e-5)
    gray = StrongAugment(jitter_prob=0, grayscale_prob=1, blur_prob=0, noise_prob=0)(x, np.random.RandomState(0))
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    lum = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(gray[:, 0], lum, atol=1e-6)
    # blur keeps the mean of a constant image and a delta's mass
    delta = torch.zeros(1, 1, 15, 15)
    delta[..., 7, 7] = 1
    blurred = gaussian_blur(delta, torch.tensor([1.5]))
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5) and blurred[..., 7, 7] < 0.2


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_switches_build_only_their_parts(method):
    m = DACModel(tiny_network(), method=method)
    comp = METHODS[method]
    heads = m.training_heads()
    assert (m.model_b is not None) == comp.two_models
    assert ("projector_a" in heads) == comp.feature and ("projector_b" in heads) == comp.feature
    assert ("mask_head" in heads) == comp.aux_mask and ("rotation_head" in heads) == comp.aux_rotation
    if method == "cps":
        assert heads == {}  # CPS: co-training only, no feature or auxiliary parameters at all


def test_sub_models_differ_in_initialisation_and_export_loads_strictly(tmp_path):
    m = DACModel(tiny_network(), init_seeds=(0, 1))
    wa, wb = m.model_a.classifier.weight, m.model_b.classifier.weight
    assert not torch.equal(wa, wb)
    again = DACModel(tiny_network(), init_seeds=(0, 1))
    assert all(torch.equal(p, q) for p, q in zip(m.state_dict().values(), again.state_dict().values()))
    path = tmp_path / "model.pt"
    torch.save(m.deployable_state_dict(), path)
    net = DeepLabV3Plus(3, **TINY_NET)
    net.load_state_dict(torch.load(path, weights_only=True), strict=True)
    x = torch.rand(2, 3, 32, 32)
    m.eval()
    net.eval()
    assert torch.allclose(net(x), m(x), atol=1e-6)
    assert isinstance(m.deployable(), DeepLabV3Plus)
    assert m.network_spec() == {"_target_": "medfound.networks.deeplabv3plus.DeepLabV3Plus", "num_classes": 3,
                                **TINY_NET}
    # A is what a plain network built under seed 0 is: the factory runs under each sub-model's seed
    torch.manual_seed(0)
    plain = DeepLabV3Plus(3, **TINY_NET)
    assert all(torch.equal(p, q) for p, q in zip(plain.state_dict().values(), m.model_a.state_dict().values()))
    assert not any(k.startswith(("projector", "mask_head", "rotation_head")) for k in torch.load(path))


def test_inference_runs_one_sub_model_and_ensemble_both():
    m = DACModel(tiny_network()).eval()
    calls = {"a": 0, "b": 0}
    m.model_a.register_forward_hook(lambda *_: calls.__setitem__("a", calls["a"] + 1))
    m.model_b.register_forward_hook(lambda *_: calls.__setitem__("b", calls["b"] + 1))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = m(x)
    assert calls == {"a": 1, "b": 0}
    with torch.no_grad():
        assert torch.equal(out, m.model_a(x))
    m.set_inference("ensemble")
    with torch.no_grad():
        ens = m(x)
        pa, pb = torch.softmax(m.model_a(x), 1), torch.softmax(m.model_b(x), 1)
    assert torch.allclose(ens.exp(), (pa + pb) / 2, atol=1e-5)
    assert calls["b"] >= 1
    with pytest.raises(ConfigError):
        DACModel(tiny_network(), method="supervised", inference="ensemble")
    with pytest.raises(ConfigError, match="feature_layer"):
        DACModel(tiny_network(), feature_layer="nope")


def test_ready_networks_and_bad_network_arguments():
    a, b = tiny_network()(), tiny_network()()
    m = DACModel([a, b], method="cps")
    assert m.model_a is a and m.model_b is b and m.network_spec()["_target_"].endswith("DeepLabV3Plus")
    assert DACModel(a, method="supervised").model_a is a
    with pytest.raises(ConfigError, match="two sub-models"):
        DACModel(a, method="dac")  # one ready network cannot be two differently initialised ones
    with pytest.raises(ConfigError, match="two separate modules"):
        DACModel([a, a], method="cps")
    with pytest.raises(ConfigError, match="forward_features"):
        DACModel(lambda: torch.nn.Conv2d(3, 3, 1), method="supervised")
    with pytest.raises(ConfigError, match="network factory or ready networks"):
        DACModel("medfound.networks.deeplabv3plus.DeepLabV3Plus")  # a dotted path is not a network
    with pytest.raises(ConfigError, match="init_seeds"):
        DACModel(tiny_network(), init_seeds=["a", 1])
