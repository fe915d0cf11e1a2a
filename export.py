"""Export a trained model: a SavedModel for other apps and, with --tflite, verified TFLite files.

    python export.py                       # SavedModel of the best siamese run (validation accuracy)
    python export.py --tflite              # + float32, float16, dynamic, int8 and qat-int8 .tflite
    python export.py --tflite --arch v4 --modes float32,int8 --int8-io uint8
    python export.py --tflite --prune      # prune the digit encoder first, report the sparsity

Artifacts go to <models-dir>/<arch>/export/ (see docs/export.md). Flags only: the work is done
by keras_pairs.export_lib.export_run.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def parse_args(argv=None) -> argparse.Namespace:
    from keras_pairs.export_lib import INT8_IO, MODES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", default="saved_models", help="root of the run folders (default saved_models)")
    p.add_argument("--arch", help="export MODELS_DIR/ARCH (default: the siamese run with the best "
                                  "mean validation pair accuracy)")
    p.add_argument("--run", dest="run_dir", help="export this run folder")
    p.add_argument("--tflite", action="store_true", help="also write and verify the TFLite files")
    p.add_argument("--modes", default=",".join(MODES),
                   help=f"comma-separated TFLite modes (default all: {','.join(MODES)})")
    p.add_argument("--int8-io", choices=INT8_IO, default="float32",
                   help="output type of the int8 files; inputs are always uint8 pixels (default float32)")
    p.add_argument("--prune", action="store_true", help="magnitude-prune the digit encoder first")
    p.add_argument("--sparsity", type=float, default=0.5, help="target sparsity of --prune (default 0.5)")
    p.add_argument("--qat-epochs", type=int, default=3, help="QAT fine-tuning epochs (default 3)")
    p.add_argument("--prune-epochs", type=int, default=4, help="pruning fine-tuning epochs (default 4)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from keras_pairs.export_cli import run_export

    return run_export(args)


if __name__ == "__main__":
    sys.exit(main())
