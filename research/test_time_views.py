"""What do the test-time views add? The same trained weights scored with and without them.

Trains the benchmark's rounds of each architecture with test-time views exactly as
``experiments.py`` does (round r: seed + r, the same pairs, split and initialisation, through
``training.train_round``), then scores the round's test pairs twice: with the inference model (the
views, what every benchmark reports) and with the training model, which is the same encoder
weights without the views. The difference is the views' exact effect. The "without views" figures
of docs/model.md's x2 tables came from this comparison, which every benchmark round used to make:

    python research/test_time_views.py --archs best --rounds 10 --val-fraction 0 --threads 1 \
        --output results/research/test_time_views.csv
    python research/test_time_views.py --archs best --rounds 10 --seed 10 --val-fraction 0 --threads 1 \
        --output results/research/test_time_views_seeds10.csv

Writes one row per (architecture, round, views) as each round ends, then prints mean ± std. It
starts only from a committed plan (research/plans/test_time_views.md, or --plan) and writes that
plan's commit into every row.
"""

import argparse
import os
import sys

import numpy as np

from keras_pairs import cli, files

FIELDS = ("arch", "round", "seed", "views", "pair_accuracy", "pair_argmax_accuracy", "digit_accuracy",
          "plan_commit")


def main(argv=None) -> int:
    from common import add_plan_argument, committed_plan

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", nargs="+", default=["best"], help="architectures with test-time views, or sets")
    p.add_argument("--rounds", type=cli.positive_int, default=10)
    p.add_argument("--seed", type=int, default=0, help="round r uses seed + r, as experiments.py (default 0)")
    p.add_argument("--data", default="auto")
    p.add_argument("--val-fraction", type=float, default=0.1, help="as experiments.py (the benchmark: 0)")
    p.add_argument("--output", default="results/research/test_time_views.csv")
    add_plan_argument(p, "test_time_views")
    cli.add_common_arguments(p)
    args = p.parse_args(argv)

    def study():
        plan_commit = committed_plan(args.plan)  # before anything is trained
        print(f"plan {args.plan} at {plan_commit}", flush=True)

        import tensorflow as tf

        from keras_pairs.architectures import get_arch, resolve_archs
        from keras_pairs.data import load_mnist, prepare_round
        from keras_pairs.errors import UserError
        from keras_pairs.metrics import score_outputs
        from keras_pairs.training import RoundModel, train_round

        tf.config.experimental.enable_op_determinism()
        archs = [get_arch(name) for name in resolve_archs(args.archs)]
        plain = [a.name for a in archs if not a.test_time_views]
        if plain:
            raise UserError(f"{', '.join(plain)}: no test-time views to compare")
        mnist = load_mnist(args.data)
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        rows = []
        files.write_csv(args.output, [], FIELDS)  # the header; a row per scoring follows as each round ends
        for arch in archs:
            round_model = RoundModel(arch)
            for r in range(args.rounds):
                seed = args.seed + r
                data = prepare_round(mnist, 1000, 1000, args.val_fraction, seed)
                done, _ = train_round(round_model, data, seed)
                training_model = round_model.model  # the encoders without the views
                outputs = tf.function(lambda x, m=training_model: m(x, training=False))(
                    tf.constant(data.test.images))
                without = score_outputs({k: v.numpy() for k, v in outputs.items()}, data.test)
                for views, scores in (("with", done.test), ("without", without)):
                    rows.append({"arch": arch.name, "round": r, "seed": seed, "views": views,
                                 **scores.to_dict(), "plan_commit": plan_commit})
                files.write_csv(args.output, rows[-2:], FIELDS, append=True)
                print(f"{arch.name} round {r}: pair accuracy {100 * done.test.pair_accuracy:.2f} % with the "
                      f"views, {100 * without.pair_accuracy:.2f} % without", flush=True)
        print("\n| arch | views | pair accuracy, P(a<=b) (%) | pair accuracy, arg-max (%) | digit accuracy (%) |")
        print("|---|---|---|---|---|")
        for arch in archs:
            for views in ("without", "with"):
                mine = [r for r in rows if r["arch"] == arch.name and r["views"] == views]

                def pct(key):
                    values = [100 * r[key] for r in mine if r.get(key) is not None]
                    std = np.std(values, ddof=1) if len(values) > 1 else 0.0
                    return f"{np.mean(values):.2f} ± {std:.2f}" if values else "–"

                print(f"| {arch.name} | {views} | {pct('pair_accuracy')} | {pct('pair_argmax_accuracy')} "
                      f"| {pct('digit_accuracy')} |")

    return cli.execute(args, study)


if __name__ == "__main__":
    sys.exit(main())
