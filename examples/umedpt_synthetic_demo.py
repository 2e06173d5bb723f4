"""UMedPT demo on SYNTHETIC data: multi-task pre-training, then the transfer protocol.

The same as ``medfound demo umedpt``: writes the synthetic multi-task collection (and two small
real tasks cut from one fluorescence nuclei image that ships with medfound), pre-trains a small
UMedPT on the 9 pre-training tasks with the gradient-accumulating multi-task trainer,
and compares the pre-trained encoder with random initialisation on the held-out task
(frozen-encoder linear probe and fine-tuning at 1-100 % of its training data). A few minutes
on 2 CPU cores. The data are generated look-alikes: the numbers show that the machinery
works end to end, not how UMedPT does on real images.

Usage::

    python examples/umedpt_synthetic_demo.py --out demo_run [--quick]
"""

from __future__ import annotations

import argparse
import logging

from medfound.demos.umedpt import run_umedpt_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo_run", help="output folder (default: demo_run)")
    parser.add_argument("--quick", action="store_true", help="a much shorter run (smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synthetic-only", action="store_true", help="leave out the two small real nuclei tasks")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("medfound").setLevel(logging.INFO)  # the demo's progress, the trainer's losses and metrics
    run_umedpt_demo(
        args.out, quick=args.quick, seed=args.seed, synthetic_only=args.synthetic_only, threads=args.threads
    )


if __name__ == "__main__":
    main()
