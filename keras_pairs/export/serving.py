"""The SavedModel: raw-image and pair signatures around a trained model, and the one mapping
from a model's named outputs to the outputs every artifact and app sees.

  serving_default  digit_a, digit_b: N x 28 x 28 uint8 raw MNIST-style digits
                   (2x2 pooling and the training normalisation run inside the graph)
  serve_pairs      pairs: N x 14 x 14 x 2 float32, already normalised as in training

Both return prob_a_le_b (N float32), a_le_b (N int32) and, for models that predict digits,
digit_a_probs / digit_b_probs (N x 10 float32). Only TensorFlow is used here, so the tf_keras
child process of QAT builds its signatures with the same functions.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

SIGNATURE_IMAGES = "serving_default"
SIGNATURE_PAIRS = "serve_pairs"
IMAGE_INPUTS = ("digit_a", "digit_b")


def signature_outputs(out: dict) -> dict:
    """A model's named outputs -> the signatures' outputs (tensors, or numpy through tf ops).

    Every model's ``pair`` output is [P(a > b), P(a <= b)]; the comparison heads (v4, siamese10)
    write their arg-max decision without argmax (``models.argmax_a_le_b``), so it converts to TFLite.
    """
    pair = out["pair"]
    result = {"prob_a_le_b": pair[:, 1], "a_le_b": tf.cast(tf.argmax(pair, axis=-1), tf.int32)}
    if "digit_a" in out:
        result["digit_a_probs"] = out["digit_a"]
        result["digit_b_probs"] = out["digit_b"]
    return result


def preprocess_images(digit_a, digit_b, mean: float, std: float):
    """uint8 N x 28 x 28 digits -> normalised N x 14 x 14 x 2 pairs (training's 2x2 pooling, then
    (x - mean) / std); one stacked pooling keeps the TFLite graph small."""
    x = tf.cast(tf.stack([digit_a, digit_b], axis=-1), tf.float32)
    x = tf.nn.avg_pool2d(x, ksize=2, strides=2, padding="VALID")
    return (x - np.float32(mean)) / np.float32(std)


def serving_functions(call, mean: float, std: float):
    """(images_fn, pairs_fn): tf.functions with fixed input signatures around ``call(pairs) ->
    dict of named outputs`` (a Keras 3 model in inference mode, or the QAT child's tf_keras model)."""

    @tf.function(input_signature=[tf.TensorSpec((None, 28, 28), tf.uint8, name="digit_a"),
                                  tf.TensorSpec((None, 28, 28), tf.uint8, name="digit_b")])
    def images_fn(digit_a, digit_b):
        return signature_outputs(call(preprocess_images(digit_a, digit_b, mean, std)))

    @tf.function(input_signature=[tf.TensorSpec((None, 14, 14, 2), tf.float32, name="pairs")])
    def pairs_fn(pairs):
        return signature_outputs(call(pairs))

    return images_fn, pairs_fn


def write_saved_model(model, mean: float, std: float, path: str) -> None:
    """SavedModel of a Keras 3 model with the serving_default (raw images) and serve_pairs signatures."""
    import keras  # here, not at the top: the tf_keras child imports this module

    images_fn, pairs_fn = serving_functions(lambda pairs: model(pairs, training=False), mean, std)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE_IMAGES, images_fn)
    archive.add_endpoint(SIGNATURE_PAIRS, pairs_fn)
    archive.write_out(path, verbose=False)


def predict_images(model, mean: float, std: float, digit_a: np.ndarray, digit_b: np.ndarray) -> dict:
    """The serving_default signature run eagerly on a Keras model: N x 28 x 28 uint8 digits ->
    its outputs as numpy arrays (what predict.py prints)."""
    pairs = preprocess_images(tf.constant(digit_a, tf.uint8), tf.constant(digit_b, tf.uint8), mean, std)
    return {k: np.asarray(v) for k, v in signature_outputs(model(pairs, training=False)).items()}


def signature_doc(output_names) -> dict:
    """The signatures' inputs and outputs in words (export.json)."""
    outs = {"prob_a_le_b": "N float32", "a_le_b": "N int32"}
    if "digit_a" in output_names:
        outs.update(digit_a_probs="N x 10 float32", digit_b_probs="N x 10 float32")
    return {SIGNATURE_IMAGES: {"inputs": {"digit_a": "N x 28 x 28 uint8", "digit_b": "N x 28 x 28 uint8"},
                               "outputs": outs},
            SIGNATURE_PAIRS: {"inputs": {"pairs": "N x 14 x 14 x 2 float32, (pixels - mean) / std"},
                              "outputs": outs}}
