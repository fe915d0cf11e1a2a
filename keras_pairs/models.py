"""Model builders: one digit encoder built once and called on both digits, named outputs.

Every model takes ``pairs`` (N x 14 x 14 x 2 float32, normalised as in training) and returns a
dict of named outputs:

  pair      N x 2 class probabilities [P(a > b), P(a <= b)]      (every model)
  digit_a   N x 10 digit probabilities of channel 0              (siamese models)
  digit_b   N x 10 digit probabilities of channel 1              (siamese models)
  pair_argmax  N x 2 one-hot of argmax(digit_a) <= argmax(digit_b)  (probabilistic head only)

Only Keras layers and ``keras.ops`` on symbolic tensors are used (no ``Lambda``), so every model
saves to ``.keras`` and reloads with ``safe_mode=True`` in a process without this package.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from .config import ArchConfig, EncoderConfig

INPUT_SHAPE = (14, 14, 2)
DIGIT_SHAPE = (14, 14, 1)
# Augmentation of each training digit (keras_pairs' own model): small shifts, rotations and zoom.
# Keras preprocessing layers are identity at inference, so exported models hold no randomness.
AUGMENT_SHIFT = 0.1  # fraction of 14 px: up to ~1.4 px
AUGMENT_ROTATION = 10.0 / 360.0  # fraction of a full turn: +-10 degrees
AUGMENT_ZOOM = 0.1


def build_encoder(enc: EncoderConfig, in_channels: int, out_units: int, name: str,
                  background: float = 0.0) -> keras.Model:
    """Builds the convolutional body as its own named model.

    Args:
      enc: the body's settings.
      in_channels: 1 for a digit encoder, 2 for a baseline on the whole pair.
      out_units: logits at the end (10 digits, or 2 pair classes).
      name: the sub-model's name.
      background: the normalised value of a black pixel; augmentation fills with it (inputs are
        normalised, so black is not 0 and filling with 0 would draw a grey frame).

    Returns:
      A ``keras.Model`` mapping 14x14xC images to ``[features, logits]``: ``features`` is the
      output of the last hidden layer (the "encoding" of report B v2/v3), ``logits`` the final
      linear layer (with ReLU where report A writes one).
    """
    inputs = keras.Input((14, 14, in_channels), name="image")
    x = inputs
    if enc.augment:
        x = layers.RandomTranslation(AUGMENT_SHIFT, AUGMENT_SHIFT, fill_mode="constant",
                                     fill_value=background, name="augment_shift")(x)
        x = layers.RandomRotation(AUGMENT_ROTATION, fill_mode="constant", fill_value=background,
                                  name="augment_rotate")(x)
        x = layers.RandomZoom(AUGMENT_ZOOM, fill_mode="constant", fill_value=background,
                              name="augment_zoom")(x)
    for i, (filters, kernel, pool) in enumerate(zip(enc.conv_filters, enc.conv_kernels, enc.conv_pools)):
        x = layers.Conv2D(filters, kernel, padding=enc.padding, name=f"conv{i + 1}")(x)
        if enc.block_order == "conv_pool_relu_bn":
            if pool > 1:
                x = layers.MaxPooling2D(pool, name=f"pool{i + 1}")(x)
            x = layers.ReLU(name=f"relu{i + 1}")(x)
            x = layers.BatchNormalization(momentum=enc.bn_momentum, name=f"bn{i + 1}")(x)
        elif enc.block_order == "conv_bn_relu_pool":
            x = layers.BatchNormalization(momentum=enc.bn_momentum, name=f"bn{i + 1}")(x)
            x = layers.ReLU(name=f"relu{i + 1}")(x)
            if pool > 1:
                x = layers.MaxPooling2D(pool, name=f"pool{i + 1}")(x)
        elif enc.block_order == "conv_relu_pool":
            x = layers.ReLU(name=f"relu{i + 1}")(x)
            if pool > 1:
                x = layers.MaxPooling2D(pool, name=f"pool{i + 1}")(x)
        else:
            raise ValueError(f"unknown block_order {enc.block_order!r}; valid: conv_pool_relu_bn, "
                             f"conv_bn_relu_pool, conv_relu_pool")
    x = layers.Flatten(name="flatten")(x)
    if enc.dropout:
        x = layers.Dropout(enc.dropout, name="dropout0")(x)
    for i, units in enumerate(enc.hidden_units):
        x = layers.Dense(units, name=f"fc{i + 1}")(x)
        x = layers.ReLU(name=f"fc{i + 1}_relu")(x)
        if enc.hidden_batchnorm:
            x = layers.BatchNormalization(momentum=enc.bn_momentum, name=f"fc{i + 1}_bn")(x)
        if enc.dropout:
            x = layers.Dropout(enc.dropout, name=f"dropout{i + 1}")(x)
    features = x
    logits = layers.Dense(out_units, name="logits")(x)
    if enc.output_relu:
        logits = layers.ReLU(name="logits_relu")(logits)
    return keras.Model(inputs, [features, logits], name=name)


def build_model(arch: ArchConfig, background: float = 0.0) -> keras.Model:
    """Builds the model of one architecture.

    Args:
      arch: the architecture (see ``keras_pairs.config.ARCHITECTURES``).
      background: the normalised value of a black pixel, used to fill pixels that augmentation
        shifts in (only used when ``arch.encoder.augment``).

    Returns:
      A functional ``keras.Model`` named after the architecture with a dict of named outputs.
      Siamese models contain the digit encoder(s) as named sub-models ("digit_encoder",
      "digit_encoder_1", ...), each called on both digits: the weights are shared.
    """
    arch.validate()
    pairs = keras.Input(INPUT_SHAPE, name="pairs")
    if not arch.siamese:
        body = build_encoder(arch.encoder, 2, 2, name="pair_cnn", background=background)
        _, logits = body(pairs)
        return keras.Model(pairs, {"pair": layers.Softmax(name="pair")(logits)}, name=arch.name)

    digit_a, digit_b, feats, logits, members = _digit_probabilities(arch, pairs, background)
    outputs = _siamese_outputs(arch, digit_a, digit_b, feats, logits)
    if arch.ensemble > 1:  # each member trains on its own losses: independent members
        for k, (member_a, member_b) in enumerate(members):
            outputs[f"digit_a_{k}"] = layers.Identity(name=f"digit_a_{k}")(member_a)
            outputs[f"digit_b_{k}"] = layers.Identity(name=f"digit_b_{k}")(member_b)
            outputs[f"pair_{k}"] = layers.Identity(name=f"pair_{k}")(prob_a_le_b(member_a, member_b))
    return keras.Model(pairs, outputs, name=arch.name.replace("-", "_"))


def averaged_output(name: str) -> str:
    """"digit_a_1" -> "digit_a", "pair_0" -> "pair": the output an ensemble member's output is part of."""
    base, _, k = name.rpartition("_")
    return base if k.isdigit() and base in ("digit_a", "digit_b", "pair") else name


