"""Reproduce the reports' experiments: every architecture x N rounds, tables and figures.

    python experiments.py                              # all architectures x 10 rounds x 25 epochs
    python experiments.py --archs reportA --rounds 2   # report A's three models, 2 rounds
    python experiments.py --archs v1 v5 v6 --rounds 3 --epochs 10 --output results/quick
    python experiments.py --archs best --test-curves none --val-fraction 0 --intra-op-threads 1 --output results/best
    python experiments.py --plot-only results/reproduction   # redraw the figures

Writes OUTPUT/{results.json, rounds.csv, epochs.csv, table.md, *.png}. Flags only: the work is
done by keras_pairs.experiments.run_experiments and keras_pairs.plots.plot_all.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def parse_args(argv=None) -> argparse.Namespace:
    from keras_pairs.cli import _positive_int, add_threads_argument, arch_help

    parser = argparse.ArgumentParser(
        description="Run architectures for N rounds and write tables and figures.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sets: all, reportA (baseline siamese2 siamese10), reportB (base, v1..v6, v1-3 noaux),\n"
               "      ablation (keras_pairs' own model and its ingredients), best (siamese-prob-aug-tta and -x2)\n"
               + arch_help())
    parser.add_argument("--archs", nargs="+", default=["reportA", "reportB"], metavar="NAME",
                        help="architectures or sets (default: all)")
    parser.add_argument("--rounds", type=_positive_int, default=10,
                        help="rounds per architecture, fresh pairs and initialisation each (default 10)")
    parser.add_argument("--epochs", type=_positive_int, help="epochs per round (default: the architecture's, 25)")
    parser.add_argument("--data", default="auto", help="MNIST source, as train.py (default auto)")
    parser.add_argument("--seed", type=int, default=0, help="round r uses seed + r (default 0)")
    parser.add_argument("--train-pairs", type=_positive_int, default=1000)
    parser.add_argument("--test-pairs", type=_positive_int, default=1000)
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of the training pairs held out as validation pairs (default 0.1, as "
                             "train.py); 0 trains on all of them when nothing is chosen on validation")
    parser.add_argument("--patience", type=_positive_int, default=None, metavar="N",
                        help="early stopping on validation pair accuracy with patience N (default off, as train.py)")
    parser.add_argument("--output", default="results/reproduction", help="results folder")
    parser.add_argument("--test-curves", choices=("figures", "all", "none"), default="figures",
                        help="per-epoch test scoring for the plots only (default: the architectures "
                             "whose report figure shows test curves)")
    parser.add_argument("--rebuild-each-round", action="store_true",
                        help="build and compile a new model every round (slower; for comparison)")
    parser.add_argument("--numpy-pipeline", action="store_true",
                        help="hand numpy arrays to fit as train.py does (slower; for comparison)")
    add_threads_argument(parser)
    parser.add_argument("--no-figures", action="store_true", help="write tables only")
    parser.add_argument("--plot-only", metavar="RESULTS", help="redraw the figures of a results folder")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from keras_pairs.cli import set_intra_op_threads, setup_logging

    setup_logging()
    from keras_pairs.plots import plot_all

    if args.plot_only:
        for path in plot_all(args.plot_only):
            print(path)
        return 0
    from keras_pairs.data import DataError
    from keras_pairs.experiments import ExperimentConfig, resolve_archs, run_experiments

    try:
        set_intra_op_threads(args.intra_op_threads)
        exp = ExperimentConfig(
            archs=resolve_archs(args.archs), rounds=args.rounds, epochs=args.epochs, data=args.data,
            seed=args.seed, nb_train=args.train_pairs, nb_test=args.test_pairs,
            val_fraction=args.val_fraction, patience=args.patience, output=args.output,
            test_curves=args.test_curves, reuse_compiled=not args.rebuild_each_round,
            pipeline="numpy" if args.numpy_pipeline else "dataset")
        run_experiments(exp)
    except (ValueError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with open(os.path.join(args.output, "table.md")) as f:
        print(f.read())
    if not args.no_figures:
        for path in plot_all(args.output):
            print("figure:", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
