"""How should the deployable student learn from siamese-prob-aug-tta-x2? Decided on development digits.

Each round draws the standard training pairs of its seed (1000, 1001, ...: seeds no benchmark uses), trains
the teacher (siamese-prob-aug-tta-x2) once on them, then fits every student variant on the same
900 pairs with the same seed: alone on the labels or distilled from that teacher, with or without
mixup. All are scored on pairs of train-split digits the round did not draw (~500 on the default
data); the test split is never loaded into a pair.

    python research/distillation.py --seeds 1000 --output results/research/distillation.csv
    python research/distillation.py --seeds 1001 --variants alone distilled --append
"""

import argparse
import csv
import os
import sys

import numpy as np

from keras_pairs import cli

# variant -> (teacher?, mixup); every other setting is siamese-prob-distilled's.
VARIANTS = {
    "alone": (False, 0.0),
    "alone + mixup": (False, 1.0),
    "distilled": (True, 0.0),
    "distilled + mixup": (True, 1.0),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--student", default="siamese-prob-distilled")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001], help="one round per seed (>= 1000)")
    p.add_argument("--dev-pairs", type=cli.positive_int, default=5000)
    p.add_argument("--output", default="results/research/distillation.csv")
    p.add_argument("--append", action="store_true", help="add the rows to an existing --output file")
    cli.add_common_arguments(p)
    args = p.parse_args(argv)
    if min(args.seeds) < 1000:
        p.error("--seeds below 1000 are the benchmark's; development rounds use 1000 and above")

    def study():
        from dataclasses import replace

        import tensorflow as tf

        from keras_pairs.architectures import get_arch
        from keras_pairs.data import development_round, load_mnist
        from keras_pairs.metrics import score_outputs
        from keras_pairs.training import RoundModel, train_round

        tf.config.experimental.enable_op_determinism()
        mnist = load_mnist("auto")
        student = get_arch(args.student)
        teacher = RoundModel(get_arch(student.teacher))
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        rows, writer = [], None
        header = not (args.append and os.path.isfile(args.output))
        with open(args.output, "a" if args.append else "w", newline="") as out:  # a row per training, as it ends
            for seed in args.seeds:
                data, dev = development_round(mnist, 1000, 0.1, seed, args.dev_pairs)
                trained = [("teacher " + teacher.arch.name, teacher, False)]
                for name in args.variants:
                    distil, mixup = VARIANTS[name]
                    arch = replace(student, name=f"{student.name}-{name.replace(' + ', '-')}", mixup=mixup,
                                   teacher=student.teacher if distil else None)
                    model = RoundModel(arch)
                    model.teacher = teacher if distil else None
                    trained.append((name, model, True))
                for name, model, after_teacher in trained:
                    row, _ = train_round(model, data, seed, teacher_trained=after_teacher)
                    scores = score_outputs(model.predict(dev.images), dev)
                    rows.append({"variant": name, "seed": seed, "seconds": round(row["seconds"], 1),
                                 "dev_pair_accuracy": scores["pair_accuracy"],
                                 "dev_digit_accuracy": scores["digit_accuracy"],
                                 "val_pair_accuracy": row["test"]["pair_accuracy"]})
                    if writer is None:
                        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
                        if header:
                            writer.writeheader()
                    writer.writerow(rows[-1])
                    out.flush()
                    print(f"seed {seed} {name:<40} dev pairs {100 * scores['pair_accuracy']:.2f} %, digits "
                          f"{100 * scores['digit_accuracy']:.2f} % ({row['seconds']:.0f} s)", flush=True)
        print("\n| variant | dev pairs (%) | dev digits (%) | s/round |")
        print("|---|---|---|---|")
        for name in dict.fromkeys(r["variant"] for r in rows):
            mine = [r for r in rows if r["variant"] == name]
            pairs = [100 * r["dev_pair_accuracy"] for r in mine]
            digits = [100 * r["dev_digit_accuracy"] for r in mine]
            print(f"| {name} | {np.mean(pairs):.2f} | {np.mean(digits):.2f} | "
                  f"{np.mean([r['seconds'] for r in mine]):.0f} |")

    return cli.run(args, study)


if __name__ == "__main__":
    sys.exit(main())
