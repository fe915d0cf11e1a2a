"""Dev only: ONE random affine resampling per training digit (shift, rotation, zoom together) in place
of keras' three successive layers (three bilinear resamplings). Patches keras_pairs.models.layers."""
import math
import keras
from keras import ops


class AffineAugment(keras.layers.Layer):
    def __init__(self, shift=1.4, degrees=10.0, zoom=0.1, fill_value=0.0, seed=None, **kw):
        super().__init__(**kw)
        self.shift, self.degrees, self.zoom, self.fill_value = shift, degrees, zoom, fill_value
        self.gen = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training:
            return x
        n = ops.shape(x)[0]
        u = keras.random.uniform((n, 4), -1.0, 1.0, seed=self.gen)
        t = u[:, 0] * (self.degrees * math.pi / 180)
        z = 1.0 + u[:, 1] * self.zoom
        sx, sy = u[:, 2] * self.shift, u[:, 3] * self.shift
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


def patch(models, scale=1.0):
    real = models.layers

    class L:
        pass
    for n in dir(real):
        if not n.startswith("_"):
            setattr(L, n, getattr(real, n))
    L.RandomTranslation = staticmethod(lambda f, *a, fill_value=0.0, name=None, **k: AffineAugment(
        shift=14 * f * scale, degrees=360 * models.AUGMENT_ROTATION * scale, zoom=models.AUGMENT_ZOOM * scale,
        fill_value=fill_value, name="augment_affine"))
    L.RandomRotation = staticmethod(lambda *a, name=None, **k: real.Identity(name=name))
    L.RandomZoom = staticmethod(lambda *a, name=None, **k: real.Identity(name=name))
    models.layers = L