def _digit_probabilities(arch: ArchConfig, pairs, background: float, encoders=None):
    """Both digits' probabilities, averaged over the ensemble members.

    Builds the encoders (one per ensemble member, each applied to both digits) unless given.
    Returns (digit_a, digit_b, (features_a, features_b), (logits_a, logits_b), members): features
    and logits of the first member (what the trainable heads read) and each member's own
    (probs_a, probs_b). Each digit is its own encoder call (in training, batch normalisation sees
    the a-digits and the b-digits separately), or with ``arch.stack_digits`` one call per encoder
    on both digits stacked.
    """
    if encoders is None:
        # ONE encoder object per ensemble member, applied to both digits: shared weights.
        encoders = [build_encoder(arch.encoder, 1, 10, name="digit_encoder" + (f"_{k}" if k else ""),
                                  background=background) for k in range(arch.ensemble)]
    members, first = [], None
    for k, encoder in enumerate(encoders):
        if arch.stack_digits:
            feats, logits = encoder(ops.concatenate([pairs[..., 0:1], pairs[..., 1:2]], axis=0))
            (fa, fb), (la, lb) = ops.split(feats, 2, axis=0), ops.split(logits, 2, axis=0)
        else:
            fa, la = encoder(pairs[..., 0:1])
            fb, lb = encoder(pairs[..., 1:2])
        if first is None:
            first = ((fa, fb), (la, lb))
        members.append((layers.Softmax(name=f"digit_a_probs_{k}")(la),
                        layers.Softmax(name=f"digit_b_probs_{k}")(lb)))
    digit_a, digit_b = _average_members([a for a, _ in members], [b for _, b in members])
    return digit_a, digit_b, first[0], first[1], members


