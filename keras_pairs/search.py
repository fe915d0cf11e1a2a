"""Grid search with k-fold cross-validation on the TRAINING pairs, driven by KerasTuner.

KerasTuner's ``GridSearch`` oracle enumerates the grid and keeps the trial records; our tuner only
overrides ``run_trial``: it turns the trial's hyperparameters into an ``ArchConfig``, trains on
k-1 folds of the training pairs and scores the held-out fold, k times, and reports the mean
fold pair accuracy as the objective. Test pairs are never drawn.

Presets (the reports' grids):
  reportA  channels of conv 1 x channels of conv 2 x hidden units x learning rate, 10 folds
           (report A: "gridsearch and a 10-folds cross validation ... channels, units in the fully
           connected layers and the learning rate"); default architecture siamese2.
  reportB  learning rate x regularisation (= encoder dropout rate in our config), 5 folds
           (report B gives the grid but not the fold count; 5 is our choice); default v5.

Distributed mode (KerasTuner's own): run the same command on every machine with
  KERASTUNER_ORACLE_IP=<chief ip> KERASTUNER_ORACLE_PORT=8000 and
  KERASTUNER_TUNER_ID=chief on one machine (it serves the oracle: hands out grid points, collects
  results) and KERASTUNER_TUNER_ID=tuner0, tuner1, ... on the workers (each asks the chief for
  the next grid point, runs its k folds, reports back). The chief needs grpcio/protobuf; every
  machine needs the same data. See docs/experiments.md.

Output folder: trials.csv, table.md, best_config.json (an ArchConfig: ``python train.py --config
best_config.json``) and tuner/ (KerasTuner's project: oracle state, one folder per trial; a rerun
resumes unless ``overwrite``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import time

import numpy as np

from . import data as data_lib
from .config import ArchConfig, get_arch

log = logging.getLogger(__name__)

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
OBJECTIVE = "val_pair_accuracy"


def apply_hyperparameters(arch: ArchConfig, values: dict) -> ArchConfig:
    """The architecture with grid values applied (unknown names raise, listing the valid ones)."""
    unknown = sorted(set(values) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}; valid: {list(HYPERPARAMETERS)}")
    enc = arch.encoder
    filters = list(enc.conv_filters)
    if "conv1" in values:
        filters[0] = int(values["conv1"])
    if "conv2" in values:
        if len(filters) < 2:
            raise ValueError(f"{arch.name} has one convolution; 'conv2' does not apply")
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
        raise ValueError(f"folds must be between 2 and the number of pairs ({n}), got {folds}")
    parts = np.array_split(rng.permutation(n), folds)
    return [(np.sort(np.concatenate(parts[:k] + parts[k + 1:])), np.sort(parts[k])) for k in range(folds)]


def cross_validate(arch: ArchConfig, pairs: data_lib.PairSet, folds: int, seed: int,
                   pipeline: str = "dataset") -> dict:
    """Mean and std of held-out pair accuracy over ``folds`` folds of the training pairs."""
    import keras

    from .experiments import ReusableModel
    from .training import pair_dataset

    reusable = ReusableModel(arch)  # one compiled model for all folds of this grid point
    scores = []
    for k, (fit_idx, val_idx) in enumerate(kfold_indices(len(pairs), folds, np.random.default_rng(seed))):
        keras.utils.set_random_seed(seed + k)
        fit_pairs, val_pairs = pairs.take(fit_idx), pairs.take(val_idx)
        mean, std = float(fit_pairs.images.mean()), float(fit_pairs.images.std())
        fit_pairs, val_pairs = fit_pairs.normalised(mean, std), val_pairs.normalised(mean, std)
        model = reusable.fresh(background=(0.0 - mean) / std)
        model.fit(pair_dataset(fit_pairs, model, arch.batch_size, seed + k), epochs=arch.epochs,
                  shuffle=False, verbose=0)
        out = reusable.predict(val_pairs.images)
        scores.append(float(np.mean(out["pair"].argmax(-1) == val_pairs.target)))
    return {OBJECTIVE: float(np.mean(scores)),
            "val_pair_accuracy_std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0}


def make_tuner(arch: ArchConfig, grid: dict, pairs: data_lib.PairSet, folds: int, seed: int,
               directory: str, overwrite: bool):
    """A KerasTuner GridSearch whose trials run k-fold cross-validation (see module doc)."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    for name, values in grid.items():
        hp.Choice(name, list(values), ordered=True)

    class CrossValidationGridSearch(keras_tuner.GridSearch):
        """GridSearch oracle; each trial = k-fold CV of the architecture with the trial's values."""

        def run_trial(self, trial, *args, **kwargs):
            values = {name: trial.hyperparameters.get(name) for name in grid}
            start = time.perf_counter()
            metrics = cross_validate(apply_hyperparameters(arch, values), pairs, folds, seed)
            log.info("trial %s %s: %.4f ± %.4f (%.1f s)", trial.trial_id, values, metrics[OBJECTIVE],
                     metrics["val_pair_accuracy_std"], time.perf_counter() - start)
            return metrics

    return CrossValidationGridSearch(
        hypermodel=None, objective=keras_tuner.Objective(OBJECTIVE, "max"), hyperparameters=hp,
        tune_new_entries=False, allow_new_entries=False, directory=directory, project_name="tuner",
        overwrite=overwrite, seed=seed)


