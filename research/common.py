"""What the studies share: the development round, which never touches the test split.

The scripts of this folder import it as ``common`` (Python puts a script's folder first on its
path); the tests import it as ``research.common``.
"""

from __future__ import annotations

import numpy as np

from keras_pairs.data import (Mnist, PairSet, RoundData, make_pairs, normalise_round, pair_target, pool_2x2,
                              split_validation)


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

