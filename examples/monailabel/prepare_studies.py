"""A MONAI Label studies folder from a DAC dataset: some images with their final label, some without.

Thin command line over :func:`medfound.label.studies.write_studies` (needs only the core
install). Example, with the demo data (``medfound demo-data demo_data --size small``)::

    python examples/monailabel/prepare_studies.py demo_data/fundus studies --dataset fundus \\
        --labeled 2 --unlabeled 2 --domains Domain1 Domain2 Domain3
"""

from __future__ import annotations

import argparse
import sys

from medfound.label.studies import STUDY_DATASETS, write_studies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_root", help="the dataset in its public layout (e.g. demo_data/fundus)")
    parser.add_argument("studies", help="the studies folder to write (the server's --studies)")
    parser.add_argument("--dataset", choices=sorted(STUDY_DATASETS), default="fundus")
    parser.add_argument("--labeled", type=int, default=4, help="images with a label per domain")
    parser.add_argument("--unlabeled", type=int, default=4, help="images without a label per domain")
    parser.add_argument("--domains", nargs="*", help="domains to take (default: all)")
    args = parser.parse_args(argv)
    summary = write_studies(args.dataset_root, args.studies, args.dataset, labeled_per_domain=args.labeled,
                            unlabeled_per_domain=args.unlabeled, domains=args.domains or None)
    print(f"{summary['labeled']} labelled + {summary['unlabeled']} unlabelled images of domains "
          f"{sorted(summary['domains'])} in {args.studies}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
