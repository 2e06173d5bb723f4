"""Small shared pieces of the DAC tests: a tiny network configuration and in-memory batches."""

from __future__ import annotations

import functools

import torch

from medfound.networks.deeplabv3plus import DeepLabV3Plus

#: DeepLabV3+ with a ResNet-18 backbone of width 8: the real network, small enough for CPU tests
TINY_NET = {"backbone": "resnet18", "base_channels": 8, "decoder_channels": 16, "low_level_channels": 8}


def tiny_network(num_classes: int = 3) -> functools.partial:
    """The network factory a DACModel takes: the tiny DeepLabV3+ with ``num_classes`` outputs."""
    return functools.partial(DeepLabV3Plus, num_classes=num_classes, **TINY_NET)


def disc_cup_item(seed: int, size: int = 32, domain: str = "D1") -> dict:
    """An in-memory (image, label) pair: a bright disc with a brighter cup on a dark background."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    cy, cx = (torch.rand(2, generator=g) * 0.4 + 0.3) * size
    r = size * (0.18 + 0.08 * torch.rand(1, generator=g))
    d = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
    label = torch.zeros(1, size, size)
    label[0][d < r] = 1
    label[0][d < 0.5 * r] = 2
    image = 0.2 + 0.3 * (label > 0) + 0.3 * (label == 2) + 0.05 * torch.randn(3, size, size, generator=g)
    return {"image": image.float(), "label": label, "domain": domain}


def write_tiny_split(root, domains=("D1", "D2", "D3"), per_domain: int = 6, size: int = 32, labeled: str = "D1",
                     test: str = "D3", n_validation: int = 2) -> str:
    """Write PNG images and class-index label maps for a tiny 3-domain dataset and its split JSON.

    Domains differ in brightness and colour cast, as sites do; unlabelled items keep their
    labels as ``hidden_label`` (for the pseudo-label diagnostics). Returns the split path.
    """
    import json
    from pathlib import Path

    import numpy as np
    from PIL import Image

    root = Path(root)
    gains = {d: (1.0 - 0.2 * i, 1.0, 1.0 + 0.15 * i) for i, d in enumerate(domains)}
    items: dict[str, list] = {}
    for d_idx, domain in enumerate(domains):
        for i in range(per_domain):
            it = disc_cup_item(1000 * d_idx + i, size, domain)
            img = (it["image"] * torch.tensor(gains[domain]).view(3, 1, 1)).clamp(0, 1)
            img_u8 = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            lab_u8 = it["label"][0].numpy().astype(np.uint8)
            ip, lp = root / domain / f"img_{i}.png", root / domain / f"lab_{i}.png"
            ip.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img_u8).save(ip)
            Image.fromarray(lab_u8).save(lp)
            items.setdefault(domain, []).append(
                {"image": f"{domain}/img_{i}.png", "label": f"{domain}/lab_{i}.png", "domain": domain,
                 "case_id": f"{domain}/{i}"})
    split = {
        "dataset": "tiny", "class_names": ["background", "rim", "cup"], "regions": {"disc": [1, 2], "cup": [2]},
        "labeled": items[labeled][n_validation:], "validation": items[labeled][:n_validation],
        # as `medfound dac split` writes them: unlabelled items keep their labels as hidden_label
        "unlabeled": [{**{k: v for k, v in it.items() if k != "label"}, "hidden_label": it["label"]}
                      for d in domains if d not in (labeled, test) for it in items[d]],
        "test": items[test], "test_domain": test, "labeled_domain": labeled,
    }
    path = root / "split.json"
    path.write_text(json.dumps(split, indent=1))
    return str(path)


def tiny_config(split: str, out: str, method: str = "dac", **train) -> dict:
    """A run config for the tiny dataset (32 px, ResNet-18 of width 8, a handful of iterations)."""
    return {
        "data": {"split": split, "spatial_size": [32, 32], "batch_size_labeled": 2, "batch_size_unlabeled": 2,
                 "num_workers": 0},
        "network": {"kwargs": dict(TINY_NET)},
        "method": {"name": method},
        "augment": {"rotation_align": 8},
        "optim": {"lr": 0.01},
        "train": {"output_dir": out, "max_epochs": 2, "iterations_per_epoch": 3, "checkpoint_interval": 2,
                  "log_interval": 100, **train},
    }
