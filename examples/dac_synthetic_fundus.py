"""Leave-one-domain-out on the SYNTHETIC fundus demo: supervised only vs CPS vs DAC.

Everything here runs on the **synthetic** look-alike of the DoFE fundus release written by
:func:`medfound.data.synthetic.write_fundus_demo` (4 domains imitating Drishti-GS,
RIM-ONE-r3, REFUGE train and REFUGE validation; the cup is small and faint in Domain3 and
Domain4). The numbers say how the methods behave on this demo, not on real fundus data.

For each held-out (unseen) domain, a CD-SSDG split is made with ``medfound``'s split
function (labels from the first other domain, ``--labeled-ratio`` of its training images,
20 % of them held out for model selection; unlabelled images from the other source
domains), and each method is trained with the same small configuration, budget and seeds
(DeepLabV3+ with a ResNet-18 backbone of width 16, 128 x 128 images, batch 4 + 4, SGD with
the poly schedule). The model selected on the source validation part is evaluated on the
held-out domain's test images at their native resolution.

Writes ``OUT/results.json`` (the table, per-case results, and diagnostics: pseudo-label
Dice per unlabelled domain and the auxiliary losses at the end of training) and
``OUT/results.md``, and prints the Dice table (disc, cup, per unseen domain, mean).

Usage::

    python examples/dac_synthetic_fundus.py --out runs/dac_demo             # all four domains
    python examples/dac_synthetic_fundus.py --out runs/dac_quick --quick    # Domain4 only, fewer iterations
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

METHODS = ("supervised", "cps", "dac")
DOMAINS = ("Domain1", "Domain2", "Domain3", "Domain4")


def run_config(split: Path, out: Path, method: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """The small CPU configuration shared by every method (only ``method.name`` differs).

    ``seed`` sets the data order, augmentation and step randomness, and the initialisations
    of sub-models A and B (seeds ``derive_seed(seed, "init", "a")`` and ``(seed, "init", "b")``).
    """
    from medfound.utils import derive_seed

    epochs = 5
    return {
        "data": {"split": str(split), "spatial_size": [args.size, args.size], "batch_size_labeled": args.batch,
                 "batch_size_unlabeled": args.batch, "num_workers": 0},
        "network": {"kwargs": {"backbone": "resnet18", "base_channels": args.width,
                               "decoder_channels": 4 * args.width, "low_level_channels": args.width}},
        "method": {"name": method, "init_seeds": [derive_seed(seed, "init", "a"), derive_seed(seed, "init", "b")]},
        "optim": {"name": "sgd", "lr": 0.01},
        "train": {"output_dir": str(out), "max_epochs": epochs,
                  "iterations_per_epoch": max(1, args.iterations // epochs), "checkpoint_interval": 10_000,
                  "log_interval": 10_000, "seed": seed, "device": args.device, "progress_bar": False},
    }


def diagnostics(out: Path) -> dict[str, Any]:
    """Last epoch's pseudo-label quality per domain and losses (from the run's logs)."""
    diag: dict[str, Any] = {}
    log = out / "training_log.jsonl"
    if log.exists():
        last = [json.loads(line) for line in log.read_text().splitlines()][-1]
        diag["last_epoch_losses"] = {k: v for k, v in last.items() if k not in ("epoch", "iteration")}
    pseudo = out / "pseudo_labels.jsonl"
    if pseudo.exists():
        diag["pseudo_labels_last_epoch"] = json.loads(pseudo.read_text().splitlines()[-1])["pseudo_labels"]
    best = out / "best_model.json"
    if best.exists():
        diag["selected"] = json.loads(best.read_text())
    return diag


def mean_over_seeds(per_seed: dict[int, dict[str, dict[str, dict[str, float]]]]) -> dict[str, Any]:
    """method -> domain -> region -> mean over the seeds."""
    seeds = list(per_seed)
    first = per_seed[seeds[0]]
    return {m: {d: {r: sum(per_seed[s][m][d][r] for s in seeds) / len(seeds) for r in first[m][d]}
                for d in first[m]} for m in first}


def format_table(rows: dict[str, dict[str, dict[str, float]]], domains: list[str]) -> str:
    head = "| method | " + " | ".join(f"{d} disc | {d} cup" for d in domains) + " | mean disc | mean cup |"
    sep = "|---" * (1 + 2 * len(domains) + 2) + "|"
    lines = [head, sep]
    for method, per in rows.items():
        cells = [f"{per[d]['disc']:.4f} | {per[d]['cup']:.4f}" for d in domains]
        mean_disc = sum(per[d]["disc"] for d in domains) / len(domains)
        mean_cup = sum(per[d]["cup"] for d in domains) / len(domains)
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {mean_disc:.4f} | {mean_cup:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/dac_synthetic_fundus", help="output folder")
    parser.add_argument("--data", default=None,
                        help="an existing synthetic fundus demo folder (default: write one under OUT/data)")
    parser.add_argument("--quick", action="store_true", help="Domain4 held out only, 100 iterations")
    parser.add_argument("--test-domains", nargs="+", default=None, choices=DOMAINS, help="held-out domains")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=("supervised", "cps", "fixmatch",
                        "dac", "dac_no_feat", "dac_no_aux"), help="methods (default: supervised cps dac)")
    parser.add_argument("--iterations", type=int, default=300, help="training iterations per run (default 300)")
    parser.add_argument("--labeled-ratio", type=float, default=0.5, help="labelled fraction of the source domain")
    parser.add_argument("--size", type=int, default=128, help="training image side (default 128)")
    parser.add_argument("--width", type=int, default=16, help="ResNet-18 base width (default 16; 64 is published)")
    parser.add_argument("--batch", type=int, default=4, help="labelled = unlabelled batch size (default 4)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds (data order, augmentation, initialisation); the table averages them")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the CD-SSDG splits (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: small networks on shared cores run best on one)")
    args = parser.parse_args(argv)
    if args.quick:
        args.test_domains = args.test_domains or ["Domain4"]
        args.iterations = min(args.iterations, 100)
    test_domains = args.test_domains or list(DOMAINS)
    torch.set_num_threads(args.threads)

    from medfound.dac import evaluate, train
    from medfound.data.fundus import fundus_datalist
    from medfound.data.splits import make_cdssdg_split, save_split
    from medfound.data.synthetic import write_fundus_demo
    from medfound.utils import atomic_write_json, atomic_write_text

    out = Path(args.out)
    data_root = Path(args.data) if args.data else out / "data" / "fundus"
    if not (data_root / "manifest.json").exists():
        print(f"writing the SYNTHETIC fundus demo to {data_root}")
        write_fundus_demo(data_root, size="small", seed=0)
    datalist = fundus_datalist(data_root, cache_dir=out / "data" / "labels")

    per_seed: dict[int, dict[str, dict[str, dict[str, float]]]] = {}
    details: dict[str, Any] = {}
    start = time.time()
    for test_domain in test_domains:
        split = make_cdssdg_split(datalist, test_domain=test_domain, labeled_ratio=args.labeled_ratio,
                                  val_ratio=0.2, seed=args.split_seed)
        split_path = save_split(out / "splits" / f"test-{test_domain}.json", split)
        print(f"\nunseen {test_domain}: labelled {split['labeled_domain']} ({split['counts']})")
        for seed in args.seeds:
            rows = per_seed.setdefault(seed, {m: {} for m in args.methods})
            for method in args.methods:
                # a finished run is not trained again: train() resumes from its last checkpoint
                run_dir = out / "runs" / f"seed{seed}" / f"test-{test_domain}" / method
                cfg = run_config(split_path, run_dir, method, seed, args)
                t0 = time.time()
                summary = train(cfg)
                res = evaluate(cfg)["test"]
                s = res.summary()["per_domain"][test_domain]
                dice = rows[method][test_domain] = {"disc": s["disc"]["dice"]["mean"], "cup": s["cup"]["dice"]["mean"]}
                details[f"seed{seed}/{test_domain}/{method}"] = {
                    "dice": dice, "train": summary, "seconds": round(time.time() - t0, 1),
                    "diagnostics": diagnostics(run_dir), "cases": res.cases, "skipped": res.skipped,
                }
                print(f"  seed {seed} {method:<11} disc {dice['disc']:.4f}  cup {dice['cup']:.4f}"
                      f"  ({time.time() - t0:.0f} s, best at iteration {summary['best_iteration']})")

    mean = mean_over_seeds(per_seed)
    settings = (f"{args.iterations} iterations, labelled ratio {args.labeled_ratio}, {args.size} px, "
                f"ResNet-18 width {args.width}, batch {args.batch} + {args.batch}")
    text = (f"Dice on the unseen domain, mean over seeds {args.seeds} (SYNTHETIC fundus demo; {settings})\n\n"
            f"{format_table(mean, test_domains)}\n")
    if len(args.seeds) > 1:
        for seed in args.seeds:
            text += f"\nseed {seed}\n\n{format_table(per_seed[seed], test_domains)}\n"
    print("\n" + text)
    print(f"total time {time.time() - start:.0f} s")
    result = {"synthetic": True, "settings": vars(args), "table": mean,
              "per_seed": {str(s): t for s, t in per_seed.items()}, "runs": details,
              "seconds": round(time.time() - start, 1)}
    atomic_write_json(out / "results.json", result)
    atomic_write_text(out / "results.md", text)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
