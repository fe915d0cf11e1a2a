"""Grid search with k-fold cross-validation on the TRAINING pairs: a loop over grid points x folds.

Every (grid point, fold) is one job (``run_job``): the architecture with the point's values,
trained on k-1 folds of the training pairs and scored on the held-out fold. The mean held-out
pair accuracy over a point's folds is its score. Test pairs are never drawn.

The jobs run in this process or as Dask tasks on worker processes of this machine or others
(``distributed/``: ``--workers N``, ``--scheduler ADDRESS``; docs/distributed.md); the training
pairs go to each worker with the jobs. Finished folds are kept on disk as they arrive, so the
same command run again after an interruption runs only the missing ones.

The grids and the presets of both reports are in ``grids.py``.

Output folder: trials.csv, table.md and best_config.json (an ArchConfig: ``python train.py
--config best_config.json``), written when every fold has finished.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import itertools
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from . import files
from .architectures import get_arch
from .config import ArchConfig
from .data import Mnist, PairSet, load_mnist, make_pairs, normalise_round
from .distributed import Cluster, kept_jobs, job_conditions, run_jobs
from .errors import UserError
from .grids import PRESETS, apply_hyperparameters, kfold_indices
from .results import SearchResult, Trial
from .training import RoundModel, train_round

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class FoldResult:
    """A finished fold: its held-out pair accuracy and training seconds."""

    score: float
    seconds: float


def run_fold(round_model: RoundModel, pairs: PairSet, folds: int, seed: int, k: int) -> FoldResult:
    """Fold ``k`` of the cross-validation: one ``training.train_round``, fitted on the other
    folds (normalised with their own statistics, no validation pairs) and scored once on fold k,
    which plays the part of the round's test pairs."""
    fit_idx, held_idx = kfold_indices(len(pairs), folds, np.random.default_rng(seed))[k]
    data = normalise_round(pairs.take(fit_idx), None, pairs.take(held_idx))
    done, _ = train_round(round_model, data, seed + k)
    return FoldResult(done.test.pair_accuracy, done.seconds)


def grid_point(values: dict, scores: list[float]) -> Trial:
    """A grid point's score: mean and sample std of its folds' held-out pair accuracies."""
    return Trial(values, float(np.mean(scores)), float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0)


@functools.lru_cache(maxsize=1)
def compiled(arch: ArchConfig) -> RoundModel:
    """The last grid point's RoundModel in this process: its consecutive folds compile it once."""
    return RoundModel(arch)


def run_job(job: dict, arch: ArchConfig, pairs: PairSet, folds: int, seed: int) -> FoldResult:
    """One job {grid values..., "fold"} (``run_fold``). Module-level, so a Dask worker imports it by name."""
    tf.config.experimental.enable_op_determinism()
    point = apply_hyperparameters(arch, {k: v for k, v in job.items() if k != "fold"})
    return run_fold(compiled(point), pairs, folds, seed, job["fold"])


def fold_summary(result: FoldResult) -> str:
    return f"held-out pair {100 * result.score:.1f}% ({result.seconds:.1f} s)"


def grid_search(preset: str | None = None, arch: str | None = None, grid: dict | None = None,
                folds: int | None = None, epochs: int | None = None, data: str = "auto",
                nb_train: int = 1000, seed: int = 0, output: str | None = None,
                mnist: Mnist | None = None, cluster: Cluster | None = None, fresh: bool = False,
                progress: bool = True) -> SearchResult:
    """Runs the grid search and writes the output folder; returns its trials (best first), the
    best point's ArchConfig and the files written.

    Args:
      preset: "reportA" or "reportB" (its arch, grid and folds are the defaults).
      arch / grid / folds: override the preset's (grid: {name: [values]}; names in grids.HYPERPARAMETERS).
      epochs: epochs per fold (None = the architecture's).
      data, nb_train, seed: the training pairs (drawn once with ``seed``; no test pairs).
      output: folder (default results/search/<preset or custom>-<arch>).
      cluster: where the folds run (``distributed.Cluster``; default this process).
      fresh: forget the folds kept from an interrupted search with the same settings (else only the
        missing ones run).
      progress: print a line per finished fold.
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
    jobs = [{**dict(zip(names, combo)), "fold": k} for combo in combos for k in range(folds)]
    settings = {"kind": "search", "arch": arch_cfg.to_dict(), "grid": grid, "folds": folds,
                "nb_train": nb_train, "seed": seed, "data": mnist.describe(), **job_conditions(cluster)}
    log.info("grid search %s on %s: %d grid points x %d folds, %d epochs, %d training pairs",
             preset or "custom", arch_name, len(combos), folds, arch_cfg.epochs, nb_train)
    start = time.perf_counter()
    with kept_jobs(output, settings, fresh) as store:
        results = run_jobs(run_job, jobs, cluster, store,
                           {"arch": arch_cfg, "pairs": pairs, "folds": folds, "seed": seed},
                           fold_summary if progress else None)
        seconds = time.perf_counter() - start
        trials = [grid_point(dict(zip(names, combo)), [r.score for r in results[i * folds:(i + 1) * folds]])
                  for i, combo in enumerate(combos)]
        trials.sort(key=lambda t: -t.val_pair_accuracy)
        best_values = trials[0].values
        best = apply_hyperparameters(arch_cfg, best_values)
        best = dataclasses.replace(best, description=f"{best.description} [grid search {preset or 'custom'}: "
                                   + ", ".join(f"{k}={v}" for k, v in best_values.items()) + "]",
                                   epochs=get_arch(arch_name).epochs)
        paths = _write_search(output, trials, best, grid, dict(
            preset=preset, arch=arch_name, folds=folds, epochs=arch_cfg.epochs, nb_train=nb_train,
            seed=seed, data=mnist.source, seconds=seconds))
    return SearchResult(tuple(trials), best, seconds, paths)


def _write_search(output: str, trials: list[Trial], best: ArchConfig, grid: dict, info: dict) -> dict:
    """Writes the three files as one folder swap (other files already in ``output`` are kept)."""
    with files.staged_folder(output, keep_existing=True) as work:
        _write_files(work, trials, best, grid, info, os.path.join(output, "best_config.json"))
    return {name: os.path.join(output, name) for name in ("trials.csv", "table.md", "best_config.json")}


def _write_files(output: str, trials: list[Trial], best: ArchConfig, grid: dict, info: dict, best_path: str) -> None:
    paths = {name: os.path.join(output, name) for name in ("trials.csv", "table.md", "best_config.json")}
    rows = [t.to_row() for t in trials]
    with open(paths["trials.csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    names = list(grid)
    lines = [f"Grid search {info['preset'] or 'custom'} on {info['arch']}: {len(trials)} grid points x "
             f"{info['folds']}-fold cross-validation on {info['nb_train']} training pairs, "
             f"{info['epochs']} epochs per fold, {info['seconds']:.0f} s; data: {info['data']}.", "",
             "| " + " | ".join(names) + " | CV pair accuracy (%) |",
             "|" + "---|" * (len(names) + 1)]
    for t in trials:
        lines.append("| " + " | ".join(str(t.values[n]) for n in names)
                     + f" | {100 * t.val_pair_accuracy:.2f} ± {100 * t.val_pair_accuracy_std:.2f} |")
    lines += ["", f"Best: {', '.join(f'{n}={trials[0].values[n]}' for n in names)} -> "
              f"`python train.py --config {best_path}`"]
    with open(paths["table.md"], "w") as f:
        f.write("\n".join(lines) + "\n")
    files.write_json(paths["best_config.json"], {**best.to_dict(), "reference": None})
