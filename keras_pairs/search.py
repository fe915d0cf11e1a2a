"""Grid search with k-fold cross-validation on the TRAINING pairs, its trials run by KerasTuner.

Every (grid point, fold) is one trial (``run_fold``): the architecture with the point's values,
trained on k-1 folds of the training pairs and scored on the held-out fold. The mean held-out
pair accuracy over a point's folds is its score. Test pairs are never drawn.

KerasTuner's oracle keeps the trial records (``distributed/``): in this process, or served by a
chief to worker processes on this machine or others (``--workers N``, ``--chief``/``--worker``,
or KerasTuner's KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT; see
docs/distributed.md). Every worker needs the same data and settings; the chief checks them.

The grids and the presets of both reports are in ``grids.py``.

Output folder: trials.csv, table.md, best_config.json (an ArchConfig: ``python train.py --config
best_config.json``) and tuner/ (KerasTuner's project: oracle state, one folder per trial with its
result; a rerun resumes unless ``overwrite``).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import logging
import os
import time

import numpy as np
import tensorflow as tf

from .errors import UserError
from . import runs
from .architectures import get_arch
from .config import ArchConfig
from .data import Mnist, PairSet, load_mnist, make_pairs, normalise_round
from .distributed import SCORE, Cluster, run_trials
from .grids import OBJECTIVE, PRESETS, apply_hyperparameters, kfold_indices
from .training import RoundModel, train_round

log = logging.getLogger(__name__)

def run_fold(round_model: RoundModel, pairs: PairSet, folds: int, seed: int, k: int) -> dict:
    """Fold ``k`` of the cross-validation: one ``training.train_round``, fitted on the other
    folds (normalised with their own statistics, no validation pairs) and scored once on fold k,
    which plays the part of the round's test pairs. Returns {"score", "seconds"}."""
    fit_idx, held_idx = kfold_indices(len(pairs), folds, np.random.default_rng(seed))[k]
    data = normalise_round(pairs.take(fit_idx), None, pairs.take(held_idx))
    row, _ = train_round(round_model, data, seed + k)
    return {SCORE: row["test"]["pair_accuracy"], "seconds": row["seconds"]}


def summarise_folds(scores: list[float]) -> dict:
    """A grid point's score: mean and sample std of its folds' held-out pair accuracies."""
    return {OBJECTIVE: float(np.mean(scores)),
            "val_pair_accuracy_std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0}


class FoldTrials:
    """Runs one trial {grid values..., "fold"}; keeps the last compiled model, so consecutive
    folds of one grid point compile it once."""

    def __init__(self, arch: ArchConfig, grid: dict, pairs: PairSet, folds: int, seed: int):
        self.arch, self.names, self.pairs, self.folds, self.seed = arch, list(grid), pairs, folds, seed
        self.round_model: RoundModel | None = None

    def __call__(self, values: dict) -> dict:
        arch = apply_hyperparameters(self.arch, {name: values[name] for name in self.names})
        if self.round_model is None or self.round_model.arch != arch:
            self.round_model = RoundModel(arch)
        return run_fold(self.round_model, self.pairs, self.folds, self.seed, values["fold"])


def grid_search(preset: str | None = None, arch: str | None = None, grid: dict | None = None,
                folds: int | None = None, epochs: int | None = None, data: str = "auto",
                nb_train: int = 1000, seed: int = 0, output: str | None = None,
                overwrite: bool = True, mnist: Mnist | None = None, cluster: Cluster | None = None) -> dict | None:
    """Runs the grid search and writes the output folder; returns {"trials", "best", "paths"}
    (None on a worker of a distributed search: the chief writes the folder).

    Args:
      preset: "reportA" or "reportB" (its arch, grid and folds are the defaults).
      arch / grid / folds: override the preset's (grid: {name: [values]}; names in grids.HYPERPARAMETERS).
      epochs: epochs per fold (None = the architecture's).
      data, nb_train, seed: the training pairs (drawn once with ``seed``; no test pairs).
      output: folder (default results/search/<preset or custom>-<arch>).
      overwrite: start a fresh KerasTuner project rather than resume one.
      cluster: this process's part in a distributed search (``distributed.Cluster``; default serial).
    """
    if preset is not None and preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    base = PRESETS.get(preset, {})
    arch_name = arch or base.get("arch")
    grid = grid or base.get("grid")
    folds = folds or base.get("folds", 5)
    if not arch_name or not grid:
        raise UserError("give a preset (reportA, reportB) or both an architecture and a grid")
    arch_cfg = get_arch(arch_name)
    apply_hyperparameters(arch_cfg, {k: v[0] for k, v in grid.items()})  # fail fast on bad names
    if epochs:
        arch_cfg = dataclasses.replace(arch_cfg, epochs=epochs).validate()
    output = output or os.path.join("results", "search", f"{preset or 'custom'}-{arch_name}")
    cluster = cluster or Cluster()
    tf.config.experimental.enable_op_determinism()
    mnist = mnist or load_mnist(data)
    rng = np.random.default_rng(seed)
    pairs = make_pairs(mnist.x_train, mnist.y_train, nb_train, rng, "train")
    kfold_indices(len(pairs), folds, np.random.default_rng(seed))  # fail fast on a bad fold count

    names, combos = list(grid), list(itertools.product(*grid.values()))
    points = [{**dict(zip(names, combo)), "fold": k} for combo in combos for k in range(folds)]
    settings = {"kind": "search", "arch": arch_cfg.to_dict(), "grid": grid, "folds": folds,
                "nb_train": nb_train, "seed": seed, "data": mnist.describe()}
    if cluster.role != "worker":
        log.info("grid search %s on %s: %d grid points x %d folds, %d epochs, %d training pairs",
                 preset or "custom", arch_name, len(combos), folds, arch_cfg.epochs, nb_train)
        os.makedirs(output, exist_ok=True)

    def report(values: dict, result: dict) -> None:
        point = {name: values[name] for name in names}
        log.info("%s fold %d/%d: %.4f (%.1f s)", point, values["fold"] + 1, folds, result[SCORE], result["seconds"])

    start = time.perf_counter()
    results = run_trials(points, settings, FoldTrials(arch_cfg, grid, pairs, folds, seed), cluster,
                         directory=output, overwrite=overwrite, on_result=report)
    if results is None:
        return None
    seconds = time.perf_counter() - start
    trials = [{**dict(zip(names, combo)), **summarise_folds([r[SCORE] for r in results[i * folds:(i + 1) * folds]])}
              for i, combo in enumerate(combos)]
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
