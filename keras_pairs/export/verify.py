"""Verification: every artifact runs on the run's test pairs and is compared with the Keras model
before it is installed; the table export.py prints."""

from __future__ import annotations

import os
import time

import numpy as np
import tensorflow as tf

from ..data import PairSet
from ..errors import FailedCheck
from ..metrics import score
from ..results import Artifact, Scores
from .serving import IMAGE_INPUTS, SIGNATURE_IMAGES, SIGNATURE_PAIRS, signature_outputs
from .tflite import dequantized, signature_runner

# Largest |artifact - Keras| allowed on any output probability of the float artifacts.
TOLERANCE = {"saved_model": 1e-4, "float32": 1e-4, "float16": 5e-3, "web": 1e-4}
# The quantized ones are checked on their decisions instead: a single borderline pair can move a
# probability by 0.1-0.2 under int8 while the artifact is sound; a broken one disagrees with Keras
# on many pairs. Share of test pairs whose a <= b decision must match the Keras model's.
MIN_AGREEMENT = {"dynamic": 0.98, "int8": 0.98}
# QAT fine-tunes the weights, so it is a model of its own: it only has to stay within this much
# of the Keras model's pair accuracy.
MAX_QAT_ACCURACY_LOSS = 0.10


class VerificationError(FailedCheck):
    """An artifact that does not match its Keras model; it is not installed."""


def artifact_scores(out: dict, pairs: PairSet) -> Scores:
    """Pair and digit accuracy of an artifact's signature outputs."""
    return score(pairs, out["a_le_b"], out.get("digit_a_probs"), out.get("digit_b_probs"))


def artifact(mode: str, file: str, size: int, scores: Scores, dev: float, latency: float | None) -> Artifact:
    """An artifact's record: what it is and how it scored against the Keras model."""
    return Artifact(mode=mode, file=file, bytes=size, pair_accuracy=scores.pair_accuracy, max_deviation=dev,
                    latency_ms=latency, digit_accuracy=scores.digit_accuracy)


def keras_reference(model, pairs: PairSet, mean: float, std: float) -> dict:
    """The Keras model's outputs on the pairs, named as the signatures name them."""
    out = model.predict(pairs.normalised(mean, std).images, batch_size=1000, verbose=0)
    return {k: np.asarray(v) for k, v in signature_outputs(out).items()}


def deviation(out: dict, ref: dict) -> float:
    """Largest |artifact - Keras| over the probability outputs (the digits for a hard 0/1 head)."""
    keys = [k for k in ("prob_a_le_b", "digit_a_probs", "digit_b_probs") if k in ref]
    if "digit_a_probs" in ref and np.isin(ref["prob_a_le_b"], (0.0, 1.0)).all():
        keys.remove("prob_a_le_b")  # a hard 0/1 decision ("compare" head): compare the digits
    return float(max(np.max(np.abs(np.asarray(out[k], np.float64) - ref[k])) for k in keys))


def latency_ms(call, digits: tuple[np.ndarray, np.ndarray], n: int) -> float:
    """Median milliseconds of ``n`` single-pair calls, after one warm-up call."""
    a, b = digits
    n = min(n, len(a))
    call(a[:1], b[:1])
    times = []
    for i in range(n):
        start = time.perf_counter()
        call(a[i:i + 1], b[i:i + 1])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def check_tolerance(mode: str, dev: float, where: str) -> None:
    tol = TOLERANCE.get(mode)
    if not np.isfinite(dev) or (tol is not None and dev > tol):
        raise VerificationError(f"{where}: largest deviation from the Keras model {dev:.3g} exceeds "
                                f"the tolerance {tol} of mode {mode}; the artifact was not installed")


