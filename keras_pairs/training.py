"""Training: the optimiser, THE round loop, and ``train_and_evaluate`` which writes a run folder.

A round (``train_round``) trains the architecture's teacher first, if it has one, then
(``fit_round``) fits a freshly initialised model on the round's fitted pairs (the validation
pairs, split off the TRAINING pairs, are seen only by early stopping and checkpoints) and scores
it once on the round's test pairs; it returns a ``results.Round``. ``train.py``,
``experiments.py`` and the grid search's folds all train through it, with the same fast path:
each architecture is compiled once and re-initialised per round (``RoundModel``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from . import files, threads
from .architectures import teacher_of
from .config import ArchConfig, TrainConfig
from .data import Mnist, RoundData, load_mnist, prepare_round
from .distillation import SoftTargetTrainer
from .metrics import history_rows, score_outputs, summarise_rounds
from .models import averaged_output, build_model, loss_weights
from .pipeline import fit_inputs
from .results import Normalisation, Round, RunResult, TeacherResult
from .views import has_inference_model, inference_model

log = logging.getLogger(__name__)

# Training steps per call into the traced train function: the same steps in the same order (v5's
# weights after 3 epochs are bit-identical to one step per call) with less Python between them;
# on 2 CPU cores an epoch of siamese-prob-aug-tta-x2 at batch 25 took 1.06-1.10 s against
# 1.18-1.61 s one step per call. Keras' multi-step loop fails under MirroredStrategy: 1 there.
STEPS_PER_EXECUTION = 8
PROGRESS_AFTER_SECONDS = 5.0  # rounds longer than this print a line per epoch


def describe_devices(strategy: tf.distribute.Strategy | None = None) -> dict:
    """The device Keras trains on (a GPU is used automatically when TensorFlow sees one), the
    replicas of the distribution strategy, and TensorFlow's intra- and inter-op threads (0: its
    default, one per core)."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        info = {"device": "GPU", "name": details.get("device_name", gpus[0].name), "count": len(gpus)}
    else:
        info = {"device": "CPU", "name": "CPU", "count": len(tf.config.list_logical_devices("CPU"))}
    info.update(threads.configured())
    info["strategy"] = type(strategy).__name__ if strategy is not None else "default"
    info["replicas"] = strategy.num_replicas_in_sync if strategy is not None else 1
    return info


# --- compiling ------------------------------------------------------------------------------


def steps_per_epoch(arch: ArchConfig, n_fit: int) -> int:
    return -(-n_fit // arch.batch_size)


def make_optimizer(arch: ArchConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr = arch.learning_rate
    if arch.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=arch.epochs * steps_per_epoch)
    if arch.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=arch.momentum)
    if arch.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=arch.weight_decay)
    return keras.optimizers.Adam(lr)


def compile_model(model: keras.Model, arch: ArchConfig, steps_per_epoch: int,
                  steps_per_execution: int = STEPS_PER_EXECUTION, output_names=None) -> keras.Model:
    """Compiles with losses, loss weights and metrics keyed by output name (``output_names``,
    default the model's); ``steps_per_epoch`` sets the length of the cosine schedule."""
    weights = loss_weights(arch)  # which outputs carry a loss: shared with the QAT/pruning child
    loss = {out: keras.losses.SparseCategoricalCrossentropy(name=f"{out}_loss") for out in weights}
    metrics = {}
    for out in output_names or model.output_names:
        if averaged_output(out) == out:  # the members' own accuracies would only crowd the logs
            metrics[out] = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=make_optimizer(arch, steps_per_epoch), loss=loss, loss_weights=weights,
                  metrics=metrics, jit_compile="auto", steps_per_execution=steps_per_execution)
    return model


# --- one round --------------------------------------------------------------------------------


