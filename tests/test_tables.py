"""README's result rows are the committed results files' figures, generated, never typed."""

import contextlib
import dataclasses
import io
import json
import os
import shlex

import pytest

from conftest import ROOT
from keras_pairs import machine, tables
from keras_pairs.export.speed import format_speed_table
from keras_pairs.results import SpeedResult

# README's tables of results, in README's order, each with the commands (quoted in README) whose
# rows make it, in the order README lists them. A --speed command contributes its deployment table.
README_TABLES = (
    ("reproduction", ["python -m keras_pairs.tables results/reproduction --seconds-from results/scaling/serial-default-2"]),
    ("our models", ["python -m keras_pairs.tables results/best results/x2_seeds10",
                    "python -m keras_pairs.tables results/deploy-patient --seconds-from results/timing/deploy-patient",
                    "python -m keras_pairs.tables results/deploy"]),
    ("deployment", ["python -m keras_pairs.tables results/deploy-patient --speed results/export/speed-deploy"]),
)


def generated_rows(command: str) -> list[str]:
    """The table rows a README command prints, run in the repository root as README runs it."""
    out = io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(out):
        assert tables.main(shlex.split(command)[3:]) == 0
    text = out.getvalue()
    if "--speed" in command:  # the deployment table follows the folders' rows after a blank line
        text = text.split("\n\n", 1)[1]
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| arch |")]


def results_tables(readme: str) -> list[list[str]]:
    """The rows of every README table whose last column is `results` (those generated from a results
    folder), one list per table in README's order, header and separator left out."""
    found, block = [], []
    for line in readme.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line.rstrip())
        elif block:
            if [c.strip() for c in block[0].strip("|").split("|")][-1] == "results":
                found.append(block[2:])
            block = []
    return found


def readme_differences(readme_path: str, expected: dict[str, list[str]]) -> list[str]:
    """What in README's results tables differs from the rows generated from the committed files:
    a row README holds that no file gives, a generated row README lacks, rows out of order."""
    with open(readme_path) as f:
        readme = f.read()
    found = results_tables(readme)
    if len(found) != len(expected):
        return [f"README has {len(found)} tables with a results column, expected {len(expected)} ({', '.join(expected)})"]
    problems = []
    flat = " ".join(readme.split())
    for (name, commands), rows in zip(README_TABLES, found):
        problems += [f"README does not quote `{c}` ({name} table)" for c in commands if c not in flat]
        generated = expected[name]
        problems += [f"{name} table: README row not generated from its results folder:\n{r}" for r in rows
                     if r not in generated]
        problems += [f"{name} table: README lacks the generated row:\n{r}" for r in generated if r not in rows]
        if not problems and rows != generated:
            problems.append(f"{name} table: README's rows are not in the generated order")
    return problems


@pytest.fixture(scope="module")
def expected():
    return {name: [row for c in commands for row in generated_rows(c)] for name, commands in README_TABLES}


def test_readme_tables_are_the_rows_generated_from_the_committed_results(expected):
    assert not readme_differences(os.path.join(ROOT, "README.md"), expected)
    for name, rows in expected.items():
        assert rows, f"the {name} table's commands printed no rows"
    assert machine.quotable(os.path.join(ROOT, "results", "export", "speed-deploy")), \
        "README's deployment speeds come from a quiet machine"


def test_an_altered_or_missing_readme_row_is_detected(tmp_path, expected):
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    student = next(r for r in expected["our models"] if r.startswith("| siamese-prob-patient |"))
    teacher = next(r for r in expected["our models"] if "(its teacher)" in r and "results/deploy-patient" in r)
    deployed, reproduced = expected["deployment"][0], expected["reproduction"][0]
    copy = tmp_path / "README.md"
    for altered, detected in ((readme.replace(student, student.replace("99.05", "99.06")), "not generated"),
                              (readme.replace(teacher + "\n", ""), "lacks the generated row"),
                              (readme.replace(deployed, deployed.replace(" | 10 | ", " | 9 | ", 1)), "not generated"),
                              (readme.replace(reproduced, reproduced.replace(" | 10 | ", " | 11 | ")), "not generated")):
        assert altered != readme
        copy.write_text(altered)
        problems = readme_differences(str(copy), expected)
        assert problems and detected in problems[0], problems  # an altered row also leaves its true one missing


def test_docs_quote_the_committed_speed_table():
    folder = os.path.join(ROOT, "results", "export", "speed-deploy")
    with open(os.path.join(ROOT, "docs", "export.md")) as f, open(os.path.join(folder, "speed_table.md")) as table:
        committed = table.read().strip()
        assert committed in f.read(), "docs/export.md lacks results/export/speed-deploy/speed_table.md"
    with open(os.path.join(folder, "speed.json")) as f:
        speed = SpeedResult.from_dict(json.load(f))
    state = machine.read(folder)
    assert machine.quotable(folder), "the committed speed figures come from a quiet machine"
    assert format_speed_table(dataclasses.replace(speed, machine=state)).strip() == committed


def quiet_machine(folder, busy=False):
    state = machine.MachineState.now("test")
    state.busy, state.load_before = busy, ((1.5 if busy else 0.1), 0.1, 0.1)
    machine.write(str(folder), state)


def test_rows_are_mean_and_sample_std_of_the_rounds(tmp_path):
    (tmp_path / "rounds.csv").write_text(
        "arch,round,seed,epochs_run,seconds,test_pair_accuracy,test_digit_accuracy\n"
        "v5,0,0,25,2.0,0.9,0.95\nv5,1,1,25,4.0,1.0,0.97\n")
    quiet_machine(tmp_path)
    [row] = tables.readme_rows(str(tmp_path))
    assert row.startswith("| v5 | B | 95.00 ± 7.07 | 95.50 ± 1.10 | 96.00 ± 1.41 | 3.0 | 2 |")


