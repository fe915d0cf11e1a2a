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

import dataclasses
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from . import files
from .architectures import get_arch
from .config import ArchConfig, Protocol
from .data import Mnist, PairSet, load_mnist, make_pairs, normalise_round
from .distributed import Cluster, kept_jobs, job_conditions, run_jobs
from .errors import UserError
from .grids import PRESETS, apply_hyperparameters, kfold_indices
from .results import SearchResult, Trial
from .training import RoundModel, compiled, train_round

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


def run_job(job: dict, arch: ArchConfig, pairs: PairSet, folds: int, seed: int) -> FoldResult:
    """One job {grid values..., "fold"} (``run_fold``). Module-level, so a Dask worker imports it by name."""
    tf.config.experimental.enable_op_determinism()
    point = apply_hyperparameters(arch, {k: v for k, v in job.items() if k != "fold"})
    return run_fold(compiled(point), pairs, folds, seed, job["fold"])


def fold_summary(result: FoldResult) -> str:
    return f"held-out pair {100 * result.score:.1f}% ({result.seconds:.1f} s)"


@dataclass(frozen=True)
class SearchConfig:
    """Settings of one grid search.

    Attributes:
      preset: "reportA" or "reportB" (its arch, grid and folds are the defaults; ``grids.PRESETS``).
      arch / grid / folds: override the preset's (grid: {name: [values]}; names in
        grids.HYPERPARAMETERS; folds: k of k-fold cross-validation, default the preset's or 5).
      epochs: epochs per fold (None = the architecture's).
      protocol: the training pairs: data, nb_train and seed (drawn once with seed; fold k trains
        with seed + k). Its test and validation fields are not read: the folds are the held-out
        pairs and no test pairs are drawn.
      output: folder (None = results/search/<preset or custom>-<arch>).
    """

    preset: str | None = None
    arch: str | None = None
    grid: dict | None = None
    folds: int | None = None
    epochs: int | None = None
    protocol: Protocol = Protocol()
    output: str | None = None

    def validate(self) -> "SearchConfig":
        if self.preset is not None and self.preset not in PRESETS:
            raise UserError(f"unknown preset {self.preset!r}; valid: {', '.join(PRESETS)}")
        if not self.arch_name or not self.search_grid:
            raise UserError("give a preset (reportA, reportB) or both an architecture and a grid")
        apply_hyperparameters(get_arch(self.arch_name), {k: v[0] for k, v in self.search_grid.items()})  # bad names
        self.protocol.validate()
        return self

    @property
    def arch_name(self) -> str | None:
        return self.arch or PRESETS.get(self.preset, {}).get("arch")

    @property
    def search_grid(self) -> dict | None:
        return self.grid or PRESETS.get(self.preset, {}).get("grid")

    @property
    def nb_folds(self) -> int:
        return self.folds or PRESETS.get(self.preset, {}).get("folds", 5)

    @property
    def output_dir(self) -> str:
        return self.output or os.path.join("results", "search", f"{self.preset or 'custom'}-{self.arch_name}")


def grid_search(cfg: SearchConfig, mnist: Mnist | None = None, cluster: Cluster | None = None,
                fresh: bool = False, progress: bool = True) -> SearchResult:
    """Runs the grid search of ``cfg`` and writes its output folder; returns its trials (best
    first), the best point's ArchConfig and the files written.

    Args:
      cfg: the search (``SearchConfig``).
      mnist: the digits (default: loaded from ``cfg.protocol.data``).
      cluster: where the folds run (``distributed.Cluster``; default this process).
      fresh: forget the folds kept from an interrupted search with the same settings (else only the
        missing ones run).
      progress: print a line per finished fold.
    """
    cfg = cfg.validate()
    preset, arch_name, grid, folds, output = cfg.preset, cfg.arch_name, cfg.search_grid, cfg.nb_folds, cfg.output_dir
    nb_train, seed = cfg.protocol.nb_train, cfg.protocol.seed
    arch_cfg = get_arch(arch_name)
    if cfg.epochs:
        arch_cfg = dataclasses.replace(arch_cfg, epochs=cfg.epochs).validate()
    cluster = cluster or Cluster()
    tf.config.experimental.enable_op_determinism()
    mnist = mnist or load_mnist(cfg.protocol.data)
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
    with kept_jobs(output, settings, FoldResult, fresh) as store:
        results = run_jobs(run_job, jobs, cluster, store,
                           {"arch": arch_cfg, "pairs": pairs, "folds": folds, "seed": seed},
                           fold_summary if progress else None,
                           group=lambda job: json.dumps({k: v for k, v in job.items() if k != "fold"}, sort_keys=True))
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
    files.write_csv(paths["trials.csv"], [t.to_row() for t in trials])
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
