"""The run folder: what it holds, read back, chosen among others, and its model loaded.

``saved_models/<arch>/`` describes itself:

  config.json    resolved architecture + training settings, the data it was drawn from (source,
                 pool sizes, fingerprint), the selected round's seed and normalisation
  metrics.json   per-round test/validation metrics, mean +- std, device, seconds per round
  history/round_XX.csv            per-epoch metrics (Keras CSVLogger)
  checkpoints/round_XX.weights.h5 best-validation weights (ModelCheckpoint)
  model.keras    the round with the best VALIDATION pair accuracy (never chosen on test pairs)
  logs/          TensorBoard, when asked
  export/        what export.py writes

``training.py`` writes the folder through ``files.staged_folder``: an interrupted or failed run
leaves the previous folder exactly as it was.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import keras
import numpy as np

from .config import DEFAULT_MODELS_DIR, ArchConfig
from .data import Mnist, PairSet, draw_round, load_recorded
from .errors import UserError
from .results import RunResult

log = logging.getLogger(__name__)

class RunError(UserError):
    """A run folder that is missing, incomplete or unreadable; the message says what to run."""


def train_hint(models_dir: str = DEFAULT_MODELS_DIR, arch: str = "v5") -> str:
    out = "" if os.path.normpath(models_dir) == DEFAULT_MODELS_DIR else f" --output {models_dir}"
    return f"python train.py --arch {arch}{out}"


@dataclass(frozen=True)
class Run:
    """A run folder as read back: its path, config.json and metrics.json (a ``RunResult``)."""

    path: str
    config: dict
    metrics: RunResult

    @property
    def arch(self) -> ArchConfig:
        return ArchConfig.from_dict(self.config["train"]["arch"])

    @property
    def normalisation(self) -> tuple[float, float]:
        norm = self.config["normalisation"]
        return float(norm["mean"]), float(norm["std"])

    @property
    def model_path(self) -> str:
        return os.path.join(self.path, "model.keras")

    @property
    def mean_validation_accuracy(self) -> float | None:
        vals = [r.validation.pair_accuracy for r in self.metrics.rounds if r.validation is not None]
        return float(np.mean(vals)) if vals else None


def load_run(run_dir: str) -> Run:
    """Reads a run folder, with an error that says what to run when it is missing or corrupt."""
    hint = train_hint(os.path.dirname(os.path.normpath(run_dir)) or ".", os.path.basename(os.path.normpath(run_dir)))
    docs = {}
    for name in ("config.json", "metrics.json"):
        path = os.path.join(run_dir, name)
        if not os.path.isfile(path):
            raise RunError(f"{path} not found: is {run_dir} a run folder? Train one first: {hint}")
        try:
            with open(path) as f:
                docs[name] = json.load(f)
        except (OSError, ValueError) as err:
            raise RunError(f"{path} is not valid JSON ({err}); retrain: {hint}") from err
    try:
        metrics = RunResult.from_dict(docs["metrics.json"], run_dir)
    except (KeyError, TypeError, ValueError) as err:
        raise RunError(f"{run_dir}/metrics.json cannot be read as a run's metrics ({err}); retrain: {hint}") from err
    run = Run(run_dir, docs["config.json"], metrics)
    try:
        run.arch, run.normalisation  # noqa: B018 - fail here, not halfway through an export
    except (KeyError, TypeError, ValueError) as err:
        raise RunError(f"{run_dir}/config.json: its architecture or normalisation cannot be read "
                       f"({err}); retrain: {hint}") from err
    if not os.path.isfile(run.model_path):
        raise RunError(f"{run.model_path} not found; train first: {hint}")
    return run


def find_best_run(models_dir: str) -> tuple[Run, str]:
    """The siamese run under ``models_dir`` with the best mean VALIDATION pair accuracy, and why.
    Test accuracy is never used to choose."""
    candidates = []
    if os.path.isdir(models_dir):
        for name in sorted(os.listdir(models_dir)):
            run_dir = os.path.join(models_dir, name)
            if name.startswith(".") or not os.path.isfile(os.path.join(run_dir, "config.json")):
                continue
            try:
                run = load_run(run_dir)
            except RunError as err:
                log.warning("skipping %s: %s", run_dir, err)
                continue
            if run.arch.siamese and run.mean_validation_accuracy is not None:
                candidates.append((run.mean_validation_accuracy, name, run))
    if not candidates:
        raise RunError(f"no trained siamese model under {models_dir!r} (a run folder with model.keras, "
                       f"config.json and validation metrics); train one first: {train_hint(models_dir)}")
    candidates.sort(key=lambda c: (-c[0], c[1]))
    best_acc, best_name, best = candidates[0]
    others = ", ".join(f"{n} {100 * v:.2f} %" for v, n, _ in candidates[1:]) or "no other siamese run"
    why = (f"best mean validation pair accuracy among siamese runs: {best_name} {100 * best_acc:.2f} % "
           f"({others}); test pairs are never used to choose")
    return best, why


def resolve_run(models_dir: str = DEFAULT_MODELS_DIR, arch: str | None = None,
                run_dir: str | None = None) -> tuple[Run, str]:
    """The run named by ``run_dir`` or ``arch``, else the best one (``find_best_run``); and why."""
    if run_dir:
        return load_run(run_dir), "run folder given with --run"
    if arch:
        path = os.path.join(models_dir, arch)
        if not os.path.isdir(path):
            raise RunError(f"no run folder {path!r}: train it first: {train_hint(models_dir, arch)}")
        return load_run(path), "architecture given with --arch"
    return find_best_run(models_dir)


def load_model(path: str) -> keras.Model:
    """Loads a .keras file written by train.py (``safe_mode``), or raises RunError naming it."""
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # noqa: BLE001 - zip, JSON, h5 and deserialisation errors alike
        raise RunError(f"{path}: cannot be loaded as a Keras model ({type(err).__name__}: "
                       f"{str(err)[:300]}); the file is corrupt or was not written by train.py. "
                       f"Nothing was written or overwritten.") from err
    shape = tuple(model.inputs[0].shape) if len(model.inputs) == 1 else None
    if shape != (None, 14, 14, 2) or "pair" not in model.output_names:
        raise RunError(f"{path}: not a keras_pairs model (input {shape}, outputs {model.output_names}); "
                       f"expected input N x 14 x 14 x 2 and a 'pair' output. Nothing was written or "
                       f"overwritten.")
    return model


@dataclass(frozen=True)
class RunPairs:
    """The selected round's pairs, unnormalised, with their raw 28x28 uint8 digits (what an app
    feeds): ``fit`` = training pairs minus validation, ``test`` = the round's test pairs."""

    fit: PairSet
    fit_digits: tuple[np.ndarray, np.ndarray]
    test: PairSet
    test_digits: tuple[np.ndarray, np.ndarray]


def run_pairs(run: Run, mnist: Mnist | None = None) -> RunPairs:
    """Rebuilds the selected round's pairs exactly as training drew them, from the digits the run
    recorded (``data.load_recorded``: the recorded source, checked by pool sizes and fingerprint)."""
    mnist = load_recorded(run.config["data"], mnist)
    train = run.config["train"]
    fit, _, test = draw_round(mnist, train["nb_train"], train["nb_test"], train["val_fraction"],
                              int(run.config["seed"]))
    return RunPairs(fit, fit.raw_digits(mnist.x_train), test, test.raw_digits(mnist.x_test))
