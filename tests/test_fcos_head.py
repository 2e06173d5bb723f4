"""FCOSHead: contract shapes, initialisation, box activation and scale, errors, bundle construction."""

from __future__ import annotations

import math

import pytest
import torch

from medfound.errors import ConfigError, ShapeError
from medfound.networks.fcos import DEFAULT_STRIDES, FCOSHead


def _feats(batch=2, channels=8, side=64, levels=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, side // 2**i, side // 2**i, generator=g) for i in range(levels)]


def test_output_shapes_and_keys():
    head = FCOSHead(in_channels=8, num_classes=3)
    cls_f, reg_f = _feats(seed=0), _feats(seed=1)
    out = head(cls_f, reg_f)
    assert set(out) == {"cls_logits", "box_regression", "centerness"}
    for level, f in enumerate(cls_f):
        h, w = f.shape[-2:]
        assert out["cls_logits"][level].shape == (2, 3, h, w)
        assert out["box_regression"][level].shape == (2, 4, h, w)
        assert out["centerness"][level].shape == (2, 1, h, w)
        assert (out["box_regression"][level] >= 0).all()
    assert head.strides == DEFAULT_STRIDES


def test_prior_probability_initialisation():
    head = FCOSHead(in_channels=8, num_classes=4, prior_prob=0.02)
    assert torch.allclose(head.cls_logits.bias, torch.full((4,), -math.log(0.98 / 0.02)))
    assert head.bbox_pred.bias.abs().max() == 0 and head.centerness.bias.abs().max() == 0
    assert 0.005 < head.cls_logits.weight.std().item() < 0.015
    out = head(_feats(), _feats())
    prob = torch.sigmoid(out["cls_logits"][0])
    # small random weights: probabilities stay close to the prior everywhere
    assert abs(prob.mean().item() - 0.02) < 2e-3


@pytest.mark.parametrize("activation", ["relu", "exp"])
def test_box_regression_is_scaled_per_level_in_pixels(activation):
    head = FCOSHead(in_channels=4, num_classes=1, box_activation=activation)
    with torch.no_grad():
        head.bbox_pred.weight.zero_()
        head.bbox_pred.bias.copy_(torch.tensor([0.5, 1.0, -1.0, 2.0]))
        for level, scale in enumerate(head.scales):
            scale.scale.fill_(level + 1.0)
    feats = _feats(batch=1, channels=4, side=32)
    out = head(feats, feats)["box_regression"]
    bias = torch.tensor([0.5, 1.0, -1.0, 2.0])
    for level, stride in enumerate(DEFAULT_STRIDES):
        raw = bias * (level + 1.0)
        expected = (torch.relu(raw) if activation == "relu" else torch.exp(raw.clamp(max=8.0))) * stride
        got = out[level][0, :, 0, 0]
        assert torch.allclose(got, expected, rtol=1e-6), (level, got, expected)
        assert torch.allclose(out[level], expected.view(1, 4, 1, 1).expand_as(out[level]))


def test_weights_shared_across_levels_and_gradients_flow():
    head = FCOSHead(in_channels=8, num_classes=2, num_levels=3, strides=[4, 8, 16])
    n_params = sum(p.numel() for p in head.parameters())
    # three convs (K + 4 + 1 outputs) + one scale per level, independent of the number of levels
    assert n_params == (2 + 4 + 1) * (8 * 9 + 1) + 3
    feats = [f.requires_grad_() for f in _feats(levels=3)]
    out = head(feats, feats)
    (sum(t.sum() for t in out["cls_logits"]) + sum(t.sum() for t in out["box_regression"])).backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)
    assert head.scales[2].scale.grad is not None


def test_cls_on_cls_branch_box_and_centerness_on_reg_branch():
    head = FCOSHead(in_channels=8, num_classes=2)
    a, b = _feats(seed=0), _feats(seed=1)
    out_ab, out_ba = head(a, b), head(b, a)
    ref = head(a, a)
    assert torch.equal(out_ab["cls_logits"][0], ref["cls_logits"][0])
    assert not torch.equal(out_ab["centerness"][0], ref["centerness"][0])
    assert torch.equal(out_ba["centerness"][0], ref["centerness"][0])
    assert torch.equal(out_ba["box_regression"][1], ref["box_regression"][1])


def test_errors():
    with pytest.raises(ConfigError):
        FCOSHead(8, 0)
    with pytest.raises(ConfigError):
        FCOSHead(8, 2, prior_prob=1.5)
    with pytest.raises(ConfigError):
        FCOSHead(8, 2, num_levels=6)  # only 5 default strides
    with pytest.raises(ConfigError):
        FCOSHead(8, 2, box_activation="softplus")
    head = FCOSHead(8, 2)
    with pytest.raises(ShapeError, match="5 cls_feats levels"):
        head(_feats(levels=4), _feats())
    with pytest.raises(ShapeError, match=r"reg_feats\[0\]"):
        head(_feats(), _feats(channels=4))
    with pytest.raises(ValueError):  # ShapeError is also a ValueError
        head(_feats(), _feats(side=32))


def test_bundle_config_construction():
    from monai.bundle import ConfigParser

    parser = ConfigParser({"head": {"_target_": "medfound.networks.fcos.FCOSHead", "in_channels": 8,
                                    "num_classes": 2, "num_levels": 5, "prior_prob": 0.01,
                                    "strides": [8, 16, 32, 64, 128], "box_activation": "relu"}})
    head = parser.get_parsed_content("head")
    assert isinstance(head, FCOSHead) and head.num_classes == 2


def _amp_round_trip(device, dtype):
    from medfound.multitask.fcos_loss import FCOSLoss
    from medfound.networks.fcos import FCOSPostprocessor

    torch.manual_seed(0)
    head = FCOSHead(in_channels=8, num_classes=2).to(device)
    with torch.no_grad():
        head.bbox_pred.bias.fill_(7.5)  # exp(7.5) * 128 px: beyond float16's range if computed there
    feats = [f.to(device) for f in _feats(batch=1, side=256)]
    with torch.autocast(device_type=device, dtype=dtype):
        out = head(feats, feats)
        losses = FCOSLoss(2)(out, [{"boxes": [[10, 20, 60, 90]], "labels": [1]}], image_size=(256, 256))
    assert out["cls_logits"][0].dtype == dtype
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in out["box_regression"])
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert torch.isfinite(head.cls_logits.weight.grad).all()
    dets = FCOSPostprocessor(score_thresh=0.0)(out, (256, 256))
    # every box is huge, clipped to the whole image: class-wise NMS leaves one per class
    assert dets[0]["boxes"].device.type == device
    assert dets[0]["boxes"].tolist() == [[0, 0, 256, 256]] * 2 and sorted(dets[0]["labels"].tolist()) == [0, 1]


def test_autocast_cpu_bfloat16():
    _amp_round_trip("cpu", torch.bfloat16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_autocast_cuda_float16():
    _amp_round_trip("cuda", torch.float16)
