"""How should the deployable student learn from siamese-prob-aug-tta-x2? Paired rounds on development digits.

A development round (seed 1000, 1001, ...: seeds no benchmark uses) draws the standard training
pairs of its seed, trains the teacher (siamese-prob-aug-tta-x2) ONCE on them, then fits every
student variant on the same 900 pairs with the same seed: alone on the labels or distilled from that
teacher, with or without mixup, on the student's schedule or a patient one. Every model is scored
on pairs of train-split digits the round did not draw (5,000 pairs of the ~500 such digits of the
default data's 2,500-digit train pool; other seeds draw other digits); the test split is never loaded into a pair. Each row also says how often the student's pair
decision agrees with the teacher's there (the fidelity Beyer et al. log).

Since every variant of a round shares its training digits and its teacher, variants are compared by
their paired differences: the mean over seeds of (variant - reference) and its standard error.
Rows are written as each training ends; ``--append`` adds seeds or variants to the same file, and
``--summary`` prints the paired table of a file without training.

    python research/distillation.py --variants distilled "patient distilled + mixup"
    python research/distillation.py --variants alone "patient distilled" --append
    python research/distillation.py --summary results/research/patient-distillation.csv --reference distilled

A study starts only from a committed plan (research/plans/distillation.md, or --plan for a new one)
and writes that plan's commit into every row; ``--append`` adds only to a file whose rows name a plan.
"""

import argparse
import csv
import os
import sys

import numpy as np

from keras_pairs import cli, files
from keras_pairs.errors import UserError

# variant -> (distilled from the teacher?, mixup's Beta(a, a), epochs: None = the student's own).
VARIANTS = {
    "alone": (False, 0.0, None),
    "alone + mixup": (False, 1.0, None),
    "distilled": (True, 0.0, None),
    "distilled + mixup": (True, 1.0, None),
    "patient distilled": (True, 0.0, 250),
    "patient distilled + mixup": (True, 1.0, 250),
}
FIELDS = ("variant", "seed", "epochs", "seconds", "dev_pair_accuracy", "dev_digit_accuracy",
          "dev_agreement", "val_pair_accuracy", "plan_commit")


