"""Any digit picture -> a 28 x 28 uint8 MNIST-style digit (white on black, 20 x 20 box, centred
by centre of mass). examples/mnist_style.py is a copy for the apps that run without keras_pairs,
and keras_pairs/server/static/mnist_style.js the browser's copy for the drawing pads
(tests/test_export.py and tests/test_serve.py check that all three agree).

Every step is spelled out (float64 throughout, area-average resampling, halves rounded up) rather
than left to an image library, so that the JavaScript copy can reproduce it: PIL's resize filters
antialias in ways a browser canvas does not.
"""

import math

import numpy as np
from PIL import Image


def to_mnist_style(image: Image.Image) -> np.ndarray:
    """Grayscale or RGB(A), any size, dark-on-light or light-on-dark -> 28 x 28 uint8."""
    if image.mode in ("RGBA", "LA", "P"):
        # Transparent pixels count as background: composite over white.
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return gray_to_mnist_style(np.asarray(image.convert("L"), dtype=np.float64))


def gray_to_mnist_style(gray: np.ndarray) -> np.ndarray:
    """The conversion of a 2-D array of grey levels 0..255 (what the JavaScript copy receives)."""
    if np.median(gray) > 127:  # dark digit on a light background: MNIST is white on black
        gray = 255.0 - gray
    if gray.shape == (28, 28):
        return _round_half_up(gray)  # already MNIST-sized: unchanged
    gray = np.clip(gray - np.median(gray), 0, None)  # background to 0
    if gray.max() <= 0:
        return np.zeros((28, 28), np.uint8)
    gray = gray * (255.0 / gray.max())
    rows, cols = np.nonzero(gray > 0.1 * 255)
    crop = gray[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    # MNIST: the digit fits a 20 x 20 box (aspect kept), then sits in 28 x 28 by centre of mass.
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    new_h, new_w = max(1, _half_up(h * scale)), max(1, _half_up(w * scale))
    small = _round_half_up(_area_weights(h, new_h) @ crop @ _area_weights(w, new_w).T)
    canvas = np.zeros((28, 28), np.uint8)
    top, left = (28 - new_h) // 2, (28 - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = small
    return _centre_by_mass(canvas)


def _area_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) area-average resampling matrix: output pixel i is the mean of the input over
    [i * src / dst, (i + 1) * src / dst), each input pixel weighted by how much of it lies inside."""
    step = src / dst
    weights = np.zeros((dst, src))
    for i in range(dst):
        low, high = i * step, (i + 1) * step
        for j in range(math.floor(low), min(src, math.ceil(high))):
            weights[i, j] = (min(high, j + 1) - max(low, j)) / step
    return weights


def _centre_by_mass(canvas: np.ndarray) -> np.ndarray:
    """Moves the integer centre-of-mass offset to the centre (13.5, 13.5); ink moved out is dropped.
    Sums of integers are exact, so the JavaScript copy finds the same shift."""
    total = int(canvas.sum())
    if total == 0:
        return canvas
    ys, xs = np.indices(canvas.shape)
    dy = _half_up(13.5 - int((ys * canvas).sum()) / total)
    dx = _half_up(13.5 - int((xs * canvas).sum()) / total)
    shifted = np.zeros_like(canvas)
    shifted[max(dy, 0):28 + min(dy, 0), max(dx, 0):28 + min(dx, 0)] = \
        canvas[max(-dy, 0):28 + min(-dy, 0), max(-dx, 0):28 + min(-dx, 0)]
    return shifted


def _half_up(x: float) -> int:
    """Rounds halves up, as JavaScript's Math.round does (Python's round() goes to even)."""
    return math.floor(x + 0.5)


def _round_half_up(values: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8)


def load_digit(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return to_mnist_style(image)
