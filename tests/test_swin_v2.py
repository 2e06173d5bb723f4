"""Swin V2 encoder: torchvision parity, state-dict compatibility, both attention paths, caching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medfound.errors import ConfigError, ShapeError
from medfound.networks import swin_v2
from medfound.networks.swin_v2 import (
    StochasticDepth,
    SwinTransformerV2,
    linear,
    set_fused_attention,
    strip_classifier,
    swin_v2_b,
    swin_v2_s,
    swin_v2_t,
)

DATA = Path(__file__).parent / "data" / "networks"


@pytest.fixture(scope="module")
def parity() -> dict:
    return torch.load(DATA / "swin_v2_parity.pt", weights_only=True)


def _build(config: dict, **kwargs) -> SwinTransformerV2:
    return SwinTransformerV2(
        embed_dim=config["embed_dim"],
        depths=config["depths"],
        num_heads=config["num_heads"],
        window_size=config["window_size"],
        num_classes=config["num_classes"],
        stochastic_depth_prob=0.0,
        **kwargs,
    )


def _all_outputs(model: SwinTransformerV2, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every ``features.i`` output (NHWC, as torchvision), ``norm`` and the logits."""
    got: dict[str, torch.Tensor] = {}
    hooks = [
        layer.register_forward_hook(lambda mod, inp, out, i=i: got.__setitem__(f"features.{i}", out))
        for i, layer in enumerate(model.features)
    ]
    try:
        pyramid = model.forward_pyramid(x, with_norm=True)
    finally:
        for h in hooks:
            h.remove()
    got["norm"] = pyramid[-1].permute(0, 2, 3, 1)
    got["logits"] = model.forward_head(pyramid[-1])
    # the returned pyramid is the stage outputs, permuted to NCHW
    for level, i in enumerate(range(1, len(model.features), 2)):
        assert torch.equal(pyramid[level], got[f"features.{i}"].permute(0, 3, 1, 2))
    return got


@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "reference"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_parity_with_torchvision(parity, fused, dtype):
    """Every features.i, norm and logits output of torchvision's Swin V2, on non-square and odd inputs.

    The stored outputs are torchvision's in float64; medfound in float64 must agree to
    rounding (any algorithmic difference shows), in float32 within 1e-5.
    """
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for name, entry in parity["models"].items():
        model = _build(entry["config"], fused_attention=fused).eval()
        model.load_state_dict(entry["state_dict"], strict=True)
        model.to(dtype)
        for case in entry["cases"]:
            with torch.no_grad():
                got = _all_outputs(model, case["input"].to(dtype))
            assert set(got) == set(case["float64"])
            for key, ref in case["float64"].items():
                assert got[key].shape == ref.shape, (name, key)
                err = (got[key].double() - ref).abs().max().item()
                assert err < tol, f"{name} {tuple(case['input'].shape)} {key}: max abs error {err:.2e}"


def test_tiny_parameters_match_torchvision_list():
    """Names, shapes and dtypes of swin_v2_t's 233 entries (231 + head), in torchvision's order."""
    expected = []
    for line in (DATA / "swin_v2_t_parameters.txt").read_text().splitlines():
        name, shape, dtype = line.split("\t")
        expected.append((name, tuple(int(s) for s in shape.strip("()").split(",") if s.strip()), dtype))
    assert len(expected) == 233
    with torch.device("meta"):
        model = swin_v2_t(num_classes=1000)
    got = [(k, tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]
    assert got == expected
    with torch.device("meta"):
        encoder = swin_v2_t()
    assert list(encoder.state_dict()) == [n for n, _, _ in expected if not n.startswith("head.")]
    assert len(encoder.state_dict()) == 231


def test_variant_sizes_match_torchvision():
    """Parameter counts torchvision publishes for swin_v2_t/s/b (with the 1000-class head)."""
    expected = {swin_v2_t: 28_351_570, swin_v2_s: 49_737_442, swin_v2_b: 87_930_848}
    for build, count in expected.items():
        with torch.device("meta"):
            model = build(num_classes=1000)
        assert sum(p.numel() for p in model.parameters()) == count
    with torch.device("meta"):
        assert swin_v2_b().out_channels == [128, 256, 512, 1024]


def test_strict_load_with_and_without_head(parity):
    entry = parity["models"]["main"]
    state = entry["state_dict"]
    model = _build(entry["config"])
    model.load_state_dict(state, strict=True)
    encoder = _build(dict(entry["config"], num_classes=None))
    with pytest.raises(RuntimeError, match="head"):
        encoder.load_state_dict(state, strict=True)
    encoder.load_torchvision_state_dict(state)  # drops head.* because the encoder has none
    encoder.load_state_dict(strip_classifier(state), strict=True)
    x = entry["cases"][0]["input"]
    with torch.no_grad():
        for a, b in zip(model.eval()(x), encoder.eval()(x)):
            assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="no classification head"):
        encoder.forward_head(torch.zeros(1, 64, 2, 2))


