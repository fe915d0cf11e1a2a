"""Scores: the one scorer, summaries, and report B's comparator analysis on hand-set heads."""

import numpy as np
import pytest

from keras_pairs.architectures import get_arch
from keras_pairs.data import PairSet
from keras_pairs.metrics import comparator_matrix, confusion_matrix, score, summarise
from keras_pairs.models import build_model
from keras_pairs.results import Scores


def test_score_counts_decisions_and_both_digits():
    classes = np.array([[1, 2], [5, 3], [4, 4], [9, 0]])
    pairs = PairSet(np.zeros((4, 14, 14, 2), np.float32), np.array([1, 0, 1, 0]), classes)
    digit_a, digit_b = np.eye(10)[[1, 5, 4, 8]], np.eye(10)[[2, 3, 0, 0]]  # 2 of the 8 digits wrong
    got = score(pairs, np.array([1, 0, 0, 0]), digit_a, digit_b, a_le_b_argmax=np.array([1, 1, 1, 1]))
    assert got == Scores(pair_accuracy=0.75, pair_argmax_accuracy=0.5, digit_accuracy=0.75)
    assert score(pairs, np.array([1, 0, 1, 0])) == Scores(pair_accuracy=1.0)


def test_summaries_use_the_sample_std_and_confusion_counts():
    s = summarise([0.9, 1.0])
    assert s.mean == pytest.approx(0.95) and s.std == pytest.approx(np.std([0.9, 1.0], ddof=1))
    assert summarise([0.5]).std == 0.0
    m = confusion_matrix(np.array([1, 1, 2]), np.array([1, 2, 2]))
    assert m[1, 1] == 1 and m[1, 2] == 1 and m[2, 2] == 1 and m.sum() == 3


def _ideal_head(model, n_first: int = 10):
    """Pair head weights whose class-1 logit is sum_k (-k) x_k + sum_k (k + 0.5) x_{10+k}."""
    kernel = np.zeros((20, 2), np.float32)
    kernel[:10, 1] = -np.arange(10)
    kernel[10:, 1] = np.arange(10) + 0.5
    model.get_layer("pair_logits").set_weights([kernel, np.zeros(2, np.float32)])


@pytest.mark.parametrize("name", ["v1", "v5"])
def test_comparator_of_an_ideal_head_is_ideal(name):
    arch = get_arch(name)
    model = build_model(arch)
    _ideal_head(model)
    result = comparator_matrix(model, arch)
    ideal = np.less_equal.outer(np.arange(10), np.arange(10)).astype(int)
    np.testing.assert_array_equal(result["decision"], ideal)
    assert result["agreement"] == 1.0
    assert (result["high"], result["low"]) == ((1.0, 0.0) if name == "v5" else (10.0, 0.0))


def test_comparator_flags_a_wrong_head_and_rejects_headless_models():
    arch = get_arch("v6")
    model = build_model(arch)
    for layer in ("head_hidden", "pair_logits"):
        w = model.get_layer(layer).get_weights()
        model.get_layer(layer).set_weights([np.zeros_like(w[0]), np.zeros_like(w[1])])
    model.get_layer("pair_logits").set_weights([np.zeros((64, 2), np.float32), np.array([1.0, 0.0], np.float32)])
    result = comparator_matrix(model, arch)  # always class 0: only the 45 cells with i > j agree
    assert result["agreement"] == pytest.approx(0.45)
    with pytest.raises(ValueError, match="no trainable comparator"):
        comparator_matrix(build_model(get_arch("v4")), get_arch("v4"))
