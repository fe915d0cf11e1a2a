"""The model builders: the exact decision, augmentation only in training, stacked digits,
ensembles, and float32 outputs under mixed precision."""

import dataclasses

import keras
import numpy as np
import pytest

from keras_pairs import models, training, views
from keras_pairs.architectures import get_arch


def test_probabilistic_decision_is_exact_on_hand_made_distributions():
    rng = np.random.default_rng(0)
    pa = rng.dirichlet(np.ones(10), size=6).astype(np.float32)
    pb = rng.dirichlet(np.ones(10), size=6).astype(np.float32)
    pa[0], pb[0] = np.eye(10)[3], np.eye(10)[3]  # a tie: certain 3 vs certain 3 -> a <= b
    pa[1], pb[1] = np.eye(10)[7], np.eye(10)[2]  # certain 7 vs certain 2 -> a > b
    got = keras.ops.convert_to_numpy(models.prob_a_le_b(pa, pb))
    exact = np.array([sum(pa[n, i] * pb[n, j] for i in range(10) for j in range(10) if i <= j)
                      for n in range(6)])
    np.testing.assert_allclose(got[:, 1], exact, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-6)
    assert got[0, 1] == pytest.approx(1.0) and got[1, 1] == pytest.approx(0.0)
    hard = keras.ops.convert_to_numpy(models.argmax_a_le_b(pa, pb))
    np.testing.assert_array_equal(hard[:, 1], pa.argmax(-1) <= pb.argmax(-1))


def test_augmentation_is_off_at_inference(pairs):
    arch = get_arch("siamese-prob-aug")
    assert arch.encoder.augment
    model = models.build_model(arch)
    first = model.predict(pairs.images, verbose=0)
    second = model(pairs.images, training=False)
    for key in first:
        np.testing.assert_allclose(first[key], np.asarray(second[key]), atol=1e-6)
    encoder = models.digit_encoders(model)[0]
    digit = pairs.images[:8, :, :, :1]
    train_a, _ = encoder(digit, training=True)
    train_b, _ = encoder(digit, training=True)
    assert not np.allclose(np.asarray(train_a), np.asarray(train_b)), "augmentation is active in training"


def test_stacked_digits_change_only_what_batch_normalisation_sees_in_training(pairs):
    # Dropout and augmentation off: what differs in training is then batch normalisation alone.
    base = get_arch("siamese-prob-aug")
    base = dataclasses.replace(base, encoder=dataclasses.replace(base.encoder, dropout=0.0, augment=False))
    stacked = dataclasses.replace(base, stack_digits=True).validate()
    per_digit = models.build_model(base)
    model = models.build_model(stacked)
    model.set_weights(per_digit.get_weights())
    x = pairs.images[:16]
    other_b = x.copy()
    other_b[..., 1] = pairs.images[16:32, :, :, 1]
    at_inference = model.predict(x, verbose=0)
    for key, value in per_digit.predict(x, verbose=0).items():
        np.testing.assert_allclose(at_inference[key], value, atol=1e-5, err_msg=key)
    # In training, the a-digits' batch statistics include the b-digits only when they are stacked.
    np.testing.assert_allclose(np.asarray(per_digit(x, training=True)["digit_a"]),
                               np.asarray(per_digit(other_b, training=True)["digit_a"]), atol=1e-6)
    assert not np.allclose(np.asarray(model(x, training=True)["digit_a"]),
                           np.asarray(model(other_b, training=True)["digit_a"]), atol=1e-4)
    with pytest.raises(ValueError, match="stack_digits needs a siamese model"):
        dataclasses.replace(get_arch("base"), stack_digits=True).validate()


def test_ensemble_members_train_on_their_own_losses_and_inference_averages_them(pairs):
    arch = get_arch("siamese-prob-aug-x3")
    model = training.compile_model(models.build_model(arch), arch, steps_per_epoch=9)
    # Losses on each member's outputs (independent members), none on the averaged outputs.
    assert set(model.loss) == {f"{out}_{k}" for k in range(3) for out in ("digit_a", "digit_b", "pair")}
    out = model.predict(pairs.images[:8], verbose=0)
    np.testing.assert_allclose(out["digit_a"], np.mean([out[f"digit_a_{k}"] for k in range(3)], 0), atol=1e-6)
    assert models.averaged_output("digit_b_2") == "digit_b" and models.averaged_output("pair_argmax") == "pair_argmax"
    inference = views.inference_model(model, arch)
    assert set(inference.output_names) == {"pair", "pair_argmax", "digit_a", "digit_b"}
    got = inference.predict(pairs.images[:8], verbose=0)
    for key in got:
        np.testing.assert_allclose(got[key], out[key], atol=1e-6)


@pytest.mark.parametrize("name", ["v5", "base", "siamese-prob-aug-tta-x2"])
def test_mixed_precision_computes_in_float16_and_outputs_float32(name, pairs):
    arch = get_arch(name)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = views.inference_model(models.build_model(arch), arch)
        out = model(pairs.images[:4], training=False)
        convs = [layer for e in (models.digit_encoders(model) or [model.get_layer("pair_cnn")])
                 for layer in e.layers if layer.name.startswith("conv")]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert convs and all(layer.compute_dtype == "float16" for layer in convs)
    assert {key: keras.backend.standardize_dtype(value.dtype) for key, value in out.items()} == {key: "float32" for key in out}
    assert all(str(t.dtype) == "float32" for t in model.outputs)
