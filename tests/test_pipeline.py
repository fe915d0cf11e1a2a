"""What fit reads: targets by output name, and fresh consistent pairs from the sampler."""

import numpy as np

from keras_pairs import data, pipeline


def test_targets_follow_output_names_and_ensemble_members(mnist):
    pairs, _ = data.generate_pair_sets(mnist, 20, 1, seed=0)
    y = pipeline.targets_for(["pair", "digit_a_1", "digit_b", "pair_0"], pairs)
    np.testing.assert_array_equal(y["pair"], pairs.target)
    np.testing.assert_array_equal(y["pair_0"], pairs.target)
    np.testing.assert_array_equal(y["digit_a_1"], pairs.classes[:, 0])
    np.testing.assert_array_equal(y["digit_b"], pairs.classes[:, 1])


def test_pair_sampler_forms_new_consistent_pairs_each_epoch(mnist):
    round_data = data.prepare_round(mnist, 60, 10, 0.0, seed=0)
    sampler = pipeline.PairSampler(round_data.fit, ["pair", "digit_a", "digit_b"], 20, resample=True,
                                   swap=True, seed=0)
    fit = round_data.fit
    digits = {x.tobytes(): c for x, c in zip(np.concatenate([fit.images[..., 0], fit.images[..., 1]]),
                                             np.concatenate([fit.classes[:, 0], fit.classes[:, 1]]))}

    def epoch():
        batches = [sampler[i] for i in range(len(sampler))]
        x = np.concatenate([b[0] for b in batches])
        y = {k: np.concatenate([b[1][k] for b in batches]) for k in batches[0][1]}
        return x, y

    x, y = epoch()
    assert x.shape == (60, 14, 14, 2)
    a = np.array([digits[d.tobytes()] for d in x[..., 0]])  # KeyError = a digit not from training
    b = np.array([digits[d.tobytes()] for d in x[..., 1]])
    np.testing.assert_array_equal(y["digit_a"], a)
    np.testing.assert_array_equal(y["digit_b"], b)
    np.testing.assert_array_equal(y["pair"], a <= b)
    sampler.on_epoch_end()
    x2, _ = epoch()
    assert not np.array_equal(x, x2)
