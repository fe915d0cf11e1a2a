"""The browser's TFLite file (``<arch>_web.tflite``): LiteRT.js rejects dynamic dimensions, so the
page needs inputs fixed at [1, 28, 28].

The exported SavedModel's `serving_default` takes [N, 28, 28] uint8 digits. Wrapping it in a
`tf.function` with a fixed input signature and converting that concrete function gives the same graph
with static shapes. The weights come from the loaded SavedModel (passed to the converter as the
trackable object), so they are frozen into the file; converting a concrete function of a live
Keras 3 model instead gives a file that returns NaN (its variables are not frozen).
"""

from __future__ import annotations

import tensorflow as tf

DIGIT_INPUTS = ("digit_a", "digit_b")


def convert_fixed_batch(saved_model_dir: str) -> bytes:
    """A float32 TFLite flatbuffer of `serving_default` with inputs digit_a, digit_b: uint8 [1, 28, 28].

    The signature keeps its name and its outputs (prob_a_le_b, a_le_b, digit_a_probs, digit_b_probs);
    callers should check its outputs against the dynamic-batch float32 file.
    """
    loaded = tf.saved_model.load(saved_model_dir)
    serving = loaded.signatures["serving_default"]
    specs = [tf.TensorSpec([1, 28, 28], tf.uint8, name=name) for name in DIGIT_INPUTS]

    @tf.function(input_signature=specs)
    def serving_default(digit_a, digit_b):
        return serving(digit_a=digit_a, digit_b=digit_b)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serving_default.get_concrete_function()], loaded)
    return converter.convert()
