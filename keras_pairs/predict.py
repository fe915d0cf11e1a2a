"""Is digit A <= digit B? Two digit pictures through a trained .keras model.

    python -m keras_pairs.predict a.png b.png                 # best siamese run in saved_models
    python -m keras_pairs.predict a.png b.png --arch v4 --json
    python predict.py a.png b.png --run saved_models/v5

Pictures: any size, grayscale or RGB, converted to 28 x 28 MNIST style (keras_pairs.images), then
pooled and normalised exactly as in training (the run's config.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def predict_digits(model, config: dict, digit_a: np.ndarray, digit_b: np.ndarray) -> dict:
    """N x 28 x 28 uint8 digits -> outputs named as the export signatures name them."""
    from .data import pool_2x2

    norm = config["normalisation"]
    pairs = np.stack([pool_2x2(digit_a), pool_2x2(digit_b)], -1)
    pairs = ((pairs - norm["mean"]) / norm["std"]).astype(np.float32)
    out = model.predict(pairs, verbose=0)
    result = {"prob_a_le_b": out["pair"][:, 1], "a_le_b": out["pair"].argmax(-1).astype(np.int32)}
    if "digit_a" in out:
        result["digit_a_probs"], result["digit_b_probs"] = out["digit_a"], out["digit_b"]
    return result


def summarise(out: dict) -> dict:
    """First pair's outputs as the JSON the example apps print."""
    result = {"a_le_b": bool(out["a_le_b"][0]), "prob_a_le_b": float(out["prob_a_le_b"][0])}
    if "digit_a_probs" in out:
        for key in ("digit_a", "digit_b"):
            probs = out[f"{key}_probs"][0]
            result[key] = int(np.argmax(probs))
            result[f"{key}_prob"] = float(np.max(probs))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Is digit A <= digit B? (trained .keras model)")
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("--models-dir", default="saved_models")
    p.add_argument("--arch", help="use MODELS_DIR/ARCH (default: best siamese run by validation accuracy)")
    p.add_argument("--run", dest="run_dir", help="use this run folder")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from .export_lib import ExportConfig, ExportError, load_trained, resolve_run
    from .images import load_digit

    try:
        run_dir, _ = resolve_run(ExportConfig(models_dir=args.models_dir, arch=args.arch, run_dir=args.run_dir))
        model, config, _ = load_trained(run_dir)
        digits = [load_digit(path)[None] for path in (args.image_a, args.image_b)]
    except (ExportError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = summarise(predict_digits(model, config, *digits))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"digit a <= digit b: {'yes' if result['a_le_b'] else 'no'} (P(a <= b) = {result['prob_a_le_b']:.3f})")
        if "digit_a" in result:
            print(f"digits read: a = {result['digit_a']} ({result['digit_a_prob']:.2f}), "
                  f"b = {result['digit_b']} ({result['digit_b_prob']:.2f})")
        print(f"model: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
