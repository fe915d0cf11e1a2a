"""Grid search with k-fold cross-validation on the training pairs.

    python search.py --preset reportB                 # lr x dropout on v5, 5 folds
    python search.py --preset reportA --arch baseline # channels x units x lr, 10 folds
    python search.py --arch v5 --grid learning_rate=0.001,0.01 --folds 2 --epochs 2   # tiny
    python train.py --config results/search/reportB-v5/best_config.json          # use the best
    python search.py --preset reportB --workers 2     # folds over 2 Dask worker processes
    python search.py --preset reportB --scheduler tcp://10.0.0.1:8786   # over a Dask cluster (docs/distributed.md)

An interrupted search resumes: the same command again runs only the missing folds (--fresh: all).

Flags only: the work is done by keras_pairs.search.grid_search.
"""

import argparse

from .. import cli
from ..grids import HYPERPARAMETERS, PRESETS


def _grid_entry(text: str):
    name, _, values = text.partition("=")
    if not values:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,..., got {text!r}")
    try:
        parsed = [int(v) if v.lstrip("-").isdigit() else float(v) for v in values.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid values must be numbers, got {values!r}") from None
    return name, parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=f"presets: {', '.join(PRESETS)}; grid names: {', '.join(HYPERPARAMETERS)}")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="the grid of report A or report B")
    parser.add_argument("--arch", type=cli.arch_name, help="architecture (default: the preset's)")
    parser.add_argument("--grid", type=_grid_entry, nargs="+", metavar="NAME=V1,V2",
                        help="a custom grid instead of the preset's")
    parser.add_argument("--folds", type=cli.positive_int, help="k of k-fold CV (default: the preset's)")
    parser.add_argument("--epochs", type=cli.positive_int, help="epochs per fold (default: the architecture's)")
    parser.add_argument("--output", help="output folder (default results/search/<preset>-<arch>)")
    cli.add_protocol_arguments(parser, held_out=False)
    cli.add_cluster_arguments(parser, "folds")
    cli.add_common_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def search():
        from ..distributed import cluster_from_flags
        from ..search import SearchConfig, grid_search

        cfg = SearchConfig(preset=args.preset, arch=args.arch, grid=dict(args.grid) if args.grid else None,
                           folds=args.folds, epochs=args.epochs, protocol=cli.protocol(args), output=args.output)
        cluster = cluster_from_flags(args.workers, args.scheduler, args.threads, args.verbose)
        result = grid_search(cfg, cluster=cluster, fresh=args.fresh)
        with open(result.paths["table.md"]) as f:
            print(f.read())

    return cli.execute(args, search)