def paired_table(rows: list[dict], reference: str) -> str:
    """Markdown: each variant's mean development accuracy and its paired difference to ``reference``
    (mean over the seeds both ran, standard error = sample std / sqrt(n)), in percentage points."""
    by = {}
    for r in rows:
        by.setdefault(r["variant"], {})[int(r["seed"])] = r
    if reference not in by:
        raise ValueError(f"no rows of the reference variant {reference!r}; variants: {', '.join(by)}")
    plans = sorted({r["plan_commit"] for r in rows if r.get("plan_commit")})
    lines = [f"Paired against `{reference}` (same seed = same training digits and teacher); development "
             "pairs, percentage points; SE = sample std / sqrt(seeds)"
             + (f"; plan commit {', '.join(plans)}" if plans else ""), "",
             "| variant | seeds | dev pairs (%) | paired difference (pt) | SE (pt) | dev digits (%) | "
             "agreement with teacher (%) | epochs | s/round |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, mine in by.items():
        seeds = sorted(set(mine) & set(by[reference]))
        pairs = [100 * float(mine[s]["dev_pair_accuracy"]) for s in mine]
        diff = [100 * (float(mine[s]["dev_pair_accuracy"]) - float(by[reference][s]["dev_pair_accuracy"]))
                for s in seeds]
        se = np.std(diff, ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        agree = [100 * float(mine[s]["dev_agreement"]) for s in mine if mine[s].get("dev_agreement") not in (None, "")]
        lines.append(f"| {name} | {len(mine)} | {np.mean(pairs):.2f} | {np.mean(diff):+.2f} | {se:.2f} | "
                     f"{np.mean([100 * float(mine[s]['dev_digit_accuracy']) for s in mine]):.2f} | "
                     f"{f'{np.mean(agree):.2f}' if agree else '–'} | {mine[min(mine)].get('epochs') or '–'} | "
                     f"{np.mean([float(mine[s]['seconds']) for s in mine]):.0f} |")
    return "\n".join(lines)


def read_rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv=None) -> int:
    from common import add_plan_argument, committed_plan

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--student", default="siamese-prob-distilled")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(1000, 1008)),
                   help="one development round per seed (>= 1000); default 8 rounds")
    p.add_argument("--dev-pairs", type=cli.positive_int, default=5000)
    p.add_argument("--output", default="results/research/patient-distillation.csv")
    p.add_argument("--append", action="store_true", help="add the rows to an existing --output file")
    p.add_argument("--reference", default="distilled", choices=list(VARIANTS),
                   help="the variant the others are paired against in the table")
    p.add_argument("--summary", metavar="CSV", help="print the paired table of a results file; train nothing")
    add_plan_argument(p, "distillation")
    cli.add_common_arguments(p)
    args = p.parse_args(argv)
    if min(args.seeds) < 1000:
        p.error("--seeds below 1000 are the benchmark's; development rounds use 1000 and above")
    if args.summary:
        return cli.execute(args, lambda: print(paired_table(read_rows(args.summary), args.reference)), tensorflow=False)

    def study():
        plan_commit = committed_plan(args.plan)  # before anything is trained
        print(f"plan {args.plan} at {plan_commit}", flush=True)
        header = not (args.append and os.path.isfile(args.output))
        if not header:
            with open(args.output, newline="") as f:
                if next(csv.reader(f), None) != list(FIELDS):
                    raise UserError(f"{args.output} has other columns than {', '.join(FIELDS)} (rows made before "
                                    "studies had plans?): write this study to a new --output")

        from dataclasses import replace

        import tensorflow as tf

        from common import development_round

        from keras_pairs.architectures import get_arch
        from keras_pairs.data import load_mnist
        from keras_pairs.metrics import score_outputs
        from keras_pairs.training import RoundModel, fit_round, train_round

        tf.config.experimental.enable_op_determinism()
        mnist = load_mnist("auto")
        student = get_arch(args.student)
        teacher = RoundModel(get_arch(student.teacher))
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        if header:
            files.write_csv(args.output, [], FIELDS)  # the header; a row per training follows as it ends
        for seed in args.seeds:
            data, dev = development_round(mnist, 1000, 0.1, seed, args.dev_pairs)
            # The teacher is trained once (train_round); every student is fitted after it
            # (fit_round), the distilled ones on that same trained teacher.
            trained = [("teacher " + teacher.arch.name, teacher, train_round)]
            for name in args.variants:
                distil, mixup, epochs = VARIANTS[name]
                arch = replace(student, name=f"{student.name}-{name.replace(' + ', '-').replace(' ', '-')}",
                               mixup=mixup, epochs=epochs or student.epochs,
                               teacher=student.teacher if distil else None)
                trained.append((name, RoundModel(arch, teacher=teacher if distil else None), fit_round))
            teacher_pair = None
            for name, model, train in trained:
                done, _ = train(model, data, seed)
                outputs = model.predict(dev.images)
                scores = score_outputs(outputs, dev)
                decision = outputs["pair"].argmax(-1)
                if teacher_pair is None:
                    teacher_pair = decision
                files.write_csv(args.output, [{
                    "variant": name, "seed": seed, "epochs": model.arch.epochs, "seconds": round(done.seconds, 1),
                    "dev_pair_accuracy": scores.pair_accuracy, "dev_digit_accuracy": scores.digit_accuracy,
                    "dev_agreement": round(float(np.mean(decision == teacher_pair)), 5),
                    "val_pair_accuracy": done.test.pair_accuracy, "plan_commit": plan_commit}], FIELDS, append=True)
                print(f"seed {seed} {name:<40} dev pairs {100 * scores.pair_accuracy:.2f} %, digits "
                      f"{100 * scores.digit_accuracy:.2f} %, agreement "
                      f"{100 * np.mean(decision == teacher_pair):.2f} % ({done.seconds:.0f} s)", flush=True)
        rows = read_rows(args.output)
        if any(r["variant"] == args.reference for r in rows):
            print("\n" + paired_table(rows, args.reference))

    return cli.execute(args, study)


if __name__ == "__main__":
    sys.exit(main())
