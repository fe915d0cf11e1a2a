"""Dev only: training tricks tried on the dev set, each a patch of keras_pairs.models.

mutual(weight): deep mutual learning between ensemble members: each member's digit probabilities are
  pulled towards the other members' (KL, the others held constant), added to the training loss.
cutout(size, prob): a random size x size square of each training digit set to the background
  (after the augmentation layers), with probability prob.
aug_off(epoch): the augmentation layers pass digits through unchanged from this epoch on.
shear(s): after the zoom, a random horizontal shear about the digit's centre, slope uniform in [-s, s]
  (MNIST's writers vary most in slant; keras' RandomShear shears about the corner, which also shifts).
pool_same(): max-pooling pads ("same") instead of dropping the odd last row and column (7x7 -> 4x4, not 3x3).
aniso(w): the zoom draws its width factor independently of the height factor, in [-w, w].
"""
import keras
from keras import ops

CALLBACKS = []  # dev_eval.train_round passes these to fit


class MutualKL(keras.layers.Layer):
    def __init__(self, weight, **kw):
        super().__init__(**kw)
        self.weight = weight

    def call(self, probs, training=None):
        if training:
            eps = 1e-7
            total = 0.0
            for k, p in enumerate(probs):
                others = [q for j, q in enumerate(probs) if j != k]
                target = ops.stop_gradient(sum(others) / len(others))
                kl = ops.sum(target * (ops.log(target + eps) - ops.log(p + eps)), axis=-1)
                total = total + ops.mean(kl)
            self.add_loss(self.weight * total)
        return probs

    def compute_output_shape(self, shapes):
        return shapes


def mutual(models, weight):
    orig = models._average_members

    def average_members(probs_a, probs_b):
        if len(probs_a) > 1:
            probs_a = MutualKL(weight)(probs_a)
            probs_b = MutualKL(weight)(probs_b)
        return orig(probs_a, probs_b)
    models._average_members = average_members


class Cutout(keras.layers.Layer):
    def __init__(self, size, prob, fill_value, **kw):
        super().__init__(**kw)
        self.size, self.prob, self.fill_value = size, prob, fill_value
        self.gen = keras.random.SeedGenerator(None)

    def call(self, x, training=None):
        if not training:
            return x
        n = ops.shape(x)[0]
        u = keras.random.uniform((n, 3), 0.0, 1.0, seed=self.gen)
        half = self.size / 2
        cy = u[:, 0] * 14 - 0.5
        cx = u[:, 1] * 14 - 0.5
        on = ops.cast(u[:, 2] < self.prob, x.dtype)
        r = ops.arange(14, dtype="float32")
        iny = ops.cast(ops.abs(r[None, :] - cy[:, None]) < half, x.dtype)  # n x 14
        inx = ops.cast(ops.abs(r[None, :] - cx[:, None]) < half, x.dtype)
        mask = (iny[:, :, None] * inx[:, None, :] * on[:, None, None])[..., None]
        return x * (1 - mask) + self.fill_value * mask

    def compute_output_shape(self, s):
        return s


def patch_layers(models, **makers):
    """models.layers with each named layer replaced by ``make(real_layer)`` (the layer it replaces)."""
    real = models.layers

    class L:
        pass
    for n in dir(real):
        if not n.startswith("_"):
            setattr(L, n, getattr(real, n))
    for name, make in makers.items():
        setattr(L, name, staticmethod(make(getattr(real, name))))
    models.layers = L


def after_zoom(models, name, make):
    """models.layers whose RandomZoom is followed by ``make(fill_value)``, one Sequential named ``name``."""
    def patch(zoom):
        return lambda *a, **k: keras.Sequential([zoom(*a, **k), make(k["fill_value"])], name=name)
    patch_layers(models, RandomZoom=patch)


def cutout(models, size, prob):
    after_zoom(models, "augment_zoom_cutout", lambda fill: Cutout(size, prob, fill))


GATE = None


class Gated(keras.layers.Layer):
    """``inner`` in training while GATE is 1, identity otherwise."""

    def __init__(self, inner, **kw):
        super().__init__(name=inner.name + "_gated", **kw)
        self.inner = inner

    def call(self, x, training=None):
        if not training:
            return x
        g = ops.cast(GATE, x.dtype)
        return g * self.inner(x, training=True) + (1 - g) * x

    def compute_output_shape(self, s):
        return s


def aug_off(models, epoch):
    global GATE
    GATE = keras.Variable(1.0, trainable=False, name="aug_gate")
    gated = lambda real: (lambda *a, **k: Gated(real(*a, **k)))  # noqa: E731
    patch_layers(models, RandomTranslation=gated, RandomRotation=gated, RandomZoom=gated)

    class Off(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            GATE.assign(1.0)

        def on_epoch_begin(self, e, logs=None):
            if e == epoch:
                GATE.assign(0.0)
    CALLBACKS.append(Off())


class CentredShear(keras.layers.Layer):
    """x_in = x_out + slope * (y_out - 6.5): slant about the centre row, in training only."""

    def __init__(self, slope, fill_value, **kw):
        super().__init__(**kw)
        self.slope, self.fill_value = slope, fill_value
        self.gen = keras.random.SeedGenerator(None)

    def call(self, x, training=None):
        if not training:
            return x
        s = keras.random.uniform((ops.shape(x)[0],), -self.slope, self.slope, seed=self.gen)
        one, zero = ops.ones_like(s), ops.zeros_like(s)
        m = ops.stack([one, s, -6.5 * s, zero, one, zero, zero, zero], axis=1)
        return ops.image.affine_transform(x, m, interpolation="bilinear", fill_mode="constant",
                                          fill_value=self.fill_value)

    def compute_output_shape(self, s):
        return s


def shear(models, slope):
    after_zoom(models, "augment_zoom_shear", lambda fill: CentredShear(slope, fill))


def aniso(models, width):
    patch_layers(models, RandomZoom=lambda zoom: (lambda f, *a, **k: zoom(f, width, *a, **k)))


def pool_same(models):
    patch_layers(models, MaxPooling2D=lambda pool: (lambda *a, **k: pool(*a, padding="same", **k)))
