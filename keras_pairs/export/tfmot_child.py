"""QAT and pruning with tensorflow-model-optimization: the child process of ``export.tfmot``.

    python -m keras_pairs.export.tfmot_child JOB.json

tfmot 0.8 works only on Keras 2 (tf_keras) models and importing it sets TF_USE_LEGACY_KERAS=1,
after which TensorFlow's Keras alias means tf_keras: so it runs in its own process and builds only
tf_keras models (Keras 3 models refuse quantize_model / prune_low_magnitude). It rebuilds
the siamese model in tf_keras around a twin of the digit encoder (same layer names), copies the
trained Keras 3 weights in by layer name, and then

  qat:    quantize_model(encoder), fine-tune on the training pairs, wrap with the raw-image
          signature (pooling + normalisation in the graph), write an int8 .tflite;
  prune:  prune_low_magnitude(encoder) with a polynomial schedule to the target sparsity,
          fine-tune with UpdatePruningStep, strip_pruning, write the weights back by layer name.

Augmentation layers of the encoder are left out of the twin: they are identity at inference and
the short fine-tuning runs without them.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # what importing tfmot does anyway; say it up front

import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras  # noqa: E402

from .serving import SIGNATURE_IMAGES, serving_functions  # noqa: E402
from .tflite import convert_tflite, representative_images  # noqa: E402

L = tf_keras.layers
FINE_TUNE_LR = 1e-4  # small: the weights are already trained; fine-tuning only adapts them
FINE_TUNE_BATCH = 50


def build_encoder_twin(enc: dict, name: str) -> tf_keras.Model:
    """tf_keras copy of keras_pairs.models.build_encoder (same layer names, no augmentation)."""
    inputs = tf_keras.Input((14, 14, 1), name="image")
    x = inputs
    for i, (filters, kernel, pool) in enumerate(zip(enc["conv_filters"], enc["conv_kernels"], enc["conv_pools"])):
        x = L.Conv2D(filters, kernel, padding=enc["padding"], name=f"conv{i + 1}")(x)
        for step in enc["block_order"].split("_")[1:]:  # as models.build_encoder reads it
            if step == "pool" and pool > 1:
                x = L.MaxPooling2D(pool, name=f"pool{i + 1}")(x)
            elif step == "relu":
                x = L.ReLU(name=f"relu{i + 1}")(x)
            elif step == "bn":
                x = L.BatchNormalization(momentum=enc["bn_momentum"], name=f"bn{i + 1}")(x)
    x = L.Flatten(name="flatten")(x)
    if enc["dropout"]:
        x = L.Dropout(enc["dropout"], name="dropout0")(x)
    for i, units in enumerate(enc["hidden_units"]):
        x = L.ReLU(name=f"fc{i + 1}_relu")(L.Dense(units, name=f"fc{i + 1}")(x))
        if enc["hidden_batchnorm"]:
            x = L.BatchNormalization(momentum=enc["bn_momentum"], name=f"fc{i + 1}_bn")(x)
        if enc["dropout"]:
            x = L.Dropout(enc["dropout"], name=f"dropout{i + 1}")(x)
    logits = L.Dense(10, name="logits")(x)
    if enc["output_relu"]:
        logits = L.ReLU(name="logits_relu")(logits)
    return tf_keras.Model(inputs, [x, logits], name=name)


def build_siamese_twin(arch: dict, encoder: tf_keras.Model) -> tf_keras.Model:
    """tf_keras copy of keras_pairs.models.build_model for one encoder (any head)."""
    pairs = tf_keras.Input((14, 14, 2), name="pairs")
    # One encoder object on both digits: shared weights. tf_keras cannot serialise the `...` slice.
    fa, la = encoder(pairs[:, :, :, 0:1])
    fb, lb = encoder(pairs[:, :, :, 1:2])
    digit_a = L.Softmax(name="digit_a")(la)
    digit_b = L.Softmax(name="digit_b")(lb)
    head = arch["head"]
    # Lambda is safe here: this tf_keras twin is never saved as a .keras file, only traced into a
    # SavedModel / TFLite graph, so nothing has to deserialise it.
    if head == "compare":
        pair = L.Lambda(lambda t: _argmax_le(*t), name="pair")([digit_a, digit_b])
    elif head == "probabilistic":
        pair = L.Lambda(lambda t: _prob_le(*t), name="pair")([digit_a, digit_b])
    else:
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
            x = L.Dense(arch["head_units"], activation="relu", name="head_hidden")(x)
        else:
            raise ValueError(f"no tf_keras twin for head {head!r}")
        x = L.Dense(2, name="pair_logits")(x)
        if arch["pair_relu"]:
            x = L.ReLU(name="pair_logits_relu")(x)
        pair = L.Softmax(name="pair")(x)
    return tf_keras.Model(pairs, {"pair": pair, "digit_a": digit_a, "digit_b": digit_b})


def _argmax_le(pa, pb):
    le = tf.cast(tf.argmax(pa, -1) <= tf.argmax(pb, -1), pa.dtype)[:, None]
    return tf.concat([1.0 - le, le], -1)


def _prob_le(pa, pb):
    b_at_least = 1.0 - tf.cumsum(pb, axis=-1) + pb
    p = tf.clip_by_value(tf.reduce_sum(pa * b_at_least, -1, keepdims=True), 0.0, 1.0)
    return tf.concat([1.0 - p, p], -1)


def load_weights(encoder: tf_keras.Model, model: tf_keras.Model, weights) -> None:
    for layer in encoder.layers:
        n = len(layer.get_weights())
        if n:
            layer.set_weights([weights[f"digit_encoder/{layer.name}/{i}"] for i in range(n)])
    for layer in model.layers:
        n = len(layer.get_weights())
        if n and layer is not encoder and f"{layer.name}/0" in weights:
            layer.set_weights([weights[f"{layer.name}/{i}"] for i in range(n)])


def fine_tune(model: tf_keras.Model, arch: dict, fit, epochs: int, callbacks=()) -> None:
    ce = tf_keras.losses.SparseCategoricalCrossentropy
    loss, weights = {}, {}
    targets = {"pair": fit["target"], "digit_a": fit["classes"][:, 0], "digit_b": fit["classes"][:, 1]}
    if arch["head"] != "compare" and arch["pair_loss_weight"] > 0:
        loss["pair"], weights["pair"] = ce(), arch["pair_loss_weight"]
    if arch["aux_loss"] or arch["head"] in ("compare", "probabilistic"):
        for out in ("digit_a", "digit_b"):
            loss[out], weights[out] = ce(), arch["digit_loss_weight"]
    model.compile(tf_keras.optimizers.Adam(FINE_TUNE_LR), loss=loss, loss_weights=weights)
    model.fit(fit["pairs"], {k: targets[k] for k in loss}, epochs=epochs, batch_size=FINE_TUNE_BATCH,
              shuffle=True, verbose=0, callbacks=list(callbacks))


def accuracy(model: tf_keras.Model, fit) -> float:
    out = model.predict(fit["pairs"], batch_size=1000, verbose=0)
    return float(np.mean(out["pair"].argmax(-1) == fit["target"]))


class NoOpQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Leaves a layer in float during QAT (the converter still quantizes it with calibration)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


def quantize_encoder(encoder: tf_keras.Model) -> tf_keras.Model:
    """``quantize_model`` of the encoder twin, trained weights kept.

    tfmot quantizes BatchNormalization only where it folds into a preceding convolution; a BN after
    a dense layer (the hidden layer of keras_pairs' own encoder) makes ``quantize_model`` refuse
    the model, so such layers are annotated to stay float during QAT.
    """
    qk = tfmot.quantization.keras

    def annotate(layer):
        if isinstance(layer, L.BatchNormalization) and layer.name.startswith("fc"):
            return qk.quantize_annotate_layer(layer, quantize_config=NoOpQuantizeConfig())
        return qk.quantize_annotate_layer(layer)  # what quantize_model does to every layer

    annotated = tf_keras.models.clone_model(encoder, clone_function=annotate)
    annotated.set_weights(encoder.get_weights())
    with qk.quantize_scope({"NoOpQuantizeConfig": NoOpQuantizeConfig}):
        return qk.quantize_apply(annotated)


def run_qat(job: dict, fit, weights) -> dict:
    encoder = build_encoder_twin(job["arch"]["encoder"], "digit_encoder")
    load_weights(encoder, build_siamese_twin(job["arch"], encoder), weights)
    q_encoder = quantize_encoder(encoder)
    model = build_siamese_twin(job["arch"], q_encoder)
    load_weights(encoder, model, weights)  # the head layers of the new siamese model
    before = accuracy(model, fit)
    fine_tune(model, job["arch"], fit, job["epochs"])
    after = accuracy(model, fit)

    class Module(tf.Module):
        pass

    module = Module()
    module.model = model
    images_fn, _ = serving_functions(lambda pairs: model(pairs, training=False), job["mean"], job["std"])
    tf.saved_model.save(module, job["saved_model"], signatures={SIGNATURE_IMAGES: images_fn})
    rep = representative_images(fit["digit_a"], fit["digit_b"], job["calibration_pairs"])
    with open(job["tflite"], "wb") as f:
        f.write(convert_tflite(job["saved_model"], "qat-int8", rep, job["int8_io"]))
    return {"epochs": job["epochs"], "train_pair_accuracy_fake_quant_before": before,
            "train_pair_accuracy_fake_quant_after": after}


def run_prune(job: dict, fit, weights) -> dict:
    sparsity = tfmot.sparsity.keras
    encoder = build_encoder_twin(job["arch"]["encoder"], "digit_encoder")
    load_weights(encoder, build_siamese_twin(job["arch"], encoder), weights)
    steps = int(np.ceil(len(fit["target"]) / FINE_TUNE_BATCH)) * job["epochs"]
    schedule = sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=job["target_sparsity"],
                                        begin_step=0, end_step=max(1, int(steps * 0.7)), frequency=2)
    p_encoder = sparsity.prune_low_magnitude(encoder, pruning_schedule=schedule)
    model = build_siamese_twin(job["arch"], p_encoder)
    load_weights(encoder, model, weights)
    fine_tune(model, job["arch"], fit, job["epochs"], callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(p_encoder)
    out, zeros, total = {}, 0, 0
    for layer in stripped.layers:
        for i, w in enumerate(layer.get_weights()):
            out[f"digit_encoder/{layer.name}/{i}"] = w
            if i == 0 and w.ndim > 1:  # kernels: what pruning sparsifies
                zeros, total = zeros + int(np.sum(w == 0)), total + w.size
    for layer in model.layers:
        if layer is not p_encoder:
            for i, w in enumerate(layer.get_weights()):
                out[f"{layer.name}/{i}"] = w
    np.savez(job["pruned"], **out)
    return {"sparsity": zeros / total, "target_sparsity": job["target_sparsity"], "epochs": job["epochs"],
            "steps": steps, "kernel_weights": total}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        job = json.load(f)
    tf_keras.utils.set_random_seed(0)
    with np.load(job["fit"]) as f:
        fit = {"digit_a": f["digit_a"], "digit_b": f["digit_b"], "target": f["target"],
               "classes": f["classes"],
               "pairs": ((f["images"] - job["mean"]) / job["std"]).astype(np.float32)}
    with np.load(job["weights"]) as w:
        weights = dict(w)
    result = {"qat": run_qat, "prune": run_prune}[job["task"]](job, fit, weights)
    with open(job["result"], "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