def verify_saved_model(path: str, pairs: PairSet, digits, ref: dict, mean: float, std: float,
                       n_latency: int) -> Artifact:
    """Loads the SavedModel with tf.saved_model.load and checks both signatures."""
    loaded = tf.saved_model.load(path)
    sigs = set(loaded.signatures)
    if sigs != {SIGNATURE_IMAGES, SIGNATURE_PAIRS}:
        raise VerificationError(f"{path}: signatures {sorted(sigs)}, expected {SIGNATURE_IMAGES} and {SIGNATURE_PAIRS}")
    images = loaded.signatures[SIGNATURE_IMAGES]

    def call(a, b):
        return images(digit_a=tf.constant(a), digit_b=tf.constant(b))

    out = {k: v.numpy() for k, v in call(*digits).items()}
    normalised = tf.constant(pairs.normalised(mean, std).images)
    out_pairs = {k: v.numpy() for k, v in loaded.signatures[SIGNATURE_PAIRS](pairs=normalised).items()}
    dev = max(deviation(out, ref), deviation(out_pairs, ref))
    check_tolerance("saved_model", dev, path)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return artifact("saved_model", "saved_model/", size, artifact_scores(out, pairs), dev,
                    latency_ms(call, digits, n_latency))


def verify_tflite(path: str, mode: str, pairs: PairSet, digits, ref: dict, n_latency: int,
                  batch: int | None = None) -> Artifact:
    """Runs a .tflite file with ai-edge-litert on the pairs and compares with Keras; ``batch``
    feeds a file with a fixed batch size that many pairs per call."""
    runner = signature_runner(path)
    inputs = runner.get_input_details()
    for name in IMAGE_INPUTS:
        if name not in inputs or inputs[name]["dtype"] != np.uint8:
            raise VerificationError(f"{path}: input {name} missing or not uint8 ({inputs})")

    def call(a, b):  # what an app pays: the interpreter call (dequantizing is the scorer's business)
        return runner(digit_a=a, digit_b=b)

    if batch is None:
        out = dequantized(runner, call(*digits))
    else:
        parts = [dequantized(runner, call(digits[0][i:i + batch], digits[1][i:i + batch]))
                 for i in range(0, len(pairs), batch)]
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    dev = deviation(out, ref)
    check_tolerance(mode, dev, path)
    if mode in MIN_AGREEMENT:
        agreement = float(np.mean(np.asarray(out["a_le_b"]) == np.asarray(ref["a_le_b"])))
        if agreement < MIN_AGREEMENT[mode]:
            raise VerificationError(f"{path}: its decision matches the Keras model on only "
                                    f"{100 * agreement:.1f} % of the test pairs (mode {mode} needs "
                                    f"{100 * MIN_AGREEMENT[mode]:.0f} %); the artifact was not installed")
    if mode == "qat-int8":
        loss = float(np.mean(ref["a_le_b"] == pairs.target) - np.mean(out["a_le_b"] == pairs.target))
        if loss > MAX_QAT_ACCURACY_LOSS:
            raise VerificationError(f"{path}: quantization-aware training lost {100 * loss:.1f} points of "
                                    f"pair accuracy (at most {100 * MAX_QAT_ACCURACY_LOSS:.0f} allowed); "
                                    f"the artifact was not installed")
    return artifact(mode, os.path.basename(path), os.path.getsize(path), artifact_scores(out, pairs), dev,
                    latency_ms(call, digits, n_latency))


def format_table(rows: list[Artifact]) -> str:
    """Markdown table: mode, size, pair accuracy, digit accuracy, deviation, latency."""
    lines = ["| mode | file | size (KiB) | pair accuracy (%) | digit accuracy (%) | max deviation from Keras | latency per pair (ms) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        digit = f"{100 * r.digit_accuracy:.2f}" if r.digit_accuracy is not None else "-"
        dev = f"{r.max_deviation:.2g}" if r.max_deviation is not None else "-"
        lat = f"{r.latency_ms:.3f}" if r.latency_ms is not None else "-"
        size = f"{r.bytes / 1024:.1f}" if r.bytes else "-"
        lines.append(f"| {r.mode} | {r.file or '-'} | {size} | {100 * r.pair_accuracy:.2f} | "
                     f"{digit} | {dev} | {lat} |")
    return "\n".join(lines)


def quantization_notes(rows: list[Artifact]) -> list[str]:
    """What the integer files cost against float32: pair accuracy and size."""
    by_mode = {r.mode: r for r in rows}
    ref = by_mode.get("float32")
    notes = []
    for mode in ("int8", "qat-int8"):
        r = by_mode.get(mode)
        if ref and r:
            notes.append(f"{mode}: pair accuracy {100 * (r.pair_accuracy - ref.pair_accuracy):+.2f} pt "
                         f"vs float32, {r.bytes / ref.bytes:.3f} of its size")
    return notes
