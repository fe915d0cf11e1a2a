"""Test-time views: the resampling matrices are exact, and the inference model averages the
trained encoders' digit probabilities over the views."""

import dataclasses

import numpy as np

from keras_pairs import models, views
from keras_pairs.architectures import get_arch


def test_view_matrices_move_rotate_and_zoom_exactly():
    rng = np.random.default_rng(0)
    x, background = rng.random((4, 14, 14)), -0.4

    def apply(m):
        return (x.reshape(4, 196) @ m.T + (1 - m.sum(1)) * background).reshape(x.shape)

    np.testing.assert_allclose(apply(views.view_matrix()), x)
    np.testing.assert_allclose(apply(views.view_matrix(90.0)), np.rot90(x, 1, axes=(1, 2)), atol=1e-12)
    np.testing.assert_allclose(apply(views.view_matrix(180.0)), x[:, ::-1, ::-1], atol=1e-12)
    moved = apply(views.view_matrix(dy=1, dx=-1))  # down one row, left one column
    np.testing.assert_allclose(moved[:, 1:, :13], x[:, :13, 1:])
    assert np.all(moved[:, 0, :] == background) and np.all(moved[:, :, 13] == background)
    # Zooming in by 2 about the centre (6.5, 6.5): output pixel (6, 7) samples the source at (6.25, 6.75).
    zoomed = apply(views.view_matrix(zoom=2.0))
    np.testing.assert_allclose(zoomed[:, 6, 7], 0.75 * 0.25 * x[:, 6, 6] + 0.75 * 0.75 * x[:, 6, 7]
                               + 0.25 * 0.25 * x[:, 7, 6] + 0.25 * 0.75 * x[:, 7, 7])
    # Bilinear weights are convex: a constant image stays constant where the source is inside.
    flat = np.full((1, 196), 3.0) @ views.view_matrix(6.0).T
    inside = views.view_matrix(6.0).sum(1) > 1 - 1e-9
    np.testing.assert_allclose(flat[0, inside], 3.0)


def test_test_time_views_average_the_views_of_the_trained_encoder(pairs):
    arch = dataclasses.replace(get_arch("siamese-prob-aug"), test_time_views=True)
    background = float(pairs.images.min())
    model = models.build_model(arch, background=background)
    viewed = views.inference_model(model, arch, background)
    assert models.digit_encoders(viewed) == models.digit_encoders(model)  # the same trained weights
    assert views.inference_model(model, get_arch("siamese-prob-aug"), background) is model
    assert views.TEST_TIME_VIEWS[0] == (0.0, 1.0, 0, 0) and len(set(views.TEST_TIME_VIEWS)) == 9

    def seen(x, view):  # numpy reference: each channel through the view's matrix
        m = views.view_matrix(*view)
        flat = np.moveaxis(x, -1, 1).reshape(-1, 196) @ m.T + (1 - m.sum(1)) * background
        return np.moveaxis(flat.reshape(len(x), 2, 14, 14), 1, -1).astype("float32")

    x = pairs.images[:16]
    outs = [model.predict(seen(x, v), verbose=0) for v in views.TEST_TIME_VIEWS]
    got = viewed.predict(x, verbose=0)
    assert set(got) == {"pair", "pair_argmax", "digit_a", "digit_b"}
    for key in ("digit_a", "digit_b"):
        np.testing.assert_allclose(got[key], np.mean([v[key] for v in outs], 0), atol=1e-5)
    np.testing.assert_allclose(got["pair"], models.prob_a_le_b(got["digit_a"], got["digit_b"]), atol=1e-5)
    np.testing.assert_allclose(viewed.predict(x, verbose=0)["pair"], got["pair"])  # deterministic
    assert viewed.count_params() == model.count_params()  # the views are constants, not weights
