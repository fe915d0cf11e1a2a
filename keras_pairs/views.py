"""Test-time views: an architecture's digit probabilities averaged over fixed views of each digit.

``inference_model`` wraps the trained encoders in the model that is evaluated, saved and
exported. Training never pays for the views: ``fit`` runs on the training model.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .config import ArchConfig
from .models import INPUT_SHAPE, average_members, digit_encoders, digit_probabilities, siamese_outputs

# Test-time views, each (rotation in degrees, zoom, dy, dx): the digit itself, its four 1-pixel
# axis shifts, its rotations by +-6 degrees and its zooms by 0.9 and 1.1. Chosen on development runs
# of siamese-prob-aug-tta-x2 scored on 5,000 MNIST digits outside both pools (docs/research-log.md, 4
# rounds, the same trained weights for every set), pair / digit accuracy: 1 view 98.27 / 97.30, the
# 3x3 shifts of earlier versions 98.33 / 97.38, rotations +-6 98.41 / 97.59, zooms 0.9, 1.1
# 98.46 / 97.60, these nine 98.50 / 97.69 (better than the 3x3 shifts in each of the 4 rounds).
TEST_TIME_VIEWS = ((0.0, 1.0, 0, 0), (0.0, 1.0, 1, 0), (0.0, 1.0, -1, 0), (0.0, 1.0, 0, 1),
                   (0.0, 1.0, 0, -1), (6.0, 1.0, 0, 0), (-6.0, 1.0, 0, 0), (0.0, 0.9, 0, 0),
                   (0.0, 1.1, 0, 0))


def view_matrix(angle: float = 0.0, zoom: float = 1.0, dy: float = 0.0, dx: float = 0.0) -> np.ndarray:
    """The 196 x 196 bilinear resampling of a 14x14 image rotated by ``angle`` degrees
    (counter-clockwise as displayed) and zoomed by ``zoom`` about its centre, then moved by
    (dy, dx) pixels: ``view = M @ image + (1 - M.sum(1)) * background`` on flattened images, so
    pixels drawn from outside the image take the background value."""
    t = np.deg2rad(angle)
    # output pixel o -> source point inv @ (o - centre - shift) + centre
    inv = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) / zoom
    centre = np.array([6.5, 6.5])
    out = np.stack(np.meshgrid(np.arange(14), np.arange(14), indexing="ij"), -1).reshape(-1, 2)
    src = (out - centre - np.array([dy, dx])) @ inv.T + centre
    src = np.where(np.abs(src - np.round(src)) < 1e-9, np.round(src), src)  # exact grid points stay exact
    m = np.zeros((196, 196))
    low = np.floor(src).astype(int)
    frac = src - low
    for cy in (0, 1):
        for cx in (0, 1):
            y, x = low[:, 0] + cy, low[:, 1] + cx
            w = (frac[:, 0] if cy else 1 - frac[:, 0]) * (frac[:, 1] if cx else 1 - frac[:, 1])
            inside = (y >= 0) & (y < 14) & (x >= 0) & (x < 14) & (w > 0)
            m[np.arange(196)[inside], (y * 14 + x)[inside]] += w[inside]
    return m


def apply_views(flat, views, background: float):
    """Flattened 14x14 digits (N x 196) -> their ``views`` side by side (N x 196·len(views)).

    Each view pixel is a fixed gather of its (at most four) bilinear taps, weighted and summed:
    a few kilobytes of constants in the saved graph instead of 196 x 196 matrices, no randomness,
    no custom op (TFLite runs it as GATHER, MUL and SUM)."""
    mats = [view_matrix(*v) for v in views]
    taps = np.full((len(mats) * 196, 4), 196, dtype="int32")  # 196 = a zero pixel: unused taps
    weights = np.zeros((len(mats) * 196, 4), dtype="float32")
    for row, m_row in enumerate(np.concatenate(mats)):
        cols = np.flatnonzero(m_row)
        taps[row, :len(cols)], weights[row, :len(cols)] = cols, m_row[cols]
    centred = ops.concatenate([flat - background, ops.zeros_like(flat[:, :1])], axis=-1)
    gathered = ops.reshape(ops.take(centred, taps.reshape(-1), axis=1), (-1, len(weights), 4))
    return ops.sum(gathered * weights, axis=-1) + background  # uncovered pixels: the background


def has_inference_model(arch: ArchConfig) -> bool:
    """Whether ``inference_model`` builds a model of its own (test-time views, or ensemble members'
    outputs to drop) rather than returning the trained one."""
    return arch.test_time_views or arch.ensemble > 1


def inference_model(model: keras.Model, arch: ArchConfig, background: float = 0.0) -> keras.Model:
    """The model to evaluate, save and export after training.

    For an architecture with ``test_time_views`` it is a new model around the SAME trained
    encoders whose digit probabilities are averaged over the digit's ``TEST_TIME_VIEWS`` (fixed
    shifts, rotations and zooms: deterministic, nothing random reaches inference). Training never
    pays for the views: fit runs on ``model``. An ensemble's inference model drops the members'
    own outputs (they exist to carry the training losses). For every other architecture it is
    ``model`` itself.
    """
    if not has_inference_model(arch):
        return model
    pairs = keras.Input(INPUT_SHAPE, name="pairs")
    encoders = digit_encoders(model)
    if not arch.test_time_views:
        digit_a, digit_b, feats, logits, _ = digit_probabilities(arch, pairs, background, encoders)
        return keras.Model(pairs, siamese_outputs(arch, digit_a, digit_b, feats, logits), name=model.name)
    # All views of both digits go through each encoder as ONE batch (2 x 9 x N digits): one call per
    # encoder keeps the saved graph and the TFLite files small. Inference-mode BN normalises every
    # digit on its own, so batching changes nothing in the result.
    n_views = len(TEST_TIME_VIEWS)
    flat = ops.reshape(ops.concatenate([pairs[..., 0], pairs[..., 1]], axis=0), (-1, 196))  # a's, then b's
    moved = apply_views(flat, TEST_TIME_VIEWS[1:], background)  # the first view is the digit itself
    views = ops.reshape(ops.concatenate([flat, moved], axis=-1), (2, -1, n_views, 196))
    digits = ops.reshape(ops.transpose(views, (0, 2, 1, 3)), (-1, 14, 14, 1))  # digit, view, pair
    probs_a, probs_b = [], []
    for encoder in encoders:
        _, logits = encoder(digits)
        probs = ops.softmax(ops.cast(logits, "float32"), axis=-1)
        probs = ops.reshape(probs, (2, n_views, -1, 10))  # digit, view, pair
        mean_a, mean_b = ops.unstack(ops.mean(probs, axis=1), 2, axis=0)
        probs_a.append(mean_a)
        probs_b.append(mean_b)
    digit_a, digit_b = average_members(probs_a, probs_b)
    return keras.Model(pairs, siamese_outputs(arch, digit_a, digit_b, None, None), name=model.name + "_views")
