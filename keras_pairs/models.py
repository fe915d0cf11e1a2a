"""Model builders: one digit encoder built once and called on both digits, named outputs.

Every model takes ``pairs`` (N x 14 x 14 x 2 float32, normalised as in training) and returns a
dict of named outputs:

  pair      N x 2 class probabilities [P(a > b), P(a <= b)]      (every model)
  digit_a   N x 10 digit probabilities of channel 0              (siamese models)
  digit_b   N x 10 digit probabilities of channel 1              (siamese models)
  pair_argmax  N x 2 one-hot of argmax(digit_a) <= argmax(digit_b)  (probabilistic head only)

Only Keras layers and ``keras.ops`` on symbolic tensors are used (no ``Lambda``), so every model
saves to ``.keras`` and reloads with ``safe_mode=True`` in a process without this package.

Every builder takes the Keras module it builds with, ``K``: ``keras`` (Keras 3, the default and
everything the project trains and saves) or ``tf_keras`` (Keras 2), which the QAT and pruning
child process (``export/tfmot_child.py``) passes because tensorflow-model-optimization works only
on tf_keras models. Both get the same layers with the same names from this one definition; the few
ops between layers come from ``_ops(K)``. A test (tests/test_tfmot_twin.py) builds every
architecture the child supports both ways and compares their outputs on the same weights.

Every random layer takes its seed from ``LayerSeeds``, drawn from the round's seed alone: code
that draws from Python's global ``random`` between seeding and building (a Dask worker's own threads
do) cannot move a round's initial weights, dropout or augmentation.

Under a mixed-precision policy the layers compute in float16 but every probability layer (the
softmaxes and the outputs) is float32, as Keras' mixed-precision guide prescribes: a float16
softmax and the sums of P(a <= b) would lose precision.
"""

from __future__ import annotations

import random
import types

import keras
from keras import ops

from .config import DIGIT_HEADS, ArchConfig, EncoderConfig

INPUT_SHAPE = (14, 14, 2)
# Augmentation of each training digit (keras_pairs' own model): small shifts, rotations and zoom.
# Keras preprocessing layers are identity at inference, so exported models hold no randomness.
AUGMENT_SHIFT = 0.1  # fraction of 14 px: up to ~1.4 px
AUGMENT_ROTATION = 10.0 / 360.0  # fraction of a full turn: +-10 degrees
AUGMENT_ZOOM = 0.1
AUGMENT_LAYERS = ("augment_shift", "augment_rotate", "augment_zoom")  # their names, in order


class LayerSeeds:
    """The seeds of one model's random layers (kernel initialisers, dropout, augmentation), in build
    order, from a generator of the model's own.

    Without a seed a Keras layer draws one from Python's global ``random`` (``randint(1, 10**9)``),
    which any other code in the process may draw from too. ``random.Random(seed)`` gives the very
    numbers ``random.seed(seed)`` would, in the same order, so a model keeps the initial weights
    it had when Keras drew them, and nothing outside can move them. ``seed=None``: Keras' own
    draws (the tf_keras twin, whose weights are copied in anyway).
    """

    def __init__(self, seed: int | None = None):
        self._rng = None if seed is None else random.Random(seed)

    def next(self) -> int | None:
        """The next layer's seed (None without a model seed)."""
        return None if self._rng is None else self._rng.randint(1, int(1e9))

    def kernel(self, K=keras):
        """A Glorot-uniform kernel initialiser (every layer's default) with the next seed."""
        seed = self.next()
        return "glorot_uniform" if seed is None else K.initializers.GlorotUniform(seed=seed)