@pytest.mark.parametrize("size", [(67, 45), (32, 32), (130, 70)])
def test_pyramid_shapes_for_any_size(size):
    model = SwinTransformerV2(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4).eval()
    h, w = size[0] // 4, size[1] // 4  # strided patch embedding floors
    expected = []
    for level in range(4):
        expected.append((1, 8 * 2**level, h, w))
        h, w = (h + 1) // 2, (w + 1) // 2  # patch merging pads odd sides
    with torch.no_grad():
        assert [tuple(f.shape) for f in model(torch.rand(1, 3, *size))] == expected
    assert model.strides == [4, 8, 16, 32]


def _small(**kwargs) -> SwinTransformerV2:
    torch.manual_seed(0)
    model = SwinTransformerV2(
        embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4, stochastic_depth_prob=0.0, **kwargs
    )
    with torch.no_grad():  # move off the initialisation so every parameter matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_paths_agree_in_training_with_gradients():
    """SDPA and reference paths: same outputs and same gradients (cpb MLP, logit scale, input)."""
    x = torch.rand(2, 3, 40, 56, dtype=torch.float64)
    grads = {}
    for fused in (True, False):
        model = _small(fused_attention=fused).double().train()
        xx = x.clone().requires_grad_()
        out = model(xx)
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in out)
        loss.backward()
        grads[fused] = {
            "out": torch.cat([o.flatten() for o in out]).detach(),
            "x": xx.grad,
            **{n: p.grad for n, p in model.named_parameters()},
        }
    unused = {"norm.weight", "norm.bias"}  # the final norm is not part of the pyramid
    for key, ref in grads[False].items():
        if key in unused:
            assert ref is None and grads[True][key] is None
            continue
        assert (grads[True][key] - ref).abs().max() <= 1e-9 * ref.abs().max(), key


@pytest.mark.parametrize("fused", [True, False])
def test_padded_windows_train_under_float16_autocast(fused):
    """Zero keys of padded tokens must not turn float16 gradients into NaN (AMP would skip every step).

    40x56 pads the 10x14 stride-4 map to windows of 4 and the 2x2 last stage to 4x4. With
    ``F.normalize``'s 1 / max(|k|, 1e-12) the zero keys' gradient is ~1e12 (inf in float16) and
    the ``qkv`` weight gradient ``inf * 0`` is NaN; a float32 run is unaffected either way.
    """
    x = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    model = _small(fused_attention=fused).train()
    with torch.autocast("cpu", dtype=torch.float16):
        out = model(x)
    assert all(o.dtype == torch.float16 and torch.isfinite(o).all() for o in out)
    (sum(o.float().mean() for o in out) * 2.0**8).backward()  # a GradScaler-like scale
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert bad == []
    qkv = [p.grad for n, p in model.named_parameters() if n.endswith("attn.qkv.weight")]
    assert len(qkv) >= 2 and all(g.abs().sum() > 0 for g in qkv)


