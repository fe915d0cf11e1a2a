"""The trained model shipped inside the package: siamese-prob-patient (the deployable student), so that `predict.py` and
`serve.py` answer right after installing, before anything is trained.

    keras_pairs/pretrained/siamese-prob-patient/
      config.json, metrics.json, model.keras     a run folder as train.py writes it (one round, seed 0)
      export/export.json, export/*.tflite        what `export.py --tflite` wrote and verified for it
      provenance.json                            the commands, commit, seed, data, the training pairs
                                                 drawn, fitted and held out, and test accuracy

It is an ordinary run folder: `predict.py --run` and `serve.py --run` take its path, and its test
pairs are rebuilt from the digits it records (runs.run_pairs). `python -m keras_pairs.pretrained
--refresh` trains and exports it again and replaces the folder (__main__.py). Reading it needs no
TensorFlow: the server imports this module.
"""

from __future__ import annotations

import json
from pathlib import Path

ARCH = "siamese-prob-patient"
DIR = Path(__file__).resolve().parent / ARCH


def provenance() -> dict:
    """provenance.json of the shipped model ({} when the package was installed without it)."""
    path = DIR / "provenance.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def describe() -> str:
    """One line for the user: which model, and how good on its recorded test pairs."""
    info = provenance()
    if not info:
        return f"the shipped {ARCH}"
    return (f"the shipped {ARCH} ({100 * info['test_pair_accuracy']:.2f} % of its "
            f"{info['test_pairs']} test pairs)")


def available() -> bool:
    return (DIR / "model.keras").is_file() and (DIR / "export" / "export.json").is_file()
