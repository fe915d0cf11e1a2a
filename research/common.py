"""What the studies share: their plan, committed before the first round, and the development round,
which never touches the test split.

The scripts of this folder import it as ``common`` (Python puts a script's folder first on its
path); the tests import it as ``research.common``.
"""

from __future__ import annotations

import argparse
import os
import subprocess

import numpy as np

from keras_pairs.data import (Mnist, PairSet, RoundData, make_pairs, normalise_round, pair_target, pool_2x2,
                              split_validation)
from keras_pairs.errors import UserError

PLANS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plans")


def add_plan_argument(parser: argparse.ArgumentParser, study: str) -> None:
    """--plan, defaulting to research/plans/<study>.md: a new study of the same script names its own."""
    parser.add_argument("--plan", default=os.path.join(PLANS, f"{study}.md"),
                        help="the study's plan (candidates, metric, decision rule), committed before it runs "
                             f"(default: research/plans/{study}.md)")


def committed_plan(path: str) -> str:
    """The commit that last changed the plan at ``path``, which the study writes into every results row.

    A study starts only from a plan that git holds as it is on disk: a missing file, one git does not
    track, or one with uncommitted changes raises a UserError (one ``error:`` line, exit 2), so
    what the results cite is what was decided before the first round ran.
    """
    if not os.path.isfile(path):
        raise UserError(f"no plan at {path}: write the study's candidates, metric and decision rule there "
                        "and commit it before the first round runs")
    folder, name = os.path.split(os.path.abspath(path))

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as err:
            raise UserError(f"cannot ask git about the plan {path} ({err}): a study runs from a git checkout, "
                            "with its plan committed") from err

    if git("status", "--porcelain", "--", name):
        raise UserError(f"the plan {path} has uncommitted changes (or is not tracked): commit it before "
                        "the study runs, so that its results name the plan they followed")
    commit = git("log", "-1", "--format=%H", "--", name)
    if not commit:
        raise UserError(f"the plan {path} is not committed: commit it before the study runs")
    return commit


def development_round(mnist: Mnist, nb_train: int, val_fraction: float, seed: int,
                      n_dev: int) -> tuple[RoundData, PairSet]:
    """A round for design choices, which never touches the test split.

    The training pairs and validation split of round ``seed`` as ``draw_round`` draws them (its
    test pairs are not drawn; the returned round's ``test`` are its validation pairs), and
    ``n_dev`` ordered pairs of two different train-split digits that the round did NOT draw
    (the development pairs), normalised like the round.
    """
    train = make_pairs(mnist.x_train, mnist.y_train, nb_train, np.random.default_rng(seed), "train")
    fit, val = split_validation(train, val_fraction, np.random.default_rng(seed))
    data = normalise_round(fit, val, val)
    drawn = np.concatenate([fit.index.ravel(), val.index.ravel()])
    free = np.setdiff1d(np.arange(len(mnist.y_train)), drawn)
    rng = np.random.default_rng([seed, 7])
    index = np.stack([rng.choice(free, 2, replace=False) for _ in range(n_dev)])
    images = np.stack([pool_2x2(mnist.x_train[index[:, 0]]), pool_2x2(mnist.x_train[index[:, 1]])], -1)
    classes = mnist.y_train[index].astype(np.int32)
    dev = PairSet(images.astype(np.float32), pair_target(classes), classes, index)
    return data, dev.normalised(data.mean, data.std)

