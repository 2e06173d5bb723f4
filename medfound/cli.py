"""The ``medfound`` command.

A thin face over the library: each sub-command parses its arguments and calls one
public function. Errors that medfound raises on bad input are printed as one line
(``medfound: error: ...``) with exit status 2; anything else is a bug and keeps its
traceback.

Example
-------
.. code-block:: bash

    medfound --version
    medfound info
    medfound demo-data ./demo --size small --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence

import medfound
from medfound.errors import MedfoundError

__all__ = ["build_parser", "main"]


def _cmd_info(args: argparse.Namespace) -> int:
    from medfound.info import format_info, info_json

    print(info_json() if args.json else format_info())
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions of medfound and its dependencies, optional parts, GPU")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info)


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from medfound.data.synthetic import write_demo_data

    print(f"writing SYNTHETIC demo data (size={args.size}, seed={args.seed}) to {args.out_dir}")
    written = write_demo_data(args.out_dir, datasets=args.datasets, size=args.size, seed=args.seed, log=print)
    print("done. Each folder has a README.md and manifest.json; datasets:")
    for name, path in written.items():
        print(f"  {name}: {path.resolve()}")
    return 0


def _add_demo_data(sub: argparse._SubParsersAction) -> None:
    from medfound.data.synthetic.common import SIZES

    datasets = ("fundus", "polyp", "scgm", "multitask")
    p = sub.add_parser(
        "demo-data",
        help="write the synthetic multi-domain demo datasets in the public layouts",
        description="Write deterministic SYNTHETIC datasets (fundus, polyp, scgm, multitask) in the layouts of "
        "the real public releases, so the adapters for real data read them unchanged.",
    )
    p.add_argument("out_dir", help="destination folder")
    p.add_argument("--size", choices=SIZES, default="small", help="dataset size preset (default: small)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default: 0)")
    p.add_argument("--datasets", nargs="+", choices=datasets, default=None, metavar="NAME",
                   help=f"subset to write (default: all of {', '.join(datasets)})")
    p.set_defaults(func=_cmd_demo_data)


#: sub-command registrars, in the order ``medfound --help`` lists them
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_info, _add_demo_data]


def _cmd_convert_umedpt(args: argparse.Namespace) -> int:
    from medfound.convert.umedpt import convert_umedpt

    report = convert_umedpt(args.archive, args.out_dir)
    print(f"imported {', '.join(report['imported'])} from {report['source']['archive']} into {args.out_dir}")
    if report["initialised"]:
        print(f"  not in the archive (freshly initialised in model.pt): {', '.join(report['initialised'])}")
    if report["skipped_members"]:
        print(f"  members not read (task heads etc.): {', '.join(report['skipped_members'])}")
    print(f"  UMedPT arguments: {report['config']} (umedpt_config.json)")
    return 0


def _add_convert_umedpt(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-umedpt",
        help="import the published UMedPT weights (.pt.zip) without running code from the file",
        description="Read a UMedPT .pt.zip archive (MedicalMultitaskModeling) with a restricted unpickler and "
        "write medfound state dicts (encoder.pt, squeezer.pt, seg_decoder.pt), a bundle-ready model.pt and "
        "umedpt_config.json into OUT_DIR. The archive is your own download; do not redistribute it.",
    )
    p.add_argument("archive", help="the .pt.zip archive")
    p.add_argument("out_dir", help="destination folder")
    p.set_defaults(func=_cmd_convert_umedpt)


COMMANDS.append(_add_convert_umedpt)

# ---------------------------------------------------------------- dac: datasets and CD-SSDG splits

#: dataset name -> adapter (module, function) for ``medfound dac datalist`` / ``dac split --dataset``
DAC_ADAPTERS = {
    "fundus": ("medfound.data.fundus", "fundus_datalist"),
    "polyp": ("medfound.data.polyp", "polyp_datalist"),
    "scgm": ("medfound.data.scgm", "scgm_datalist"),
}


def _run_adapter(dataset: str, root: str, cache_dir: str | None, on_error: str) -> dict:
    import importlib

    module, func = DAC_ADAPTERS[dataset]
    adapter = getattr(importlib.import_module(module), func)
    return adapter(root, cache_dir=cache_dir, on_error=on_error, log=print)


def _cmd_dac_datalist(args: argparse.Namespace) -> int:
    from medfound.utils import atomic_write_json

    datalist = _run_adapter(args.dataset, args.root, args.cache_dir, args.on_error)
    atomic_write_json(args.output, datalist, sort_keys=True)
    synthetic = " (SYNTHETIC demo data)" if datalist.get("synthetic") else ""
    print(f"wrote {args.output}: {datalist['num_items']} items, domains {', '.join(datalist['domains'])}{synthetic}")
    for bad in datalist.get("skipped", []):
        print(f"  skipped {bad['case']}: {bad['error']}")
    return 0


def _add_dac_datalist(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datalist", help="validate a public dataset layout and write its datalist JSON",
                       description="Validate a dataset folder in its public layout (fundus: DoFE, polyp: PraNet, "
                       "scgm: SCGM challenge), decode its labels into class-index maps in a cache folder and "
                       "write a MONAI datalist JSON with a 'domain' per item.")
    p.add_argument("dataset", choices=sorted(DAC_ADAPTERS), help="dataset layout")
    p.add_argument("root", help="dataset folder")
    p.add_argument("-o", "--output", required=True, help="datalist JSON to write")
    p.add_argument("--cache-dir", default=None, help="folder for decoded labels (default: ROOT/.medfound_cache/NAME)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="stop at a bad case (default) or skip and report it")
    p.set_defaults(func=_cmd_dac_datalist)


def _cmd_dac_split(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medfound.data.datalist import load_datalist
    from medfound.data.splits import all_cdssdg_splits, save_split, split_filename
    from medfound.utils import resolve_inside

    if args.dataset:
        datalist = _run_adapter(args.dataset, args.source, args.cache_dir, args.on_error)
    else:
        load_datalist(args.source)  # a missing or malformed file: its own error, naming it
        datalist = args.source  # errors about what the file holds name it too
    labeled = [args.labeled_domain] if args.labeled_domain else None
    splits = list(all_cdssdg_splits(
        datalist, test_domains=args.test_domain, labeled_domains=labeled, labeled_ratio=args.labeled_ratio,
        val_ratio=args.val_ratio, seed=args.seed, labeled_rest=args.labeled_rest))
    if not args.all_labeled_domains and labeled is None:  # default: first source domain per test domain
        first: dict[str, dict] = {}
        for s in splits:
            first.setdefault(s["test_domain"], s)
        splits = list(first.values())
    out = Path(args.output)
    single = len(splits) == 1 and out.suffix == ".json"
    for split in splits:
        path = out if single else resolve_inside(out, split_filename(split))  # never outside -o
        save_split(path, split)
        counts = ", ".join(f"{k} {v}" for k, v in split["counts"].items())
        print(f"wrote {path}: test {split['test_domain']}, labelled {split['labeled_domain']} "
              f"(ratio {split['labeled_ratio']:g}): {counts}")
    return 0


def _add_dac_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="leave-one-domain-out CD-SSDG split files",
                       description="Write deterministic leave-one-domain-out splits (labelled items from one "
                       "source domain, unlabelled from the others, validation held out of the labelled domain, "
                       "test domain untouched) as JSON with keys labeled/unlabeled/validation/test.")
    p.add_argument("source", help="datalist JSON (any dataset whose items carry 'domain'), or a dataset folder "
                   "with --dataset")
    p.add_argument("-o", "--output", required=True,
                   help="split JSON (when exactly one split results) or folder for several")
    p.add_argument("--dataset", choices=sorted(DAC_ADAPTERS), default=None,
                   help="read SOURCE as a dataset folder in this public layout")
    p.add_argument("--test-domain", nargs="+", default=None, metavar="DOMAIN",
                   help="held-out domain(s) (default: each domain in turn)")
    p.add_argument("--labeled-domain", default=None,
                   help="labelled source domain (default: the first other domain in sorted order)")
    p.add_argument("--all-labeled-domains", action="store_true",
                   help="one split per (test domain, labelled domain) pair")
    p.add_argument("--labeled-ratio", type=float, default=1.0, help="fraction of labelled cases kept (default 1.0)")
    p.add_argument("--val-ratio", type=float, default=0.2,
                   help="fraction of the labelled domain held out for validation (default 0.2)")
    p.add_argument("--labeled-rest", choices=("unlabeled", "drop"), default="unlabeled",
                   help="labelled-domain cases left by --labeled-ratio < 1: unlabelled data (default) or dropped")
    p.add_argument("--seed", type=int, default=0, help="shuffling seed (default 0)")
    p.add_argument("--cache-dir", default=None, help="with --dataset: folder for decoded labels")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="with --dataset: bad cases")
    p.set_defaults(func=_cmd_dac_split)


#: ``medfound dac`` sub-command registrars (``train`` and ``evaluate`` join them)
DAC_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_dac_datalist, _add_dac_split]


# ---------------------------------------------------------------- dac: training and evaluation


def _parse_overrides(pairs: Sequence[str] | None) -> dict:
    """``["method.name=cps", "train.max_epochs=5"]`` -> dict; values are JSON when they parse as JSON."""
    import json

    from medfound.errors import ConfigError

    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set expects section.key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _dac_overrides(args: argparse.Namespace) -> dict:
    overrides = _parse_overrides(args.set)
    if getattr(args, "method", None):
        overrides["method.name"] = args.method
    if getattr(args, "output_dir", None):
        overrides["train.output_dir"] = args.output_dir
    return overrides


def _cmd_dac_train(args: argparse.Namespace) -> int:
    from medfound.dac import train

    summary = train(args.config, _dac_overrides(args), verbose=True, allow_any_network=args.allow_any_network)
    print(f"done: {summary['method']}, {summary['iterations']} iterations"
          f"{' (resumed)' if summary['resumed'] else ''}; output in {summary['output_dir']}")
    if summary["best_model"]:
        print(f"  best model (source validation Dice {summary['best_metric']:.4f} at iteration "
              f"{summary['best_iteration']}): {summary['best_model']}")
    print(f"  final model: {summary['final_model']}; checkpoint: {summary['checkpoint']}")
    print(f"  the run as a bundle config: {summary['output_dir']}/train_config.json; curves: "
          f"{summary['output_dir']}/curves.png")
    if summary["skipped"]:
        print(f"  {summary['skipped']} unreadable item(s) skipped: see {summary['output_dir']}/skipped_items.json")
    return 0


#: what ``medfound dac train/evaluate --help`` says about configs and code
DAC_CONFIG_SAFETY = (
    "A DAC config is plain data: values in MONAI config syntax ($ expressions, @ references, _target_) are "
    "refused, and network.target must be a registered network (deeplabv3plus) unless --allow-any-network. "
    "The train_config.json written next to a run is a MONAI bundle config, i.e. code: run only configs you wrote "
    "or checked."
)


def _add_common_dac_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (JSON or YAML; sections data, network, method, augment, optim, "
                   "train, evaluate; see medfound.dac.config)")
    p.add_argument("--method", default=None,
                   choices=("dac", "dac_no_feat", "dac_no_aux", "cps", "fixmatch", "supervised"),
                   help="override method.name")
    p.add_argument("--output-dir", default=None, help="override train.output_dir")
    p.add_argument("--set", action="append", default=None, metavar="SECTION.KEY=VALUE",
                   help="override a config value (a JSON value); repeat for several, e.g. "
                   "--set train.max_epochs=5 --set data.split=s.json")
    p.add_argument("--allow-any-network", action="store_true",
                   help="let network.target import any class, not only registered networks: the config then "
                   "chooses code to run; only for configs you wrote")


def _add_dac_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train DAC or a baseline on a split file",
                       description="Train DAC co-training (or a baseline: supervised, cps, fixmatch, dac_no_feat, "
                       "dac_no_aux) on a split JSON from `medfound dac split`. The run is written as a MONAI bundle "
                       "config, OUTPUT_DIR/train_config.json, and run from it; it resumes from OUTPUT_DIR/last.pt. "
                       "Bad items are skipped and listed in OUTPUT_DIR/skipped_items.json (data.on_error=raise "
                       "stops at the first); a NaN/inf loss stops the run, naming the batch's files. "
                       + DAC_CONFIG_SAFETY)
    _add_common_dac_args(p)
    p.set_defaults(func=_cmd_dac_train)


def _cmd_dac_evaluate(args: argparse.Namespace) -> int:
    from medfound.dac import evaluate

    overrides = _dac_overrides(args)
    if args.checkpoint:
        overrides["evaluate.checkpoint"] = args.checkpoint
    if args.parts:
        overrides["evaluate.parts"] = args.parts
    results = evaluate(args.config, overrides, verbose=True, allow_any_network=args.allow_any_network)
    for part, res in results.items():
        print(f"{part}: {len(res.cases)} cases, {len(res.skipped)} skipped; Dice per domain (mean ± std)")
        print(res.format_table("dice"))
        for bad in res.skipped:
            print(f"  skipped {bad['case_id']}: {bad['error']}")
    return 0


def _add_dac_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Dice per region, case and domain of a trained model",
                       description="Evaluate the model trained with CONFIG on parts of its split (default: test) at "
                       "the labels' native resolution; writes CSV and JSON under OUTPUT_DIR/evaluation. The run is "
                       "evaluated as it was trained: its OUTPUT_DIR/config.json (with the training's --set "
                       "overrides) gives everything but the evaluate section, the device and this command's own "
                       "overrides. " + DAC_CONFIG_SAFETY)
    _add_common_dac_args(p)
    p.add_argument("--checkpoint", default=None, help="'best' (default), 'last' or a model file")
    p.add_argument("--parts", nargs="+", default=None, help="split parts to evaluate (default: test)")
    p.set_defaults(func=_cmd_dac_evaluate)


DAC_COMMANDS += [_add_dac_train, _add_dac_evaluate]


def _add_dac(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dac", help="DAC co-training for CD-SSDG: datalists, splits, training, evaluation")
    dac_sub = p.add_subparsers(dest="dac_command", metavar="DAC_COMMAND")
    for register in DAC_COMMANDS:
        register(dac_sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


COMMANDS.append(_add_dac)


# ---------------------------------------------------------------- multitask: pre-training, transfer, demo


class _StdoutHandler(logging.StreamHandler):
    """Log records as plain lines on the current ``sys.stdout`` (looked up at each record)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


