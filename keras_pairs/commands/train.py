"""Train one architecture for N rounds and write its run folder.

    python train.py --arch v5                  # 1 round on the default data (auto)
    python train.py --arch v4 --rounds 10      # mean +- std over 10 fresh rounds
    python train.py --list                     # every architecture with its description

Flags only: the work is done by keras_pairs.training.train_and_evaluate.
"""

import argparse

from .. import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train a digit-pair comparison model (is digit a <= digit b?).",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=cli.arch_help())
    cli.add_train_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print(cli.arch_help())
        return 0

    def train():
        from keras_pairs.training import train_and_evaluate

        print(cli.format_training(train_and_evaluate(cli.train_config(args))))

    return cli.execute(args, train)

