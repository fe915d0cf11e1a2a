"""Should early stopping be on by default? Decided on development digits, never on the test pool.

Each round draws the standard training pairs from the train split with its seed (1000 + r: seeds no
benchmark uses), and trains the architecture twice through ``training.train_round``: every epoch
(the reports' protocol) and with early stopping on the validation pair accuracy (patience 10,
best weights restored). Both train on the same 900 fitted pairs. Both are scored on pairs formed
from the train-split digits the round did NOT draw (~500 on the default data): digits neither run
has seen, from the split the test pool is not. The test split is never loaded into a pair.

    python research/early_stopping.py --rounds 5 --output results/research/early_stopping.csv

It starts only from a committed plan (research/plans/early_stopping.md, or --plan) and writes that
plan's commit into every row.
"""

import argparse
import os
import sys

import numpy as np

from keras_pairs import cli, files


def main(argv=None) -> int:
    from common import add_plan_argument, committed_plan

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", nargs="+", default=["reportA", "reportB"])
    p.add_argument("--rounds", type=cli.positive_int, default=5)
    p.add_argument("--patience", type=cli.positive_int, default=10)
    p.add_argument("--dev-pairs", type=cli.positive_int, default=5000)
    p.add_argument("--output", default="results/research/early_stopping.csv")
    add_plan_argument(p, "early_stopping")
    cli.add_common_arguments(p)
    args = p.parse_args(argv)

    def study():
        plan_commit = committed_plan(args.plan)  # before anything is trained
        print(f"plan {args.plan} at {plan_commit}", flush=True)

        import tensorflow as tf

        from common import development_round

        from keras_pairs.architectures import get_arch, resolve_archs
        from keras_pairs.data import load_mnist
        from keras_pairs.metrics import score_outputs
        from keras_pairs.training import RoundModel, train_round

        tf.config.experimental.enable_op_determinism()
        mnist = load_mnist("auto")
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        rows = []  # a row per training, written as it ends
        for name in resolve_archs(args.archs):
            arch = get_arch(name)
            models = {"every epoch": RoundModel(arch), f"patience {args.patience}": RoundModel(arch)}
            for r in range(args.rounds):
                seed = 1000 + r
                data, dev = development_round(mnist, 1000, 0.1, seed, args.dev_pairs)
                for setting, round_model in models.items():
                    patience = None if setting == "every epoch" else args.patience
                    done, _ = train_round(round_model, data, seed, patience=patience)
                    scores = score_outputs(round_model.predict(dev.images), dev)
                    rows.append({"arch": name, "round": r, "seed": seed, "setting": setting,
                                 "epochs_run": done.epochs_run,
                                 "dev_pair_accuracy": scores.pair_accuracy,
                                 "dev_digit_accuracy": "" if scores.digit_accuracy is None else scores.digit_accuracy,
                                 "val_pair_accuracy": done.validation.pair_accuracy,
                                 "plan_commit": plan_commit})
                    files.write_csv(args.output, rows[-1:], append=len(rows) > 1)  # the first starts the file
                    print(f"{name:<10} seed {seed} {setting:<12} epochs {done.epochs_run:>2} "
                          f"dev pairs {100 * scores.pair_accuracy:.2f} %", flush=True)
        print(f"\n| arch | every epoch (%) | patience {args.patience} (%) | epochs run with early stopping |")
        print("|---|---|---|---|")
        for name in dict.fromkeys(r["arch"] for r in rows):
            mine = [r for r in rows if r["arch"] == name]
            every = [100 * r["dev_pair_accuracy"] for r in mine if r["setting"] == "every epoch"]
            early = [100 * r["dev_pair_accuracy"] for r in mine if r["setting"] != "every epoch"]
            epochs = [r["epochs_run"] for r in mine if r["setting"] != "every epoch"]
            print(f"| {name} | {np.mean(every):.2f} ± {np.std(every, ddof=1):.2f} "
                  f"| {np.mean(early):.2f} ± {np.std(early, ddof=1):.2f} | {np.mean(epochs):.1f} |")

    return cli.execute(args, study)


if __name__ == "__main__":
    sys.exit(main())
