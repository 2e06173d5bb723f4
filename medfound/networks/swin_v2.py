"""Swin Transformer V2 encoder with torchvision-compatible parameters and a fused attention path.

Parameter names, shapes and buffers are those of ``torchvision.models.swin_v2_t/s/b``
(``features.0`` patch embedding, ``features.1/3/5/7`` stages of
``SwinTransformerBlockV2``, ``features.2/4/6`` ``PatchMergingV2``, ``norm``, ``head``), so a
torchvision state dict, or the UMedPT encoder's, loads with ``load_state_dict(strict=True)``.
The model computes exactly what torchvision computes (post-norm residual blocks, cosine
attention with a clamped learned logit scale per head, continuous relative position bias
``16 * sigmoid(cpb_mlp(...))``, shifted windows with the ``-100`` mask, zero padding of the
feature maps to whole windows, odd sizes padded before patch merging), but:

- it returns the feature pyramid: the stage outputs at strides 4, 8, 16, 32 as NCHW maps
  (torchvision's ``features[1]``, ``[3]``, ``[5]``, ``[7]`` outputs, permuted), optionally
  with the final-norm output;
- the attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`
  (``fused_attention=True``): q and k are L2-normalised, the per-head logit scale is folded
  into q (SDPA's ``scale`` is one scalar, so it is set to 1) and the relative position bias
  plus the shift mask form SDPA's additive ``attn_mask``; ``fused_attention=False`` runs
  the plain matmul-softmax reference (same numbers within float rounding);
- windows are formed and undone with one precomputed gather each (cyclic shift and window
  partition in a single copy; indices and masks cached per map size), and the relative
  position bias is cached while it cannot change (no gradient needed, parameters untouched);
- linear layers run through oneDNN in CPU inference (:func:`linear`).

Example
-------
>>> import torch
>>> from medfound.networks.swin_v2 import SwinTransformerV2
>>> net = SwinTransformerV2(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4)
>>> [tuple(f.shape) for f in net(torch.rand(1, 3, 64, 96))]
[(1, 8, 16, 24), (1, 16, 8, 12), (1, 32, 4, 6), (1, 64, 2, 3)]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medfound.errors import ConfigError, ShapeError
from medfound.utils.checks import check_probability

__all__ = [
    "SwinTransformerV2",
    "SwinTransformerBlockV2",
    "ShiftedWindowAttentionV2",
    "PatchMergingV2",
    "StochasticDepth",
    "swin_v2_t",
    "swin_v2_s",
    "swin_v2_b",
    "SWIN_V2_VARIANTS",
    "strip_classifier",
    "set_fused_attention",
    "linear",
]

#: torchvision's configurations of the three published Swin V2 variants
SWIN_V2_VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), "stochastic_depth_prob": 0.2},
    "small": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24), "stochastic_depth_prob": 0.3},
    "base": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32), "stochastic_depth_prob": 0.5},
}

# torchvision's mask value for token pairs from different regions of a shifted window (not -inf:
# cosine logits are bounded, and -100 is what the published weights were trained with)
_SHIFT_MASK_VALUE = -100.0


#: switch for the oneDNN inference kernels (see :func:`linear`); tests and benchmarks may turn it off
USE_ONEDNN_LINEAR = True


def _onednn_linear_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`linear` may use oneDNN: float32 on the CPU, no gradient wanted, not tracing."""
    return (
        USE_ONEDNN_LINEAR
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not (torch.jit.is_tracing() or torch.jit.is_scripting())
        and not torch.is_autocast_enabled("cpu")  # autocast decides the matmul dtype itself
        and _HAS_ONEDNN_LINEAR
    )


_HAS_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, gelu: bool = False) -> torch.Tensor:
    """``F.linear`` (optionally followed by exact GELU), through oneDNN for CPU inference.

    PyTorch's CPU ``addmm`` calls MKL, which is up to 2-4x slower than oneDNN on some CPUs
    (e.g. AMD EPYC, where MKL takes its AVX2 path); oneDNN also applies the bias and GELU
    while the output is in cache. Used only where no gradient is needed (inference,
    frozen weights under ``no_grad``) and never while tracing, so autograd and export see
    plain ``F.linear``; the results equal ``F.linear`` up to float rounding.

    Example
    -------
    >>> import torch
    >>> x, w, b = torch.randn(4, 8), torch.randn(16, 8), torch.randn(16)
    >>> with torch.no_grad():
    ...     bool(torch.allclose(linear(x, w, b, gelu=True), F.gelu(F.linear(x, w, b)), atol=1e-5))
    True
    """
    if _onednn_linear_ok(x, weight):
        if gelu:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    y = F.linear(x, weight, bias)
    return F.gelu(y) if gelu else y


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ConfigError(f"{name} must be a positive int or a pair of them, got {value}")
    return value  # type: ignore[return-value]


