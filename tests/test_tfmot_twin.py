"""The tf_keras model of the QAT and pruning child against the Keras 3 model it stands for.

``export/tfmot_child.py`` builds its tf_keras model from the same builders as training
(``models.build_model(..., K=tf_keras)``) and copies the Keras 3 weights in by layer name. Here
every architecture the child accepts (``export.tfmot.unsupported`` is None) is built both ways on
the same weights, and the tf_keras outputs must equal the Keras 3 outputs to 1e-5 on real digits:
with weights moved away from their initial values (biases and batch-normalisation statistics are
0 and 1 at first, which would hide a wrong copy), and with a digit layer whose probabilities tie
between two digits, where the decision must follow ``models.argmax_a_le_b``'s convention (a tie
splits the vote evenly). The tf_keras side runs in a child process with TF_USE_LEGACY_KERAS=1 set
before TensorFlow is imported, as the export's child runs.

Like the QAT and pruning exports it stands for (a rare path, with a tf_keras child process), the
comparison runs in the slow tests, on every exportable architecture; the default suite checks
which architectures those are.
"""

import numpy as np
import pytest

from conftest import run_python
from keras_pairs import architectures
from keras_pairs.export import tfmot

EXPORTABLE = tuple(name for name, arch in {**architectures.ARCHITECTURES, **architectures.ABLATIONS}.items()
                   if tfmot.unsupported(arch) is None)
TOLERANCE = 1e-5
TIED = (3, 7)  # the two digits whose probabilities tie in the "tied" weights

CHILD = r"""
import sys
import numpy as np
import tf_keras
from keras_pairs.architectures import get_arch
from keras_pairs.export import tfmot_child

folder, names = sys.argv[1], sys.argv[2].split(",")
x = np.load(f"{folder}/inputs.npy")
for name in names:
    for variant in ("trained", "tied"):
        with np.load(f"{folder}/{name}_{variant}_weights.npz") as w:
            _, model = tfmot_child.float_model(get_arch(name), dict(w))
        # only tf_keras layers: what tfmot accepts (a Keras 3 layer would make it refuse the model)
        bad = [l.name for l in model._flatten_layers() if not isinstance(l, tf_keras.layers.Layer)]
        assert not bad, (name, bad)
        out = model(x, training=False)
        np.savez(f"{folder}/{name}_{variant}_tf_keras.npz", **{k: v.numpy() for k, v in out.items()})
"""


def perturb(model, rng) -> None:
    """Moves every weight away from its initial value; BN variances stay positive."""
    import keras

    from keras_pairs.models import digit_encoders

    for layer in [lay for enc in digit_encoders(model) for lay in enc.layers] + model.layers:
        weights = layer.get_weights()
        if not weights or layer.name.startswith("digit_encoder"):
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = (w.shape for w in weights)
            weights = [1 + 0.2 * rng.standard_normal(gamma), 0.2 * rng.standard_normal(beta),
                       0.2 * rng.standard_normal(mean), np.exp(0.3 * rng.standard_normal(var))]
        else:
            weights = [w + 0.05 * rng.standard_normal(w.shape) for w in weights]
        layer.set_weights([w.astype("float32") for w in weights])


def tie(model) -> None:
    """The digit layer outputs the same logits for every digit, highest at TIED: p(3) == p(7)."""
    from keras_pairs.models import digit_encoders

    logits = digit_encoders(model)[0].get_layer("logits")
    kernel, bias = logits.get_weights()
    bias = np.zeros_like(bias)
    bias[list(TIED)] = 2.0
    logits.set_weights([np.zeros_like(kernel), bias])


def argmax_rule(probs_a, probs_b) -> np.ndarray:
    """P(a <= b) of the arg-max digits, a tie between maxima splitting the vote evenly (the
    convention of models.argmax_a_le_b), computed directly."""
    hot_a = (probs_a >= probs_a.max(-1, keepdims=True)).astype(float)
    hot_b = (probs_b >= probs_b.max(-1, keepdims=True)).astype(float)
    hot_a /= hot_a.sum(-1, keepdims=True)
    hot_b /= hot_b.sum(-1, keepdims=True)
    le = np.triu(np.ones((10, 10)))  # le[i, j] = 1 where i <= j
    return np.einsum("ni,ij,nj->n", hot_a, le, hot_b)


def check_both_ways(names, pairs, folder) -> None:
    import keras

    from keras_pairs.architectures import get_arch
    from keras_pairs.models import build_model

    real = pairs.images[:32]
    same = pairs.images[32:48].copy()
    same[..., 1] = same[..., 0]  # both digits the same image: equal probabilities, a <= b
    x = np.ascontiguousarray(np.concatenate([real, same]), dtype="float32")
    np.save(folder / "inputs.npy", x)
    expected = {}
    for name in names:
        arch = get_arch(name)
        keras.utils.set_random_seed(0)
        model = build_model(arch)
        perturb(model, np.random.default_rng(0))
        for variant in ("trained", "tied"):
            if variant == "tied":
                tie(model)
            np.savez(folder / f"{name}_{variant}_weights.npz", **tfmot.keras_weights(model))
            expected[name, variant] = {k: keras.ops.convert_to_numpy(v)
                                       for k, v in model(x, training=False).items()}

    done = run_python(CHILD, str(folder), ",".join(names), env={"TF_USE_LEGACY_KERAS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    for (name, variant), want in expected.items():
        head = get_arch(name).head
        with np.load(folder / f"{name}_{variant}_tf_keras.npz") as f:
            got = dict(f)
        assert set(got) == set(want), (name, variant)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=TOLERANCE,
                                       err_msg=f"{name} {variant} {key}")
        decision = {"compare": "pair", "probabilistic": "pair_argmax"}.get(head)
        if decision is None:  # a trained head: no arg-max rule to follow
            continue
        rule = argmax_rule(want["digit_a"], want["digit_b"])
        for out in (want, got):
            np.testing.assert_allclose(out[decision][:, 1], rule, atol=TOLERANCE, err_msg=f"{name} {variant}")
        if variant == "trained":  # the same digit twice: a <= b, exactly
            np.testing.assert_array_equal(got[decision][len(real):, 1], 1.0)
        else:  # 3 or 7 against 3 or 7: a <= b in 3 of the 4 equally likely cases (tf.argmax: 1)
            np.testing.assert_allclose(got[decision][:, 1], 0.75, atol=TOLERANCE, err_msg=name)


def test_exportable_architectures_are_the_single_encoder_siamese_ones():
    assert {"v5", "v4"} <= set(EXPORTABLE)  # the shared run's architecture and the arg-max comparison
    for name in EXPORTABLE:
        arch = architectures.get_arch(name)
        assert arch.siamese and arch.ensemble == 1 and not arch.test_time_views


@pytest.mark.slow
def test_tf_keras_model_matches_keras_on_every_exportable_architecture(pairs, tmp_path):
    check_both_ways(EXPORTABLE, pairs, tmp_path)