def build_encoder(enc: EncoderConfig, in_channels: int, out_units: int, name: str,
                  background: float = 0.0, K=keras, seeds: LayerSeeds | None = None) -> keras.Model:
    """Builds the convolutional body as its own named model.

    Args:
      enc: the body's settings.
      in_channels: 1 for a digit encoder, 2 for a baseline on the whole pair.
      out_units: logits at the end (10 digits, or 2 pair classes).
      name: the sub-model's name.
      background: the normalised value of a black pixel; augmentation fills with it (inputs are
        normalised, so black is not 0 and filling with 0 would draw a grey frame).
      K: the Keras module to build with (``keras``, or ``tf_keras`` for the QAT child).
      seeds: the model's ``LayerSeeds`` (None: Keras draws them).

    Returns:
      A ``K.Model`` mapping 14x14xC images to ``[features, logits]``: ``features`` is the
      output of the last hidden layer (the "encoding" of report B v2/v3), ``logits`` the final
      linear layer (with ReLU where report A writes one).
    """
    L = K.layers
    seeds = seeds or LayerSeeds()
    inputs = K.Input((14, 14, in_channels), name="image")
    x = inputs
    if enc.augment:
        x = L.RandomTranslation(AUGMENT_SHIFT, AUGMENT_SHIFT, fill_mode="constant",
                                fill_value=background, seed=seeds.next(), name=AUGMENT_LAYERS[0])(x)
        x = L.RandomRotation(AUGMENT_ROTATION, fill_mode="constant", fill_value=background,
                             seed=seeds.next(), name=AUGMENT_LAYERS[1])(x)
        x = L.RandomZoom(AUGMENT_ZOOM, fill_mode="constant", fill_value=background,
                         seed=seeds.next(), name=AUGMENT_LAYERS[2])(x)
    for i, (filters, kernel, pool) in enumerate(zip(enc.conv_filters, enc.conv_kernels, enc.conv_pools)):
        x = L.Conv2D(filters, kernel, padding=enc.padding, kernel_initializer=seeds.kernel(K),
                     name=f"conv{i + 1}")(x)
        # block_order names the layers after each convolution, in order ("conv_" + steps).
        for step in enc.block_order.split("_")[1:]:
            if step == "pool" and pool > 1:
                x = L.MaxPooling2D(pool, name=f"pool{i + 1}")(x)
            elif step == "relu":
                x = L.ReLU(name=f"relu{i + 1}")(x)
            elif step == "bn":
                x = L.BatchNormalization(momentum=enc.bn_momentum, name=f"bn{i + 1}")(x)
    x = L.Flatten(name="flatten")(x)
    if enc.dropout:
        x = L.Dropout(enc.dropout, seed=seeds.next(), name="dropout0")(x)
    for i, units in enumerate(enc.hidden_units):
        x = L.Dense(units, kernel_initializer=seeds.kernel(K), name=f"fc{i + 1}")(x)
        x = L.ReLU(name=f"fc{i + 1}_relu")(x)
        if enc.hidden_batchnorm:
            x = L.BatchNormalization(momentum=enc.bn_momentum, name=f"fc{i + 1}_bn")(x)
        if enc.dropout:
            x = L.Dropout(enc.dropout, seed=seeds.next(), name=f"dropout{i + 1}")(x)
    features = x
    logits = L.Dense(out_units, kernel_initializer=seeds.kernel(K), name="logits")(x)
    if enc.output_relu:
        logits = L.ReLU(name="logits_relu")(logits)
    return K.Model(inputs, [features, logits], name=name)


def build_model(arch: ArchConfig, background: float = 0.0, K=keras, encoders=None,
                seed: int | None = None) -> keras.Model:
    """Builds the model of one architecture.

    Args:
      arch: the architecture (see ``keras_pairs.config.ARCHITECTURES``).
      background: the normalised value of a black pixel, used to fill pixels that augmentation
        shifts in (only used when ``arch.encoder.augment``).
      K: the Keras module to build with (``keras``, or ``tf_keras`` for the QAT child).
      encoders: digit encoders to build around (siamese models: one per ensemble member; the QAT
        child passes its quantized encoder); None builds them.
      seed: the seed of every random layer (``LayerSeeds``); None: Keras draws them from Python's
        global ``random``.

    Returns:
      A functional ``K.Model`` named after the architecture with a dict of named outputs.
      Siamese models contain the digit encoder(s) as named sub-models ("digit_encoder",
      "digit_encoder_1", ...), each called on both digits: the weights are shared.
    """
    arch.validate()
    seeds = LayerSeeds(seed)
    pairs = K.Input(INPUT_SHAPE, name="pairs")
    if not arch.siamese:
        body = build_encoder(arch.encoder, 2, 2, name="pair_cnn", background=background, K=K, seeds=seeds)
        _, logits = body(pairs)
        return K.Model(pairs, {"pair": _softmax("pair", K)(logits)}, name=arch.name)

    digit_a, digit_b, feats, logits, members = digit_probabilities(arch, pairs, background, encoders, K, seeds)
    outputs = siamese_outputs(arch, digit_a, digit_b, feats, logits, K, seeds)
    if arch.ensemble > 1:  # each member trains on its own losses: independent members
        for k, (member_a, member_b) in enumerate(members):
            outputs[f"digit_a_{k}"] = _identity(f"digit_a_{k}", K)(member_a)
            outputs[f"digit_b_{k}"] = _identity(f"digit_b_{k}", K)(member_b)
            outputs[f"pair_{k}"] = _identity(f"pair_{k}", K)(prob_a_le_b(member_a, member_b, K))
    return K.Model(pairs, outputs, name=arch.name.replace("-", "_"))


