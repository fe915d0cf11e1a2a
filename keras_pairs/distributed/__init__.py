"""A list of independent jobs (the reproduction's rounds, the grid search's folds), run in this
process or as tasks on a Dask cluster, each finished job kept on disk so a stopped run resumes.

``run_jobs(fn, jobs, cluster, store, shared)`` returns ``fn(job, **shared)`` for every job, in job
order. ``fn`` is a module-level function (Dask workers import it by name) that depends only on its
arguments, so any process may run any job and gives the same result.

Where the jobs run (``Cluster``):

  serial          this process, one job after another; Dask is not even imported;
  workers=N       a ``distributed.LocalCluster`` of N worker processes on 127.0.0.1 (no
                  dashboard), started here and closed at the end, Ctrl-C included;
  scheduler=ADDR  a Dask cluster someone started (``dask scheduler``, ``dask worker ADDR``).

Each Dask worker process imports TensorFlow once and runs many jobs, with ``threads`` intra-op
threads (default 1, so N workers use N cores). ``shared`` values (digits, settings) reach each
worker once (``Client.scatter``). Faults are left to Dask: a job whose worker dies is run again
elsewhere (the scheduler's ``allowed-failures``, 3); a job that raises is retried once
(``retries``), then the run ends with ``JobsFailed`` naming every failed job and its error.

``kept_jobs(output, settings)`` is the store: a folder beside ``output`` named after a hash of
the settings, one pickle per finished job written as it arrives. The same command run again
(same settings, so the same store) runs only the missing jobs; other settings get another store,
so results never mix; ``fresh`` deletes the store first. It is removed once the block that writes
the results completes. docs/distributed.md tells the whole story.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import FailedCheck, UserError

RETRIES = 1  # a job that raises is run once more (a worker that dies does not count: Dask re-runs it)
QUIET_COMM = "DASK_DISTRIBUTED__COMM__OFFLOAD"  # =False on workers (run_on_worker says why)
MISSING_DASK = "--workers and --scheduler need Dask: pip install 'keras_pairs[cluster]'"


@dataclass(frozen=True)
class Cluster:
    """Where jobs run (module doc): ``workers`` local processes, or a running ``scheduler``
    (tcp://HOST:PORT or tls://HOST:PORT), else serially here. ``threads``: intra-op threads of
    each Dask worker. ``verbose``: let Dask's own log lines through."""

    workers: int = 0
    scheduler: str | None = None
    threads: int = 1
    verbose: bool = False

    @property
    def serial(self) -> bool:
        return not (self.workers or self.scheduler)

    def describe(self) -> str:
        if self.serial:
            return "this process"
        where = f"{self.workers} local worker(s)" if self.workers else f"the Dask scheduler {self.scheduler}"
        return f"{where}, {self.threads} intra-op thread(s) each"


def cluster_from_flags(workers: int | None = None, scheduler: str | None = None, threads: int | None = None,
                       verbose: int = 0) -> Cluster:
    """The Cluster of --workers / --scheduler (else DASK_SCHEDULER_ADDRESS), else serial; raises
    ValueError when both are given, or when Dask is needed and not installed."""
    if workers and scheduler:
        raise UserError("--workers starts a cluster here and --scheduler uses a running one: give one of them")
    scheduler = scheduler or (None if workers else os.environ.get("DASK_SCHEDULER_ADDRESS") or None)
    cluster = Cluster(workers or 0, scheduler, threads or 1, bool(verbose))
    if not cluster.serial:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UserError(MISSING_DASK) from None
    return cluster


def run_conditions(cluster: Cluster) -> dict:
    """What the jobs' numbers depend on beyond the caller's settings: the library versions and the
    intra-op threads the jobs run with (0: TensorFlow's default, every core)."""
    import keras
    import tensorflow as tf

    env = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    here = tf.config.threading.get_intra_op_parallelism_threads() or (int(env) if env.isdigit() else 0)
    return {"versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
            "intra_op_threads": here if cluster.serial else cluster.threads}


class JobsFailed(FailedCheck):
    """Jobs raised (each twice) or killed their workers; nothing was written but the finished
    jobs' store. The command lines say so in full and exit with 1 (``errors.FailedCheck``)."""


def job_name(job: dict) -> str:
    return " ".join(f"{k} {v}" for k, v in job.items())


def _job_key(job: dict) -> str:
    return json.dumps(job, sort_keys=True)


@contextlib.contextmanager
def kept_jobs(output: str, settings: dict, fresh: bool = False):
    """Yields the store folder of a run of ``settings`` writing ``output`` (module doc)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    parent, name = os.path.split(os.path.abspath(output))
    store = os.path.join(parent, f".{name}.jobs-{hashlib.sha256(text.encode()).hexdigest()[:12]}")
    if fresh:
        shutil.rmtree(store, ignore_errors=True)
    os.makedirs(store, exist_ok=True)
    with open(os.path.join(store, "settings.json"), "w") as f:
        f.write(text + "\n")
    yield store
    shutil.rmtree(store, ignore_errors=True)


def _load(store: str | None) -> dict[str, Any]:
    done = {}
    for name in sorted(os.listdir(store)) if store else []:
        if name.endswith(".pkl"):
            with open(os.path.join(store, name), "rb") as f:
                job, result = pickle.load(f)
            done[_job_key(job)] = result
    return done


def _keep(store: str | None, job: dict, result) -> None:
    if store:  # written whole, then renamed: a job file is complete or absent
        path = os.path.join(store, hashlib.sha256(_job_key(job).encode()).hexdigest()[:20] + ".pkl")
        with open(path + ".tmp", "wb") as f:
            pickle.dump((job, result), f)
        os.replace(path + ".tmp", path)


def run_jobs(fn: Callable, jobs: list[dict], cluster: Cluster, store: str | None = None,
             shared: dict | None = None, summary: Callable[[Any], str] | None = None, stream=None) -> list:
    """``fn(job, **shared)`` for every job (module doc), in job order.

    Args:
      store: the folder of ``kept_jobs``; jobs found there are not run again.
      summary: ``result -> text`` for the progress line printed as each job finishes (None: silent).
    """
    shared, stream = shared or {}, stream or sys.stdout
    done = _load(store)
    todo = [job for job in jobs if _job_key(job) not in done]
    progress = Progress(len(jobs), len(jobs) - len(todo), summary, stream)
    if summary and len(todo) < len(jobs):
        print(f"{len(jobs) - len(todo)} of {len(jobs)} job(s) already done in {store} (kept; --fresh starts "
              f"afresh); running {len(todo)} on {cluster.describe()}", file=stream, flush=True)

    def finished(job, result):
        _keep(store, job, result)
        done[_job_key(job)] = result
        progress(job, result)

    if cluster.serial:
        for job in todo:
            finished(job, fn(job, **shared))
    elif todo:
        failed = []
        with _client(cluster) as client:
            sent = {name: client.scatter(value, broadcast=True) for name, value in shared.items()}
            futures = client.map(run_on_worker, todo, fn=fn, threads=cluster.threads, pure=False,
                                 retries=RETRIES, **sent)
            which = dict(zip(futures, todo))
            from distributed import as_completed

            for future, result in as_completed(futures, with_results=True, raise_errors=False):
                if future.status == "error":
                    error = future.exception()
                    failed.append(f"{job_name(which[future])}: {type(error).__name__}: {error}")
                else:
                    finished(which[future], result)
        if failed:
            raise JobsFailed(f"{len(failed)} of {len(jobs)} job(s) failed, so no results were written "
                             f"({len(done)} finished job(s) kept for a rerun): " + "; ".join(failed))
    return [done[_job_key(job)] for job in jobs]


@contextlib.contextmanager
def _client(cluster: Cluster):
    import dask
    from distributed import Client, LocalCluster

    if not cluster.verbose:  # scheduler and nanny chatter (the nannies of a LocalCluster live here)
        logging.getLogger("distributed").setLevel(logging.ERROR)
    quiet = logging.INFO if cluster.verbose else logging.ERROR
    if cluster.workers:
        quiet_comm = {"distributed.comm.offload": False, f"distributed.nanny.pre-spawn-environ.{QUIET_COMM}": "False"}
        with dask.config.set(quiet_comm), LocalCluster(n_workers=cluster.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=quiet) as local, Client(local) as client:
            yield client
    else:
        with Client(cluster.scheduler) as client:
            yield client


def run_on_worker(job: dict, fn: Callable, threads: int, **shared):
    """A job in a Dask worker: sets TensorFlow's intra-op threads before its first op.

    Keras layers draw their seeds from Python's global ``random`` (seeded by
    ``keras.utils.set_random_seed``), so nothing else in the process may draw from it during a job.
    Dask's event-loop thread does when it measures a container of over 10 items (``dask.sizeof``
    samples it): every message it sends unless ``distributed.comm.offload`` is off (QUIET_COMM in
    the worker's environment; set for local workers, checked here), and every result that is a
    dict or list (so results are objects). Otherwise rounds differ from the serial run's by chance.
    """
    import tensorflow as tf

    now = tf.config.threading.get_intra_op_parallelism_threads()
    if now != threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:
            raise RuntimeError(f"this worker already runs TensorFlow with {now} intra-op thread(s), not "
                               f"{threads}: restart it (dask worker) or ask for {now}") from None
    import dask

    if dask.config.get("distributed.comm.offload"):
        raise RuntimeError(f"this Dask worker measures its messages with Python's random module, which makes "
                           f"rounds differ from the serial run's: start it with {QUIET_COMM}=False")
    result = fn(job, **shared)
    if isinstance(result, (dict, list, tuple, set)):
        raise TypeError(f"{fn.__name__} returned a {type(result).__name__}: return an object (see run_on_worker)")
    return result


class Progress:
    """One line per finished job: done/total, the job, ``summary(result)``, elapsed, time left."""

    def __init__(self, total: int, done: int, summary: Callable[[Any], str] | None, stream):
        self.total, self.done, self.resumed = total, done, done
        self.summary, self.stream = summary, stream
        self.start = time.perf_counter()

    def __call__(self, job: dict, result) -> None:
        self.done += 1
        if self.summary:
            elapsed = time.perf_counter() - self.start
            left = elapsed / (self.done - self.resumed) * (self.total - self.done)
            width = len(str(self.total))
            print(f"[{self.done:>{width}}/{self.total}] {job_name(job)}: {self.summary(result)} | elapsed "
                  f"{clock(elapsed)}, left ~{clock(left)}", file=self.stream, flush=True)


def clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"