def _average_members(probs_a: list, probs_b: list):
    if len(probs_a) == 1:
        return layers.Identity(name="digit_a")(probs_a[0]), layers.Identity(name="digit_b")(probs_b[0])
    return layers.Average(name="digit_a")(probs_a), layers.Average(name="digit_b")(probs_b)


def _siamese_outputs(arch: ArchConfig, digit_a, digit_b, feats, logits) -> dict:
    outputs = {}
    head = arch.head
    if head in ("compare", "probabilistic"):
        if head == "probabilistic":
            outputs["pair"] = layers.Identity(name="pair")(prob_a_le_b(digit_a, digit_b))
            outputs["pair_argmax"] = layers.Identity(name="pair_argmax")(argmax_a_le_b(digit_a, digit_b))
        else:
            outputs["pair"] = layers.Identity(name="pair")(argmax_a_le_b(digit_a, digit_b))
    else:
        if arch.ensemble != 1:
            raise ValueError(f"{arch.name}: ensembles need the 'compare' or 'probabilistic' head")
        (fa, fb), (la, lb) = feats, logits
        if head == "digits_concat":
            x = layers.Concatenate(name="concat_digits")([la, lb])
        elif head == "features_concat":
            x = layers.Concatenate(name="concat_features")([fa, fb])
        elif head == "features_diff":
            x = layers.Subtract(name="subtract_features")([fa, fb])
        elif head == "softmax_dense":
            x = layers.Concatenate(name="concat_probs")([digit_a, digit_b])
        elif head == "digits_mlp":
            x = layers.Concatenate(name="concat_digits")([la, lb])
            x = layers.Dense(arch.head_units, activation="relu", name="head_hidden")(x)
        else:  # pragma: no cover - validate() rejects unknown heads
            raise ValueError(head)
        pair_logits = layers.Dense(2, name="pair_logits")(x)
        if arch.pair_relu:
            pair_logits = layers.ReLU(name="pair_logits_relu")(pair_logits)
        outputs["pair"] = layers.Softmax(name="pair")(pair_logits)
    if arch.predicts_digits:
        outputs["digit_a"] = digit_a
        outputs["digit_b"] = digit_b
    return outputs


# Test-time views, each (rotation in degrees, zoom, dy, dx): the digit itself, its four 1-pixel
# axis shifts, its rotations by +-6 degrees and its zooms by 0.9 and 1.1. Chosen on development runs
# of siamese-prob-aug-tta-x2 scored on 5,000 MNIST digits outside both pools (dev/dev_big.py, 4
# rounds, the same trained weights for every set), pair / digit accuracy: 1 view 98.27 / 97.30, the
# 3x3 shifts of earlier versions 98.33 / 97.38, rotations +-6 98.41 / 97.59, zooms 0.9, 1.1
# 98.46 / 97.60, these nine 98.50 / 97.69 (better than the 3x3 shifts in each of the 4 rounds).
TEST_TIME_VIEWS = ((0.0, 1.0, 0, 0), (0.0, 1.0, 1, 0), (0.0, 1.0, -1, 0), (0.0, 1.0, 0, 1),
                   (0.0, 1.0, 0, -1), (6.0, 1.0, 0, 0), (-6.0, 1.0, 0, 0), (0.0, 0.9, 0, 0),
                   (0.0, 1.1, 0, 0))


