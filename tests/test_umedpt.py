"""UMedPT model: task kinds, embedding, padding/cropping, shared-block use, heads, export, configs."""

from __future__ import annotations

import doctest

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medfound.errors import ConfigError, ShapeError, WeightsError
from medfound.networks import umedpt as umedpt_module
from medfound.networks.fcos import FCOSHead
from medfound.networks.swin_v2 import SwinTransformerV2
from medfound.networks.umedpt import (
    DETECTION_STRIDES,
    UMedPT,
    UMedPTEmbedding,
    UMedPTTaskOutput,
    batchnorm_to_groupnorm,
    detection_points,
)

TINY = dict(
    embed_dim=8,
    depths=(1, 1, 1, 1),
    num_heads=(1, 1, 2, 2),
    window_size=4,
    squeezer_channels=16,
    det_channels=16,
    seg_hidden_channels=16,
    pixel_embedding_channels=8,
)
TASKS = [
    {"name": "cls", "kind": "classification", "num_classes": 3},
    {"name": "ml", "kind": "multilabel", "num_classes": 4, "dropout": 0.5},
    {"name": "seg", "kind": "segmentation", "num_classes": 2},
    {"name": "det", "kind": "detection", "num_classes": 2},
]


def _model(**kwargs) -> UMedPT:
    torch.manual_seed(0)
    model = UMedPT(**{**TINY, "tasks": TASKS, **kwargs})
    with torch.no_grad():  # GroupNorm/bias parameters off their initial values, so they matter
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_forward_every_task_kind():
    model = _model()
    x = torch.rand(2, 3, 60, 70)  # padded to 64 x 96
    with torch.no_grad():
        assert model(x, task="cls").shape == (2, 3)
        assert model(x, task="ml").shape == (2, 4)
        seg = model(x, task="seg")
        det = model(x, task="det")
    assert seg.shape == (2, 2, 60, 70)
    assert set(det) == {"cls_logits", "box_regression", "centerness"}
    sizes = [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
    assert [tuple(t.shape) for t in det["cls_logits"]] == [(2, 2, *s) for s in sizes]
    assert [tuple(t.shape) for t in det["box_regression"]] == [(2, 4, *s) for s in sizes]
    assert all((t >= 0).all() for t in det["box_regression"])
    assert isinstance(model.heads["det"], FCOSHead)
    assert model.task_kinds == {"cls": "classification", "ml": "multilabel", "seg": "segmentation", "det": "detection"}
    assert model.heads["ml"].dropout.p == 0.5 and model.heads["cls"].dropout.p == 0.2
    assert model.tasks == TASKS
    rebuilt = UMedPT(**TINY, tasks=model.tasks)
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_embedding_is_the_squeezed_deepest_map_in_the_authors_order():
    """embedding = GELU(GroupNorm(1, C)(conv1x1(avgpool(stage-4 map)))): pool first, as published."""
    model = _model()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        emb = model.forward_features(x)
        deep = model.shared["encoder"](x)[-1]
        sq = model.shared["squeezer"]
        pooled = deep.mean(dim=(2, 3), keepdim=True)
        by_hand = F.gelu(F.group_norm(F.conv2d(pooled, sq.conv.weight, sq.conv.bias), 1, sq.norm.weight, sq.norm.bias))
        assert torch.allclose(emb, by_hand.flatten(1), atol=1e-6)
        # pooling after the per-position norm would be another function
        other = sq.feature_map(deep).mean(dim=(2, 3))
        assert not torch.allclose(emb, other, atol=1e-3)
        # classification logits are the head on exactly this embedding
        assert torch.allclose(model(x, task="cls"), model.heads["cls"].fc(emb), atol=1e-6)
        assert torch.equal(UMedPTEmbedding(model)(x), emb)


def test_padding_and_cropping():
    """Valid-region outputs are those of the zero-padded image; multiples of 32 are not padded."""
    model = _model()
    x = torch.rand(1, 3, 50, 75)
    padded = F.pad(x, (0, 96 - 75, 0, 64 - 50))
    with torch.no_grad():
        seg = model(x, task="seg")
        seg_padded = model(padded, task="seg")
        assert torch.equal(seg, seg_padded[..., :50, :75])
        assert torch.equal(model.forward_features(x), model.forward_features(padded))
        det, det_padded = model(x, task="det"), model(padded, task="det")
        for a, b in zip(det["cls_logits"], det_padded["cls_logits"]):
            assert torch.equal(a, b)
        # no padding for a 64 x 96 input: the decoder's output is returned whole
        pyramid = model.shared["encoder"](padded)
        deep = model.shared["squeezer"].feature_map(pyramid[-1])
        direct = model.heads["seg"](model.shared["seg_decoder"]([*pyramid[:3], deep], (64, 96)))
        assert torch.equal(seg_padded, direct)
    # border effect (documented): the padded zeros are seen, so the crop differs from a model run on
    # a 64 x 96 image whose bottom/right part has content
    other = padded.clone()
    other[..., 50:, :] = 0.5
    with torch.no_grad():
        assert not torch.equal(model(other, task="seg")[..., :50, :75], seg)


def test_shared_decoders_run_only_when_needed():
    model = _model()
    calls: list[str] = []
    for name, block in model.shared.items():
        block.register_forward_hook(lambda mod, inp, out, name=name: calls.append(name))
    x = torch.rand(1, 3, 32, 32)
    expected = {
        "cls": ["encoder"],  # the squeezer's embed() is called directly, not forward()
        "ml": ["encoder"],
        "seg": ["encoder", "seg_decoder"],
        "det": ["encoder", "det_decoder"],
    }
    with torch.no_grad():
        for task, blocks in expected.items():
            calls.clear()
            model(x, task=task)
            assert calls == blocks, task


def test_add_remove_tasks_and_devices():
    model = _model(tasks=None)
    assert len(model.heads) == 0 and model.task_kinds == {}
    head = model.add_task("a", "segmentation", 5, kernel_size=1)
    assert head.conv.kernel_size == (1, 1) and model.heads["a"] is head
    with pytest.raises(ConfigError, match="exists"):
        model.add_task("a", "classification", 2)
    with pytest.raises(ConfigError, match="kind"):
        model.add_task("b", "regression", 2)
    with pytest.raises(ConfigError, match="num_classes"):
        model.add_task("b", "classification", 0)
    with pytest.raises(ConfigError, match="bad head option"):
        model.add_task("b", "classification", 2, kernel_size=3)
    with pytest.raises(ConfigError, match="name"):
        model.add_task("x.y", "classification", 2)
    assert model.remove_task("a") is head
    assert "a" not in model.heads and model.task_kinds == {}
    with pytest.raises(ConfigError, match="no task"):
        model(torch.rand(1, 3, 32, 32), task="a")
    with pytest.raises(ConfigError, match="no task"):
        model.remove_task("a")
    model.double()
    head = model.add_task("c", "classification", 2)
    assert head.fc.weight.dtype == torch.float64  # follows the shared blocks
    assert model(torch.rand(1, 3, 32, 32, dtype=torch.float64), task="c").dtype == torch.float64


def test_training_gradients_reach_shared_blocks_and_head():
    model = _model().train()
    x = torch.rand(2, 3, 32, 32)
    for task, used in (("seg", "seg_decoder"), ("det", "det_decoder"), ("cls", "squeezer")):
        model.zero_grad(set_to_none=True)
        out = model(x, task=task)
        loss = sum(t.sum() for ts in out.values() for t in ts) if task == "det" else out.square().mean()
        loss.backward()
        assert all(p.grad is not None for p in model.heads[task].parameters()), task
        assert model.shared["encoder"].features[0][0].weight.grad is not None, task
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.shared[used].parameters()), task
        unused = {"seg": "det_decoder", "det": "seg_decoder", "cls": "seg_decoder"}[task]
        assert all(p.grad is None for p in model.shared[unused].parameters()), task