class RoundModel:
    """The compiled model of one architecture, freshly initialised for every round.

    Building, compiling and tracing a model costs ~2.5 s, a third of a report model's 25-epoch
    round. So the model is compiled once; each round copies in the variables of a model built with
    that round's seed (its initial weights and dropout seed states) and restores the optimizer's
    initial variables, so Keras' traced functions are reused and the round trains exactly as a
    model built for it would.
    Augmented encoders bake the round's background value into their layers, and a distribution
    strategy builds in its own scope: those are rebuilt every round.

    An architecture with soft targets (a teacher, or mixup) is fitted through a
    ``SoftTargetTrainer`` around its model (``fit_model``); its teacher has a RoundModel of its own,
    or the one given as ``teacher`` (students that share a teacher, trained once by the caller).
    """

    def __init__(self, arch: ArchConfig, reuse: bool = True, strategy: tf.distribute.Strategy | None = None,
                 teacher: "RoundModel | None" = None):
        self.arch, self.strategy = arch, strategy
        self.reuse = reuse and not arch.encoder.augment and strategy is None and not arch.soft_targets
        if teacher is not None and (arch.teacher is None or teacher.arch.name != arch.teacher):
            raise ValueError(f"{arch.name}: its teacher is {arch.teacher}, not {teacher.arch.name}")
        self.teacher = teacher or (RoundModel(teacher_of(arch), reuse, strategy) if arch.teacher else None)
        self.model: keras.Model | None = None
        self.fit_model: keras.Model | None = None  # what ``fit`` trains: the model, or its trainer
        self._steps = None
        self._optimizer_init = None
        self._inference = None
        self._predict = None

    def initialise(self, seed: int, background: float, n_fit: int) -> keras.Model:
        """The compiled model to fit, holding exactly the initial weights a model built now with
        ``seed`` would have (``seed`` also seeds dropout and augmentation). A teacher must have
        been trained first (``train_round`` does)."""
        keras.utils.set_random_seed(seed)
        steps = steps_per_epoch(self.arch, n_fit)
        self._inference = self._predict = None
        scope = self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()
        with scope:
            new = build_model(self.arch, background=background, seed=seed)
            if self.model is not None and self.reuse and steps == self._steps:
                # Every variable: the weights and the dropout layers' seed-generator states, so
                # that round r trains exactly as a model built for it would, whatever came before.
                for var, fresh in zip(self.model.variables, new.variables):
                    var.assign(fresh)
                for var, value in zip(self.model.optimizer.variables, self._optimizer_init):
                    var.assign(value)
                return self.model
            fit_model = new
            if self.arch.soft_targets:
                fit_model = SoftTargetTrainer(new, self.arch, self.teacher.model if self.teacher else None, seed)
            compile_model(fit_model, self.arch, steps, 1 if self.strategy is not None else STEPS_PER_EXECUTION,
                          output_names=new.output_names)
            fit_model.optimizer.build(fit_model.trainable_variables)
        self._optimizer_init = [np.array(v.numpy()) for v in fit_model.optimizer.variables]
        self.model, self.fit_model, self._steps = new, fit_model, steps
        return fit_model

    def finish_training(self, background: float) -> None:
        """From now on ``inference`` and ``predict`` are the inference model (``views.py``)."""
        self._inference = (inference_model(self.model, self.arch, background)
                           if has_inference_model(self.arch) else self.model)
        self._predict = None

    @property
    def inference(self) -> keras.Model:
        """The model to evaluate and save: the inference model after ``finish_training``."""
        return self._inference or self.model

    def predict(self, images: np.ndarray) -> dict:
        """Outputs on a whole set in one traced call (cheaper than ``model.predict``)."""
        if self._predict is None:
            model = self.inference
            self._predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        out = self._predict(tf.constant(images))
        return {k: v.numpy() for k, v in out.items()}


@functools.lru_cache(maxsize=1)
def compiled(arch: ArchConfig) -> RoundModel:
    """The last architecture's RoundModel in this process: consecutive rounds or folds of one
    architecture (serially, or on one Dask worker) compile it once."""
    return RoundModel(arch)


class EpochProgress(keras.callbacks.Callback):
    """One log line per epoch once the round has run longer than ``after_seconds``."""

    def __init__(self, after_seconds: float = PROGRESS_AFTER_SECONDS):
        super().__init__()
        self.after_seconds = after_seconds

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.start
        if elapsed >= self.after_seconds:
            shown = [k for k in ("loss", "pair_accuracy", "accuracy", "val_pair_accuracy", "val_accuracy")
                     if k in (logs or {})]
            log.info("  epoch %d/%d: %s (%.1f s)", epoch + 1, self.params["epochs"],
                     ", ".join(f"{k} {logs[k]:.4f}" for k in shown), elapsed)


def validation_monitor(model: keras.Model) -> str:
    """The Keras log key of the validation pair accuracy (single-output models drop the name)."""
    return "val_accuracy" if len(model.outputs) == 1 else "val_pair_accuracy"


