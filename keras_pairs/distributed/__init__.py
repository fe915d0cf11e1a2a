"""Independent jobs (the reproduction's rounds, the grid search's folds) run in this process or as
Dask tasks; each finished job is kept on disk, so a stopped command resumes (docs/distributed.md).

``run_jobs(fn, jobs, cluster, store, shared)`` returns ``fn(job, **shared)`` for every job, in job
order. ``fn`` is a module-level function (workers import it by name) that depends only on its
arguments, so any process may run any job. ``Cluster`` says where: serially here (Dask is not even
imported), ``workers`` processes of a ``LocalCluster`` on 127.0.0.1 started and closed here, or a
running ``scheduler``. Dask re-runs a job whose worker died (``allowed-failures``) and a job that
raised once (``RETRIES``); what still fails ends ``run_jobs`` with ``JobsFailed`` naming each job.
``kept_jobs`` is the store: a folder beside the output named after a hash of the settings.
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

RETRIES = 1  # a job that raises is run once more (a passing fault on one machine)
QUIET_COMM = "DASK_DISTRIBUTED__COMM__OFFLOAD"  # =False on every worker (run_on_worker says why)


@dataclass(frozen=True)
class Cluster:
    """``workers`` local processes, or a running ``scheduler`` (tcp:// or tls://), else serial.
    ``threads``: intra-op threads of each Dask worker; ``verbose``: Dask's own log lines too."""

    workers: int = 0
    scheduler: str | None = None
    threads: int = 1
    verbose: bool = False

    @property
    def serial(self) -> bool:
        return not (self.workers or self.scheduler)

    def describe(self) -> str:
        where = f"{self.workers} local worker(s)" if self.workers else f"the Dask scheduler {self.scheduler}"
        return "this process" if self.serial else f"{where}, {self.threads} intra-op thread(s) each"


def cluster_from_flags(workers: int | None = None, scheduler: str | None = None, threads: int | None = None,
                       verbose: int = 0) -> Cluster:
    """--workers / --scheduler (else $DASK_SCHEDULER_ADDRESS); UserError for both, or without Dask."""
    if workers and scheduler:
        raise UserError("--workers starts a cluster here and --scheduler uses a running one: give one of them")
    cluster = Cluster(workers or 0, None if workers else scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None,
                      threads or 1, bool(verbose))
    try:
        if not cluster.serial:
            import distributed  # noqa: F401
    except ImportError:
        raise UserError("--workers and --scheduler need Dask: pip install 'keras_pairs[cluster]'") from None
    return cluster


def job_conditions(cluster: Cluster) -> dict:
    """What the jobs' numbers depend on beyond the caller's settings (so part of the settings that
    name their store, ``kept_jobs``): library versions and the jobs' intra-op threads (0:
    TensorFlow's default)."""
    import keras
    import tensorflow as tf

    env = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    here = tf.config.threading.get_intra_op_parallelism_threads() or (int(env) if env.isdigit() else 0)
    return {"versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
            "intra_op_threads": here if cluster.serial else cluster.threads}


class JobsFailed(FailedCheck):
    """Jobs failed for good; nothing was written but the store (said in full, exit 1)."""


def job_name(job: dict) -> str:
    return " ".join(f"{k} {v}" for k, v in job.items())


def _key(job: dict) -> str:
    return json.dumps(job, sort_keys=True)


@contextlib.contextmanager
def kept_jobs(output: str, settings: dict, fresh: bool = False):
    """Yields the store of the jobs of ``settings`` writing ``output``: ``.<name>.jobs-<hash>`` beside
    it, one pickle per finished job. Other settings get another store, so their jobs never mix;
    ``fresh`` empties it first. Removed when the block (that writes the results) completes."""
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


def run_jobs(fn: Callable, jobs: list[dict], cluster: Cluster, store: str | None = None,
             shared: dict | None = None, summary: Callable[[Any], str] | None = None) -> list:
    """``fn(job, **shared)`` for every job not already in ``store``, in job order; with ``summary``
    (result -> text) one progress line per job as it finishes."""
    shared = shared or {}
    done = {}
    for name in sorted(os.listdir(store)) if store else []:
        if name.endswith(".pkl"):
            with open(os.path.join(store, name), "rb") as f:
                job, result = pickle.load(f)
            done[_key(job)] = result
    todo = [job for job in jobs if _key(job) not in done]
    progress = Progress(len(jobs), len(done), summary)
    if summary and done:
        print(f"{len(jobs) - len(todo)} of {len(jobs)} job(s) already done, kept in {store} (--fresh runs "
              f"them again); running {len(todo)} on {cluster.describe()}", flush=True)

    def finished(job, result):
        if store:  # written whole, then renamed: a job's file is complete or absent
            path = os.path.join(store, hashlib.sha256(_key(job).encode()).hexdigest()[:20] + ".pkl")
            with open(path + ".tmp", "wb") as f:
                pickle.dump((job, result), f)
            os.replace(path + ".tmp", path)
        done[_key(job)] = result
        progress(job, result)

    if cluster.serial:
        for job in todo:
            finished(job, fn(job, **shared))
    elif todo:
        from distributed import Client, as_completed

        if not cluster.verbose:  # the scheduler's and nannies' chatter (a LocalCluster's live here)
            logging.getLogger("distributed").setLevel(logging.ERROR)
        failed = []
        with (local_cluster(cluster.workers, cluster.verbose) if cluster.workers
              else contextlib.nullcontext(cluster.scheduler)) as address, Client(address) as client:
            sent = {name: client.scatter(value, broadcast=True) for name, value in shared.items()}
            futures = client.map(run_on_worker, todo, fn=fn, threads=cluster.threads, pure=False,
                                 retries=RETRIES, **sent)
            which = dict(zip(futures, todo))
            for future, result in as_completed(futures, with_results=True, raise_errors=False):
                if future.status == "error":
                    error = future.exception()
                    failed.append(f"{job_name(which[future])}: {type(error).__name__}: {error}")
                else:
                    finished(which[future], result)
        if failed:
            raise JobsFailed(f"{len(failed)} of {len(jobs)} job(s) failed, so no results were written "
                             f"({len(done)} finished job(s) kept for a rerun): " + "; ".join(failed))
    return [done[_key(job)] for job in jobs]


@contextlib.contextmanager
def local_cluster(workers: int, verbose: bool = False):
    """A ``LocalCluster`` of single-threaded worker processes, every socket on 127.0.0.1, no
    dashboard, its workers started with QUIET_COMM."""
    import dask
    from distributed import LocalCluster

    quiet = {"distributed.comm.offload": False, f"distributed.nanny.pre-spawn-environ.{QUIET_COMM}": "False"}
    with dask.config.set(quiet), LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
            silence_logs=logging.INFO if verbose else logging.ERROR) as cluster:
        yield cluster


