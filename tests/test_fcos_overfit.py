"""End to end: a small FCOS (test-built feature extractor + FCOSHead) learns the synthetic nuclei boxes.

Data: the synthetic multi-task demo (``medfound.data.synthetic.multitask``), task
``microscopy_nuclei_det`` (SYNTHETIC fluorescence nuclei, 96x96 16-bit TIFF, one box per
nucleus), read through its MONAI datalist as a user would.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from medfound.data.synthetic.multitask import write_multitask_demo
from medfound.evaluation.detection import mean_average_precision
from medfound.multitask.fcos_loss import FCOSLoss
from medfound.networks.fcos import FCOSHead, FCOSPostprocessor


def _block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(4, cout), nn.ReLU())


class TinyFCOS(nn.Module):
    """A real (small) detector: conv pyramid at strides 8..128, shared class/box towers, FCOSHead."""

    def __init__(self, channels=16, num_classes=1):
        super().__init__()
        self.stem = nn.Sequential(_block(1, 16, 2), _block(16, 32, 2), _block(32, channels, 2))  # stride 8
        self.down = nn.ModuleList(_block(channels, channels, 2) for _ in range(4))  # strides 16..128
        self.cls_tower = nn.Sequential(_block(channels, channels, 1), _block(channels, channels, 1))
        self.reg_tower = nn.Sequential(_block(channels, channels, 1), _block(channels, channels, 1))
        self.head = FCOSHead(channels, num_classes)

    def forward(self, x):
        feats = [self.stem(x)]
        for down in self.down:
            feats.append(down(feats[-1]))
        return self.head([self.cls_tower(f) for f in feats], [self.reg_tower(f) for f in feats])


@pytest.fixture(scope="module")
def nuclei_batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("multitask")
    write_multitask_demo(root, size="small", seed=0)
    task_dir = root / "microscopy_nuclei_det"
    datalist = json.loads((task_dir / "datalist.json").read_text())
    assert datalist["synthetic"] is True
    images, targets = [], []
    for item in datalist["training"][:3]:
        img = tifffile.imread(task_dir / item["image"]).astype(np.float32)  # (H, W): x = column
        lo, hi = np.percentile(img, [1, 99.8])
        images.append(torch.from_numpy(np.clip((img - lo) / (hi - lo), 0, 1).astype(np.float32))[None])
        targets.append({"boxes": torch.tensor(item["box"], dtype=torch.float32), "labels": torch.tensor(item["label"])})
    return torch.stack(images), targets


@pytest.mark.slow
def test_small_fcos_overfits_synthetic_nuclei(nuclei_batch, single_torch_thread):
    images, targets = nuclei_batch
    size = tuple(images.shape[-2:])
    assert sum(len(t["boxes"]) for t in targets) >= 20
    torch.manual_seed(0)
    model = TinyFCOS()
    loss_fn, post = FCOSLoss(num_classes=1), FCOSPostprocessor()

    model.eval()
    with torch.no_grad():
        before = mean_average_precision(post(model(images), size), targets)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        losses = loss_fn(model(images), targets, image_size=size)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append({k: v.item() for k, v in losses.items()})
    model.eval()
    with torch.no_grad():
        after = mean_average_precision(post(model(images), size), targets)

    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert history[-1]["loss_box"] < 0.3 and history[-1]["loss_cls"] < 0.15
    assert before["voc_ap50"] < 0.3  # an untrained detector finds (almost) nothing
    assert after["voc_ap50"] > 0.85, after
    assert after["map"] > 0.55, after
