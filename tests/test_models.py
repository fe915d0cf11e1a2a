"""One contract for every architecture: outputs, shared encoder, parameters, save/reload, training."""

import dataclasses
import json
import os

import numpy as np
import pytest

from conftest import run_python
from keras_pairs import config, models, training
from keras_pairs.data import generate_pair_sets

ALL = {**config.ARCHITECTURES, **config.ABLATIONS}

# Pinned parameter counts. Report B says its Base and Siamese v1-v3 have "approximately 45,000"
# parameters and about the same as each other; ours: 42-44k (see config.py for the layout).
PARAMS = {
    "baseline": 117890, "siamese2": 12636, "siamese10": 22874,
    "base": 42194, "v1": 43124, "v2": 43596, "v3": 43340,
    "v1-noaux": 43124, "v2-noaux": 43596, "v3-noaux": 43340,
    "v4": 43082, "v5": 43124, "v6": 44556,
    "siamese-prob-aug": 141418, "ablate-strong-argmax": 141418, "ablate-prob": 141418,
    "ablate-prob-aug-pairs": 141418, "siamese-prob-aug-x3": 424254, "siamese-prob-aug-tta": 141418,
    "siamese-prob-aug-tta-x2": 579028,  # 2 encoders of 5 convolutions
}


def test_the_table_covers_every_architecture_of_both_reports():
    report_a = {"baseline", "siamese2", "siamese10"}
    report_b = {"base", "v1", "v2", "v3", "v1-noaux", "v2-noaux", "v3-noaux", "v4", "v5", "v6"}
    assert report_a | report_b <= set(config.ARCHITECTURES)
    assert set(PARAMS) == set(ALL)


@pytest.fixture(scope="module")
def pairs(mnist):
    train, _ = generate_pair_sets(mnist, 64, 1, seed=0)
    return train.normalised(float(train.images.mean()), float(train.images.std()))


def expected_outputs(arch):
    names = {"pair"}
    if arch.predicts_digits:
        names |= {"digit_a", "digit_b"}
    if arch.head == "probabilistic":
        names.add("pair_argmax")
    if arch.ensemble > 1:  # the members' own outputs carry the training losses
        names |= {f"{out}_{k}" for k in range(arch.ensemble) for out in ("digit_a", "digit_b", "pair")}
    return names


@pytest.mark.parametrize("name", list(ALL))
def test_outputs_shared_encoder_and_parameters(name, pairs):
    arch = ALL[name]
    model = models.build_model(arch)
    assert model.count_params() == PARAMS[name]
    out = model.predict(pairs.images[:8], verbose=0)
    assert set(out) == expected_outputs(arch)
    for key, value in out.items():
        assert value.shape == ((8, 10) if key.startswith("digit") else (8, 2))
        np.testing.assert_allclose(value.sum(-1), 1.0, atol=1e-5)
    encoders = models.digit_encoders(model)
    if not arch.siamese:
        assert encoders == []
        return
    # ONE encoder object per ensemble member, called on both digits (once on each, or once on
    # both stacked): its weights are the model's only copy, and swapping the two digits swaps the
    # two digit outputs exactly.
    assert len(encoders) == arch.ensemble
    for encoder in encoders:
        assert len(encoder._inbound_nodes) == (1 if arch.stack_digits else 2), "one call per digit or both stacked"
    encoder_ids = {id(w) for e in encoders for w in e.weights}
    assert len(encoder_ids) == sum(len(e.weights) for e in encoders)
    assert encoder_ids <= {id(w) for w in model.weights}
    if not arch.predicts_digits:
        return
    swapped = model.predict(pairs.images[:8, :, :, ::-1], verbose=0)
    np.testing.assert_allclose(swapped["digit_a"], out["digit_b"], atol=1e-6)
    np.testing.assert_allclose(swapped["digit_b"], out["digit_a"], atol=1e-6)