def test_batchnorm_to_groupnorm():
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    net = nn.Sequential(inner, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5), nn.BatchNorm1d(5, affine=False))
    with torch.no_grad():
        inner[1].weight.copy_(torch.rand(4) + 0.5)
        inner[1].bias.copy_(torch.randn(4))
    weight, bias = inner[1].weight.clone(), inner[1].bias.clone()
    batchnorm_to_groupnorm(net)
    assert isinstance(inner[1], nn.GroupNorm) and inner[1].num_groups == 1 and inner[1].num_channels == 4
    assert isinstance(net[4], nn.GroupNorm) and not net[4].affine
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        y = inner[0](x)
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        var = y.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        expected = (y - mean) / torch.sqrt(var + 1e-5) * weight.view(1, 4, 1, 1) + bias.view(1, 4, 1, 1)
        assert torch.allclose(inner(x), expected, atol=1e-5)
    assert isinstance(batchnorm_to_groupnorm(nn.BatchNorm2d(6)), nn.GroupNorm)
    model = _model(tasks=None)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_published_structure_full_size():
    """Default (published) configuration: Swin-V2-T, squeezer 768 -> 512, U-Net widths 96-64-32-16."""
    with torch.device("meta"):
        model = UMedPT()
    enc = model.shared["encoder"]
    assert len(enc.state_dict()) == 231 and enc.out_channels == [96, 192, 384, 768]
    squeezer = {k: tuple(v.shape) for k, v in model.shared["squeezer"].state_dict().items()}
    assert squeezer == {
        "conv.weight": (512, 768, 1, 1),
        "conv.bias": (512,),
        "norm.weight": (512,),
        "norm.bias": (512,),
    }
    dec = {k: tuple(v.shape) for k, v in model.shared["seg_decoder"].state_dict().items()}
    assert dec["blocks.0.conv1.0.weight"] == (96, 512 + 384, 3, 3)
    assert dec["blocks.1.conv1.0.weight"] == (64, 96 + 192, 3, 3)
    assert dec["blocks.2.conv1.0.weight"] == (32, 64 + 96, 3, 3)
    assert dec["blocks.3.conv1.0.weight"] == (16, 32, 3, 3)
    assert dec["final_conv.weight"] == (16, 16, 3, 3) and dec["norm.weight"] == (16,)
    assert "blocks.0.conv1.0.bias" not in dec  # conv before a norm has no bias, as in the published decoder
    det = model.shared["det_decoder"]
    assert [c.in_channels for c in det.lateral_convs] == [192, 384, 512]
    assert len(det.cls_tower) == 4 and det.cls_tower[0][1].num_groups == 32 and det.out_channels == 256
    assert model.embedding_channels == 512
    with torch.device("meta"):
        assert UMedPT(squeezer_channels=None).embedding_channels == 768


