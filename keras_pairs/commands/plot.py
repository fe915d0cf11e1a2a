"""Draw the figures of a results folder again, from its results.json.

    python -m keras_pairs plot results/reproduction
    python -m keras_pairs plot results/quick/results.json

experiments.py draws them when it writes the folder (unless --no-figures); this redraws them after
a change to the plots, without training anything. Flags only: the work is done by
keras_pairs.plots.plot_all.
"""

import argparse

from .. import cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", metavar="RESULTS",
                   help="a results folder written by experiments.py, or its results.json; the figures go beside it")
    cli.add_common_arguments(p, threads=False)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def plot():
        from keras_pairs.plots import plot_all

        for path in plot_all(args.results):
            print("figure:", path)

    return cli.execute(args, plot)
