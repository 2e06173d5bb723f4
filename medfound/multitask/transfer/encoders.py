"""Encoders of the transfer protocol: a UMedPT without task heads from a pre-training folder, a
UMedPT state dict, torchvision-format Swin V2 weights, or random initialisation.

Example
-------
>>> model, kwargs = build_encoder_model("random", {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2],
...                                                "window_size": 4, "squeezer_channels": 16}, seed=0)
>>> len(model.heads), kwargs["embed_dim"]
(0, 8)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medfound.errors import WeightsError
from medfound.networks.umedpt import UMedPT
from medfound.utils import load_torch_file, read_config_file

__all__ = ["build_encoder_model", "encoder_network_args"]


def _is_torchvision_swin(state: Mapping[str, Any]) -> bool:
    return any(k.startswith("features.") for k in state)


def _folder_network_args(folder: Path) -> dict[str, Any] | None:
    """The UMedPT arguments a pre-training folder records in ``network.json`` (``None`` without one)."""
    meta = folder / "network.json"
    if not meta.is_file():
        return None
    return dict(read_config_file(meta, expect=dict, what="network description").get("umedpt") or {})


def encoder_network_args(
    encoders: Mapping[str, str | os.PathLike], network: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """UMedPT arguments for encoders that carry none (``"random"``, ``"torchvision:..."``):
    ``network`` when given, else those of the first pre-training folder among ``encoders``."""
    if network is not None:
        return dict(network)
    for source in encoders.values():
        args = _folder_network_args(Path(os.fspath(source)))
        if args is not None:
            return args
    return {}


def build_encoder_model(
    source: str | os.PathLike, network: Mapping[str, Any] | None = None, seed: int = 0
) -> tuple[nn.Module, dict[str, Any]]:
    """A UMedPT without task heads for one encoder source; returns ``(model, umedpt_kwargs)``.

    ``source``: ``"random"`` (``network`` arguments, weights drawn after ``torch.manual_seed(seed)``);
    a pre-training folder (``model.pt`` + ``network.json``); a UMedPT state dict file; or
    ``"torchvision:PATH"`` (a torchvision Swin V2 state dict loaded into the encoder, with
    ImageNet input normalisation).
    """
    kwargs = dict(network or {})
    kwargs.pop("tasks", None)
    text = os.fspath(source)
    torch.manual_seed(int(seed))
    if text == "random":
        return UMedPT(**kwargs), kwargs
    if text.startswith("torchvision:"):
        path = text.split(":", 1)[1]
        if not os.path.isfile(path):
            raise WeightsError(f"torchvision weights {path} do not exist")
        kwargs.update(encoder_weights=path, input_normalization="imagenet")
        model = UMedPT(**kwargs)
        return model, {k: v for k, v in kwargs.items() if k != "encoder_weights"}
    path = Path(text)
    if path.is_dir():
        recorded = _folder_network_args(path)
        if recorded is not None:
            kwargs = {**recorded, **{k: v for k, v in kwargs.items() if k == "head_dropout"}}
        path = path / "model.pt"
    state = load_torch_file(path, what="encoder weights")
    if _is_torchvision_swin(state):
        return build_encoder_model(f"torchvision:{path}", kwargs, seed)
    shared = {k[len("shared.") :]: v for k, v in state.items() if k.startswith("shared.")}
    if not shared:
        raise WeightsError(f"{path} holds no UMedPT shared blocks (no 'shared.*' keys)")
    model = UMedPT(**kwargs)
    try:
        model.shared.load_state_dict(shared, strict=True)
    except RuntimeError as err:
        raise WeightsError(f"{path} does not fit a UMedPT built with {kwargs}: {err}") from None
    return model, kwargs