def view_matrix(angle: float = 0.0, zoom: float = 1.0, dy: float = 0.0, dx: float = 0.0) -> np.ndarray:
    """The 196 x 196 bilinear resampling of a 14x14 image rotated by ``angle`` degrees
    (counter-clockwise as displayed) and zoomed by ``zoom`` about its centre, then moved by
    (dy, dx) pixels: ``view = M @ image + (1 - M.sum(1)) * background`` on flattened images, so
    pixels drawn from outside the image take the background value."""
    t = np.deg2rad(angle)
    # output pixel o -> source point inv @ (o - centre - shift) + centre
    inv = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) / zoom
    centre = np.array([6.5, 6.5])
    out = np.stack(np.meshgrid(np.arange(14), np.arange(14), indexing="ij"), -1).reshape(-1, 2)
    src = (out - centre - np.array([dy, dx])) @ inv.T + centre
    src = np.where(np.abs(src - np.round(src)) < 1e-9, np.round(src), src)  # exact grid points stay exact
    m = np.zeros((196, 196))
    low = np.floor(src).astype(int)
    frac = src - low
    for cy in (0, 1):
        for cx in (0, 1):
            y, x = low[:, 0] + cy, low[:, 1] + cx
            w = (frac[:, 0] if cy else 1 - frac[:, 0]) * (frac[:, 1] if cx else 1 - frac[:, 1])
            inside = (y >= 0) & (y < 14) & (x >= 0) & (x < 14) & (w > 0)
            m[np.arange(196)[inside], (y * 14 + x)[inside]] += w[inside]
    return m


def apply_views(flat, views, background: float):
    """Flattened 14x14 digits (N x 196) -> their ``views`` side by side (N x 196·len(views)).

    Each view pixel is a fixed gather of its (at most four) bilinear taps, weighted and summed:
    a few kilobytes of constants in the saved graph instead of 196 x 196 matrices, no randomness,
    no custom op (TFLite runs it as GATHER, MUL and SUM)."""
    mats = [view_matrix(*v) for v in views]
    taps = np.full((len(mats) * 196, 4), 196, dtype="int32")  # 196 = a zero pixel: unused taps
    weights = np.zeros((len(mats) * 196, 4), dtype="float32")
    for row, m_row in enumerate(np.concatenate(mats)):
        cols = np.flatnonzero(m_row)
        taps[row, :len(cols)], weights[row, :len(cols)] = cols, m_row[cols]
    centred = ops.concatenate([flat - background, ops.zeros_like(flat[:, :1])], axis=-1)
    gathered = ops.reshape(ops.take(centred, taps.reshape(-1), axis=1), (-1, len(weights), 4))
    return ops.sum(gathered * weights, axis=-1) + background  # uncovered pixels: the background


def has_inference_model(arch: ArchConfig) -> bool:
    """Whether ``inference_model`` builds a model of its own (test-time views, or ensemble members'
    outputs to drop) rather than returning the trained one."""
    return arch.test_time_views or arch.ensemble > 1


def inference_model(model: keras.Model, arch: ArchConfig, background: float = 0.0) -> keras.Model:
    """The model to evaluate, save and export after training.

    For an architecture with ``test_time_views`` it is a new model around the SAME trained
    encoders whose digit probabilities are averaged over the digit's ``TEST_TIME_VIEWS`` (fixed
    shifts, rotations and zooms: deterministic, nothing random reaches inference). Training never
    pays for the views: fit runs on ``model``. An ensemble's inference model drops the members'
    own outputs (they exist to carry the training losses). For every other architecture it is
    ``model`` itself.
    """
    if not has_inference_model(arch):
        return model
    pairs = keras.Input(INPUT_SHAPE, name="pairs")
    encoders = digit_encoders(model)
    if not arch.test_time_views:
        digit_a, digit_b, feats, logits, _ = _digit_probabilities(arch, pairs, background, encoders)
        return keras.Model(pairs, _siamese_outputs(arch, digit_a, digit_b, feats, logits), name=model.name)
    # All views of both digits go through each encoder as ONE batch (2 x 9 x N digits): one call per
    # encoder keeps the saved graph and the TFLite files small. Inference-mode BN normalises every
    # digit on its own, so batching changes nothing in the result.
    n_views = len(TEST_TIME_VIEWS)
    flat = ops.reshape(ops.concatenate([pairs[..., 0], pairs[..., 1]], axis=0), (-1, 196))  # a's, then b's
    moved = apply_views(flat, TEST_TIME_VIEWS[1:], background)  # the first view is the digit itself
    views = ops.reshape(ops.concatenate([flat, moved], axis=-1), (2, -1, n_views, 196))
    digits = ops.reshape(ops.transpose(views, (0, 2, 1, 3)), (-1, 14, 14, 1))  # digit, view, pair
    probs_a, probs_b = [], []
    for encoder in encoders:
        _, logits = encoder(digits)
        probs = ops.reshape(ops.softmax(logits, axis=-1), (2, n_views, -1, 10))  # digit, view, pair
        mean_a, mean_b = ops.unstack(ops.mean(probs, axis=1), 2, axis=0)
        probs_a.append(mean_a)
        probs_b.append(mean_b)
    digit_a, digit_b = _average_members(probs_a, probs_b)
    return keras.Model(pairs, _siamese_outputs(arch, digit_a, digit_b, None, None), name=model.name + "_views")