@contextlib.contextmanager
def _progress_on_stdout() -> Iterator[None]:
    """While a long command runs (pretrain, transfer, demo), medfound's INFO log lines go to stdout."""
    log = logging.getLogger("medfound")
    handler, level = _StdoutHandler(), log.level
    handler.setFormatter(logging.Formatter("%(message)s"))
    from medfound.handlers.error_echo import quiet_error_echoes

    quiet_error_echoes([handler])  # StatsHandler logs a medfound error's traceback; main() prints its one line
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _positive(value: int | None, option: str) -> int | None:
    """An optional count from the command line: ``None`` (not given) or an integer >= 1, never silently dropped."""
    from medfound.utils import check_int

    return None if value is None else check_int(value, option, low=1)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from medfound.multitask.pretrain import pretrain

    lengths = (("max_iterations", "--max-iterations"), ("max_epochs", "--max-epochs"))
    overrides = {k: _positive(getattr(args, k), opt) for k, opt in lengths if getattr(args, k) is not None}
    if len(overrides) > 1:
        from medfound.errors import ConfigError

        raise ConfigError("give one of --max-iterations and --max-epochs, not both")
    with _progress_on_stdout():
        summary = pretrain(args.config, output_dir=args.output_dir, overrides=overrides, device=args.device)
    print(f"weights: {summary['model']} (seed {summary['seed']}; bundle config {summary['config']})")
    return 0


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="UMedPT multi-task pre-training from a JSON/YAML config",
                       description="Pre-train a UMedPT on the tasks of a config file (tasks, network, trainer, "
                       "validation sections; see medfound.multitask.pretrain). The run is composed as a MONAI "
                       "bundle config, written to OUTPUT_DIR/train.json; it resumes from OUTPUT_DIR/last.pt "
                       "when a previous run was stopped. Configs are code (a _target_ imports and runs it): run "
                       "only your own.")
    p.add_argument("config", help="pre-training config (JSON or YAML)")
    p.add_argument("-o", "--output-dir", default=None, help="output folder (default: the config's output_dir)")
    p.add_argument("--max-iterations", type=int, default=None, help="override the run length in iterations")
    p.add_argument("--max-epochs", type=int, default=None, help="override the run length in epochs")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1, ... (default: the config's)")
    p.set_defaults(func=_cmd_pretrain)


def _parse_encoders(values: Sequence[str]) -> dict[str, str]:
    from medfound.errors import ConfigError

    encoders = {}
    for value in values:
        name, sep, source = value.partition("=")
        if not sep or not name or not source:
            raise ConfigError(f"--encoder takes NAME=SOURCE (SOURCE: random, a pretrain folder, a model.pt, or "
                              f"torchvision:PATH), got {value!r}")
        if name in encoders:
            raise ConfigError(f"--encoder name {name!r} is given twice ({encoders[name]!r} and {source!r})")
        encoders[name] = source
    return encoders


def _parse_network(value: str | None) -> dict | None:
    """``--network``: UMedPT arguments as JSON text (starting with '{') or a JSON/YAML file."""
    import json

    from medfound.errors import ConfigError
    from medfound.utils import read_config_file

    if value is None:
        return None
    if not value.lstrip().startswith("{"):
        return read_config_file(value, expect=dict, what="--network file")
    try:
        network = json.loads(value)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--network is not valid JSON ({err.msg} at character {err.pos}): {value!r}") from None
    if not isinstance(network, dict):
        raise ConfigError(f"--network must be a JSON object of UMedPT arguments, got {value!r}")
    return network


def _cmd_transfer(args: argparse.Namespace) -> int:
    from medfound.multitask.transfer import run_transfer_config, transfer_config

    finetune = {"epochs": _positive(args.finetune_epochs, "--finetune-epochs"),
                "batch_size": _positive(args.batch_size, "--batch-size"), "head_init": args.head_init}
    config = transfer_config(args.tasks, _parse_encoders(args.encoder), args.output_dir, task_name=args.task,
                             modes=args.modes, fractions=args.fractions, repeats=args.repeats, seed=args.seed,
                             network=_parse_network(args.network), device=args.device,
                             finetune={k: v for k, v in finetune.items() if v is not None},
                             min_per_class=args.min_per_class, baseline=args.baseline)
    with _progress_on_stdout():
        result = run_transfer_config(config)
    print(f"{result['task']}: {result['metric']} per encoder, mode and fraction in {result['files']['csv']}")
    print(f"plot: {result['files']['plot']}; bundle config: {result['files']['config']}")
    for hit in result["baseline_reached"]:
        where = "never" if hit["first_fraction"] is None else f"first at {hit['first_fraction']:g} %"
        print(f"{hit['encoder']} ({hit['mode']}) reaches {hit['baseline']}'s best at {hit['baseline_fraction']:g} % "
              f"({hit['baseline_score']:.3f}, {result['data']} data): {where}")
    return 0


def _add_transfer(sub: argparse._SubParsersAction) -> None:
    modes, fractions = ["linear", "finetune"], [1.0, 5.0, 10.0, 25.0, 50.0, 100.0]  # the paper's protocol
    p = sub.add_parser("transfer", help="transfer protocol: frozen probe and fine-tuning at data fractions",
                       description="For one target task: frozen-encoder linear probe and fine-tuning at "
                       "training-data fractions with fixed seeds, for each encoder; writes transfer.json (the "
                       "protocol as a MONAI bundle config), transfer_results.json, transfer_summary.csv and "
                       "transfer_plot.png.")
    p.add_argument("--tasks", required=True, help="task file (JSON/YAML) holding the target task")
    p.add_argument("--task", default=None, help="target task name (default: the task with role 'transfer')")
    p.add_argument("--encoder", action="append", required=True, metavar="NAME=SOURCE",
                   help="encoder to compare; SOURCE: random (random initialisation, the baseline), a pretrain "
                   "output folder, a UMedPT model.pt (e.g. the authors' published encoder converted by "
                   "'medfound convert-umedpt': the folder it writes), or torchvision:PATH (ImageNet Swin V2 "
                   "state dict, torchvision format, supplied by the user); repeat the option")
    p.add_argument("-o", "--output-dir", required=True, help="output folder")
    p.add_argument("--modes", nargs="+", choices=modes, default=modes, help="default: linear finetune")
    p.add_argument("--fractions", nargs="+", type=float, default=fractions, metavar="PERCENT",
                   help="training-data fractions in percent (default: 1 5 10 25 50 100)")
    p.add_argument("--repeats", type=int, default=3, help="seeds per fraction (default 3)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--network", default=None,
                   help="UMedPT arguments (JSON text or file) for encoders without their own (random, torchvision)")
    p.add_argument("--finetune-epochs", type=int, default=None, help="fine-tuning passes over the subset")
    p.add_argument("--batch-size", type=int, default=None, help="fine-tuning batch size")
    p.add_argument("--head-init", choices=["linear_probe", "random"], default=None,
                   help="fine-tuned classification heads start from the subset's linear probe (default, LP-FT) "
                   "or at random")
    p.add_argument("--min-per-class", type=int, default=1,
                   help="classification: fewest training images per class in a subset (default 1)")
    p.add_argument("--baseline", default="random",
                   help="encoder whose best score at 100 %% the frozen probes are compared with (default random)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default auto)")
    p.set_defaults(func=_cmd_transfer)


def _cmd_demo(args: argparse.Namespace) -> int:
    import importlib

    from medfound.demos import DEMOS

    module, func = DEMOS[args.name].split(":")
    options = {"synthetic_only": True} if args.synthetic_only else {}
    if args.threads is not None:
        from medfound.utils import check_int

        options["threads"] = check_int(args.threads, "--threads", low=0)
    with _progress_on_stdout():
        getattr(importlib.import_module(module), func)(out_dir=args.out, quick=args.quick, **options)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from medfound.demos import DEMOS

    p = sub.add_parser("demo", help="run an end-to-end demo on SYNTHETIC demo data",
                       description="Write synthetic demo data and run a workflow end to end (umedpt: multi-task "
                       "pre-training, then the transfer protocol against random initialisation).")
    p.add_argument("name", choices=sorted(DEMOS), help="which demo")
    p.add_argument("--out", default="demo_run", help="output folder (default: demo_run)")
    p.add_argument("--quick", action="store_true", help="a much shorter run (smoke test)")
    p.add_argument("--synthetic-only", action="store_true", help="umedpt: leave out the two small real nuclei tasks")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (umedpt default: 1; 0 leaves torch's default)")
    p.set_defaults(func=_cmd_demo)


COMMANDS.extend([_add_pretrain, _add_transfer, _add_demo])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``medfound`` command."""
    parser = argparse.ArgumentParser(
        prog="medfound", description="medfound: MONAI toolkit for scarce labels",
        epilog="Configs are code: MONAI config syntax ($ expressions, _target_) in the pre-training, transfer and "
        "bundle configs imports and runs what they name, so run only configs you wrote or checked. DAC configs are "
        "plain data (see `medfound dac train --help`). Errors on bad input are one line naming the file or key, "
        "exit status 2. Memory per decoded image or weights record is limited to 1 GiB (MEDFOUND_MAX_BYTES=8G "
        "and the like raise it).")
    parser.add_argument("--version", action="version", version=f"medfound {medfound.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``medfound`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from medfound.io.registry import quiet_nvimgcodec_notice  # here: --help needs no MONAI import

    quiet_nvimgcodec_notice()  # MONAI logs it at every LoadImage when the optional GPU decoder is missing
    from medfound.handlers.error_echo import quiet_error_echoes

    # ignite logs "Engine run is terminating due to exception: ..." before a medfound error reaches
    # us; with no logging configured that goes to logging.lastResort: one line is enough
    quiet_error_echoes([h for h in (logging.lastResort, *logging.getLogger().handlers) if h is not None])
    try:
        return int(args.func(args) or 0)
    except MedfoundError as err:
        print(f"medfound: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system said no (permissions, a full disk, a file where a folder belongs)
        where = f"{err.filename}: " if err.filename else ""
        print(f"medfound: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