def relative_coords_table(window_size: tuple[int, int]) -> torch.Tensor:
    """Log-spaced relative coordinates fed to the continuous position bias MLP, ``(1, 2Wh-1, 2Ww-1, 2)``."""
    wh, ww = window_size
    coords_h = torch.arange(-(wh - 1), wh, dtype=torch.float32)
    coords_w = torch.arange(-(ww - 1), ww, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).unsqueeze(0)
    # normalise to [-8, 8] (a 1-wide window has no relative offsets to normalise)
    table[..., 0] /= max(wh - 1, 1)
    table[..., 1] /= max(ww - 1, 1)
    table *= 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / 3.0


def relative_position_index(window_size: tuple[int, int]) -> torch.Tensor:
    """Index into the ``(2Wh-1) * (2Ww-1)`` bias table for every token pair of a window, ``(N * N,)``."""
    wh, ww = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    return ((rel[..., 0] + wh - 1) * (2 * ww - 1) + (rel[..., 1] + ww - 1)).flatten()


def _shift_region_mask(
    pad_hw: tuple[int, int], window: tuple[int, int], shift: tuple[int, int], device
) -> torch.Tensor:
    """``(nW, N, N)`` additive mask: 0 within a region of the rolled map, -100 across regions."""
    regions = torch.zeros(pad_hw, device=device)
    count = 0
    for h in ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None)):
        for w in ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None)):
            regions[h[0] : h[1], w[0] : w[1]] = count
            count += 1
    nh, nw = pad_hw[0] // window[0], pad_hw[1] // window[1]
    regions = regions.view(nh, window[0], nw, window[1]).permute(0, 2, 1, 3).reshape(nh * nw, -1)
    diff = regions.unsqueeze(1) - regions.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill_(diff != 0, _SHIFT_MASK_VALUE)