def test_seconds_are_quoted_only_from_a_quiet_machine(tmp_path):
    rounds = ("arch,round,seed,epochs_run,seconds,test_pair_accuracy\n"
              "v5,0,0,25,2.0,0.9\nv5,1,1,25,4.0,1.0\n")
    (tmp_path / "rounds.csv").write_text(rounds)
    assert "| 95.00 ± 7.07 | 95.50 ± 1.10 | – | – | 2 |" in tables.readme_rows(str(tmp_path))[0], "no record"
    quiet_machine(tmp_path, busy=True)
    assert "| – | – | 2 |" in tables.readme_rows(str(tmp_path))[0], "a busy machine"
    timing = tmp_path / "timing"
    timing.mkdir()
    (timing / "rounds.csv").write_text("arch,round,seed,epochs_run,seconds,test_pair_accuracy\nv5,0,0,25,7.0,0.9\n")
    quiet_machine(timing)
    assert "| – | 7.0 | 2 |" in tables.readme_rows(str(tmp_path), seconds_from=str(timing))[0]


def test_a_students_teacher_gets_its_own_row(tmp_path):
    (tmp_path / "rounds.csv").write_text(
        "arch,round,seed,epochs_run,seconds,test_pair_accuracy,test_digit_accuracy,teacher_seconds,"
        "teacher_test_pair_accuracy,teacher_test_digit_accuracy\n"
        "siamese-prob-distilled,0,0,70,10.0,0.98,0.97,6.0,0.99,0.985\n"
        "siamese-prob-distilled,1,1,70,12.0,0.98,0.97,8.0,0.99,0.985\n")
    quiet_machine(tmp_path)
    student, teacher = tables.readme_rows(str(tmp_path))
    assert student.startswith("| siamese-prob-distilled | keras_pairs | 98.00 ± 0.00 | – | 97.00 ± 0.00 | 11.0 | 2 |")
    assert teacher.startswith("| siamese-prob-aug-tta-x2 (its teacher) | keras_pairs | 99.00 ± 0.00 | – "
                              "| 98.50 ± 0.00 | 7.0 | 2 |")


def test_docs_quote_the_committed_export_tables_without_their_unrecorded_latencies():
    with open(os.path.join(ROOT, "docs", "export.md")) as f:
        text = f.read()
    for arch in ("siamese-prob-aug-tta-x2", "v5", "siamese-prob-distilled"):
        with open(os.path.join(ROOT, "results", "export", arch, "export_table.md")) as f:
            table = f.read().split("\n\n")[0].strip().splitlines()
        assert table[0].endswith("| latency per pair (ms) |") and not machine.read(os.path.dirname(f.name))
        quoted = "\n".join(row[:row.rstrip(" |").rindex("|") + 1] for row in table)  # the last column left out
        assert quoted in text, f"docs/export.md lacks results/export/{arch}/export_table.md"
        assert "\n".join(table) not in text, "latencies timed on an unrecorded machine are not quoted"


def test_the_deployment_table_joins_each_timed_model_with_its_benchmark(tmp_path):
    speed, deploy, best = tmp_path / "speed", tmp_path / "deploy", tmp_path / "best"
    for folder in (speed, deploy, best):
        folder.mkdir()
    row = {"run_dir": "saved_models/x", "int8_pair_accuracy": 0.99, "float32_pair_accuracy": 0.99, "test_pairs": 1000,
           "ms_per_pair": 0.5}
    (speed / "speed.json").write_text(json.dumps({"threads": 2, "batch": 100, "repeats": 5,
                                                  "budget_multiply_adds": 9_700_000, "rows": [
        dict(row, arch="siamese-prob-distilled", multiply_adds=10_000_000, int8_bytes=102_400, pairs_per_s=2000.0),
        dict(row, arch="siamese-prob-aug-tta-x2", multiply_adds=200_000_000, int8_bytes=512_000, pairs_per_s=100.0)]}))
    (deploy / "rounds.csv").write_text("arch,round,seed,epochs_run,seconds,test_pair_accuracy\n"
                                       "siamese-prob-distilled,0,0,70,10.0,0.98\nsiamese-prob-distilled,1,1,70,10.0,1.0\n")
    (best / "rounds.csv").write_text("arch,round,seed,epochs_run,seconds,test_pair_accuracy\n"
                                     "siamese-prob-aug-tta-x2,0,0,40,10.0,0.99\n")
    quiet_machine(speed)
    header, _, student, teacher = tables.deployment_rows(str(speed), [str(deploy), str(best)])
    assert "multiply-adds per pair" in header and "pairs/s, batch 100, 2 threads" in header
    assert student.startswith("| siamese-prob-distilled | 99.00 ± 1.41 | 2 | 10.00 M (1/20.0) | 100.0 | 2,000 (x20.0) |")
    assert teacher.startswith("| siamese-prob-aug-tta-x2 | 99.00 ± 0.00 | 1 | 200.00 M (1/1.0) | 500.0 | 100 (x1.0) |")
    with pytest.raises(ValueError, match="siamese-prob-distilled has no rounds"):
        tables.deployment_rows(str(speed), [str(best)])
    (deploy / "rounds.csv").write_text("arch,round,seed,epochs_run,seconds,test_pair_accuracy,teacher_test_pair_accuracy\n"
                                       "siamese-prob-distilled,0,0,70,10.0,0.98,0.97\n")
    teacher = tables.deployment_rows(str(speed), [str(deploy), str(best)])[3]
    assert teacher.startswith("| siamese-prob-aug-tta-x2 | 97.00 ± 0.00 | 1 |"), "the teacher's rounds come first"
