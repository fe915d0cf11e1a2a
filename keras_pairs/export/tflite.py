"""TFLite: conversion of the raw-image signature in an enumerated mode, and running a file with
ai-edge-litert (no TensorFlow needed to run one)."""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from ..config import INT8_IO
from ..config import TFLITE_MODES as MODES
from ..errors import UserError
from .serving import SIGNATURE_IMAGES


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UserError(f"unknown TFLite mode {mode!r}; valid modes: {', '.join(MODES)}")
    return mode


def representative_images(digit_a: np.ndarray, digit_b: np.ndarray, n: int):
    """Calibration generator: training digits as the raw uint8 inputs (the graph then
    preprocesses them exactly as in training)."""
    n = min(n, len(digit_a))

    def gen():
        for i in range(n):
            yield {"digit_a": digit_a[i:i + 1], "digit_b": digit_b[i:i + 1]}

    return gen


def convert_tflite(saved_model_dir: str, mode: str, representative=None, int8_io: str = "float32") -> bytes:
    """Converts the raw-image signature of a SavedModel to a TFLite flatbuffer in one mode.

    ``float32``: no optimisation; ``float16``: float16 weights; ``dynamic``: int8 weights, float
    activations; ``int8`` / ``qat-int8``: int8 weights and activations calibrated with
    ``representative`` (required), int8 ops only, outputs of type ``int8_io``.
    """
    check_mode(mode)
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[SIGNATURE_IMAGES])
    conv.exclude_conversion_metadata = True
    if mode == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode in ("int8", "qat-int8"):
        if representative is None:
            raise UserError(f"mode {mode} needs a representative dataset for calibration")
        if int8_io not in INT8_IO:
            raise UserError(f"unknown int8 I/O type {int8_io!r}; valid: {', '.join(INT8_IO)}")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # The uint8 pixel inputs are not float, so they stay uint8 whatever inference_input_type.
        conv.inference_output_type = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[int8_io]
    with warnings.catch_warnings():  # calibration uses tf.lite.Interpreter, which warns it is deprecated
        warnings.simplefilter("ignore")
        return conv.convert()


def signature_runner(path_or_bytes, threads: int | None = None):
    """The serving_default signature of a .tflite file (path or bytes) through ai-edge-litert,
    on ``threads`` threads (None: the interpreter's default)."""
    kwargs = {"model_content": path_or_bytes} if isinstance(path_or_bytes, bytes) else {"model_path": path_or_bytes}
    return Interpreter(**kwargs, num_threads=threads).get_signature_runner(SIGNATURE_IMAGES)


def dequantized(runner, out: dict) -> dict:
    """Outputs as floats: quantized outputs are mapped back with their scale and zero point."""
    details = runner.get_output_details()
    result = {}
    for name, value in out.items():
        scale, zero = details[name]["quantization"]
        if value.dtype in (np.int8, np.uint8) and scale:
            value = (value.astype(np.float32) - zero) * scale
        result[name] = value
    return result


def run_tflite(path_or_bytes, digit_a: np.ndarray, digit_b: np.ndarray) -> dict:
    """Runs a .tflite file on N x 28 x 28 uint8 digits; float outputs."""
    runner = signature_runner(path_or_bytes)
    return dequantized(runner, runner(digit_a=digit_a, digit_b=digit_b))