def early_stopping(model: keras.Model, patience: int) -> keras.callbacks.EarlyStopping:
    """Early stopping on the validation PAIR ACCURACY, restoring the best weights.

    Not on the validation loss: an overfitting pair head grows confident on its mistakes, so the
    loss turns up epochs before the accuracy stops improving.
    """
    return keras.callbacks.EarlyStopping(monitor=validation_monitor(model), mode="max",
                                         patience=patience, restore_best_weights=True)


def train_round(round_model: RoundModel, data: RoundData, seed: int, callbacks=(),
                patience: int | None = None, verbose: int = 0) -> tuple[Round, dict]:
    """Trains one round and scores it once on ``data.test``: the teacher first, if the
    architecture has one (on the same pairs with the same seed), then ``fit_round``.

    Args and returns: as ``fit_round``; a student's round records its teacher's scores and
    counts its teacher's seconds.
    """
    teacher = None
    if round_model.teacher is not None:
        log.info("  teacher %s:", round_model.teacher.arch.name)
        teacher, _ = train_round(round_model.teacher, data, seed, patience=patience, verbose=verbose)
        log.info("  teacher: test pair accuracy %.4f (%.1f s); the student %s:",
                 teacher.test.pair_accuracy, teacher.seconds, round_model.arch.name)
    return fit_round(round_model, data, seed, callbacks, patience, verbose, teacher)


def fit_round(round_model: RoundModel, data: RoundData, seed: int, callbacks=(),
              patience: int | None = None, verbose: int = 0, teacher: Round | None = None) -> tuple[Round, dict]:
    """Fits ``round_model`` for one round and scores it once on ``data.test``.

    A student's teacher (``round_model.teacher``) must have been trained on this round already:
    ``train_round`` does it first; a study may train one teacher and fit several students that
    share it.

    Args:
      round_model: the architecture's RoundModel (initialised here with ``seed``).
      data: the round's normalised pairs (``data.prepare_round``).
      seed: initialisation, dropout, augmentation and shuffling of this round.
      callbacks: more Keras callbacks, or a function ``model -> callbacks`` for those that need
        the model (checkpoints monitor its output names).
      patience: early stopping on the validation pair accuracy (None = every epoch).
      verbose: Keras' fit verbosity; 0 prints a line per epoch only for long rounds.
      teacher: the teacher's own round, recorded with the student's (its seconds are added).

    Returns:
      (round, outputs): the round's record (``results.Round``) and the inference model's outputs
      on ``data.test``.
    """
    arch = round_model.arch
    start = time.perf_counter()
    fit_model = round_model.initialise(seed, data.background, len(data.fit))
    model = round_model.model
    callbacks = list(callbacks(model) if callable(callbacks) else callbacks)
    if patience is not None and data.val is not None:
        callbacks.append(early_stopping(model, patience))
    if not verbose:
        callbacks.append(EpochProgress())
    history = fit_model.fit(epochs=arch.epochs, callbacks=callbacks, verbose=verbose,
                            **fit_inputs(model, arch, data.fit, data.val, seed))
    round_model.finish_training(data.background)
    outputs = round_model.predict(data.test.images)
    test = score_outputs(outputs, data.test)
    validation = score_outputs(round_model.predict(data.val.images), data.val) if data.val is not None else None
    seconds = time.perf_counter() - start + (teacher.seconds if teacher is not None else 0.0)
    return Round(seed=seed, seconds=seconds, epochs_run=len(history.epoch), test=test, validation=validation,
                 normalisation=Normalisation(data.mean, data.std),
                 teacher=(TeacherResult(round_model.teacher.arch.name, teacher.seconds, teacher.test,
                                        teacher.validation) if teacher is not None else None),
                 history=tuple(history_rows(history.history, len(model.outputs) == 1))), outputs


# --- a run of several rounds -------------------------------------------------------------------