def test_frozen_encoder_gradient_to_input_uses_cached_bias():
    """Frozen parameters: the bias is cached, gradients still reach the input exactly."""
    x = torch.rand(1, 3, 48, 40, dtype=torch.float64)
    grads = []
    for fused in (True, False):
        model = _small(fused_attention=fused).double().eval().requires_grad_(False)
        xx = x.clone().requires_grad_()
        sum(o.square().sum() for o in model(xx)).backward()
        grads.append(xx.grad)
    assert (grads[0] - grads[1]).abs().max() <= 1e-9 * grads[1].abs().max()
    attn = model.features[1][0].attn
    assert "bias" in attn._cache


def test_cache_follows_weight_changes_and_inference_mode():
    """Cached bias is refreshed after in-place updates; cached tensors survive inference_mode."""
    model, fresh = _small().eval(), _small().eval()
    x = torch.rand(1, 3, 32, 48)
    with torch.inference_mode():
        model(x)  # fills the caches inside inference mode
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
        fresh.load_state_dict(model.state_dict())
        for a, b in zip(model(x), fresh(x)):
            assert torch.allclose(a, b, atol=1e-6)
    model.train()
    sum(o.sum() for o in model(x)).backward()  # no "inference tensors cannot be saved for backward"
    assert model.features[1][0].attn.cpb_mlp[0].weight.grad is not None


def test_stochastic_depth_rows():
    torch.manual_seed(0)
    layer = StochasticDepth(0.25).train()
    x = torch.ones(4000, 3, 2)
    y = layer(x)
    per_row = y.view(4000, -1)
    kept = per_row[:, 0] > 0
    assert torch.all(per_row[kept] == 1 / 0.75) and torch.all(per_row[~kept] == 0)
    assert abs(kept.float().mean().item() - 0.75) < 0.03
    assert torch.equal(layer.eval()(x), x)
    with pytest.raises(ConfigError):
        StochasticDepth(1.5)
    model = SwinTransformerV2(embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=4, stochastic_depth_prob=0.3)
    rates = [b.stochastic_depth.p for stage in (model.features[1], model.features[3]) for b in stage]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])  # linear in the block index, as torchvision


def test_onednn_linear_matches_and_keeps_autograd():
    torch.manual_seed(0)
    x, w, b = torch.randn(5, 7, 12), torch.randn(20, 12), torch.randn(20)
    with torch.no_grad():
        assert torch.allclose(linear(x, w, b), F.linear(x, w, b), atol=1e-5)
        assert torch.allclose(linear(x, w, b, gelu=True), F.gelu(F.linear(x, w, b)), atol=1e-5)
        assert torch.allclose(linear(x, w), F.linear(x, w), atol=1e-5)
    wg = w.clone().requires_grad_()
    y = linear(x, wg, b, gelu=True)
    assert y.grad_fn is not None  # the autograd path is plain F.linear + GELU
    y.sum().backward()
    assert wg.grad is not None


def test_onednn_switch_changes_nothing_but_kernels():
    model = _small().eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        fast = model(x)
        swin_v2.USE_ONEDNN_LINEAR = False
        try:
            plain = model(x)
        finally:
            swin_v2.USE_ONEDNN_LINEAR = True
    for a, b in zip(fast, plain):
        assert torch.allclose(a, b, atol=1e-5)


def test_set_fused_attention_and_bad_inputs():
    model = _small()
    set_fused_attention(model, False)
    assert not any(m.fused for m in model.modules() if hasattr(m, "fused"))
    with pytest.raises(ShapeError, match="expects"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ShapeError, match="smaller than one patch"):
        model(torch.rand(1, 3, 2, 32))
    with pytest.raises(ConfigError):
        SwinTransformerV2(depths=(2, 2), num_heads=(1,))
    with pytest.raises(ConfigError):
        SwinTransformerV2(embed_dim=10, depths=(1,), num_heads=(3,))
    with pytest.raises(ConfigError):
        SwinTransformerV2(window_size=(0, 4))
