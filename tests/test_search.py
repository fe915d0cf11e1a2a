"""Grid search: the reports' grids, k-fold splits, hyperparameter application, a tiny real search."""

import csv
import json
import os

import numpy as np
import pytest

from keras_pairs import cli, grids, search
from keras_pairs.architectures import get_arch
from keras_pairs.config import Protocol


def test_presets_are_the_reports_grids():
    a, b = grids.PRESETS["reportA"], grids.PRESETS["reportB"]
    assert a["folds"] == 10 and a["grid"]["learning_rate"] == [0.01, 0.1, 1.0]
    assert np.prod([len(v) for v in a["grid"].values()]) == 108
    assert b["grid"] == {"learning_rate": [0.01, 0.005, 0.001, 0.0005, 0.0001],
                         "dropout": [0.25, 0.1, 0.05, 0.001]}
    for preset in grids.PRESETS.values():  # every grid point gives a valid architecture
        arch = get_arch(preset["arch"])
        grids.apply_hyperparameters(arch, {k: v[-1] for k, v in preset["grid"].items()})


def test_kfold_holds_out_every_pair_once():
    folds = grids.kfold_indices(23, 4, np.random.default_rng(0))
    held = np.concatenate([val for _, val in folds])
    assert sorted(held) == list(range(23))
    for fit, val in folds:
        assert not set(fit) & set(val) and len(fit) + len(val) == 23
    with pytest.raises(ValueError, match="folds"):
        grids.kfold_indices(5, 1, np.random.default_rng(0))


def test_apply_hyperparameters():
    arch = grids.apply_hyperparameters(get_arch("baseline"),
                                        {"conv1": 16, "conv2": 32, "hidden_units": 32, "learning_rate": 0.01})
    assert arch.encoder.conv_filters == (16, 32) and arch.encoder.hidden_units == (32, 32)
    assert arch.learning_rate == 0.01
    assert grids.apply_hyperparameters(get_arch("v5"), {"dropout": 0.05}).encoder.dropout == 0.05
    with pytest.raises(ValueError, match="valid"):
        grids.apply_hyperparameters(get_arch("v5"), {"momentum": 0.9})


def test_tiny_grid_search_writes_a_best_config_train_py_reads(mnist, tmp_path):
    out = str(tmp_path / "search")
    cfg = search.SearchConfig(arch="v5", grid={"learning_rate": [0.001, 0.01]}, folds=2, epochs=1,
                              protocol=Protocol(nb_train=40), output=out)
    result = search.grid_search(cfg, mnist=mnist)
    assert len(result.trials) == 2
    scores = [t.val_pair_accuracy for t in result.trials]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert result.best.learning_rate == result.trials[0].values["learning_rate"] == result.best_values["learning_rate"]
    assert result.best.epochs == get_arch("v5").epochs  # epochs of the search are not the model's
    assert {"trials.csv", "table.md", "best_config.json"} <= set(os.listdir(out))
    with open(os.path.join(out, "trials.csv")) as f:
        assert len(list(csv.DictReader(f))) == 2
    # best_config.json is v5 with the winning learning rate and v5's own schedule, as train.py reads it.
    best = cli.load_arch_file(os.path.join(out, "best_config.json"))
    v5 = get_arch("v5")
    assert (best.encoder, best.head, best.epochs, best.optimizer) == (v5.encoder, v5.head, 25, v5.optimizer)
    with open(os.path.join(out, "trials.csv")) as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["learning_rate"]) == best.learning_rate


def test_train_py_config_flag(tmp_path):
    import dataclasses

    from keras_pairs.commands import train

    path = tmp_path / "arch.json"
    arch = dataclasses.replace(get_arch("v6"), learning_rate=0.0005, reference=None)
    path.write_text(json.dumps(arch.to_dict()))
    cfg = cli.train_config(train.build_parser().parse_args(["--config", str(path), "--epochs", "3"]))
    assert cfg.arch == dataclasses.replace(arch, epochs=3)
    path.write_text(json.dumps({**arch.to_dict(), "colour": "red"}))
    with pytest.raises(ValueError, match="colour"):
        cli.train_config(train.build_parser().parse_args(["--config", str(path)]))


def test_search_cli_rejects_bad_grid(capsys):
    import search as search_cli

    assert search_cli.main(["--arch", "v5", "--grid", "momentum=0.9"]) == 2
    assert "unknown hyperparameter" in capsys.readouterr().err


def test_search_config_is_strict():
    with pytest.raises(ValueError, match="unknown preset 'reportC'"):
        search.SearchConfig(preset="reportC").validate()
    with pytest.raises(ValueError, match="both an architecture and a grid"):
        search.SearchConfig(arch="v5").validate()
    with pytest.raises(ValueError, match="nb_train must be >= 1"):
        search.SearchConfig(preset="reportB", protocol=Protocol(nb_train=0)).validate()
    preset = search.SearchConfig(preset="reportB").validate()  # the preset fills what is not given
    assert (preset.arch_name, preset.nb_folds, preset.output_dir) == (
        grids.PRESETS["reportB"]["arch"], grids.PRESETS["reportB"]["folds"],
        os.path.join("results", "search", f"reportB-{grids.PRESETS['reportB']['arch']}"))
