"""From a dataset folder to a per-domain Dice table: datalist, CD-SSDG split, DeepLabV3+, evaluation.

Runs on the SYNTHETIC fundus demo data (written on the fly) unless ``--root`` points at a
real DoFE-layout folder. It trains a plain supervised DeepLabV3+ on the labelled source
domain of one leave-one-domain-out split (no DAC: that is ``medfound.dac``), selects the
checkpoint on the source validation part, and evaluates it on the unseen test domain.

    python examples/dac_data_pipeline.py --out /tmp/dac_pipeline            # synthetic, CPU, ~minutes
    python examples/dac_data_pipeline.py --root /data/fundus --backbone resnet50 --size 256 --iterations 2000

Outputs in ``--out``: ``datalist.json``, the split file, ``evaluation.json``,
``evaluation_cases.csv`` and ``evaluation_summary.csv``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.data import DataLoader, Dataset
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    RandFlipd,
    RandRotate90d,
    Resized,
    ScaleIntensityd,
)

from medfound.data.fundus import fundus_datalist
from medfound.data.splits import make_cdssdg_split, save_split, split_filename
from medfound.evaluation.segmentation import evaluate_segmentation
from medfound.networks.deeplabv3plus import DeepLabV3Plus
from medfound.utils import atomic_write_json, resolve_device


def pipeline(size: int, train: bool) -> Compose:
    keys = ["image", "label"]
    steps = [
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        ScaleIntensityd(keys="image", minv=0.0, maxv=1.0),
        Resized(keys=keys, spatial_size=(size, size), mode=("bilinear", "nearest")),
    ]
    if train:
        steps += [RandFlipd(keys=keys, prob=0.5, spatial_axis=1), RandRotate90d(keys=keys, prob=0.5)]
    return Compose([*steps, EnsureTyped(keys=keys, dtype=torch.float32)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="DoFE-layout fundus folder (default: synthetic demo data)")
    parser.add_argument("--out", default="dac_pipeline_out")
    parser.add_argument("--test-domain", default="Domain1")
    parser.add_argument("--labeled-domain", default="Domain2")
    parser.add_argument("--labeled-ratio", type=float, default=1.0)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--base-channels", type=int, default=16, help="backbone width (64 = published)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    out = Path(args.out)
    root = Path(args.root) if args.root else out / "fundus_synthetic"
    if args.root is None and not (root / "manifest.json").is_file():
        from medfound.data.synthetic import write_fundus_demo

        print(f"writing SYNTHETIC fundus demo data to {root}")
        write_fundus_demo(root, size="small", seed=args.seed)
    datalist = fundus_datalist(root, cache_dir=out / "label_cache", log=print)
    atomic_write_json(out / "datalist.json", datalist, sort_keys=True)
    split = make_cdssdg_split(datalist, args.test_domain, args.labeled_domain, labeled_ratio=args.labeled_ratio,
                              seed=args.seed)
    save_split(out / "splits" / split_filename(split), split)
    print(f"split: {split['counts']} (test {split['test_domain']}, labelled {split['labeled_domain']})")

    torch.manual_seed(args.seed)
    device = resolve_device("auto")
    net = DeepLabV3Plus(num_classes=len(datalist["class_names"]), backbone=args.backbone,
                        base_channels=args.base_channels, norm="batch").to(device)
    train = pipeline(args.size, train=True)
    train.set_random_state(seed=args.seed)
    loader = DataLoader(Dataset(split["labeled"], train), batch_size=args.batch_size, shuffle=True, drop_last=True)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=args.iterations, power=0.9)
    best, best_state, it, start = -1.0, None, 0, time.perf_counter()
    while it < args.iterations:
        for batch in loader:
            net.train()
            x, y = batch["image"].to(device), batch["label"].to(device)[:, 0].long()
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            it += 1
            if it % 50 == 0 or it == args.iterations:  # model selection on the source validation part only
                val = evaluate_segmentation(net, split["validation"], datalist["regions"],
                                            transform=pipeline(args.size, train=False), device=device)
                score = val.summary()["overall"]["mean"]["dice"]["mean"]
                print(f"iter {it:5d}  loss {loss.item():.4f}  source-validation Dice {score:.4f}  "
                      f"{time.perf_counter() - start:.0f} s")
                if score > best:
                    best, best_state = score, {k: v.detach().clone() for k, v in net.state_dict().items()}
            if it >= args.iterations:
                break
    net.load_state_dict(best_state)
    results = evaluate_segmentation(net, split["test"], datalist["regions"], metrics=("dice", "hd95"),
                                    transform=pipeline(args.size, train=False), device=device)
    results.to_json(out / "evaluation.json")
    results.to_csv(out / "evaluation.csv")
    note = " (SYNTHETIC demo data)" if datalist["synthetic"] else ""
    print(f"\nsupervised DeepLabV3+ on {split['labeled_domain']}, unseen domain {split['test_domain']}{note}:")
    print(results.format_table("dice"))
    print(f"results in {out}")


if __name__ == "__main__":
    main()
