"""Is digit A <= digit B? Two digit pictures through a trained ``model.keras``.

Pictures of any size, grayscale or RGB, are converted MNIST style (``images.py``), then pooled
and normalised exactly as the exported SavedModel does (``export.serving``).
"""

from __future__ import annotations

import numpy as np

from . import pretrained, runs
from .errors import UserError
from .export.serving import predict_images
from .images import load_digit


def summarise(out: dict) -> dict:
    """The first pair's outputs as the JSON the apps print."""
    result = {"a_le_b": bool(out["a_le_b"][0]), "prob_a_le_b": float(out["prob_a_le_b"][0])}
    if "digit_a_probs" in out:
        for key in ("digit_a", "digit_b"):
            probs = out[f"{key}_probs"][0]
            result[key] = int(np.argmax(probs))
            result[f"{key}_prob"] = float(np.max(probs))
    return result


def resolve_run(models_dir: str = runs.DEFAULT_MODELS_DIR, arch: str | None = None,
                run_dir: str | None = None) -> tuple[runs.Run, str | None]:
    """The run named by ``run_dir`` / ``arch``, else the best one by validation accuracy, else (no
    trained run at all) the model shipped in the package; and a note for the user in that case."""
    if run_dir or arch or not pretrained.available():
        return runs.resolve_run(models_dir, arch, run_dir)[0], None
    try:
        return runs.find_best_run(models_dir)[0], None
    except runs.RunError:
        return (runs.load_run(str(pretrained.DIR)),
                f"no trained run in {models_dir}/: using {pretrained.describe()}")


def predict_files(image_a: str, image_b: str, models_dir: str = runs.DEFAULT_MODELS_DIR,
                  arch: str | None = None, run_dir: str | None = None) -> dict:
    """The decision for two picture files (see ``resolve_run``); the result says which run
    answered, and carries a "note" when it is the shipped model."""
    run, note = resolve_run(models_dir, arch, run_dir)
    model = runs.load_model(run.model_path)
    digits = []
    for path in (image_a, image_b):
        try:
            digits.append(load_digit(path)[None])
        except OSError as err:
            raise UserError(f"{path}: cannot be read as a picture ({err})") from err
    mean, std = run.normalisation
    result = {**summarise(predict_images(model, mean, std, *digits)), "run": run.path}
    return {**result, "note": note} if note else result


def format_result(result: dict) -> str:
    lines = [f"digit a <= digit b: {'yes' if result['a_le_b'] else 'no'} (P(a <= b) = {result['prob_a_le_b']:.3f})"]
    if "digit_a" in result:
        lines.append(f"digits read: a = {result['digit_a']} ({result['digit_a_prob']:.2f}), "
                     f"b = {result['digit_b']} ({result['digit_b_prob']:.2f})")
    lines.append(f"model: {result['run']}")
    return "\n".join(lines)
