"""Is digit A <= digit B? Reads two digit pictures and runs an exported .tflite file.

    python examples/predict_tflite.py saved_models/v5/export/v5_int8.tflite a.png b.png [--json]

Needs only ai-edge-litert, numpy and Pillow (pip install ai-edge-litert numpy pillow): no
TensorFlow, no keras_pairs. Every .tflite file of the export takes the raw 28 x 28 uint8 digits
(signature serving_default, inputs digit_a and digit_b); files exported with --int8-io int8/uint8
return quantized outputs, which are dequantized here with their scale and zero point.
"""

import argparse
import json
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from mnist_style import load_digit  # beside this file


def classify(model_path: str, digit_a: np.ndarray, digit_b: np.ndarray) -> dict:
    """digit_a, digit_b: N x 28 x 28 uint8 -> the signature's outputs as float/int arrays."""
    runner = Interpreter(model_path=model_path).get_signature_runner("serving_default")
    out = runner(digit_a=digit_a, digit_b=digit_b)
    details = runner.get_output_details()
    for name, value in out.items():
        scale, zero = details[name]["quantization"]
        if value.dtype in (np.int8, np.uint8) and scale:
            out[name] = (value.astype(np.float32) - zero) * scale
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Is digit A <= digit B? (TFLite, no TensorFlow)")
    p.add_argument("model", help="an exported .tflite file")
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)

    out = {k: v[0] for k, v in classify(args.model, load_digit(args.image_a)[None],
                                        load_digit(args.image_b)[None]).items()}
    result = {"a_le_b": bool(out["a_le_b"]), "prob_a_le_b": float(out["prob_a_le_b"])}
    if "digit_a_probs" in out:
        for key in ("digit_a", "digit_b"):
            probs = out[f"{key}_probs"]
            result[key] = int(np.argmax(probs))
            result[f"{key}_prob"] = float(np.max(probs))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"digit a <= digit b: {'yes' if result['a_le_b'] else 'no'} "
              f"(P(a <= b) = {result['prob_a_le_b']:.3f})")
        if "digit_a" in result:
            print(f"digits read: a = {result['digit_a']} ({result['digit_a_prob']:.2f}), "
                  f"b = {result['digit_b']} ({result['digit_b_prob']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