@pytest.mark.parametrize("name", list(ALL))
def test_a_few_training_steps_lower_the_loss(name, pairs):
    # Dropout and augmentation off so that the training-mode loss is deterministic; what is under
    # test is that every loss is wired to its output and the optimiser moves the right weights.
    import keras

    keras.utils.set_random_seed(0)  # deterministic: a single Adam step can go uphill
    arch = ALL[name]
    # One step at the report's rate can overshoot (siamese2 uses SGD at lr 1): use at most 1e-3.
    arch = dataclasses.replace(arch, learning_rate=min(arch.learning_rate, 1e-3),
                               encoder=dataclasses.replace(arch.encoder, dropout=0.0, augment=False))
    model = models.compile_model(models.build_model(arch), arch)
    y = training.targets_for(model, pairs)
    before = model.train_on_batch(pairs.images, y, return_dict=True)["loss"]
    for _ in range(4):
        after = model.train_on_batch(pairs.images, y, return_dict=True)["loss"]  # loss after the steps
    assert np.isfinite(before) and after < before


def test_every_model_reloads_with_safe_mode_in_a_fresh_process(tmp_path, pairs):
    expected = {}
    for name, arch in ALL.items():
        if arch.ensemble > 1:
            continue  # same layers as its single-encoder twin, three times: too slow to add here
        model = models.inference_model(models.build_model(arch), arch, background=-0.4)  # as saved
        model.save(tmp_path / f"{name}.keras")
        expected[name] = model.predict(pairs.images, verbose=0)
    np.save(tmp_path / "x.npy", pairs.images)
    # The fresh process imports Keras only: the models need nothing from keras_pairs to load.
    code = """
import json, sys, numpy as np, keras
folder = sys.argv[1]
x = np.load(folder + "/x.npy")
for name in json.loads(sys.argv[2]):
    model = keras.saving.load_model(f"{folder}/{name}.keras", safe_mode=True)
    out = model.predict(x, verbose=0)
    np.savez(f"{folder}/{name}.out.npz", **out)
"""
    done = run_python(code, str(tmp_path), json.dumps(list(expected)),
                      env={"PYTHONPATH": os.path.join(str(tmp_path), "nothing")})
    assert done.returncode == 0, done.stderr[-3000:]
    for name, out in expected.items():
        with np.load(tmp_path / f"{name}.out.npz") as reloaded:
            assert set(reloaded.files) == set(out)
            for key in out:
                np.testing.assert_allclose(reloaded[key], out[key], atol=1e-6, err_msg=f"{name}/{key}")


def test_probabilistic_decision_is_exact_on_hand_made_distributions():
    import keras

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
    arch = config.get_arch("siamese-prob-aug")
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
    base = config.get_arch("siamese-prob-aug")
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
        dataclasses.replace(config.get_arch("base"), stack_digits=True).validate()


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown architecture 'v7'.*baseline, siamese2"):
        config.get_arch("v7")