def _window_gather_index(
    pad_hw: tuple[int, int], window: tuple[int, int], shift: tuple[int, int], device
) -> torch.Tensor:
    """Token order of the (cyclically shifted) window partition of a row-major ``pad_h x pad_w`` map."""
    (ph, pw), (wh, ww) = pad_hw, window
    rows = (torch.arange(ph, device=device).view(ph // wh, 1, wh, 1) + shift[0]) % ph
    cols = (torch.arange(pw, device=device).view(1, pw // ww, 1, ww) + shift[1]) % pw
    return (rows * pw + cols).reshape(-1)


@functools.lru_cache(maxsize=64)
def _window_tensors(
    pad_hw: tuple[int, int], window: tuple[int, int], shift: tuple[int, int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Gather order, its inverse and the shift mask of one map size: shared by all blocks, bounded LRU."""
    with torch.inference_mode(False):  # normal tensors, usable by autograd later
        order = _window_gather_index(pad_hw, window, shift, device)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=device)
        mask = _shift_region_mask(pad_hw, window, shift, device) if shift[0] > 0 or shift[1] > 0 else None
    return order, inverse, mask


class StochasticDepth(nn.Module):
    """Drops the whole residual branch per sample with probability ``p`` in training ("row" mode).

    Kept samples are scaled by ``1 / (1 - p)``, as ``torchvision.ops.StochasticDepth(p, "row")``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = check_probability(p, "stochastic depth probability")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _unit_rows(x: torch.Tensor, factor: torch.Tensor | None = None) -> torch.Tensor:
    """``x / |x|`` along the last axis (times ``factor``), 0 for a zero row, in ``x``'s dtype.

    torchvision's ``F.normalize`` divides by ``max(|x|, 1e-12)``: for the zero keys of padded
    tokens (Swin V2 has no key bias) the gradient then carries a factor 1e12, which is inf in
    float16, and ``inf * 0`` in the ``qkv`` weight gradient makes it NaN, so under AMP every
    step that sees a padded window is skipped. Here a zero row maps to 0 with gradient 0 (the
    padded tokens' gradients are discarded anyway), the norm runs in float32 at least, and rows with a
    norm above 1e-12 get exactly ``F.normalize``'s values.
    """
    x32 = x.to(torch.promote_types(x.dtype, torch.float32))  # float16/bfloat16 up, float64 kept
    norm = torch.linalg.vector_norm(x32, dim=-1, keepdim=True)
    safe = norm.clamp_min(1e-12)
    # the float32 arithmetic of F.normalize (x / max(|x|, eps)) and of q * (scale / |q|), bit for bit
    out = x32 / safe if factor is None else x32 * (factor / safe)
    # zero rows: 0 with gradient 0 (the unselected branch's gradient is 0, and 1 / safe is finite)
    return torch.where(norm > 1e-12, out, torch.zeros_like(out)).to(x.dtype)


class ShiftedWindowAttentionV2(nn.Module):
    """Swin V2 (shifted) window attention on NHWC maps, torchvision-compatible.

    Parameters
    ----------
    dim : channels.
    window_size : window height and width.
    shift_size : cyclic shift (0 for the regular windows; half the window for shifted ones).
    num_heads : attention heads (``dim`` must divide by it).
    qkv_bias, proj_bias : biases of the projections (the key bias is held at zero, as in Swin V2).
    attention_dropout, dropout : dropout on attention weights and on the output.
    fused : use scaled-dot-product attention (else the explicit matmul-softmax reference).
    """

    def __init__(
        self,
        dim: int,
        window_size: tuple[int, int],
        shift_size: tuple[int, int],
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        attention_dropout: float = 0.0,
        dropout: float = 0.0,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.window_size = _pair(window_size, "window_size")
        self.shift_size = tuple(int(s) for s in shift_size)
        self.num_heads = int(num_heads)
        self.attention_dropout = float(attention_dropout)
        self.dropout = float(dropout)
        self.fused = bool(fused)

        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False)
        )
        self.register_buffer("relative_coords_table", relative_coords_table(self.window_size))
        self.register_buffer("relative_position_index", relative_position_index(self.window_size))
        if qkv_bias:
            with torch.no_grad():
                self.qkv.bias[dim : 2 * dim].zero_()
        # position bias and head scales while the parameters stay the same: {"bias": (key, value)}
        self._cache: dict[str, tuple[Any, torch.Tensor]] = {}

    # -- derived tensors -------------------------------------------------------------------
    def _bias_params(self) -> list[torch.Tensor]:
        return [p for p in (*self.cpb_mlp.parameters(), self.logit_scale) if p is not None]

    def _cacheable(self) -> bool:
        """Derived tensors may be cached when no gradient must flow into them (eval, frozen, no_grad)."""
        if torch.jit.is_tracing() or torch.jit.is_scripting():
            return False
        return not (torch.is_grad_enabled() and any(p.requires_grad for p in self._bias_params()))

    def _param_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self._bias_params())

    def get_relative_position_bias(self) -> torch.Tensor:
        """``16 * sigmoid`` of the continuous position bias MLP, ``(1, num_heads, N, N)``."""
        n = self.window_size[0] * self.window_size[1]
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        bias = table[self.relative_position_index].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        return 16 * torch.sigmoid(bias)

    def _head_scale(self) -> torch.Tensor:
        return torch.clamp(self.logit_scale, max=math.log(100.0)).exp()

    def _bias_and_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._cacheable():
            return self.get_relative_position_bias(), self._head_scale()
        key = self._param_key()
        hit = self._cache.get("bias")
        if hit is None or hit[0] != key:
            # a normal tensor even under inference_mode, so later autograd use stays legal
            with torch.inference_mode(False), torch.no_grad():
                value = torch.cat([self.get_relative_position_bias().flatten(), self._head_scale().flatten()])
            hit = (key, value)
            self._cache["bias"] = hit
        n = self.window_size[0] * self.window_size[1]
        bias, scale = hit[1].split([self.num_heads * n * n, self.num_heads])
        return bias.view(1, self.num_heads, n, n), scale.view(self.num_heads, 1, 1)

    def _apply(self, fn, recurse: bool = True):  # .to()/.cuda()/.half(): drop the cached bias
        self._cache = {}
        return super()._apply(fn, recurse)

    # -- forward -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        b, h, w, c = x.shape
        wh, ww = self.window_size
        pad_b, pad_r = (wh - h % wh) % wh, (ww - w % ww) % ww
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        pad_hw = (h + pad_b, w + pad_r)
        # no shift along an axis that one window already covers
        shift = (0 if wh >= pad_hw[0] else self.shift_size[0], 0 if ww >= pad_hw[1] else self.shift_size[1])
        n, n_win = wh * ww, (pad_hw[0] // wh) * (pad_hw[1] // ww)

        # cyclic shift + window partition as one gather: (B, nW * N, C)
        order, inverse, mask = _window_tensors(pad_hw, self.window_size, shift, x.device)
        windows = x.reshape(b, -1, c).index_select(1, order)

        qkv_bias = self.qkv.bias
        if qkv_bias is not None:  # Swin V2 has no key bias
            qkv_bias = torch.cat([qkv_bias[:c], torch.zeros_like(qkv_bias[c : 2 * c]), qkv_bias[2 * c :]])
        qkv = linear(windows, self.qkv.weight, qkv_bias)
        bias, scale = self._bias_and_scale()
        dropout_p = self.attention_dropout if self.training else 0.0
        if self.fused:
            out = self._sdpa(qkv, bias, scale, mask, b, n_win, n, c, dropout_p)
        else:
            out = self._reference(qkv, bias, scale, mask, b, n_win, n, c, dropout_p)
        out = linear(out, self.proj.weight, self.proj.bias)
        out = F.dropout(out, p=self.dropout, training=self.training)

        # window reverse + cyclic unshift + crop of the padding as one gather
        if pad_b or pad_r:
            inverse = inverse.view(pad_hw)[:h, :w].reshape(-1)
        return out.index_select(1, inverse).view(b, h, w, c)

    def _reference(self, qkv, bias, scale, mask, b, n_win, n, c, dropout_p) -> torch.Tensor:
        """Explicit cosine attention, as torchvision computes it."""
        heads = self.num_heads
        q, k, v = qkv.view(b * n_win, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = _unit_rows(q) @ _unit_rows(k).transpose(-2, -1)
        attn = attn * scale + bias
        if mask is not None:
            attn = (attn.view(b, n_win, heads, n, n) + mask.view(1, n_win, 1, n, n)).view(-1, heads, n, n)
        attn = F.dropout(F.softmax(attn, dim=-1), p=dropout_p, training=dropout_p > 0)
        return (attn @ v).transpose(1, 2).reshape(b, n_win * n, c)

    def _sdpa(self, qkv, bias, scale, mask, b, n_win, n, c, dropout_p) -> torch.Tensor:
        """Cosine attention through SDPA: scale folded into q, bias + mask as ``attn_mask``."""
        heads, d = self.num_heads, c // self.num_heads
        # q * scale / |q| and k / |k| in one pass over q and k (F.normalize's eps, 1e-12)
        factor = torch.cat([scale.view(1, heads, 1), torch.ones_like(scale).view(1, heads, 1)])
        if mask is None:
            # one bias for every window: (B * nW, heads, N, d) views of qkv broadcast against it
            qkv = qkv.view(b * n_win, n, 3, heads, d)
            qk = _unit_rows(qkv[:, :, :2], factor)
            q, k, v = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=1.0)
            return out.transpose(1, 2).reshape(b, n_win * n, c)
        # the shift mask differs per window: put windows next to heads, (B, nW * heads, N, d), so
        # SDPA broadcasts one (nW * heads, N, N) mask over the batch instead of a per-sample copy
        qkv = qkv.view(b, n_win, n, 3, heads, d).permute(3, 0, 1, 4, 2, 5).contiguous()
        qk = _unit_rows(qkv[:2], factor.view(2, 1, 1, heads, 1, 1))
        q, k, v = (t.view(b, n_win * heads, n, d) for t in (qk[0], qk[1], qkv[2]))
        attn_mask = (bias + mask.unsqueeze(1)).reshape(1, n_win * heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=1.0)
        return out.view(b, n_win, heads, n, d).transpose(2, 3).reshape(b, n_win * n, c)

    def extra_repr(self) -> str:
        return (
            f"window_size={self.window_size}, shift_size={self.shift_size}, num_heads={self.num_heads}, "
            f"fused={self.fused}"
        )


class SwinTransformerBlockV2(nn.Module):
    """Swin V2 block (residual post-norm): ``x + drop(norm1(attn(x)))``, ``x + drop(norm2(mlp(x)))``, NHWC."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: tuple[int, int],
        shift_size: tuple[int, int],
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        stochastic_depth_prob: float = 0.0,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = ShiftedWindowAttentionV2(
            dim,
            window_size,
            shift_size,
            num_heads,
            attention_dropout=attention_dropout,
            dropout=dropout,
            fused=fused_attention,
        )
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        hidden = int(dim * mlp_ratio)
        # indices 0 and 3 carry the weights, as torchvision.ops.MLP names them
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        fc1, act, drop1, fc2, drop2 = self.mlp
        if isinstance(act, nn.GELU) and act.approximate == "none":
            h = linear(x, fc1.weight, fc1.bias, gelu=True)  # GELU fused into the matmul where possible
        else:
            h = act(fc1(x))
        return drop2(linear(drop1(h), fc2.weight, fc2.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.stochastic_depth(self.norm1(self.attn(x)))
        return x + self.stochastic_depth(self.norm2(self._mlp(x)))


class PatchMergingV2(nn.Module):
    """2x2 patch merging (Swin V2: reduction, then norm), NHWC; odd sides are zero-padded first."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
            h, w = h + h % 2, w + w % 2
        # channel order (row offset, col offset) = (0,0), (1,0), (0,1), (1,1), as torchvision concatenates
        x = x.view(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        return self.norm(linear(x, self.reduction.weight))


class _Permute(nn.Module):
    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class SwinTransformerV2(nn.Module):
    """Swin Transformer V2 backbone returning the NCHW feature pyramid (strides 4, 8, 16, 32).

    Parameters
    ----------
    embed_dim : channels after the patch embedding (doubled by every patch merging).
    depths : blocks per stage.
    num_heads : attention heads per stage.
    window_size : attention window (int or (height, width)); feature maps are zero-padded to
        whole windows as torchvision does.
    patch_size : patch embedding size (stride of the first stage).
    mlp_ratio, dropout, attention_dropout : as torchvision.
    stochastic_depth_prob : drop-path rate of the last block (linearly increasing from 0).
    num_classes : size of the classification ``head`` (``None``: no head, the encoder use).
    in_channels : input channels (3 for torchvision weights).
    fused_attention : scaled-dot-product attention (default) or the explicit reference.

    ``forward(x)`` returns the list of the four stage outputs, ``(B, C_i, H / s_i, W / s_i)``
    (sides are floored by the strided patch embedding and rounded up by the patch merging,
    as in torchvision). :meth:`forward_pyramid` can append the final-norm output,
    :meth:`forward_features` gives that output alone and :meth:`forward_head` the logits.

    Example
    -------
    >>> import torch
    >>> net = swin_v2_t()
    >>> len(net.state_dict())  # torchvision's swin_v2_t without the 2 head entries
    231
    >>> feats = net(torch.rand(1, 3, 64, 64))
    >>> [f.shape[1] for f in feats]
    [96, 192, 384, 768]
    """

    def __init__(
        self,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int | Sequence[int] = 8,
        patch_size: int | Sequence[int] = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        stochastic_depth_prob: float = 0.1,
        num_classes: int | None = None,
        in_channels: int = 3,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        depths, num_heads = [int(d) for d in depths], [int(h) for h in num_heads]
        if len(depths) != len(num_heads) or not depths or min(depths) < 1:
            raise ConfigError(f"depths {depths} and num_heads {num_heads} must be non-empty, equally long, >= 1")
        self.window_size = _pair(window_size, "window_size")
        self.patch_size = _pair(patch_size, "patch_size")
        self.embed_dim = int(embed_dim)
        self.depths, self.num_heads = depths, num_heads
        self.in_channels = int(in_channels)
        self.num_classes = num_classes

        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(self.in_channels, embed_dim, kernel_size=self.patch_size, stride=self.patch_size),
                _Permute([0, 2, 3, 1]),
                nn.LayerNorm(embed_dim, eps=1e-5),
            )
        ]
        total, block_id = sum(depths), 0
        for stage, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = embed_dim * 2**stage
            blocks = []
            for i in range(depth):
                sd_prob = stochastic_depth_prob * block_id / max(total - 1, 1)
                shift = (0, 0) if i % 2 == 0 else (self.window_size[0] // 2, self.window_size[1] // 2)
                blocks.append(
                    SwinTransformerBlockV2(
                        dim,
                        heads,
                        self.window_size,
                        shift,
                        mlp_ratio=mlp_ratio,
                        dropout=dropout,
                        attention_dropout=attention_dropout,
                        stochastic_depth_prob=sd_prob,
                        fused_attention=fused_attention,
                    )
                )
                block_id += 1
            layers.append(nn.Sequential(*blocks))
            if stage < len(depths) - 1:
                layers.append(PatchMergingV2(dim))
        self.features = nn.Sequential(*layers)
        self.out_channels = [embed_dim * 2**i for i in range(len(depths))]
        self.strides = [self.patch_size[0] * 2**i for i in range(len(depths))]
        self.norm = nn.LayerNorm(self.out_channels[-1], eps=1e-5)
        if num_classes is not None:
            self.head = nn.Linear(self.out_channels[-1], int(num_classes))

        # torchvision's initialisation: every linear layer (MLPs included) truncated normal
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"SwinTransformerV2 expects (B, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        if x.shape[-2] < self.patch_size[0] or x.shape[-1] < self.patch_size[1]:
            raise ShapeError(f"SwinTransformerV2 input {tuple(x.shape)} is smaller than one patch {self.patch_size}")

    def forward_pyramid(self, x: torch.Tensor, with_norm: bool = False) -> list[torch.Tensor]:
        """Stage outputs (NCHW, strides 4, 8, 16, 32), plus the final-norm output if ``with_norm``."""
        self._check_input(x)
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i % 2 == 1:  # stages sit at odd indices, patch merging at even ones
                outs.append(x)
        if with_norm:
            outs.append(self.norm(x))
        return [o.permute(0, 3, 1, 2) for o in outs]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature pyramid: ``[(B, C, H/4, W/4), (B, 2C, H/8, W/8), (B, 4C, H/16, W/16), (B, 8C, H/32, W/32)]``."""
        return self.forward_pyramid(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final-norm output of the deepest stage, NCHW."""
        self._check_input(x)
        return self.norm(self.features(x)).permute(0, 3, 1, 2)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from :meth:`forward_features` output (global average pool + ``head``)."""
        if not hasattr(self, "head"):
            raise ConfigError("this SwinTransformerV2 has no classification head (num_classes=None)")
        return self.head(features.mean(dim=(2, 3)))

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True):
        """Load a torchvision-format state dict; its ``head.*`` entries are dropped when this model has no head."""
        if not hasattr(self, "head"):
            state_dict = strip_classifier(state_dict)
        return self.load_state_dict(state_dict, strict=strict)


def strip_classifier(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of ``state_dict`` without torchvision's ``head.weight`` / ``head.bias``.

    Example
    -------
    >>> sorted(strip_classifier({"norm.weight": 1, "head.weight": 2, "head.bias": 3}))
    ['norm.weight']
    """
    return {k: v for k, v in state_dict.items() if not k.startswith("head.")}


def set_fused_attention(module: nn.Module, fused: bool) -> nn.Module:
    """Switch every Swin V2 attention in ``module`` between SDPA (``True``) and the reference path."""
    for m in module.modules():
        if isinstance(m, ShiftedWindowAttentionV2):
            m.fused = bool(fused)
    return module


def _variant(name: str, kwargs: dict[str, Any]) -> SwinTransformerV2:
    config = dict(SWIN_V2_VARIANTS[name], window_size=8)
    config.update(kwargs)
    return SwinTransformerV2(**config)


def swin_v2_t(**kwargs: Any) -> SwinTransformerV2:
    """Swin-V2-T (embed 96, depths 2-2-6-2, heads 3-6-12-24, window 8), torchvision's ``swin_v2_t``.

    Keyword arguments override the configuration (e.g. ``num_classes=1000`` for the head).
    """
    return _variant("tiny", kwargs)


def swin_v2_s(**kwargs: Any) -> SwinTransformerV2:
    """Swin-V2-S (embed 96, depths 2-2-18-2, heads 3-6-12-24, window 8), torchvision's ``swin_v2_s``."""
    return _variant("small", kwargs)


def swin_v2_b(**kwargs: Any) -> SwinTransformerV2:
    """Swin-V2-B (embed 128, depths 2-2-18-2, heads 4-8-16-32, window 8), torchvision's ``swin_v2_b``."""
    return _variant("base", kwargs)