def _ops(K):
    """The few ``keras.ops`` this module writes between layers, for the Keras module ``K``.

    Keras 3's ops turn Keras 3 symbolic tensors into layers of their own (saved, no ``Lambda``);
    they do not take tf_keras' symbolic tensors, which take TensorFlow ops instead (tf_keras wraps
    each one in a layer). So a tf_keras model gets the same computation from these TensorFlow ops,
    the ones Keras 3's ops run on the TensorFlow backend.
    """
    if K is keras:
        return ops
    import tensorflow as tf  # only on the tf_keras path

    return types.SimpleNamespace(
        concatenate=lambda xs, axis=0: tf.concat(xs, axis),
        split=lambda x, n, axis=0: tf.split(x, n, axis),
        cumsum=lambda x, axis=None: tf.cumsum(x, axis),
        sum=lambda x, axis=None, keepdims=False: tf.reduce_sum(x, axis, keepdims),
        max=lambda x, axis=None, keepdims=False: tf.reduce_max(x, axis, keepdims),
        clip=tf.clip_by_value, cast=tf.cast)


def _softmax(name: str, K=keras):
    return K.layers.Softmax(name=name, dtype="float32")  # float32 under mixed precision (module doc)


def _identity(name: str, K=keras):
    return K.layers.Identity(name=name, dtype="float32")


def averaged_output(name: str) -> str:
    """"digit_a_1" -> "digit_a", "pair_0" -> "pair": the output an ensemble member's output is part of."""
    base, _, k = name.rpartition("_")
    return base if k.isdigit() and base in ("digit_a", "digit_b", "pair") else name


def loss_weights(arch: ArchConfig) -> dict[str, float]:
    """The outputs that carry a loss, each with its loss weight, by output name, in compile order.

    Every loss is the sparse categorical cross-entropy of the output's probabilities: the pair
    output against the pair target, ``digit_a`` / ``digit_b`` against the digit classes. The one
    mapping both training (``training.compile_model``) and the QAT and pruning fine-tuning
    (``export/tfmot_child.py``) compile with. An ensemble's losses sit on each member's outputs
    (independent members), not on the average.
    """
    weights = {}
    members = [f"_{k}" for k in range(arch.ensemble)] if arch.ensemble > 1 else [""]
    for m in members:
        if arch.trains_pair_output:
            weights["pair" + m] = arch.pair_loss_weight
        if arch.predicts_digits and arch.aux_loss:
            for out in ("digit_a", "digit_b"):
                weights[out + m] = arch.digit_loss_weight
    return weights


def digit_probabilities(arch: ArchConfig, pairs, background: float, encoders=None, K=keras,
                        seeds: LayerSeeds | None = None):
    """Both digits' probabilities, averaged over the ensemble members.

    Builds the encoders (one per ensemble member, each applied to both digits) unless given.
    Returns (digit_a, digit_b, (features_a, features_b), (logits_a, logits_b), members): features
    and logits of the first member (what the trainable heads read) and each member's own
    (probs_a, probs_b). Each digit is its own encoder call (in training, batch normalisation sees
    the a-digits and the b-digits separately), or with ``arch.stack_digits`` one call per encoder
    on both digits stacked.
    """
    o = _ops(K)
    if encoders is None:
        # ONE encoder object per ensemble member, applied to both digits: shared weights.
        encoders = [build_encoder(arch.encoder, 1, 10, name="digit_encoder" + (f"_{k}" if k else ""),
                                  background=background, K=K, seeds=seeds) for k in range(arch.ensemble)]
    members, first = [], None
    # Each digit's channel as [:, :, :, i:i+1]: tf_keras cannot serialise the `...` slice.
    for k, encoder in enumerate(encoders):
        if arch.stack_digits:
            feats, logits = encoder(o.concatenate([pairs[:, :, :, 0:1], pairs[:, :, :, 1:2]], axis=0))
            (fa, fb), (la, lb) = o.split(feats, 2, axis=0), o.split(logits, 2, axis=0)
        else:
            fa, la = encoder(pairs[:, :, :, 0:1])
            fb, lb = encoder(pairs[:, :, :, 1:2])
        if first is None:
            first = ((fa, fb), (la, lb))
        members.append((_softmax(f"digit_a_probs_{k}", K)(la), _softmax(f"digit_b_probs_{k}", K)(lb)))
    digit_a, digit_b = average_members([a for a, _ in members], [b for _, b in members], K)
    return digit_a, digit_b, first[0], first[1], members


