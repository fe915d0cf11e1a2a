"""What the studies of research/ share: the development round, which never touches the test split."""

import numpy as np

from keras_pairs import data
from research.common import development_round


def test_development_pairs_use_only_train_digits_the_round_did_not_draw(mnist):
    data_, dev = development_round(mnist, 1000, 0.1, seed=1000, n_dev=300)
    fit, val, _ = data.draw_round(mnist, 1000, 10, 0.1, seed=1000)
    np.testing.assert_array_equal(data_.fit.index, fit.index)  # the round's own training pairs
    np.testing.assert_array_equal(data_.test.index, val.index)  # its "test" = its validation pairs
    drawn = np.concatenate([fit.index.ravel(), val.index.ravel()])
    assert not np.isin(dev.index, drawn).any() and (dev.index[:, 0] != dev.index[:, 1]).all()
    np.testing.assert_array_equal(dev.classes, mnist.y_train[dev.index])
    raw_a = dev.images[..., 0] * data_.std + data_.mean  # normalised like the round
    np.testing.assert_allclose(raw_a, data.pool_2x2(mnist.x_train[dev.index[:, 0]]), atol=1e-3)
