"""DAC evidence on the SYNTHETIC demo benchmarks: leave-one-domain-out, every method, several seeds.

Everything here runs on the **synthetic** look-alikes written by
:func:`medfound.data.synthetic.write_demo_data` (fundus: the DoFE layout, 4 domains; polyp:
the PraNet layout, 4 centres; SCGM: 4 sites of spinal-cord MR). The numbers say how the
methods behave on these demos, not on real data.

For each benchmark and each held-out (unseen) domain, one CD-SSDG split is made
(``medfound.data.splits.make_cdssdg_split``: labels from the first other domain,
``--labeled-ratio`` of its training cases, 20 % of them held out for model selection;
unlabelled images from the other source domains). Every method (supervised, CPS, FixMatch,
DAC, DAC without the feature loss, DAC without the auxiliary tasks) is trained with the
same configuration, budget and seeds (``method.name`` is the only difference; every other
value is the DAC default of :mod:`medfound.dac.config` at demo scale), the model selected
on the source validation part is evaluated on the held-out domain at native resolution.

Reported per benchmark: Dice per unseen domain and structure as mean +- std over the
seeds; the paired differences DAC - CPS, CPS - supervised, DAC - supervised, FixMatch -
supervised and DAC minus each ablation (pairs = seeds) with their 95 % t intervals
(:func:`medfound.evaluation.statistics.paired_difference`); the Dice of the trivial
all-foreground prediction beside each domain (a degenerate model must never read as
generalisation); and the auxiliary tasks' accuracy at the end of DAC training (rotation
accuracy, mixed-region IoU against the constant predictor's), per method that has them. Written to
``OUT/<benchmark>/evidence.json``, ``evidence.md`` and ``evidence.png`` (bars with error
bars). Each finished run leaves ``evidence_run.json`` in its folder; a rerun or ``--collect``
reads it back and never trains a finished run again, so the matrix can be split over several
processes (different ``--methods`` / ``--seeds``) and tabulated at the end with ``--collect``.

Usage (demo scale; ``--quick``: one held-out domain, supervised / CPS / DAC, one seed, 60 iterations)::

    python examples/dac_evidence.py --benchmark fundus --out runs/dac_evidence --quick
    python examples/dac_evidence.py --benchmark fundus polyp scgm --seeds 0 1 2 --out runs/dac_evidence
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

METHODS = ("supervised", "cps", "fixmatch", "dac", "dac_no_feat", "dac_no_aux")
QUICK_METHODS = ("supervised", "cps", "dac")
#: the paired differences reported (first - second, pairs = seeds): the paper's ordering and the two ablations
PAIRS = (("dac", "cps"), ("cps", "supervised"), ("dac", "supervised"), ("fixmatch", "supervised"),
         ("dac", "dac_no_feat"), ("dac", "dac_no_aux"))
AUX_KEYS = ("aux_rot_acc", "aux_mask_iou", "aux_mask_iou_const")
#: per finished run: its Dice, best iteration, last log record and seconds (read back instead of retraining)
RUN_RECORD = "evidence_run.json"
#: per benchmark: demo writer, datalist reader, image side, intensity scaling of the images
BENCHMARKS: dict[str, dict[str, Any]] = {
    "fundus": {"writer": "fundus", "reader": ("medfound.data.fundus", "fundus_datalist"), "size": 128,
               "intensity": "uint8"},
    "polyp": {"writer": "polyp", "reader": ("medfound.data.polyp", "polyp_datalist"), "size": 128,
              "intensity": "uint8"},
    "scgm": {"writer": "scgm", "reader": ("medfound.data.scgm", "scgm_datalist"), "size": 64,
             "intensity": "minmax"},
}


def run_config(bench: str, split: Path, out: Path, method: str, seed: int, args: argparse.Namespace) -> dict:
    """The small CPU configuration shared by every method of a benchmark (only ``method.name`` differs)."""
    from medfound.utils import derive_seed

    size = args.size or BENCHMARKS[bench]["size"]
    epochs = 5
    return {
        "data": {"split": str(split), "spatial_size": [size, size], "batch_size_labeled": args.batch,
                 "batch_size_unlabeled": args.batch, "num_workers": 0, "intensity": BENCHMARKS[bench]["intensity"]},
        "network": {"kwargs": {"backbone": "resnet18", "base_channels": args.width,
                               "decoder_channels": 4 * args.width, "low_level_channels": args.width}},
        "method": {"name": method, "init_seeds": [derive_seed(seed, "init", "a"), derive_seed(seed, "init", "b")]},
        "augment": {"style_mix_prob": args.style_mix},
        "optim": {"name": "sgd", "lr": 0.01},
        "train": {"output_dir": str(out), "max_epochs": epochs,
                  "iterations_per_epoch": max(1, args.iterations // epochs), "checkpoint_interval": 10_000,
                  "log_interval": 10_000, "seed": seed, "device": args.device, "progress_bar": False,
                  "tensorboard": False},
    }


def finished_run(bench: str, split: Path, run_dir: Path, method: str, seed: int, domain: str,
                 regions: list[str], args: argparse.Namespace) -> dict[str, Any] | None:
    """The record of a finished run (Dice per region, best iteration, last log record, seconds), or ``None``.

    A run that trained to its end is never trained again: its ``evidence_run.json`` is read, or,
    for a run finished without one (an older version of this script), its final ``model.pt``
    is evaluated (not ``train()``, which would rewrite the run's files) and the record written;
    ``seconds`` is then the training time read from the files (``config.json`` is written when
    training starts, ``model.pt`` when it ends).
    """
    from medfound.dac import evaluate
    from medfound.utils import atomic_write_json

    if (run_dir / RUN_RECORD).exists():
        return json.loads((run_dir / RUN_RECORD).read_text())
    if not (run_dir / "model.pt").exists():
        return None
    seconds = round((run_dir / "model.pt").stat().st_mtime - (run_dir / "config.json").stat().st_mtime, 1)
    cfg = run_config(bench, split, run_dir, method, seed, args)
    per = evaluate(cfg)["test"].summary()["per_domain"][domain]
    best = run_dir / "best_model.json"
    record = {"dice": {r: float(per[r]["dice"]["mean"]) for r in regions},
              "best_iteration": json.loads(best.read_text())["iteration"] if best.exists() else -1,
              "last_epoch": last_epoch(run_dir), "seconds": seconds}
    atomic_write_json(run_dir / RUN_RECORD, record)
    return record


def last_epoch(out: Path) -> dict[str, float]:
    """The training log's last record (losses, auxiliary accuracy, source validation)."""
    log = out / "training_log.jsonl"
    if not log.exists():
        return {}
    last = json.loads(log.read_text().splitlines()[-1])
    return {k: v for k, v in last.items() if isinstance(v, (int, float))}


def last_pseudo_label_dice(out: Path) -> dict[str, float]:
    """``"a disc"`` -> Dice of sub-model A's pseudo labels for the disc on the unlabelled items of the last
    epoch, mean over the unlabelled domains (a sub-model that labels everything background scores 0 there).

    Read from the run's ``pseudo_labels.jsonl``; empty for methods without pseudo labels or without labels
    on the unlabelled items.
    """
    log = out / "pseudo_labels.jsonl"
    if not log.exists():
        return {}
    per: dict[str, list[float]] = {}
    for key, value in json.loads(log.read_text().splitlines()[-1])["pseudo_labels"].items():
        _, sub, region = key.split("|")
        per.setdefault(f"{sub} {region}", []).append(float(value["dice"]))
    return {k: float(np.mean(v)) for k, v in sorted(per.items())}


def all_foreground_dice(items: list[dict], regions: dict[str, list[int]]) -> dict[str, float]:
    """Mean over cases of the Dice of predicting every pixel as each region (the trivial baseline)."""
    from monai.transforms import LoadImage

    load = LoadImage(image_only=True)
    per: dict[str, list[float]] = {r: [] for r in regions}
    for it in items:
        lab = np.asarray(load(it["label"]))
        for r, classes in regions.items():
            g = float(np.isin(lab, classes).sum())
            per[r].append(2 * g / (g + lab.size))
    return {r: float(np.mean(v)) for r, v in per.items()}


def summarise(dice: dict, trivial: dict, aux: dict, methods: list[str], domains: list[str],
              regions: list[str]) -> dict[str, Any]:
    """mean +- std per method/domain/region over the seeds that ran (``dice[m][d][r] = {seed: value}``),
    the mean over domains per seed (seeds with every domain), and the paired differences of
    :data:`PAIRS` (DAC - CPS also as ``dac_minus_cps``) per domain/region (pairs = seeds both
    methods ran). ``None`` where nothing ran."""
    from medfound.evaluation.statistics import mean_interval, paired_difference

    def stats(values: list[float]) -> dict | None:
        return mean_interval(values) if values else None

    def domain_mean(m: str, r: str) -> dict[int, float]:
        seeds = set.intersection(*(set(dice[m][d][r]) for d in domains))
        return {s: float(np.mean([dice[m][d][r][s] for d in domains])) for s in sorted(seeds)}

    table: dict[str, Any] = {}
    for m in methods:
        table[m] = {d: {r: stats(list(dice[m][d][r].values())) for r in regions} for d in domains}
        table[m]["mean"] = {r: stats(list(domain_mean(m, r).values())) for r in regions}
    paired: dict[str, Any] = {}
    for first, second in PAIRS:
        if first not in methods or second not in methods:
            continue
        pair = paired[f"{first} - {second}"] = {}
        for d in [*domains, "mean"]:
            pair[d] = {}
            for r in regions:
                a, b = (domain_mean(m, r) if d == "mean" else dice[m][d][r] for m in (first, second))
                common = sorted(set(a) & set(b))
                pair[d][r] = paired_difference([a[s] for s in common], [b[s] for s in common]) if common else None
    aux_summary = {k: mean_interval(v) for k, v in aux.items() if v}
    return {"table": table, "dac_minus_cps": paired.get("dac - cps", {}), "paired_differences": paired,
            "all_foreground": trivial, "aux": aux_summary}


def markdown(bench: str, summary: dict, methods: list[str], domains: list[str], regions: list[str],
             settings: str, n_seeds: int) -> str:
    t, p, triv = summary["table"], summary["dac_minus_cps"], summary["all_foreground"]
    cols = [f"{d} {r}" for d in domains for r in regions] + [f"mean {r}" for r in regions]
    lines = [f"### {bench} (SYNTHETIC demo): Dice on the unseen domain, mean +- std over seeds", "",
             settings, "", "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]

    def cell(s: dict | None) -> str:
        if s is None:
            return "n/a"
        return f"{s['mean']:.3f} +- {s['std']:.3f}" + ("" if s["n"] == n_seeds else f" (n={s['n']})")

    for m in methods:
        lines.append(f"| {m} | " + " | ".join(cell(t[m][d][r]) for d in [*domains, "mean"] for r in regions) + " |")
    lines.append("| all-foreground | " + " | ".join(f"{triv[d][r]:.3f}" for d in domains for r in regions)
                 + " | " + " | ".join(f"{np.mean([triv[d][r] for d in domains]):.3f}" for r in regions) + " |")
    def diff(s: dict | None) -> str:
        return "n/a" if s is None else f"{s['mean']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}]"

    if p:
        lines.append("| DAC - CPS (95 % CI) | " + " | ".join(diff(p[d][r]) for d in [*domains, "mean"]
                                                           for r in regions) + " |")
    pairs = summary.get("paired_differences") or {}
    if pairs:
        lines += ["", "Paired differences (pairs = seeds), mean [95 % t interval]:", "",
                  "| difference | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(diff(pair[d][r]) for d in [*domains, "mean"] for r in regions) + " |"
                  for name, pair in pairs.items()]
    by_method = summary.get("aux_by_method") or ({"dac": summary["aux"]} if summary["aux"] else {})
    if by_method:
        lines += ["", ("Auxiliary tasks, last epoch (mean +- std over domains and seeds; rotation chance 0.25, "
                       "aux_mask_iou_const: the constant predictor's IoU):")]
        lines += [f"- {m}: " + ", ".join(f"{k} {v['mean']:.3f} +- {v['std']:.3f}" for k, v in a.items())
                  for m, a in by_method.items()]
    pseudo = summary.get("pseudo_labels_by_method") or {}
    if pseudo:
        lines += ["", ("Pseudo labels on the unlabelled source domains, last epoch: Dice of sub-model A's and B's "
                       "(mean +- std over held-out domains and seeds; 0 = that sub-model labels it background "
                       "everywhere):")]
        lines += [f"- {m}: " + ", ".join(f"{k} {v['mean']:.3f} +- {v['std']:.3f}" for k, v in a.items())
                  for m, a in pseudo.items()]
    return "\n".join(lines) + "\n"


def plot(path: Path, bench: str, summary: dict, methods: list[str], domains: list[str], regions: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(regions), figsize=((3.2 + 2.2 * len(domains)) * len(regions), 4), squeeze=False)
    width = 0.8 / (len(methods) + 1)
    x = np.arange(len(domains) + 1)
    for ax, r in zip(axes[0], regions):
        for i, m in enumerate(methods):
            vals = [summary["table"][m][d][r] for d in [*domains, "mean"]]
            ax.bar(x + i * width, [np.nan if v is None else v["mean"] for v in vals], width,
                   yerr=[0.0 if v is None or not np.isfinite(v["std"]) else v["std"] for v in vals], capsize=2,
                   label=m)
        triv = [summary["all_foreground"][d][r] for d in domains]
        triv.append(float(np.mean(triv)))
        ax.bar(x + len(methods) * width, triv, width, color="lightgrey", hatch="//", label="all-foreground")
        ax.set_xticks(x + 0.4 - width / 2, [*domains, "mean"], rotation=20)
        ax.set_ylim(0, 1)
        ax.set_title(f"{bench} (SYNTHETIC): {r} Dice, unseen domain", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_benchmark(bench: str, args: argparse.Namespace) -> dict[str, Any]:
    import importlib

    from medfound.dac import evaluate, train
    from medfound.data.splits import make_cdssdg_split, save_split
    from medfound.data.synthetic import write_demo_data
    from medfound.evaluation.statistics import mean_interval
    from medfound.utils import atomic_write_json, atomic_write_text

    spec = BENCHMARKS[bench]
    out = Path(args.out) / bench
    data_root = Path(args.data) / spec["writer"] if args.data else out / "data" / spec["writer"]
    if not (data_root / "manifest.json").exists():
        print(f"writing the SYNTHETIC {bench} demo to {data_root}")
        write_demo_data(data_root.parent, [spec["writer"]], size="small", seed=0)
    module, fn = spec["reader"]
    datalist = getattr(importlib.import_module(module), fn)(data_root, cache_dir=out / "data" / "labels")
    domains = list(args.test_domains or datalist["domains"])
    if args.quick:
        domains = domains[-1:]
    regions = dict(datalist["regions"])
    methods = list(args.methods)
    dice: dict[str, Any] = {m: {d: {r: {} for r in regions} for d in domains} for m in methods}
    aux_by_method: dict[str, dict[str, list[float]]] = {}  # method -> auxiliary metric -> last-epoch values
    pseudo_by_method: dict[str, dict[str, list[float]]] = {}  # method -> "a disc" -> last-epoch pseudo-label Dice
    trivial: dict[str, dict[str, float]] = {}
    runs: dict[str, Any] = {}
    start = time.time()
    for d in domains:
        split = make_cdssdg_split(datalist, test_domain=d, labeled_ratio=args.labeled_ratio, val_ratio=0.2,
                                  seed=args.split_seed)
        split_path = save_split(out / "splits" / f"test-{d}.json", split)
        trivial[d] = all_foreground_dice(split["test"], regions)
        print(f"\n{bench}: unseen {d}, labelled {split['labeled_domain']} {split['counts']}", flush=True)
        for seed in args.seeds:
            for m in methods:
                run_dir = out / "runs" / f"seed{seed}" / f"test-{d}" / m
                record = finished_run(bench, split_path, run_dir, m, seed, d, list(regions), args)
                if record is None and args.collect:
                    continue  # --collect: tabulate the finished runs only
                if record is None:
                    cfg = run_config(bench, split_path, run_dir, m, seed, args)
                    t0 = time.time()
                    summary = train(cfg)
                    per = evaluate(cfg)["test"].summary()["per_domain"][d]
                    record = {"dice": {r: float(per[r]["dice"]["mean"]) for r in regions},
                              "best_iteration": summary["best_iteration"], "last_epoch": last_epoch(run_dir),
                              "seconds": round(time.time() - t0, 1)}
                    atomic_write_json(run_dir / RUN_RECORD, record)
                for r in regions:
                    dice[m][d][r][seed] = record["dice"][r]
                last = record["last_epoch"]
                for k in AUX_KEYS:
                    if k in last:
                        aux_by_method.setdefault(m, {}).setdefault(k, []).append(float(last[k]))
                for k, v in last_pseudo_label_dice(run_dir).items():
                    pseudo_by_method.setdefault(m, {}).setdefault(k, []).append(v)
                runs[f"seed{seed}/test-{d}/{m}"] = record
                print(f"  seed {seed} {m:<12} " + "  ".join(f"{r} {dice[m][d][r][seed]:.3f}" for r in regions)
                      + "".join(f"  {k} {last[k]:.2f}" for k in ("aux_rot_acc", "aux_mask_iou") if k in last)
                      + f"  ({record['seconds']} s)", flush=True)
    aux = aux_by_method.get("dac", {})
    regs = list(regions)
    summary = summarise(dice, trivial, aux, methods, domains, regs)
    summary["aux_by_method"] = {m: {k: mean_interval(v) for k, v in a.items()} for m, a in aux_by_method.items()}
    summary["pseudo_labels_by_method"] = {m: {k: mean_interval(v) for k, v in a.items()}
                                          for m, a in pseudo_by_method.items()}
    settings = (f"{args.iterations} iterations, labelled ratio {args.labeled_ratio}, {args.size or spec['size']} px, "
                f"ResNet-18 width {args.width}, batch {args.batch} + {args.batch}, seeds {args.seeds}, "
                f"style mixing p {args.style_mix}")
    text = markdown(bench, summary, methods, domains, regs, settings, len(args.seeds))
    print("\n" + text, flush=True)
    result = {"synthetic": True, "benchmark": bench, "settings": {k: v for k, v in vars(args).items()},
              "domains": domains, "regions": regions, "dice_per_seed": dice, **summary, "runs": runs,
              "seconds": round(time.time() - start, 1)}
    atomic_write_json(out / "evidence.json", result)
    atomic_write_text(out / "evidence.md", text)
    plot(out / "evidence.png", bench, summary, methods, domains, regs)
    print(f"wrote {out / 'evidence.json'}, evidence.md and evidence.png ({time.time() - start:.0f} s)")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", nargs="+", default=["fundus"], choices=sorted(BENCHMARKS))
    parser.add_argument("--out", default="runs/dac_evidence", help="output folder")
    parser.add_argument("--data", default=None,
                        help="folder of existing synthetic demos (default: OUT/<benchmark>/data)")
    parser.add_argument("--quick", action="store_true",
                        help="last domain held out only, supervised / CPS / DAC, one seed, 60 iterations")
    parser.add_argument("--test-domains", nargs="+", default=None, help="held-out domains (default: every domain)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--iterations", type=int, default=300, help="training iterations per run (default 300)")
    parser.add_argument("--labeled-ratio", type=float, default=0.5, help="labelled fraction of the source domain")
    parser.add_argument("--size", type=int, default=None, help="image side (default: fundus, polyp 128; scgm 64)")
    parser.add_argument("--width", type=int, default=16, help="ResNet-18 base width (default 16; 64 is published)")
    parser.add_argument("--batch", type=int, default=4, help="labelled = unlabelled batch size (default 4)")
    parser.add_argument("--style-mix", type=float, default=0.0, help="augment.style_mix_prob (default 0: off)")
    parser.add_argument("--collect", action="store_true",
                        help="train nothing: tabulate the runs under OUT that have finished")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the CD-SSDG splits (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    if args.quick:
        args.methods = [m for m in args.methods if m in QUICK_METHODS] or list(QUICK_METHODS)
        args.seeds = args.seeds[:1]
        args.iterations = min(args.iterations, 60)
    torch.set_num_threads(args.threads)
    return {b: run_benchmark(b, args) for b in args.benchmark}


if __name__ == "__main__":
    main(sys.argv[1:])