def grid_search(preset: str | None = None, arch: str | None = None, grid: dict | None = None,
                folds: int | None = None, epochs: int | None = None, data: str = "auto",
                nb_train: int = 1000, seed: int = 0, output: str | None = None,
                overwrite: bool = True, mnist: data_lib.Mnist | None = None) -> dict:
    """Runs the grid search and writes the output folder; returns {"trials", "best", "paths"}.

    Args:
      preset: "reportA" or "reportB" (its arch, grid and folds are the defaults).
      arch / grid / folds: override the preset's (grid: {name: [values]}; names in HYPERPARAMETERS).
      epochs: epochs per fold (None = the architecture's).
      data, nb_train, seed: the training pairs (drawn once with ``seed``; no test pairs).
      output: folder (default results/search/<preset or custom>-<arch>).
      overwrite: start a fresh KerasTuner project rather than resume one.
    """
    import tensorflow as tf

    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    base = PRESETS.get(preset, {})
    arch_name = arch or base.get("arch")
    grid = grid or base.get("grid")
    folds = folds or base.get("folds", 5)
    if not arch_name or not grid:
        raise ValueError("give a preset (reportA, reportB) or both an architecture and a grid")
    arch_cfg = get_arch(arch_name)
    apply_hyperparameters(arch_cfg, {k: v[0] for k, v in grid.items()})  # fail fast on bad names
    if epochs:
        arch_cfg = dataclasses.replace(arch_cfg, epochs=epochs).validate()
    output = output or os.path.join("results", "search", f"{preset or 'custom'}-{arch_name}")
    os.makedirs(output, exist_ok=True)
    tf.config.experimental.enable_op_determinism()
    mnist = mnist or data_lib.load_mnist(data)
    rng = np.random.default_rng(seed)
    pairs = data_lib.make_pairs(mnist.x_train, mnist.y_train, nb_train, rng, "train")

    n_trials = int(np.prod([len(v) for v in grid.values()]))
    log.info("grid search %s on %s: %d grid points x %d folds, %d epochs, %d training pairs",
             preset or "custom", arch_name, n_trials, folds, arch_cfg.epochs, nb_train)
    tuner = make_tuner(arch_cfg, grid, pairs, folds, seed, output, overwrite)
    start = time.perf_counter()
    tuner.search()
    seconds = time.perf_counter() - start

    trials = []
    for trial in tuner.oracle.trials.values():
        if trial.score is None:
            continue
        row = {name: trial.hyperparameters.get(name) for name in grid}
        row[OBJECTIVE] = trial.score
        row["val_pair_accuracy_std"] = trial.metrics.get_best_value("val_pair_accuracy_std")
        trials.append(row)
    trials.sort(key=lambda r: -r[OBJECTIVE])
    best_values = {name: trials[0][name] for name in grid}
    best = apply_hyperparameters(arch_cfg, best_values)
    best = dataclasses.replace(best, description=f"{best.description} [grid search {preset or 'custom'}: "
                               + ", ".join(f"{k}={v}" for k, v in best_values.items()) + "]",
                               epochs=get_arch(arch_name).epochs)
    paths = _write_search(output, trials, best, grid, dict(
        preset=preset, arch=arch_name, folds=folds, epochs=arch_cfg.epochs, nb_train=nb_train,
        seed=seed, data=mnist.source, seconds=seconds))
    return {"trials": trials, "best": best, "best_values": best_values, "paths": paths, "seconds": seconds}


def _write_search(output: str, trials: list[dict], best: ArchConfig, grid: dict, info: dict) -> dict:
    paths = {name: os.path.join(output, name) for name in ("trials.csv", "table.md", "best_config.json")}
    with open(paths["trials.csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(trials[0]))
        writer.writeheader()
        writer.writerows(trials)
    names = list(grid)
    lines = [f"Grid search {info['preset'] or 'custom'} on {info['arch']}: {len(trials)} grid points x "
             f"{info['folds']}-fold cross-validation on {info['nb_train']} training pairs, "
             f"{info['epochs']} epochs per fold, {info['seconds']:.0f} s; data: {info['data']}.", "",
             "| " + " | ".join(names) + " | CV pair accuracy (%) |",
             "|" + "---|" * (len(names) + 1)]
    for row in trials:
        lines.append("| " + " | ".join(str(row[n]) for n in names)
                     + f" | {100 * row[OBJECTIVE]:.2f} ± {100 * row['val_pair_accuracy_std']:.2f} |")
    lines += ["", f"Best: {', '.join(f'{n}={trials[0][n]}' for n in names)} -> "
              f"`python train.py --config {paths['best_config.json']}`"]
    with open(paths["table.md"], "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(paths["best_config.json"], "w") as f:
        json.dump({**best.to_dict(), "reference": None}, f, indent=2, default=list)
        f.write("\n")
    return paths
