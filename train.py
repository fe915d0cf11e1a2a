"""Train one architecture for N rounds and write its run folder.

    python train.py --arch v5                  # 1 round on the default data (auto)
    python train.py --arch v4 --rounds 10      # mean +- std over 10 fresh rounds
    python train.py --list                     # every architecture with its description

Flags only: the work is done by keras_pairs.training.train_and_evaluate.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def parse_args(argv=None) -> argparse.Namespace:
    from keras_pairs.cli import add_train_arguments, arch_help

    parser = argparse.ArgumentParser(
        description="Train a digit-pair comparison model (is digit a <= digit b?).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=arch_help())
    add_train_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from keras_pairs.cli import run_train

    return run_train(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