def average_members(probs_a: list, probs_b: list, K=keras):
    """The ``digit_a`` and ``digit_b`` outputs: the members' digit probabilities, averaged."""
    if len(probs_a) == 1:
        return _identity("digit_a", K)(probs_a[0]), _identity("digit_b", K)(probs_b[0])
    return (K.layers.Average(name="digit_a", dtype="float32")(probs_a),
            K.layers.Average(name="digit_b", dtype="float32")(probs_b))


def siamese_outputs(arch: ArchConfig, digit_a, digit_b, feats, logits, K=keras,
                    seeds: LayerSeeds | None = None) -> dict:
    """The named outputs of a siamese model from its digit probabilities (and, for the heads
    with weights, the first member's features and logits)."""
    L = K.layers
    seeds = seeds or LayerSeeds()
    outputs = {}
    head = arch.head
    if head in DIGIT_HEADS:
        if head == "probabilistic":
            outputs["pair"] = _identity("pair", K)(prob_a_le_b(digit_a, digit_b, K))
            outputs["pair_argmax"] = _identity("pair_argmax", K)(argmax_a_le_b(digit_a, digit_b, K))
        else:
            outputs["pair"] = _identity("pair", K)(argmax_a_le_b(digit_a, digit_b, K))
    else:
        (fa, fb), (la, lb) = feats, logits
        if head == "digits_concat":
            x = L.Concatenate(name="concat_digits")([la, lb])
        elif head == "features_concat":
            x = L.Concatenate(name="concat_features")([fa, fb])
        elif head == "features_diff":
            x = L.Subtract(name="subtract_features")([fa, fb])
        elif head == "softmax_dense":
            x = L.Concatenate(name="concat_probs")([digit_a, digit_b])
        elif head == "digits_mlp":
            x = L.Concatenate(name="concat_digits")([la, lb])
            x = L.Dense(arch.head_units, activation="relu", kernel_initializer=seeds.kernel(K),
                        name="head_hidden")(x)
        else:  # pragma: no cover - validate() rejects unknown heads
            raise ValueError(head)
        pair_logits = L.Dense(2, kernel_initializer=seeds.kernel(K), name="pair_logits")(x)
        if arch.pair_relu:
            pair_logits = L.ReLU(name="pair_logits_relu")(pair_logits)
        outputs["pair"] = _softmax("pair", K)(pair_logits)
    if arch.predicts_digits:
        outputs["digit_a"] = digit_a
        outputs["digit_b"] = digit_b
    return outputs


def prob_a_le_b(probs_a, probs_b, K=keras):
    """[1 - p, p] with p = P(a <= b) = sum_{i <= j} p_a(i) p_b(j), for independent digits.

    Written as sum_i p_a(i) * P(b >= i) with P(b >= i) = 1 - cdf_b(i) + p_b(i).
    """
    o = _ops(K)
    b_at_least = 1.0 - o.cumsum(probs_b, axis=-1) + probs_b
    p = o.sum(probs_a * b_at_least, axis=-1, keepdims=True)
    p = o.clip(p, 0.0, 1.0)
    return o.concatenate([1.0 - p, p], axis=-1)


def argmax_a_le_b(probs_a, probs_b, K=keras):
    """[a > b, a <= b] of the arg-max digits: the arithmetic comparison (report B v4).

    Written without ``argmax`` (which TFLite lowers to an op it lacks): each digit becomes the
    indicator of its maximum, and the comparison is the exact rule applied to those one-hots.
    A tie between two maximal probabilities (practically never) splits the vote evenly.
    """
    o = _ops(K)
    hot_a = o.cast(probs_a >= o.max(probs_a, axis=-1, keepdims=True), probs_a.dtype)
    hot_b = o.cast(probs_b >= o.max(probs_b, axis=-1, keepdims=True), probs_b.dtype)
    hot_a = hot_a / o.sum(hot_a, axis=-1, keepdims=True)
    hot_b = hot_b / o.sum(hot_b, axis=-1, keepdims=True)
    return prob_a_le_b(hot_a, hot_b, K)


def digit_encoders(model: keras.Model) -> list[keras.Model]:
    """The digit encoder sub-models of a siamese model (empty for the baselines)."""
    return [layer for layer in model.layers if layer.name.startswith("digit_encoder")]
