"""The command lines: each module parses its flags and hands one library call to ``cli.execute``.

    python -m keras_pairs COMMAND [flags]     # or `keras-pairs COMMAND`, installed by pip
    python train.py [flags]                   # the top-level scripts are the same commands

COMMANDS maps each name to its module; ``keras_pairs.__main__`` dispatches to it.
"""

COMMANDS = {
    "train": "train a model for N rounds and write its run folder",
    "experiments": "architectures x N rounds: the reports' tables and figures, or any benchmark",
    "search": "grid search with k-fold cross-validation on the training pairs",
    "export": "export a trained run: SavedModel and verified TFLite files",
    "predict": "is digit A <= digit B? two pictures through a trained model",
    "serve": "the page and TF Serving's REST API",
    "speed": "time exported int8 files side by side, each beside its float32 file",
    "plot": "draw the figures of an experiments results folder again",
}