@pytest.mark.slow
def test_detection_tensor_output_and_points():
    model = _model()
    x = torch.rand(2, 3, 40, 70)
    wrapper = UMedPTTaskOutput(model, "det")
    with torch.no_grad():
        flat = wrapper(x)
        out = model(x, task="det")
    points = detection_points(40, 70)
    assert flat.shape == (2, len(points), 5 + 2)
    sizes = [tuple(t.shape[-2:]) for t in out["cls_logits"]]
    assert len(points) == sum(h * w for h, w in sizes)
    # location 1 of level 2 (stride 32): row 0, column 1
    index = sizes[0][0] * sizes[0][1] + sizes[1][0] * sizes[1][1] + 1
    assert points[index].tolist() == [48.0, 16.0, 32.0]
    expected = torch.cat(
        [out["box_regression"][2][:, :, 0, 1], out["centerness"][2][:, :, 0, 1], out["cls_logits"][2][:, :, 0, 1]], 1
    )
    assert torch.equal(flat[:, index], expected)
    probs = UMedPTTaskOutput(model, "det", activation="sigmoid")(x).detach()
    assert torch.allclose(probs[..., 5:], torch.sigmoid(flat[..., 5:]))
    assert points[:, 2].unique().tolist() == [float(s) for s in DETECTION_STRIDES]


@pytest.mark.slow
def test_tensor_wrappers_trace():
    model = _model()
    x = torch.rand(1, 3, 32, 32)
    for net in (UMedPTEmbedding(model), UMedPTTaskOutput(model, "seg"), UMedPTTaskOutput(model, "det")):
        with torch.no_grad():
            traced = torch.jit.trace(net, x, check_trace=False)
            assert torch.allclose(traced(x), net(x), atol=1e-5)


