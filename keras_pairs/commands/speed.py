"""What exported models cost to run: their int8 files timed side by side through ai-edge-litert,
each beside its float32 file.

    python -m keras_pairs speed siamese-prob-distilled siamese-prob-aug-tta-x2
    python -m keras_pairs speed siamese-prob-distilled siamese-prob-aug-tta-x2 --output results/export/speed

Each architecture's exported run (``export.py --tflite``) gives its multiply-adds per pair, int8
size and accuracy, pairs/s and ms per pair (ratios are to the last one), and its float32 file's
pairs/s: which of the two is faster on this CPU. The machine's state is
recorded with the figures (machine.json). Flags only: the work is done by
keras_pairs.export.speed.compare_exports.
"""

import argparse

from .. import cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("archs", nargs="+", metavar="ARCH", help="architectures whose exported int8 files to time")
    cli.add_run_arguments(p, "time", default=None, arch=False, run=False)  # the positional ARCHs name the runs
    p.add_argument("--threads", dest="interpreter_threads", type=cli.positive_int, default=2,
                   help="interpreter threads (default 2)")
    p.add_argument("--output", help="write speed.json, speed_table.md and machine.json to this folder")
    cli.add_common_arguments(p, threads=False)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def speed():
        from keras_pairs import machine
        from keras_pairs.export.speed import compare_exports, format_speed_table
        from keras_pairs.files import staged_folder, write_json

        result = compare_exports(args.archs, args.models_dir, threads=args.interpreter_threads)
        table = format_speed_table(result)
        print(f"\nint8 files through ai-edge-litert, side by side; deployment budget "
              f"{result.budget_multiply_adds / 1e6:.2f} M multiply-adds per pair\n\n{table}")
        if args.output:
            with staged_folder(args.output) as work:
                write_json(f"{work}/speed.json", result.to_dict())
                with open(f"{work}/speed_table.md", "w") as f:
                    f.write(table)
                machine.write(work, result.machine)
            print(f"figures in {args.output}/speed.json, speed_table.md and machine.json")

    return cli.execute(args, speed)
