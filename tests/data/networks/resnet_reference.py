"""Deterministic random weights for the ResNet parity fixtures (pure torch, no torchvision).

A full ResNet state dict is tens of MB, so the committed fixture stores only the key
names and shapes of torchvision's models, an input and torchvision's outputs; both the
generator (``make_resnet_reference.py``) and the test rebuild the same weights from a
seed with :func:`reference_state_dict`. Every tensor, buffers included, is random (not
torchvision's constant init), so a mis-mapped norm statistic changes the output.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch


def reference_state_dict(keys_shapes: Sequence[tuple[str, Sequence[int]]], seed: int) -> OrderedDict[str, torch.Tensor]:
    """Random tensors for ``[(key, shape), ...]`` in the given order, from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape in keys_shapes:
        shape = tuple(shape)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("running_mean"):
            state[key] = torch.randn(shape, generator=gen) * 0.1
        elif len(shape) == 4:  # conv: He-scaled so activations neither vanish nor explode
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)
        elif len(shape) == 2:  # fc
            state[key] = torch.randn(shape, generator=gen) / math.sqrt(shape[1])
        elif key.endswith("weight"):  # norm scale
            state[key] = torch.rand(shape, generator=gen) * 0.5 + 0.5
        else:  # norm shift, fc bias
            state[key] = torch.randn(shape, generator=gen) * 0.1
    return state


def checksums(state: OrderedDict[str, torch.Tensor]) -> list[float]:
    """Per-tensor float64 sums, stored with the fixture to detect generator drift."""
    return [float(v.double().sum()) for v in state.values()]
