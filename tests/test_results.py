"""Results are types: each written to JSON and CSV in one place, and the committed files read back."""

import csv
import json
import os

import pytest

from conftest import ROOT
from keras_pairs import pretrained, results
from keras_pairs.results import (ExportResult, Normalisation, Round, RoundsSummary, RunResult, Scores, SpeedResult,
                                 Summary, TeacherResult, Trial)

SHIPPED = str(pretrained.DIR)


def _round(**kw) -> Round:
    teacher = TeacherResult("siamese-prob-aug-tta-x2", 98.5, Scores(0.993, 0.993, 0.9875), Scores(1.0, 1.0, 0.985))
    values = dict(seed=3, seconds=196.4, epochs_run=70, test=Scores(0.986, 0.984, 0.973),
                  validation=Scores(0.99, 0.99, 0.975), normalisation=Normalisation(33.4, 71.3), teacher=teacher,
                  history=({"epoch": 1, "loss": 0.5},), index=2)
    return Round(**{**values, **kw})


def test_a_round_goes_to_json_and_back_and_its_history_stays_apart():
    r = _round()
    d = r.to_dict()
    assert list(d) == ["round", "seed", "seconds", "epochs_run", "normalisation", "teacher", "test", "validation"]
    assert "history" not in d and d["test"] == {"pair_accuracy": 0.986, "pair_argmax_accuracy": 0.984,
                                                "digit_accuracy": 0.973}
    back = Round.from_dict(json.loads(json.dumps(d)), history=r.history)
    assert back == r and back.history == r.history
    # Fields a model does not have are absent, not null.
    plain = Round(seed=0, seconds=1.0, epochs_run=2, test=Scores(0.8))
    assert plain.to_dict() == {"seed": 0, "seconds": 1.0, "epochs_run": 2, "test": {"pair_accuracy": 0.8}}
    assert Round.from_dict(plain.to_dict()) == plain


def test_a_round_is_one_row_of_rounds_csv():
    row = _round().to_row()
    assert row == {"round": 2, "seed": 3, "epochs_run": 70, "seconds": 196.4, "test_pair_accuracy": 0.986,
                   "test_pair_argmax_accuracy": 0.984, "test_digit_accuracy": 0.973, "val_pair_accuracy": 0.99,
                   "val_pair_argmax_accuracy": 0.99, "val_digit_accuracy": 0.975, "teacher_seconds": 98.5,
                   "teacher_test_pair_accuracy": 0.993, "teacher_test_pair_argmax_accuracy": 0.993,
                   "teacher_test_digit_accuracy": 0.9875}


def test_rounds_written_when_every_round_scored_without_views_still_read():
    old = {"round": 0, "seed": 0, "seconds": 50.0, "epochs_run": 40,
           "test_without_views": {"pair_accuracy": 0.985, "pair_argmax_accuracy": 0.986, "digit_accuracy": 0.98},
           "test": {"pair_accuracy": 0.991, "pair_argmax_accuracy": 0.992, "digit_accuracy": 0.988}}
    r = Round.from_dict(old)
    assert r.test_without_views.pair_accuracy == 0.985 and r.to_dict() == old
    assert r.to_row()["test_without_views_pair_accuracy"] == 0.985
    summary = {key: {"mean": 0.9, "std": 0.01, "min": 0.89, "max": 0.91}
               for key in ("pair_accuracy", "seconds_per_round", "epochs_run")}
    summary["without_views"] = {"pair_accuracy": {"mean": 0.8, "std": 0.0, "min": 0.8, "max": 0.8}}
    read = RoundsSummary.from_dict(summary)
    assert read.without_views["pair_accuracy"] == Summary(0.8, 0.0, 0.8, 0.8) and read.to_dict() == summary


def test_unknown_keys_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"Scores: unknown keys \['pair_acuracy'\]; known: .*pair_accuracy"):
        Scores.from_dict({"pair_acuracy": 0.9})
    with pytest.raises(ValueError, match="unknown keys"):
        Round.from_dict({**_round().to_dict(), "histroy": []})


def test_the_shipped_run_and_its_export_read_and_write_the_same_json():
    with open(os.path.join(SHIPPED, "metrics.json")) as f:
        metrics = json.load(f)
    run = RunResult.from_dict(metrics)
    recorded = pretrained.provenance()["test_pair_accuracy"]  # written by the installer from export.json
    assert run.selected.teacher.arch == "siamese-prob-aug-tta-x2" and run.test.pair_accuracy.mean == recorded
    assert run.to_dict() == metrics
    with open(os.path.join(SHIPPED, "export", "export.json")) as f:
        export = json.load(f)
    exported = ExportResult.from_dict(export)
    assert exported.row("keras").pair_accuracy == recorded and exported.row("keras").latency_ms is None
    assert exported.deployable
    assert exported.to_dict() == export


def test_the_committed_speed_figures_read_and_write_the_same_json():
    with open(os.path.join(ROOT, "results", "export", "speed", "speed.json")) as f:
        speed = json.load(f)
    result = SpeedResult.from_dict(speed)
    assert result.reference.arch == "siamese-prob-aug-tta-x2" and result.to_dict() == speed


@pytest.mark.parametrize("folder", ["results/reproduction", "results/best", "results/deploy"])
def test_committed_rounds_csv_is_what_the_rounds_write(folder):
    """Each committed row, read as a round (numbers as the CSV holds them), is written back unchanged:
    the rows of old runs with their without-views columns as much as the new ones."""
    with open(os.path.join(ROOT, folder, "rounds.csv"), newline="") as f:
        rows = list(csv.DictReader(f))

    def scores(row, prefix):
        values = {k[len(prefix):]: float(v) for k, v in row.items()
                  if k.startswith(prefix) and v != "" and k[len(prefix):] in Scores.__dataclass_fields__}
        return Scores(**values) if values else None

    for row in rows:
        teacher = None
        if row.get("teacher_seconds"):
            teacher = TeacherResult("teacher", float(row["teacher_seconds"]), scores(row, "teacher_test_"))
        r = Round(seed=int(row["seed"]), seconds=float(row["seconds"]), epochs_run=int(row["epochs_run"]),
                  test=scores(row, "test_"), validation=scores(row, "val_"), teacher=teacher,
                  index=int(row["round"]), test_without_views=scores(row, "test_without_views_"))
        written = {"arch": row["arch"], **Round.from_dict(r.to_dict()).to_row()}
        assert {k: str(v) for k, v in written.items()} == {k: v for k, v in row.items() if v != ""}, row


def test_a_trial_is_a_row_of_trials_csv():
    t = Trial({"learning_rate": 0.01, "dropout": 0.25}, 0.9, 0.02)
    assert list(t.to_row()) == ["learning_rate", "dropout", "val_pair_accuracy", "val_pair_accuracy_std"]
    assert Trial.from_row({k: str(v) for k, v in t.to_row().items()}, ["learning_rate", "dropout"]).val_pair_accuracy == 0.9


def test_results_imports_no_tensorflow():
    """The server reads exports through it without TensorFlow."""
    import subprocess
    import sys

    code = "import sys, keras_pairs.results; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", results.__doc__
