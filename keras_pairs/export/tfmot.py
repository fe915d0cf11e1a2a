"""QAT and pruning for the export: the parent side of ``tfmot_child``.

Keras 3 and tensorflow-model-optimization do not mix in one process (importing tfmot sets
TF_USE_LEGACY_KERAS=1), so the fine-tuning runs in a child process. The parent hands it a job
file: the architecture, the normalisation, the training pairs and the trained weights by layer
name; the child writes its result there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from ..config import ArchConfig
from ..errors import FailedCheck, UserError
from ..models import digit_encoders
from ..runs import RunPairs


class TfmotError(FailedCheck):
    """QAT or pruning whose child process failed (its output's tail is in the message)."""


def unsupported(arch: ArchConfig) -> str | None:
    """Why the tf_keras twin (one encoder's training graph) cannot stand for this model, or None."""
    if not arch.siamese:
        return f"{arch.name} is not siamese"
    if arch.ensemble != 1:
        return f"{arch.name} is an ensemble"
    if arch.test_time_views:
        return f"{arch.name} averages test-time views"
    return None


def _check(arch: ArchConfig, what: str) -> None:
    why = unsupported(arch)
    if why:
        raise UserError(f"{what} supports siamese models with one digit encoder and no test-time "
                         f"views; {why}")


def _run_child(job: dict, work: str) -> dict:
    job_path = os.path.join(work, f"_job_{job['task']}.json")
    with open(job_path, "w") as f:
        json.dump(job, f)
    # Legacy Keras from the first import on: the child builds tf_keras models for tfmot.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1"}
    proc = subprocess.run([sys.executable, "-m", "keras_pairs.export.tfmot_child", job_path],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise TfmotError(f"{job['task']} failed in its child process:\n{tail}")
    with open(job["result"]) as f:
        return json.load(f)


def keras_weights(model) -> dict:
    """Per-layer weights by layer name (encoder layers prefixed 'digit_encoder/')."""
    weights = {}
    for enc in digit_encoders(model):
        for layer in enc.layers:
            for i, w in enumerate(layer.get_weights()):
                weights[f"{enc.name}/{layer.name}/{i}"] = w
    for layer in model.layers:
        if not layer.name.startswith("digit_encoder"):
            for i, w in enumerate(layer.get_weights()):
                weights[f"{layer.name}/{i}"] = w
    return weights


def _job(task: str, model, arch: ArchConfig, pairs: RunPairs, mean: float, std: float, work: str,
         calibration_pairs: int, int8_io: str, **extra) -> dict:
    fit_path, weights_path = os.path.join(work, "_fit_pairs.npz"), os.path.join(work, "_keras_weights.npz")
    np.savez(fit_path, digit_a=pairs.fit_digits[0], digit_b=pairs.fit_digits[1], images=pairs.fit.images,
             target=pairs.fit.target, classes=pairs.fit.classes)
    np.savez(weights_path, **keras_weights(model))
    return {"task": task, "arch": arch.to_dict(), "mean": mean, "std": std, "fit": fit_path,
            "weights": weights_path, "result": os.path.join(work, f"_{task}_result.json"),
            "calibration_pairs": calibration_pairs, "int8_io": int8_io, **extra}


def quantization_aware(model, arch: ArchConfig, pairs: RunPairs, mean: float, std: float, work: str,
                       epochs: int, calibration_pairs: int, int8_io: str, tflite_path: str) -> dict:
    """Fine-tunes a quantization-aware twin of the model and writes its int8 .tflite file."""
    _check(arch, "quantization-aware training (qat-int8)")
    job = _job("qat", model, arch, pairs, mean, std, work, calibration_pairs, int8_io, epochs=epochs,
               saved_model=os.path.join(work, "_qat_saved_model"), tflite=tflite_path)
    return _run_child(job, work)


def prune(model, arch: ArchConfig, pairs: RunPairs, mean: float, std: float, work: str, epochs: int,
          target_sparsity: float) -> dict:
    """Magnitude-prunes the digit encoder in the child and loads the pruned weights into ``model``."""
    _check(arch, "pruning (--prune)")
    job = _job("prune", model, arch, pairs, mean, std, work, 0, "float32", epochs=epochs,
               target_sparsity=target_sparsity, pruned=os.path.join(work, "_pruned_weights.npz"))
    result = _run_child(job, work)
    with np.load(job["pruned"]) as pruned:
        for enc in digit_encoders(model):
            for layer in enc.layers:
                n = len(layer.get_weights())
                if n:
                    layer.set_weights([pruned[f"{enc.name}/{layer.name}/{i}"] for i in range(n)])
        for layer in model.layers:
            n = len(layer.get_weights())
            if n and not layer.name.startswith("digit_encoder"):
                layer.set_weights([pruned[f"{layer.name}/{i}"] for i in range(n)])
    return result
