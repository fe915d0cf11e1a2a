"""The grid searches: the reports' grids as presets, and how a grid point changes an architecture.

Presets (the reports' grids):
  reportA  channels of conv 1 x channels of conv 2 x hidden units x learning rate, 10 folds
           (report A: "gridsearch and a 10-folds cross validation ... channels, units in the fully
           connected layers and the learning rate"); default architecture siamese2.
  reportB  learning rate x regularisation (= encoder dropout rate in our config), 5 folds
           (report B gives the grid but not the fold count; 5 is our choice); default v5.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .config import ArchConfig
from .errors import UserError

PRESETS = {
    # Report A: channels {16, 32, 64} (they found 64), second conv {8, 16, 32, 64} (8 for Siamese2,
    # 16 for Siamese10, 64 for Baseline), hidden units {32, 64, 128}, learning rate {0.01, 0.1, 1}.
    "reportA": {"arch": "siamese2", "folds": 10,
                "grid": {"conv1": [16, 32, 64], "conv2": [8, 16, 32, 64],
                         "hidden_units": [32, 64, 128], "learning_rate": [0.01, 0.1, 1.0]}},
    # Report B: learning rate x regularisation parameter.
    "reportB": {"arch": "v5", "folds": 5,
                "grid": {"learning_rate": [0.01, 0.005, 0.001, 0.0005, 0.0001],
                         "dropout": [0.25, 0.1, 0.05, 0.001]}},
}
HYPERPARAMETERS = ("conv1", "conv2", "hidden_units", "learning_rate", "dropout")


def apply_hyperparameters(arch: ArchConfig, values: dict) -> ArchConfig:
    """The architecture with grid values applied (unknown names raise, listing the valid ones)."""
    unknown = sorted(set(values) - set(HYPERPARAMETERS))
    if unknown:
        raise UserError(f"unknown hyperparameter(s) {unknown}; valid: {list(HYPERPARAMETERS)}")
    enc = arch.encoder
    filters = list(enc.conv_filters)
    if "conv1" in values:
        filters[0] = int(values["conv1"])
    if "conv2" in values:
        if len(filters) < 2:
            raise UserError(f"{arch.name} has one convolution; 'conv2' does not apply")
        filters[1] = int(values["conv2"])
    enc = dataclasses.replace(enc, conv_filters=tuple(filters))
    if "hidden_units" in values:  # every hidden layer gets the value (report A: "each 128 units")
        enc = dataclasses.replace(enc, hidden_units=tuple(int(values["hidden_units"]) for _ in enc.hidden_units))
    if "dropout" in values:
        enc = dataclasses.replace(enc, dropout=float(values["dropout"]))
    lr = float(values.get("learning_rate", arch.learning_rate))
    return dataclasses.replace(arch, encoder=enc, learning_rate=lr).validate()


def kfold_indices(n: int, folds: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) index pairs of a shuffled k-fold split; every item is held out once."""
    if not 2 <= folds <= n:
        raise UserError(f"folds must be between 2 and the number of pairs ({n}), got {folds}")
    parts = np.array_split(rng.permutation(n), folds)
    return [(np.sort(np.concatenate(parts[:k] + parts[k + 1:])), np.sort(parts[k])) for k in range(folds)]
