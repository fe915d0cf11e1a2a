"""Result tables: the results folder's table.md, and the rows README quotes.

README's result rows are generated from the committed per-round files (``rounds.csv``) by
``readme_rows`` (and ``deployment_rows``), so its figures cannot drift from the results they come
from: tests/test_tables.py reruns the commands README quotes, such as

    python -m keras_pairs.tables results/reproduction results/best
    python -m keras_pairs.tables results/deploy --seconds-from results/timing/deploy
    python -m keras_pairs.tables results/deploy results/best --speed results/export/speed

and fails when a row of a README table with a ``results`` column is not one they print, or one
they print is missing.

``--speed`` adds the deployment table: each model timed by ``python -m keras_pairs speed`` beside its test
pair accuracy over the rounds of the first folder that holds it.

Timings are quoted only from a folder whose ``machine.json`` says the machine was quiet when they
were made (``machine.py``); elsewhere the cell is "–". ``--seconds-from`` takes the seconds per
round from another folder (a one-round timing run of the same architectures on a quiet machine),
for a benchmark whose own timings were made on a busy one and whose accuracy is not re-run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os

import numpy as np

from . import machine
from .architectures import get_arch
from .errors import UserError
from .metrics import summarise
from .results import ExperimentsResult, SpeedResult, SpeedRow, Summary

# The reports' tables: (title, [(arch, row label in the report)]).
REPORT_TABLES = (
    ("Report A, Table 1 (10 rounds)", [("baseline", "Baseline"), ("siamese2", "Siamese2"),
                                       ("siamese10", "Siamese10")]),
    ("Report B, Table I (20 rounds)", [("base", "Base model"),
                                       ("v1-noaux", "Siamese model (best without aux: 86.4)"),
                                       ("v2-noaux", "Siamese model (best without aux: 86.4)"),
                                       ("v3-noaux", "Siamese model (best without aux: 86.4)"),
                                       ("v5", "Siamese model with auxiliary loss")]),
    ("Report B, Table II (aux loss)", [("v4", "v4"), ("v5", "v5"), ("v6", "v6"), ("v1", "v1"),
                                       ("v3", "v3"), ("v2", "v2")]),
    ("Report B, Table III", [("v5", "v5"), ("v6", "v6")]),
)


def pct(summary: Summary | None) -> str:
    """mean ± std of a summary of fractions, in percent."""
    if summary is None:
        return "–"
    return f"{100 * summary.mean:.2f} ± {100 * summary.std:.2f}"


def reference(ref) -> str:
    """A report's figure: mean, and ± std where the report gives one."""
    if not ref:
        return "–"
    mean, std = ref
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def markdown_table(doc: ExperimentsResult) -> str:
    """The results table, then one table per report table with the report's figures beside ours,
    then the comparator agreement, the teachers of students and, in results written when every
    round also scored models with test-time views without them, that comparison."""
    archs, settings = doc.archs, doc.settings
    summaries = {a: res.test for a, res in archs.items()}
    rounds = {a: res.rounds for a, res in archs.items()}
    held_out = settings["val_fraction"]
    lines = [f"Test accuracy (%) over {settings['rounds']} round(s), mean ± std (sample std); "
             f"data: {doc.data['source']}; {settings['nb_train']} training pairs, "
             + (f"{held_out:.0%} of them held out as validation pairs" if held_out else "all trained on")
             + f"; device: {doc.device['device']}; total {doc.total_seconds:.0f} s"
             + (f" on {doc.machine.describe()}" if doc.machine else "")
             + ".", "",
             "| arch | report | pair accuracy | report's figure | digit accuracy | params | s/round | epochs |",
             "|---|---|---|---|---|---|---|---|"]
    for name, res in archs.items():
        t = summaries[name]
        lines.append(f"| {name} | {res.report} | {pct(t.pair_accuracy)} | {reference(res.reference)} "
                     f"| {pct(t.digit_accuracy)} | {res.params:,} "
                     f"| {t.seconds_per_round.mean:.1f} | {t.epochs_run.mean:.1f} |")
    for title, rows in REPORT_TABLES:
        present = [(a, label) for a, label in rows if a in archs]
        if present:
            lines += ["", f"**{title}**", "", "| report row | arch | report (%) | ours (%) |", "|---|---|---|---|"]
            lines += [f"| {label} | {a} | {reference(archs[a].reference)} | {pct(summaries[a].pair_accuracy)} |"
                      for a, label in present]
    comparators = {a: res.comparator for a, res in archs.items() if res.comparator}
    if comparators:
        lines += ["", "**Report B, Figure 2 (comparator analysis)**: share of the 100 (i, j) cells where "
                  "the trained pair head agrees with the ideal i <= j, mean ± std over rounds", "",
                  "| arch | agreement (%) |", "|---|---|"]
        lines += [f"| {a} | {pct(summarise([c['agreement'] for c in comps]))} |" for a, comps in comparators.items()]
    with_views = [a for a, t in summaries.items() if t.without_views is not None]
    if with_views:
        lines += ["", "**Test-time views**: the same trained weights with and without them", "",
                  "| arch | views | pair accuracy, P(a<=b) | pair accuracy, arg-max | digit accuracy |",
                  "|---|---|---|---|---|"]
        for a in with_views:
            t = summaries[a]
            plain = t.without_views
            lines.append(f"| {a} | without | {pct(plain['pair_accuracy'])} | {pct(plain.get('pair_argmax_accuracy'))} "
                         f"| {pct(plain.get('digit_accuracy'))} |")
            lines.append(f"| {a} | with | {pct(t.pair_accuracy)} | {pct(t.pair_argmax_accuracy)} "
                         f"| {pct(t.digit_accuracy)} |")
    students = {a: rs for a, rs in rounds.items() if rs and rs[0].teacher is not None}
    if students:
        lines += ["", "**Distillation**: each round trains the teacher first, on the same pairs with the same "
                  "seed; s/round above counts both", "",
                  "| student | teacher | teacher's pair accuracy | student's pair accuracy | teacher s/round |",
                  "|---|---|---|---|---|"]
        for a, rs in students.items():
            teachers = [r.teacher for r in rs]
            lines.append(f"| {a} | {teachers[0].arch} | {pct(summarise([t.test.pair_accuracy for t in teachers]))} "
                         f"| {pct(summaries[a].pair_accuracy)} | {np.mean([t.seconds for t in teachers]):.1f} |")
    return "\n".join(lines) + "\n"


