"""Is digit A <= digit B? Two digit pictures through a trained model.

    python predict.py a.png b.png                       # best siamese run in saved_models, else
                                                        # the model shipped in the package
    python predict.py a.png b.png --arch v4 --json
    python predict.py a.png b.png --run saved_models/v5

Flags only: the work is done by keras_pairs.predict.predict_files.
"""

import argparse
import json
import sys

from .. import cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Is digit A <= digit B? (trained .keras model)")
    p.add_argument("image_a", help="a picture of the first digit (any size, grayscale or RGB)")
    p.add_argument("image_b", help="a picture of the second digit")
    cli.add_run_arguments(p, "use", default=f"{cli.BEST_RUN}, else the model shipped in the package")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    cli.add_common_arguments(p, threads=False)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def predict():
        from keras_pairs.predict import format_result, predict_files

        result = predict_files(args.image_a, args.image_b, args.models_dir, args.arch, args.run_dir)
        if result.get("note"):
            print(result["note"], file=sys.stderr)
        print(json.dumps(result) if args.json else format_result(result))

    return cli.execute(args, predict)

