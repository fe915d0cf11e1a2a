"""Reproduce the reports' experiments: every architecture x N rounds, tables and figures.

    python experiments.py                              # both reports' architectures x 10 rounds
    python experiments.py --archs reportA --rounds 2   # report A's three models, 2 rounds
    python experiments.py --archs v1 v5 v6 --rounds 3 --epochs 10 --output results/quick
    python experiments.py --archs best --test-curves none --val-fraction 0 --threads 1 --output results/best
    python experiments.py --archs deploy --test-curves none --val-fraction 0 --workers 2 --output results/deploy
    python experiments.py --workers 2                        # the rounds over 2 Dask worker processes
    python experiments.py --scheduler tcp://10.0.0.1:8786    # over a Dask cluster (docs/distributed.md)

An interrupted run resumes: the same command again runs only the missing rounds (--fresh: all).

Writes OUTPUT/{results.json, rounds.csv, epochs.csv, table.md, *.png}. Flags only: the work is
done by keras_pairs.experiments.run_experiments (and keras_pairs.plots.plot_all for the figures,
which `python -m keras_pairs plot RESULTS` draws again).
"""

import argparse

from .. import cli
from ..config import TEST_CURVES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run architectures for N rounds and write tables and figures.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=cli.arch_help())
    parser.add_argument("--archs", nargs="+", default=["reportA", "reportB"], metavar="NAME",
                        help="architectures or sets: reportA, reportB, best, deploy, all "
                             "(default: reportA reportB)")
    parser.add_argument("--rounds", type=cli.positive_int, default=10,
                        help="rounds per architecture, fresh pairs and initialisation each (default 10)")
    parser.add_argument("--epochs", type=cli.positive_int, help="epochs per round (default: the architecture's)")
    parser.add_argument("--output", default="results/reproduction", help="results folder")
    parser.add_argument("--test-curves", choices=TEST_CURVES, default="figures",
                        help="per-epoch test scoring for the plots only (default: the architectures "
                             "whose report figure shows test curves)")
    parser.add_argument("--no-figures", action="store_true", help="write tables only")
    cli.add_protocol_arguments(parser)
    cli.add_cluster_arguments(parser, "rounds")
    cli.add_common_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def experiments():
        from ..distributed import cluster_from_flags
        from ..experiments import ExperimentConfig, run_experiments
        from ..plots import plot_all
        from ..tables import markdown_table

        doc = run_experiments(ExperimentConfig(
            archs=tuple(args.archs), rounds=args.rounds, epochs=args.epochs, protocol=cli.protocol(args),
            output=args.output, test_curves=args.test_curves),
            cluster=cluster_from_flags(args.workers, args.scheduler, args.threads, args.verbose),
            fresh=args.fresh)
        print(markdown_table(doc))
        if not args.no_figures:
            for path in plot_all(args.output):
                print("figure:", path)

    return cli.execute(args, experiments)