def read_rounds(results_dir: str) -> dict[str, list[dict]]:
    """rounds.csv of a results folder: architecture -> its rounds (numbers as floats)."""
    path = os.path.join(results_dir, "rounds.csv")
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: run experiments.py --output {results_dir} first")
    by_arch: dict[str, list[dict]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            by_arch.setdefault(row["arch"], []).append(
                {k: float(v) for k, v in row.items() if k != "arch" and v != ""})
    return by_arch


def readme_rows(results_dir: str, seconds_from: str | None = None) -> list[str]:
    """One README row per architecture of a results folder: pair accuracy, the report's figure,
    digit accuracy, seconds per round and rounds, from its rounds.csv. A student's teacher, trained
    in the same rounds, gets a row of its own after it (its seconds are part of the student's).

    Seconds per round come from ``seconds_from``'s rounds.csv when given, else from the folder's
    own, and only where that folder's machine.json records a quiet machine ("–" otherwise)."""
    timing_dir = seconds_from or results_dir
    timed = read_rounds(timing_dir) if machine.quotable(timing_dir) else {}
    rows = []
    for name, rounds in read_rounds(results_dir).items():
        arch = get_arch(name)

        def column(key):
            values = [r[key] for r in rounds if key in r]
            return pct(summarise(values)) if values else "–"

        def seconds(key):
            values = [r[key] for r in timed.get(name, []) if key in r]
            return f"{np.mean(values):.1f}" if values else "–"

        rows.append(f"| {name} | {arch.report} | {column('test_pair_accuracy')} | {reference(arch.reference)} "
                    f"| {column('test_digit_accuracy')} | {seconds('seconds')} | {len(rounds)} | `{results_dir}` |")
        if arch.teacher and "teacher_test_pair_accuracy" in rounds[0]:
            teacher = get_arch(arch.teacher)
            rows.append(f"| {teacher.name} (its teacher) | {teacher.report} | {column('teacher_test_pair_accuracy')} "
                        f"| {reference(teacher.reference)} | {column('teacher_test_digit_accuracy')} "
                        f"| {seconds('teacher_seconds')} | {len(rounds)} | `{results_dir}` |")
    return rows


def cost_cells(row: SpeedRow, ref: SpeedRow) -> tuple[str, str]:
    """A timed model's multiply-adds per pair and int8 pairs/s, each with its ratio to ``ref``'s
    (rows of ``python -m keras_pairs speed``): the cells its speed table and the deployment table share."""
    return (f"{row.multiply_adds / 1e6:.2f} M (1/{ref.multiply_adds / row.multiply_adds:.1f})",
            f"{row.pairs_per_s:,.0f} (x{row.pairs_per_s / ref.pairs_per_s:.1f})")


def float32_cell(row: SpeedRow) -> str:
    """A timed model's float32 file's pairs/s, and which of its two files is the faster on the CPU
    they were timed on (the one with the larger pairs/s, by how much); "–" where it was not timed."""
    if not row.float32_pairs_per_s:
        return "–"
    ratio = row.pairs_per_s / row.float32_pairs_per_s
    faster = f"int8 x{ratio:.2f}" if ratio >= 1 else f"float32 x{1 / ratio:.2f}"
    return f"{row.float32_pairs_per_s:,.0f} ({faster} faster)"


def deployment_rows(speed_dir: str, results_dirs: list[str]) -> list[str]:
    """The deployment table: per model timed in ``speed_dir`` (speed.json), its test pair accuracy
    over the rounds of the first of ``results_dirs`` that holds it (as a model or as a student's
    teacher), its multiply-adds per pair, int8 size and int8 speed; ratios are to the last timed
    model, as in the speed table. The speeds' header names the CPU and its vector extensions
    (machine.json): int8 speed depends on them (AVX-512 VNNI multiplies int8 in one instruction)."""
    path = os.path.join(speed_dir, "speed.json")
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: run `python -m keras_pairs speed ARCH ... --output {speed_dir}` first")
    with open(path) as f:
        speed = SpeedResult.from_dict(json.load(f))
    rounds_of = {}
    for results_dir in results_dirs:
        for name, rounds in read_rounds(results_dir).items():
            rounds_of.setdefault(name, (results_dir, rounds))
            if "teacher_test_pair_accuracy" in rounds[0]:  # the teacher, trained in the same rounds
                rounds_of.setdefault(get_arch(name).teacher, (results_dir, [
                    {"test_pair_accuracy": r["teacher_test_pair_accuracy"]} for r in rounds]))
    ref, quiet = speed.reference, machine.quotable(speed_dir)
    state = machine.read(speed_dir)
    on = f", {state.cpu} ({', '.join(state.vector or ()) or 'vector extensions not recorded'})" if state else ""
    lines = ["| arch | test pair accuracy (%) | rounds | multiply-adds per pair | int8 size (KiB) "
             f"| pairs/s, batch {speed.batch}, {speed.threads} threads{on} | float32 file, same CPU | results |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in speed.rows:
        if r.arch not in rounds_of:
            raise UserError(f"{r.arch} has no rounds in {', '.join(results_dirs)}: name the results folder "
                           "of its test benchmark")
        results_dir, rounds = rounds_of[r.arch]
        accuracy = pct(summarise([x["test_pair_accuracy"] for x in rounds]))
        multiply_adds, pairs_per_s = cost_cells(r, ref)
        float32 = float32_cell(r)
        if not quiet:
            pairs_per_s = float32 = "–"
        lines.append(f"| {r.arch} | {accuracy} | {len(rounds)} | {multiply_adds} | {r.int8_bytes / 1024:.1f} "
                     f"| {pairs_per_s} | {float32} | `{results_dir}`, `{speed_dir}` |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keras_pairs.tables",
                                     description="Print README's result rows of results folders.")
    parser.add_argument("results", nargs="*", default=["results/reproduction"], help="results folders")
    parser.add_argument("--speed", metavar="DIR", help="also print the deployment table of a `python -m keras_pairs speed --output` folder")
    parser.add_argument("--seconds-from", metavar="DIR",
                        help="seconds per round from this folder (a timing run on a quiet machine) instead")
    args = parser.parse_args(argv)
    try:
        for results_dir in args.results:
            print("\n".join(readme_rows(results_dir, args.seconds_from)))
        if args.speed:
            print("\n" + "\n".join(deployment_rows(args.speed, args.results)))
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