def run_on_worker(job: dict, fn: Callable, threads: int, **shared):
    """A job in a Dask worker, with ``threads`` intra-op threads set before TensorFlow's first op.

    Keras layers draw their seeds from Python's global ``random`` (seeded per round), so nothing
    else in the process may draw from it meanwhile. Dask's event-loop thread does when it sizes a
    container of over 10 items (``dask.sizeof`` samples it): every message it sends, unless
    ``distributed.comm.offload`` is off (QUIET_COMM), and every dict or list result. So both are
    refused here: otherwise rounds would differ from the serial loop's by chance.
    """
    import dask
    import tensorflow as tf

    now = tf.config.threading.get_intra_op_parallelism_threads()
    try:
        if now != threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        raise RuntimeError(f"this worker runs TensorFlow with {now} intra-op thread(s), not {threads}: "
                           "restart it") from None
    if dask.config.get("distributed.comm.offload"):
        raise RuntimeError(f"this Dask worker sizes its messages with Python's random module, so rounds would "
                           f"not repeat: start it with {QUIET_COMM}=False")
    result = fn(job, **shared)
    if isinstance(result, (dict, list, tuple, set)):
        raise TypeError(f"{fn.__name__} returned a {type(result).__name__}: return an object (run_on_worker)")
    return result


class Progress:
    """One line per finished job: done/total, the job, ``summary(result)``, elapsed, time left."""

    def __init__(self, total: int, done: int, summary: Callable[[Any], str] | None):
        self.total, self.done, self.resumed, self.summary = total, done, done, summary
        self.start = time.perf_counter()

    def __call__(self, job: dict, result) -> None:
        self.done += 1
        if self.summary:
            elapsed = time.perf_counter() - self.start
            left = elapsed / (self.done - self.resumed) * (self.total - self.done)
            print(f"[{self.done:>{len(str(self.total))}}/{self.total}] {job_name(job)}: {self.summary(result)} "
                  f"| elapsed {clock(elapsed)}, left ~{clock(left)}", file=sys.stdout, flush=True)


def clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"
