"""Grid search with k-fold cross-validation on the TRAINING pairs, driven by KerasTuner.

KerasTuner's ``GridSearch`` oracle enumerates the grid and keeps the trial records; our tuner only
overrides ``run_trial``: it turns the trial's hyperparameters into an ``ArchConfig``, trains on
k-1 folds of the training pairs and scores the held-out fold, k times, and reports the mean
fold pair accuracy as the objective. Test pairs are never drawn.

The grids and the presets of both reports are in ``grids.py``.

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
import logging
import os
import time

import keras_tuner
import numpy as np
import tensorflow as tf

from . import runs
from .architectures import get_arch
from .config import ArchConfig
from .data import Mnist, PairSet, load_mnist, make_pairs, normalise_round
from .grids import OBJECTIVE, PRESETS, apply_hyperparameters, kfold_indices
from .training import RoundModel, train_round

log = logging.getLogger(__name__)

def cross_validate(arch: ArchConfig, pairs: PairSet, folds: int, seed: int) -> dict:
    """Mean and std of held-out pair accuracy over ``folds`` folds of the training pairs.

    Each fold is one ``training.train_round``: fitted on k-1 folds (normalised with their own
    statistics, no validation pairs) and scored once on the held-out fold, which plays the part
    of the round's test pairs. One compiled model serves every fold of the grid point.
    """
    round_model = RoundModel(arch)
    scores = []
    for k, (fit_idx, held_idx) in enumerate(kfold_indices(len(pairs), folds, np.random.default_rng(seed))):
        data = normalise_round(pairs.take(fit_idx), None, pairs.take(held_idx))
        row, _ = train_round(round_model, data, seed + k)
        scores.append(row["test"]["pair_accuracy"])
    return {OBJECTIVE: float(np.mean(scores)),
            "val_pair_accuracy_std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0}


def make_tuner(arch: ArchConfig, grid: dict, pairs: PairSet, folds: int, seed: int,
               directory: str, overwrite: bool):
    """A KerasTuner GridSearch whose trials run k-fold cross-validation (see module doc)."""
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
                overwrite: bool = True, mnist: Mnist | None = None) -> dict:
    """Runs the grid search and writes the output folder; returns {"trials", "best", "paths"}.

    Args:
      preset: "reportA" or "reportB" (its arch, grid and folds are the defaults).
      arch / grid / folds: override the preset's (grid: {name: [values]}; names in grids.HYPERPARAMETERS).
      epochs: epochs per fold (None = the architecture's).
      data, nb_train, seed: the training pairs (drawn once with ``seed``; no test pairs).
      output: folder (default results/search/<preset or custom>-<arch>).
      overwrite: start a fresh KerasTuner project rather than resume one.
    """
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
    mnist = mnist or load_mnist(data)
    rng = np.random.default_rng(seed)
    pairs = make_pairs(mnist.x_train, mnist.y_train, nb_train, rng, "train")

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
    runs.write_json(paths["best_config.json"], {**best.to_dict(), "reference": None})
    return paths
