"""QAT and pruning with tensorflow-model-optimization: the child process of ``export.tfmot``.

    python -m keras_pairs.export.tfmot_child JOB.json

tfmot 0.8 works only on Keras 2 (tf_keras) models and importing it sets TF_USE_LEGACY_KERAS=1,
after which TensorFlow's Keras alias means tf_keras: so it runs in its own process and builds only
tf_keras models (Keras 3 models refuse quantize_model / prune_low_magnitude). The tf_keras model
comes from the same builders as the Keras 3 one (``models.build_encoder`` / ``models.build_model``
with ``K=tf_keras``: same layers, same names, same outputs), and the trained Keras 3 weights are
copied in by layer name. Then

  qat:    quantize_model(encoder), fine-tune on the training pairs with training's losses
          (``models.loss_weights``), wrap with the raw-image signature (pooling + normalisation
          in the graph), write an int8 .tflite;
  prune:  prune_low_magnitude(encoder) with a polynomial schedule to the target sparsity,
          fine-tune with UpdatePruningStep, strip_pruning, write the weights back by layer name.

The encoder is built without its augmentation layers: they are identity at inference, hold no
weights, the short fine-tuning runs without them, and tfmot has no quantized version of them.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

import numpy as np

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # what importing tfmot does anyway (the parent sets it too)

import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras  # noqa: E402

# models.py imports Keras 3 (the `keras` package is Keras 3 whatever TF_USE_LEGACY_KERAS says);
# everything built here goes through K=tf_keras, so only tf_keras layers reach tfmot.
from ..config import ArchConfig  # noqa: E402
from ..models import build_encoder, build_model, loss_weights  # noqa: E402
from .serving import SIGNATURE_IMAGES, serving_functions  # noqa: E402
from .tflite import convert_tflite, representative_images  # noqa: E402

L = tf_keras.layers
FINE_TUNE_LR = 1e-4  # small: the weights are already trained; fine-tuning only adapts them
FINE_TUNE_BATCH = 50
ENCODER = "digit_encoder"  # the one digit encoder of the architectures tfmot.unsupported lets through


def build_tf_keras_encoder(arch: ArchConfig) -> tf_keras.Model:
    """The digit encoder of ``arch`` in tf_keras, without augmentation (module doc)."""
    return build_encoder(replace(arch.encoder, augment=False), 1, 10, name=ENCODER, K=tf_keras)


def build_tf_keras_model(arch: ArchConfig, encoder: tf_keras.Model) -> tf_keras.Model:
    """The siamese model of ``arch`` in tf_keras around ``encoder`` (float, quantized or pruned)."""
    return build_model(arch, K=tf_keras, encoders=[encoder])


def load_encoder_weights(encoder: tf_keras.Model, weights) -> None:
    """The Keras 3 encoder's weights ("digit_encoder/<layer>/<i>", export.tfmot) by layer name."""
    for layer in encoder.layers:
        n = len(layer.get_weights())
        if n:
            layer.set_weights([weights[f"{ENCODER}/{layer.name}/{i}"] for i in range(n)])


def load_head_weights(model: tf_keras.Model, encoder: tf_keras.Model, weights) -> None:
    """The Keras 3 model's layers outside the encoder ("<layer>/<i>": the trainable heads)."""
    for layer in model.layers:
        n = len(layer.get_weights())
        if n and layer is not encoder:
            layer.set_weights([weights[f"{layer.name}/{i}"] for i in range(n)])


def float_model(arch: ArchConfig, weights) -> tuple[tf_keras.Model, tf_keras.Model]:
    """(encoder, model): the tf_keras twin of the trained Keras 3 model, its weights copied in."""
    encoder = build_tf_keras_encoder(arch)
    load_encoder_weights(encoder, weights)
    model = build_tf_keras_model(arch, encoder)
    load_head_weights(model, encoder, weights)
    return encoder, model


def fine_tune(model: tf_keras.Model, arch: ArchConfig, fit, epochs: int, callbacks=()) -> None:
    """A few epochs on the training pairs with training's losses and loss weights."""
    weights = loss_weights(arch)
    targets = {"pair": fit["target"], "digit_a": fit["classes"][:, 0], "digit_b": fit["classes"][:, 1]}
    loss = {out: tf_keras.losses.SparseCategoricalCrossentropy() for out in weights}
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
    arch = ArchConfig.from_dict(job["arch"])
    encoder, _ = float_model(arch, weights)
    q_encoder = quantize_encoder(encoder)
    model = build_tf_keras_model(arch, q_encoder)
    load_head_weights(model, q_encoder, weights)
    before = accuracy(model, fit)
    fine_tune(model, arch, fit, job["epochs"])
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
    arch = ArchConfig.from_dict(job["arch"])
    encoder, _ = float_model(arch, weights)
    steps = int(np.ceil(len(fit["target"]) / FINE_TUNE_BATCH)) * job["epochs"]
    schedule = sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=job["target_sparsity"],
                                        begin_step=0, end_step=max(1, int(steps * 0.7)), frequency=2)
    p_encoder = sparsity.prune_low_magnitude(encoder, pruning_schedule=schedule)
    model = build_tf_keras_model(arch, p_encoder)
    load_head_weights(model, p_encoder, weights)
    fine_tune(model, arch, fit, job["epochs"], callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(p_encoder)
    out, zeros, total = {}, 0, 0
    for layer in stripped.layers:
        for i, w in enumerate(layer.get_weights()):
            out[f"{ENCODER}/{layer.name}/{i}"] = w
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
