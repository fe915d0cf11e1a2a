"""What a model costs at inference: multiply-adds per pair, counted from its layers.

A convolution costs out_height x out_width x filters x kernel_height x kernel_width x in_channels,
a dense layer inputs x units; batch normalisation folds into the layer before it when exported,
and pooling, activations and the exact P(a <= b) (100 products) are left out. Each digit encoder
is counted once per digit it is applied to: twice per pair, times the test-time views; the views'
bilinear resampling adds 4 per pixel of each moved view.
"""

from __future__ import annotations

import keras
from keras import layers

from .architectures import get_arch
from .config import ArchConfig
from .models import build_model, digit_encoders
from .views import TEST_TIME_VIEWS

# The deployment budget: a twentieth of the ensemble's multiply-adds per pair.
DEPLOY_REFERENCE = "siamese-prob-aug-tta-x2"
DEPLOY_FRACTION = 1 / 20


def layer_multiply_adds(layer: layers.Layer) -> int:
    """Multiply-adds of one call of a Conv2D or Dense layer on one image (0 for other layers)."""
    if isinstance(layer, layers.Conv2D):
        _, height, width, filters = layer.output.shape
        kh, kw = layer.kernel_size
        return height * width * filters * kh * kw * layer.input.shape[-1]
    if isinstance(layer, layers.Dense):
        return layer.input.shape[-1] * layer.units
    return 0


def model_multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one call of ``model`` on one image: its own layers, nested models included."""
    return sum(model_multiply_adds(layer) if isinstance(layer, keras.Model) else layer_multiply_adds(layer)
               for layer in model.layers)


def multiply_adds_per_pair(arch: ArchConfig | str) -> int:
    """Inference multiply-adds of one pair through ``arch`` (its inference model: views included)."""
    arch = get_arch(arch) if isinstance(arch, str) else arch
    model = build_model(arch)
    if not arch.siamese:
        return model_multiply_adds(model.get_layer("pair_cnn"))
    views = len(TEST_TIME_VIEWS) if arch.test_time_views else 1
    encoders = digit_encoders(model)
    head = sum(layer_multiply_adds(layer) for layer in model.layers if not isinstance(layer, keras.Model))
    resampling = 2 * (views - 1) * 196 * 4
    return 2 * views * sum(model_multiply_adds(e) for e in encoders) + head + resampling


def deploy_budget() -> int:
    """The most multiply-adds per pair a deployable model may cost."""
    return int(multiply_adds_per_pair(DEPLOY_REFERENCE) * DEPLOY_FRACTION)
