"""Export a trained model: a SavedModel for other apps and, with --tflite, verified TFLite files.

    python export.py                       # SavedModel of the best siamese run (validation accuracy)
    python export.py --tflite              # + float32, float16, dynamic, int8 and qat-int8 .tflite
    python export.py --tflite --arch v4 --modes float32,int8 --int8-io uint8
    python export.py --tflite --prune      # prune the digit encoder first, report the sparsity

Artifacts go to <models-dir>/<arch>/export/ (docs/export.md). Flags only: the work is done by
keras_pairs.export.export_run.
"""

import argparse

from .. import cli
from keras_pairs.config import INT8_IO, TFLITE_MODES as MODES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_run_arguments(p, "export")
    p.add_argument("--tflite", action="store_true", help="also write and verify the TFLite files")
    p.add_argument("--modes", default=",".join(MODES),
                   help=f"comma-separated TFLite modes (default all: {','.join(MODES)})")
    p.add_argument("--int8-io", choices=INT8_IO, default="float32",
                   help="output type of the int8 files; inputs are always uint8 pixels (default float32)")
    p.add_argument("--prune", action="store_true", help="magnitude-prune the digit encoder first")
    p.add_argument("--sparsity", type=float, default=0.5, help="target sparsity of --prune (default 0.5)")
    p.add_argument("--qat-epochs", type=cli.positive_int, default=3, help="QAT fine-tuning epochs (default 3)")
    p.add_argument("--prune-epochs", type=cli.positive_int, default=4, help="pruning fine-tuning epochs (default 4)")
    cli.add_common_arguments(p, threads=False)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def export():
        from keras_pairs.export import ExportConfig, export_run

        result = export_run(ExportConfig(
            models_dir=args.models_dir, arch=args.arch, run_dir=args.run_dir, tflite=args.tflite,
            modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()), int8_io=args.int8_io,
            prune=args.prune, target_sparsity=args.sparsity, qat_epochs=args.qat_epochs,
            prune_epochs=args.prune_epochs))
        print(f"\nexported {result.run_dir} ({result.selected_because})")
        if result.pruning is not None:
            p = result.pruning
            print(f"pruning: encoder kernel sparsity {100 * p['sparsity']:.1f} % "
                  f"(target {100 * p['target_sparsity']:.0f} %)")
        print(f"test pairs: {result.test_pairs}\n\n{result.table}")
        print("".join(f"- {note}\n" for note in result.notes), end="")
        print(f"\nartifacts, export.json and export_table.md in {result.export_dir}")

    return cli.execute(args, export)

