"""The API's model: `serving_default` of a .tflite file through ai-edge-litert, safe to call from
many threads.

A LiteRT interpreter is not thread-safe, so the pool holds one per concurrent call: a request thread
borrows one, runs it and gives it back. With one interpreter per core, requests on different cores
run in parallel; more would only compete for the same cores.
"""

from __future__ import annotations

import os
import queue
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

SIGNATURE = "serving_default"
INPUTS = ("digit_a", "digit_b")


class ModelLoadError(Exception):
    """The .tflite file cannot be loaded or lacks the expected signature."""


class PairModel:
    """digit_a, digit_b: uint8 [N, 28, 28] -> {prob_a_le_b, a_le_b, digit_a_probs, digit_b_probs}."""

    def __init__(self, path: Path, interpreters: int | None = None):
        self.path = path
        count = interpreters or os.cpu_count() or 1
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(self._load(path))
        with self._borrow() as runner:
            self.inputs = _details(runner.get_input_details())
            self.outputs = _details(runner.get_output_details())
        if sorted(self.inputs) != sorted(INPUTS):
            raise ModelLoadError(f"{path}: signature {SIGNATURE!r} has inputs {sorted(self.inputs)}, "
                                 f"expected {list(INPUTS)}; re-export with `python export.py --tflite`")

    def predict(self, digit_a: np.ndarray, digit_b: np.ndarray) -> dict[str, np.ndarray]:
        with self._borrow() as runner:
            return runner(digit_a=digit_a, digit_b=digit_b)

    @staticmethod
    def _load(path: Path):
        try:
            return Interpreter(model_path=str(path), num_threads=1).get_signature_runner(SIGNATURE)
        except (ValueError, RuntimeError) as error:
            raise ModelLoadError(f"{path} cannot be loaded ({error}); "
                                 f"re-export with `python export.py --tflite`") from error

    @contextmanager
    def _borrow(self):
        runner = self._free.get()
        try:
            yield runner
        finally:
            self._free.put(runner)


def _details(details: dict) -> dict[str, dict]:
    """name -> {"dtype": "uint8", "shape": [-1, 28, 28]} (-1: any size)."""
    return {name: {"dtype": np.dtype(d["dtype"]).name, "shape": [int(n) for n in d["shape_signature"]]}
            for name, d in details.items()}
