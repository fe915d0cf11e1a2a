"""Dev only: ONE random affine resampling per training digit (shift, rotation, zoom together) in place
of keras' three successive layers (three bilinear resamplings). Patches keras_pairs.models.layers."""
import math
import keras
from keras import ops

import tricks


class AffineAugment(keras.layers.Layer):
    def __init__(self, shift=1.4, degrees=10.0, zoom=0.1, fill_value=0.0, seed=None, **kw):
        super().__init__(**kw)
        self.shift, self.degrees, self.zoom, self.fill_value = shift, degrees, zoom, fill_value
        self.gen = keras.random.SeedGenerator(seed)

    def draw(self, n):
        """Per digit: rotation (radians), zoom, shift x, shift y, each uniform in its range."""
        u = keras.random.uniform((n, 4), -1.0, 1.0, seed=self.gen)
        return (u[:, 0] * (self.degrees * math.pi / 180), 1.0 + u[:, 1] * self.zoom,
                u[:, 2] * self.shift, u[:, 3] * self.shift)

    def call(self, x, training=None):
        if not training:
            return x
        t, z, sx, sy = self.draw(ops.shape(x)[0])
        c = 6.5
        a0, a1 = ops.cos(t) / z, -ops.sin(t) / z
        b0, b1 = ops.sin(t) / z, ops.cos(t) / z
        a2 = c - a0 * (c + sx) - a1 * (c + sy)
        b2 = c - b0 * (c + sx) - b1 * (c + sy)
        zero = ops.zeros_like(a0)
        m = ops.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)
        return ops.image.affine_transform(x, m, interpolation="bilinear", fill_mode="constant",
                                          fill_value=self.fill_value)

    def compute_output_shape(self, s):
        return s


def _replace_augmentation(models, make):
    """models.layers with keras' three augmentation layers replaced by ``make(shift_px, fill_value)``."""
    identity = lambda _: (lambda *a, name=None, **k: keras.layers.Identity(name=name))  # noqa: E731
    tricks.patch_layers(
        models, RandomRotation=identity, RandomZoom=identity,
        RandomTranslation=lambda _: (lambda f, *a, fill_value=0.0, name=None, **k: make(14 * f, fill_value)))


def patch(models, scale=1.0):
    _replace_augmentation(models, lambda shift, fill: AffineAugment(
        shift=shift * scale, degrees=360 * models.AUGMENT_ROTATION * scale, zoom=models.AUGMENT_ZOOM * scale,
        fill_value=fill, name="augment_affine"))


def bilinear(x, src_y, src_x, fill):
    """x (N x 14 x 14 x 1) sampled at (src_y, src_x) (N x 14 x 14), bilinear; outside = fill."""
    flat = ops.reshape(x, (-1,)) - fill  # sample x - fill so that outside taps add 0
    n = ops.shape(x)[0]
    base = ops.reshape(ops.arange(n) * 196, (-1, 1, 1))
    y0, x0 = ops.floor(src_y), ops.floor(src_x)
    out = 0.0
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = y0 + dy, x0 + dx
            w = (1 - ops.abs(src_y - yy)) * (1 - ops.abs(src_x - xx))
            inside = (yy >= 0) & (yy <= 13) & (xx >= 0) & (xx <= 13)
            idx = base + ops.cast(ops.clip(yy, 0, 13), "int32") * 14 + ops.cast(ops.clip(xx, 0, 13), "int32")
            out = out + ops.where(inside, w, 0.0) * ops.take(flat, idx)
    return out[..., None] + fill


def gaussian_kernel(sigma, channels):
    import numpy as np
    r = int(math.ceil(2 * sigma))
    g = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    k = np.outer(g, g) / np.outer(g, g).sum()
    return np.repeat(k[:, :, None, None], channels, axis=2).astype("float32")  # k x k x C x 1


class AffineElasticAugment(AffineAugment):
    """One bilinear resampling per digit of a random affine map (as AffineAugment) plus a smooth
    random displacement field (Simard et al. 2003: uniform noise, Gaussian-smoothed) of RMS ``rms`` px."""

    def __init__(self, rms=0.7, sigma=2.0, **kw):
        super().__init__(**kw)
        self.rms, self.sigma = rms, sigma
        self.kernel = gaussian_kernel(sigma, 2)

    def call(self, x, training=None):
        if not training:
            return x
        n = ops.shape(x)[0]
        t, z, sx, sy = self.draw(n)
        noise = keras.random.uniform((n, 14, 14, 2), -1.0, 1.0, seed=self.gen)
        d = ops.depthwise_conv(noise, self.kernel, padding="same")
        d = d / ops.sqrt(ops.mean(ops.square(d), axis=(1, 2, 3), keepdims=True) + 1e-12) * self.rms
        c = 6.5
        grid = ops.arange(14, dtype="float32")
        gy = ops.reshape(grid, (1, 14, 1)) - c  # output row - centre
        gx = ops.reshape(grid, (1, 1, 14)) - c
        cos, sin = ops.reshape(ops.cos(t) / z, (-1, 1, 1)), ops.reshape(ops.sin(t) / z, (-1, 1, 1))
        sy_, sx_ = ops.reshape(sy, (-1, 1, 1)), ops.reshape(sx, (-1, 1, 1))
        oy, ox = gy - sy_, gx - sx_
        src_x = c + cos * ox - sin * oy + d[..., 0]
        src_y = c + sin * ox + cos * oy + d[..., 1]
        return bilinear(x, src_y, src_x, self.fill_value)


def patch_elastic(models, rms, sigma=2.0):
    _replace_augmentation(models, lambda shift, fill: AffineElasticAugment(
        rms=rms, sigma=sigma, shift=shift, degrees=360 * models.AUGMENT_ROTATION, zoom=models.AUGMENT_ZOOM,
        fill_value=fill, name="augment_affine_elastic"))