@pytest.mark.slow
def test_onnx_export_if_available(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = _model()
    x = torch.rand(1, 3, 32, 32)
    for name, net in (("seg", UMedPTTaskOutput(model, "seg")), ("embedding", UMedPTEmbedding(model))):
        torch.onnx.export(net, (x,), str(tmp_path / f"{name}.onnx"), dynamo=False)
        exported = onnx.load(str(tmp_path / f"{name}.onnx"))
        onnx.checker.check_model(exported)
        assert len(exported.graph.output) == 1


def test_bundle_config_construction(tmp_path):
    """Built from a MONAI bundle config with _target_ and plain JSON arguments."""
    from monai.bundle import ConfigParser

    config = {
        "umedpt": {
            "_target_": "medfound.networks.UMedPT",
            **{k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()},
            "tasks": TASKS,
        },
        "network_def": {
            "_target_": "medfound.networks.UMedPTTaskOutput",
            "model": "@umedpt",
            "task": "seg",
            "activation": "softmax",
        },
        "embedding": {
            "_target_": "medfound.networks.UMedPTEmbedding",
            **{k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()},
        },
    }
    parser = ConfigParser(config)
    net = parser.get_parsed_content("network_def")
    assert net.model is parser.get_parsed_content("umedpt")
    probs = net.eval()(torch.rand(1, 3, 32, 40))
    assert probs.shape == (1, 2, 32, 40) and torch.allclose(probs.sum(1), torch.ones(1, 32, 40))
    assert parser.get_parsed_content("embedding").eval()(torch.rand(1, 3, 32, 32)).shape == (1, 16)


def test_encoder_weights_path(tmp_path):
    torch.manual_seed(1)
    source = SwinTransformerV2(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4, num_classes=7)
    torch.save(source.state_dict(), tmp_path / "swin.pth")  # torchvision format, with head
    model = UMedPT(**TINY, encoder_weights=str(tmp_path / "swin.pth"))
    for key, value in model.shared["encoder"].state_dict().items():
        assert torch.equal(value, source.state_dict()[key])
    with pytest.raises(WeightsError, match="do not fit"):
        UMedPT(**{**TINY, "embed_dim": 16}, encoder_weights=str(tmp_path / "swin.pth"))
    with pytest.raises(WeightsError, match="missing.pth does not exist"):
        UMedPT(**TINY, encoder_weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="junk.pth"):
        UMedPT(**TINY, encoder_weights=str(tmp_path / "junk.pth"))


def test_imagenet_normalisation():
    plain, normed = _model(), _model(input_normalization="imagenet")
    x = torch.rand(1, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(normed.forward_features(x), plain.forward_features((x - mean) / std), atol=1e-6)
    assert "input_mean" not in normed.state_dict()  # constants, not weights


def test_bad_arguments():
    model = _model(tasks=None)
    with pytest.raises(ShapeError, match="3, H, W"):
        model.forward_features(torch.rand(1, 1, 32, 32))
    with pytest.raises(ConfigError, match="variant"):
        UMedPT(variant="huge")
    with pytest.raises(ConfigError, match="lacks 'kind'"):
        UMedPT(**TINY, tasks=[{"name": "x", "num_classes": 2}])
    with pytest.raises(ConfigError, match="input_normalization"):
        UMedPT(**TINY, input_normalization="zscore")
    with pytest.raises(ConfigError, match="no task"):
        UMedPTTaskOutput(model, "missing")


def test_docstring_examples():
    result = doctest.testmod(umedpt_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_classification_head_batch_standardisation():
    from medfound.networks.umedpt import ClassificationHead

    torch.manual_seed(0)
    # an embedding whose between-image spread is ~1 % of its per-channel offset (what multi-task
    # pre-training produced on the demo): batch standardisation restores unit spread
    offset, spread = torch.randn(6) * 5.0, torch.randn(8, 6) * 0.05
    x = offset + spread
    head = ClassificationHead(6, 3, dropout=0.0, standardize="batch")
    assert sorted(head.state_dict()) == [
        "batch_norm.num_batches_tracked", "batch_norm.running_mean", "batch_norm.running_var", "fc.bias", "fc.weight"
    ]
    head.train()
    out = head(x)
    z = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    assert torch.allclose(out, head.fc(z), atol=1e-3)  # float32 cancellation of the large offset
    # evaluation uses the running estimates (momentum 0.1 from 0 / 1 after one batch)
    head.eval()
    mean = 0.1 * x.mean(0)
    var = 0.9 + 0.1 * x.var(0, unbiased=True)
    assert torch.allclose(head(x), head.fc((x - mean) / torch.sqrt(var + 1e-5)), atol=1e-3)
    # the plain head is unchanged: no norm, no extra state
    assert sorted(ClassificationHead(6, 3).state_dict()) == ["fc.bias", "fc.weight"]
    with pytest.raises(ConfigError, match="standardize"):
        ClassificationHead(6, 3, standardize="running")
    net = UMedPT(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
                 squeezer_channels=16, seg_hidden_channels=16, det_channels=16)
    head = net.add_task("finding", "multilabel", 2, standardize="batch")
    assert isinstance(head.batch_norm, nn.BatchNorm1d) and net.tasks[0]["standardize"] == "batch"
