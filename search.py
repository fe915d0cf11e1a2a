"""Grid search with k-fold cross-validation on the training pairs (KerasTuner GridSearch).

    python search.py --preset reportB                 # lr x dropout on v5, 5 folds
    python search.py --preset reportA --arch baseline # channels x units x lr, 10 folds
    python search.py --arch v5 --grid learning_rate=0.001,0.01 --folds 2 --epochs 2   # tiny
    python train.py --config results/search/reportB-v5/best_config.json          # use the best

Flags only: the work is done by keras_pairs.search.grid_search.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _grid_entry(text: str):
    name, _, values = text.partition("=")
    if not values:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,..., got {text!r}")
    try:
        parsed = [int(v) if v.lstrip("-").isdigit() else float(v) for v in values.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid values must be numbers, got {values!r}") from None
    return name, parsed


def parse_args(argv=None) -> argparse.Namespace:
    from keras_pairs.cli import _arch_name, _positive_int
    from keras_pairs.search import HYPERPARAMETERS, PRESETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=f"presets: {', '.join(PRESETS)}; grid names: {', '.join(HYPERPARAMETERS)}")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="the grid of report A or report B")
    parser.add_argument("--arch", type=_arch_name, help="architecture (default: the preset's)")
    parser.add_argument("--grid", type=_grid_entry, nargs="+", metavar="NAME=V1,V2",
                        help="a custom grid instead of the preset's")
    parser.add_argument("--folds", type=_positive_int, help="k of k-fold CV (default: the preset's)")
    parser.add_argument("--epochs", type=_positive_int, help="epochs per fold (default: the architecture's)")
    parser.add_argument("--train-pairs", type=_positive_int, default=1000)
    parser.add_argument("--data", default="auto", help="MNIST source, as train.py (default auto)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="output folder (default results/search/<preset>-<arch>)")
    parser.add_argument("--resume", action="store_true", help="resume the KerasTuner project in OUTPUT/tuner")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from keras_pairs.cli import setup_logging

    setup_logging()
    from keras_pairs.data import DataError
    from keras_pairs.search import grid_search

    try:
        result = grid_search(preset=args.preset, arch=args.arch, grid=dict(args.grid) if args.grid else None,
                             folds=args.folds, epochs=args.epochs, data=args.data,
                             nb_train=args.train_pairs, seed=args.seed, output=args.output,
                             overwrite=not args.resume)
    except (ValueError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with open(result["paths"]["table.md"]) as f:
        print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
