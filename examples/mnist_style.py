"""Any digit picture -> a 28 x 28 uint8 MNIST-style digit (white on black, 20 x 20 box, centred
by centre of mass). Needs only numpy and Pillow; a copy of keras_pairs/images.py so the example
apps run without keras_pairs (tests/test_export.py checks that both copies agree).
"""

import numpy as np
from PIL import Image


def to_mnist_style(image: Image.Image) -> np.ndarray:
    """Grayscale or RGB(A), any size, dark-on-light or light-on-dark -> 28 x 28 uint8."""
    if image.mode in ("RGBA", "LA", "P"):
        # Transparent pixels count as background: composite over white.
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    if np.median(gray) > 127:  # dark digit on a light background: MNIST is white on black
        gray = 255.0 - gray
    if gray.shape == (28, 28):
        return np.clip(np.round(gray), 0, 255).astype(np.uint8)  # already MNIST-sized: unchanged
    gray = gray - np.median(gray)  # background to 0
    gray = np.clip(gray, 0, None)
    if gray.max() <= 0:
        return np.zeros((28, 28), np.uint8)
    gray = gray * (255.0 / gray.max())
    rows, cols = np.nonzero(gray > 0.1 * 255)
    crop = gray[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    # MNIST: the digit fits a 20 x 20 box (aspect kept), then sits in 28 x 28 by centre of mass.
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.BILINEAR))
    canvas = np.zeros((28, 28), np.float32)
    top, left = (28 - size[1]) // 2, (28 - size[0]) // 2
    canvas[top:top + size[1], left:left + size[0]] = small
    total = canvas.sum()
    if total > 0:
        ys, xs = np.indices(canvas.shape)
        dy = int(round(13.5 - (ys * canvas).sum() / total))
        dx = int(round(13.5 - (xs * canvas).sum() / total))
        canvas = np.roll(canvas, (dy, dx), axis=(0, 1))
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8)


def load_digit(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return to_mnist_style(image)