def prob_a_le_b(probs_a, probs_b):
    """[1 - p, p] with p = P(a <= b) = sum_{i <= j} p_a(i) p_b(j), for independent digits.

    Written as sum_i p_a(i) * P(b >= i) with P(b >= i) = 1 - cdf_b(i) + p_b(i).
    """
    b_at_least = 1.0 - ops.cumsum(probs_b, axis=-1) + probs_b
    p = ops.sum(probs_a * b_at_least, axis=-1, keepdims=True)
    p = ops.clip(p, 0.0, 1.0)
    return ops.concatenate([1.0 - p, p], axis=-1)


def argmax_a_le_b(probs_a, probs_b):
    """[a > b, a <= b] of the arg-max digits: the arithmetic comparison (report B v4).

    Written without ``argmax`` (which TFLite lowers to an op it lacks): each digit becomes the
    indicator of its maximum, and the comparison is the exact rule applied to those one-hots.
    A tie between two maximal probabilities (practically never) splits the vote evenly.
    """
    hot_a = ops.cast(probs_a >= ops.max(probs_a, axis=-1, keepdims=True), probs_a.dtype)
    hot_b = ops.cast(probs_b >= ops.max(probs_b, axis=-1, keepdims=True), probs_b.dtype)
    hot_a = hot_a / ops.sum(hot_a, axis=-1, keepdims=True)
    hot_b = hot_b / ops.sum(hot_b, axis=-1, keepdims=True)
    return prob_a_le_b(hot_a, hot_b)


def digit_encoders(model: keras.Model) -> list[keras.Model]:
    """The digit encoder sub-models of a siamese model (empty for the baselines)."""
    return [layer for layer in model.layers if layer.name.startswith("digit_encoder")]


def make_optimizer(arch: ArchConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr = arch.learning_rate
    if arch.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=arch.epochs * steps_per_epoch)
    if arch.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=arch.momentum)
    if arch.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=arch.weight_decay)
    return keras.optimizers.Adam(lr)


# Training steps per call into the traced train function. The same steps in the same order (v5's
# weights after 3 epochs are bit-identical to one step per call), with less Python between them:
# on 2 CPU cores an epoch of siamese-prob-aug-tta-x2 at batch 25 took 1.06-1.10 s against
# 1.18-1.61 s one step per call, at batch 16 1.30-1.38 s against 1.78-2.15 s.
STEPS_PER_EXECUTION = 8


def compile_model(model: keras.Model, arch: ArchConfig, steps_per_epoch: int = 9,
                  jit_compile="auto", steps_per_execution: int | None = None) -> keras.Model:
    """Compiles with losses, loss weights and metrics keyed by output name.

    ``steps_per_epoch`` only matters for the cosine schedule (900 training pairs / batch 100 = 9).
    ``steps_per_execution``: None = ``STEPS_PER_EXECUTION``.
    """
    loss, weights, metrics = {}, {}, {}
    ce = keras.losses.SparseCategoricalCrossentropy
    # An ensemble's losses sit on each member's outputs (independent members), not on the average.
    members = [f"_{k}" for k in range(arch.ensemble)] if arch.ensemble > 1 else [""]
    for m in members:
        if arch.trains_pair_output:
            loss["pair" + m] = ce(name=f"pair{m}_loss")
            weights["pair" + m] = arch.pair_loss_weight
        if arch.predicts_digits and arch.aux_loss:
            for out in ("digit_a", "digit_b"):
                loss[out + m] = ce(name=f"{out}{m}_loss")
                weights[out + m] = arch.digit_loss_weight
    for out in model.output_names:
        if averaged_output(out) == out:  # the members' own accuracies would only crowd the logs
            metrics[out] = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=make_optimizer(arch, steps_per_epoch), loss=loss, loss_weights=weights,
                  metrics=metrics, jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution or STEPS_PER_EXECUTION)
    return model