def train_and_evaluate(cfg: TrainConfig, mnist: Mnist | None = None) -> RunResult:
    """Trains ``cfg.rounds`` rounds of ``cfg.arch`` and writes the run folder (``runs.py``).

    Returns the run's result (metrics.json), with ``run_dir`` when the folder was written.
    """
    cfg = cfg.validate()
    arch, protocol = cfg.arch, cfg.protocol
    tf.config.experimental.enable_op_determinism()  # same seed and flags, same metrics on a CPU
    keras.mixed_precision.set_global_policy("mixed_float16" if cfg.mixed_precision else "float32")
    strategy = tf.distribute.MirroredStrategy() if cfg.strategy == "mirrored" else None
    devices = describe_devices(strategy)
    log.info("training %s on %s (%s)", arch.name, devices["device"], devices["name"])
    if cfg.mixed_precision and devices["device"] != "GPU":
        log.warning("--mixed-precision on a CPU is slower than float32 and gains nothing")
    mnist = mnist or load_mnist(cfg.protocol.data)
    log.info("data: %s (train pool %d, test pool %d)", mnist.source, len(mnist.y_train), len(mnist.y_test))
    round_model = RoundModel(arch, strategy=strategy)
    final_dir = os.path.join(cfg.output, arch.name)
    with files.staged_folder(final_dir) if cfg.save else contextlib.nullcontext() as work:
        rounds = []
        for r in range(cfg.rounds):
            seed = protocol.seed + r
            data = prepare_round(mnist, protocol.nb_train, protocol.nb_test, protocol.val_fraction, seed)
            done, _ = train_round(round_model, data, seed, _run_callbacks(cfg, work, r, data),
                                  protocol.patience, cfg.verbose)
            rounds.append(dataclasses.replace(done, index=r))
            if work:
                round_model.inference.save(os.path.join(work, f"round_{r:02d}.keras"))
            test = done.test
            log.info("round %d/%d: test pair accuracy %.4f%s (%.1f s)", r + 1, cfg.rounds,
                     test.pair_accuracy, f", digit accuracy {test.digit_accuracy:.4f}"
                     if test.digit_accuracy is not None else "", done.seconds)
        result = _run_result(cfg, rounds, mnist, devices)
        if work:
            _write_run(work, cfg, result)
    return dataclasses.replace(result, run_dir=final_dir) if cfg.save else result


def _run_callbacks(cfg: TrainConfig, work: str | None, r: int, data: RoundData):
    """The run folder's callbacks of round ``r``: per-epoch CSV, best-validation checkpoint,
    TensorBoard when asked."""
    def make(model):
        if not work:
            return []
        callbacks = [keras.callbacks.CSVLogger(os.path.join(work, "history", f"round_{r:02d}.csv"))]
        if data.val is not None:
            callbacks.append(keras.callbacks.ModelCheckpoint(
                os.path.join(work, "checkpoints", f"round_{r:02d}.weights.h5"),
                monitor=validation_monitor(model), mode="max", save_best_only=True, save_weights_only=True))
        if cfg.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(work, "logs", f"round_{r:02d}")))
        return callbacks

    if work:
        os.makedirs(os.path.join(work, "history"), exist_ok=True)
    return make


def _run_result(cfg: TrainConfig, rounds: list[Round], mnist: Mnist, devices: dict) -> RunResult:
    # The saved model is the round with the best VALIDATION pair accuracy (ties: the earliest).
    selected = max(range(len(rounds)),
                   key=lambda i: (rounds[i].validation.pair_accuracy if rounds[i].validation else 0.0, -i))
    return RunResult(arch=cfg.arch.name, data=mnist.describe(), device=devices, seed=cfg.protocol.seed,
                     rounds=tuple(rounds), test=summarise_rounds(rounds), selected_round=selected,
                     selected_by="validation pair accuracy" if cfg.protocol.val_fraction else "first round")


def _write_run(work: str, cfg: TrainConfig, result: RunResult) -> None:
    sel = result.selected_round
    os.replace(os.path.join(work, f"round_{sel:02d}.keras"), os.path.join(work, "model.keras"))
    for r in range(len(result.rounds)):
        path = os.path.join(work, f"round_{r:02d}.keras")
        if os.path.exists(path):
            os.remove(path)
    outputs = {"pair": "N x 2 probabilities [P(a > b), P(a <= b)]"}
    if cfg.arch.head == "probabilistic":
        outputs["pair_argmax"] = "N x 2 one-hot of argmax(digit_a) <= argmax(digit_b)"
    if cfg.arch.predicts_digits:
        outputs["digit_a"] = outputs["digit_b"] = "N x 10 digit probabilities"
    config = {"train": cfg.to_dict(), "data": result.data,
              "normalisation": result.selected.normalisation.to_dict(), "selected_round": sel,
              "seed": result.selected.seed, "input": "pairs: N x 14 x 14 x 2 float32, (x - mean) / std",
              "outputs": outputs}
    files.write_json(os.path.join(work, "config.json"), config)
    files.write_json(os.path.join(work, "metrics.json"), result.to_dict())