def test_config_round_trip_and_strict_overrides():
    for arch in ALL.values():
        assert config.ArchConfig.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
    with pytest.raises(ValueError, match=r"unknown architecture setting\(s\) \['colour'\]"):
        config.ArchConfig.from_dict({**config.get_arch("v1").to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="cannot override 'head'"):
        config.with_overrides(config.get_arch("v1"), head="compare")
    with pytest.raises(TypeError, match="epochs must be int"):
        config.with_overrides(config.get_arch("v1"), epochs="5")


def test_view_matrices_move_rotate_and_zoom_exactly():
    rng = np.random.default_rng(0)
    x, background = rng.random((4, 14, 14)), -0.4

    def apply(m):
        return (x.reshape(4, 196) @ m.T + (1 - m.sum(1)) * background).reshape(x.shape)

    np.testing.assert_allclose(apply(models.view_matrix()), x)
    np.testing.assert_allclose(apply(models.view_matrix(90.0)), np.rot90(x, 1, axes=(1, 2)), atol=1e-12)
    np.testing.assert_allclose(apply(models.view_matrix(180.0)), x[:, ::-1, ::-1], atol=1e-12)
    moved = apply(models.view_matrix(dy=1, dx=-1))  # down one row, left one column
    np.testing.assert_allclose(moved[:, 1:, :13], x[:, :13, 1:])
    assert np.all(moved[:, 0, :] == background) and np.all(moved[:, :, 13] == background)
    # Zooming in by 2 about the centre (6.5, 6.5): output pixel (6, 7) samples the source at (6.25, 6.75).
    zoomed = apply(models.view_matrix(zoom=2.0))
    np.testing.assert_allclose(zoomed[:, 6, 7], 0.75 * 0.25 * x[:, 6, 6] + 0.75 * 0.75 * x[:, 6, 7]
                               + 0.25 * 0.25 * x[:, 7, 6] + 0.25 * 0.75 * x[:, 7, 7])
    # Bilinear weights are convex: a constant image stays constant where the source is inside.
    flat = np.full((1, 196), 3.0) @ models.view_matrix(6.0).T
    inside = models.view_matrix(6.0).sum(1) > 1 - 1e-9
    np.testing.assert_allclose(flat[0, inside], 3.0)


def test_test_time_views_average_the_views_of_the_trained_encoder(pairs):
    arch = dataclasses.replace(config.get_arch("siamese-prob-aug"), test_time_views=True)
    background = float(pairs.images.min())
    model = models.build_model(arch, background=background)
    viewed = models.inference_model(model, arch, background)
    assert models.digit_encoders(viewed) == models.digit_encoders(model)  # the same trained weights
    assert models.inference_model(model, config.get_arch("siamese-prob-aug"), background) is model
    assert models.TEST_TIME_VIEWS[0] == (0.0, 1.0, 0, 0) and len(set(models.TEST_TIME_VIEWS)) == 9

    def seen(x, view):  # numpy reference: each channel through the view's matrix
        m = models.view_matrix(*view)
        flat = np.moveaxis(x, -1, 1).reshape(-1, 196) @ m.T + (1 - m.sum(1)) * background
        return np.moveaxis(flat.reshape(len(x), 2, 14, 14), 1, -1).astype("float32")

    x = pairs.images[:16]
    views = [model.predict(seen(x, v), verbose=0) for v in models.TEST_TIME_VIEWS]
    got = viewed.predict(x, verbose=0)
    assert set(got) == expected_outputs(arch)
    for key in ("digit_a", "digit_b"):
        np.testing.assert_allclose(got[key], np.mean([v[key] for v in views], 0), atol=1e-5)
    np.testing.assert_allclose(got["pair"], models.prob_a_le_b(got["digit_a"], got["digit_b"]), atol=1e-5)
    np.testing.assert_allclose(viewed.predict(x, verbose=0)["pair"], got["pair"])  # deterministic
    assert viewed.count_params() == model.count_params()  # the views are constants, not weights


def test_test_time_views_need_a_head_without_weights():
    with pytest.raises(ValueError, match="test_time_views needs the 'compare' or 'probabilistic' head"):
        dataclasses.replace(config.get_arch("v5"), test_time_views=True).validate()
    # runs saved while the views were only shifts still load
    old = {**config.get_arch("siamese-prob-aug-tta").to_dict()}
    old["test_time_shifts"] = old.pop("test_time_views")
    assert config.ArchConfig.from_dict(old) == config.get_arch("siamese-prob-aug-tta")


def test_ensemble_members_train_on_their_own_losses_and_inference_averages_them(pairs):
    arch = config.get_arch("siamese-prob-aug-x3")
    model = models.compile_model(models.build_model(arch), arch)
    # Losses on each member's outputs (independent members), none on the averaged outputs.
    assert set(model.loss) == {f"{out}_{k}" for k in range(3) for out in ("digit_a", "digit_b", "pair")}
    out = model.predict(pairs.images[:8], verbose=0)
    np.testing.assert_allclose(out["digit_a"], np.mean([out[f"digit_a_{k}"] for k in range(3)], 0), atol=1e-6)
    assert models.averaged_output("digit_b_2") == "digit_b" and models.averaged_output("pair_argmax") == "pair_argmax"
    inference = models.inference_model(model, arch)
    assert set(inference.output_names) == {"pair", "pair_argmax", "digit_a", "digit_b"}
    got = inference.predict(pairs.images[:8], verbose=0)
    for key in got:
        np.testing.assert_allclose(got[key], out[key], atol=1e-6)
