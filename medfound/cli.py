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
import sys
from collections.abc import Callable, Sequence

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``medfound`` command."""
    parser = argparse.ArgumentParser(prog="medfound", description="medfound: MONAI toolkit for scarce labels")
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
    try:
        return int(args.func(args) or 0)
    except MedfoundError as err:
        print(f"medfound: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
