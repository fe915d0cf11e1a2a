"""Is digit A <= digit B? Reads two digit pictures and asks an exported SavedModel.

    python examples/predict_savedmodel.py saved_models/v5/export/saved_model a.png b.png [--json]

Needs TensorFlow, numpy and Pillow only: no keras_pairs, no Keras. The pictures may have any size,
grayscale or RGB, dark-on-light or light-on-dark; mnist_style.py turns them into 28 x 28 uint8
MNIST-style digits, and the SavedModel's serving_default signature does the rest (2x2 pooling
and the training normalisation are inside the graph).
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mnist_style import load_digit  # noqa: E402  (beside this file)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Is digit A <= digit B? (SavedModel)")
    p.add_argument("saved_model", help="the export's saved_model/ folder")
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    digit_a, digit_b = load_digit(args.image_a)[None], load_digit(args.image_b)[None]
    serve = tf.saved_model.load(args.saved_model).signatures["serving_default"]
    out = {k: v.numpy()[0] for k, v in serve(digit_a=tf.constant(digit_a), digit_b=tf.constant(digit_b)).items()}
    result = {"a_le_b": bool(out["a_le_b"]), "prob_a_le_b": float(out["prob_a_le_b"])}
    if "digit_a_probs" in out:
        for key in ("digit_a", "digit_b"):
            probs = out[f"{key}_probs"]
            result[key] = int(np.argmax(probs))
            result[f"{key}_prob"] = float(np.max(probs))
    print(json.dumps(result) if args.json else describe(result))
    return 0


def describe(r: dict) -> str:
    lines = [f"digit a <= digit b: {'yes' if r['a_le_b'] else 'no'} (P(a <= b) = {r['prob_a_le_b']:.3f})"]
    if "digit_a" in r:
        lines.append(f"digits read: a = {r['digit_a']} ({r['digit_a_prob']:.2f}), "
                     f"b = {r['digit_b']} ({r['digit_b_prob']:.2f})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
