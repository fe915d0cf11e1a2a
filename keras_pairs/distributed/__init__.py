"""Independent jobs (the reproduction's rounds, the grid search's folds) run in this process or as
Dask tasks; each finished job is kept on disk, so a stopped command resumes (docs/distributed.md).

``run_jobs(fn, jobs, cluster, store, shared)`` returns ``fn(job, **shared)`` for every job, in job
order. ``fn`` is a module-level function (workers import it by name) that depends only on its
arguments, so any process may run any job: a round's seeds reach every random layer explicitly
(``models.LayerSeeds``), so nothing a worker's own threads do can move its numbers. ``Cluster``
says where: serially here (Dask is not even imported), ``workers`` processes of a ``LocalCluster``
on 127.0.0.1 started and closed here, or a running ``scheduler``; each worker runs one job at a
time with ``threads`` TensorFlow threads (``threads.py``). Dask re-runs a job whose worker died
(``allowed-failures``) and a job that raised once (``RETRIES``); what still fails ends
``run_jobs`` with ``JobsFailed`` naming each job.

``kept_jobs`` is the store: a folder beside the output, named after a hash of everything the
jobs' numbers depend on (the caller's settings and ``job_conditions``: library versions, a hash
of keras_pairs' sources, the threads), holding one JSON record per finished job, read back
through ``results.load`` into the jobs' result type. Nothing in it is ever executed.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from .. import threads as tf_threads
from ..errors import FailedCheck, UserError

RETRIES = 1  # a job that raises is run once more (a passing fault on one machine)
# Dask's statistical profiler walks every thread's stack each 10 ms on the worker's event loop,
# taking the GIL from the training thread; nothing here reads its profiles. (Turning it off did not
# measurably change a worker's rounds, which stay ~15 % slower than serial ones: docs/distributed.md.)
PROFILER = "distributed.worker.profile.enabled"
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # keras_pairs/
SETTINGS = "settings.json"  # the store's settings, for a reader: the one file that is no job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cluster:
    """``workers`` local processes, or a running ``scheduler`` (tcp:// or tls://), else serial.
    ``threads``: TensorFlow threads per pool of each Dask worker; ``verbose``: Dask's own log lines too."""

    workers: int = 0
    scheduler: str | None = None
    threads: int = 1
    verbose: bool = False

    @property
    def serial(self) -> bool:
        return not (self.workers or self.scheduler)

    def describe(self) -> str:
        where = f"{self.workers} local worker(s)" if self.workers else f"the Dask scheduler {self.scheduler}"
        return "this process" if self.serial else f"{where}, {self.threads} TensorFlow thread(s) each"


def cluster_from_flags(workers: int | None = None, scheduler: str | None = None, threads: int | None = None,
                       verbose: int = 0) -> Cluster:
    """--workers / --scheduler (else $DASK_SCHEDULER_ADDRESS) and --threads (default 1 per worker);
    UserError for both, for local workers x threads beyond the cores, or without Dask."""
    if workers and scheduler:
        raise UserError("--workers starts a cluster here and --scheduler uses a running one: give one of them")
    cluster = Cluster(workers or 0, None if workers else scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None,
                      threads or 1, bool(verbose))
    if cluster.workers:
        tf_threads.check_budget(cluster.workers, cluster.threads)
    try:
        if not cluster.serial:
            import distributed  # noqa: F401
    except ImportError:
        raise UserError("--workers and --scheduler need Dask: pip install 'keras_pairs[cluster]'") from None
    return cluster


def source_hash() -> str:
    """A hash of every Python source of keras_pairs: any change of the training code changes it."""
    digest = hashlib.sha256()
    for folder, dirs, names in sorted(os.walk(PACKAGE)):
        dirs.sort()
        for name in sorted(n for n in names if n.endswith(".py")):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, PACKAGE).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(f.read() + b"\0")
    return digest.hexdigest()[:16]


def job_conditions(cluster: Cluster) -> dict:
    """What the jobs' numbers depend on beyond the caller's settings (so part of the settings that
    name their store, ``kept_jobs``): library versions, keras_pairs' version and sources, and the
    jobs' TensorFlow threads (0: TensorFlow's default)."""
    import keras
    import numpy
    import tensorflow as tf

    from .. import __version__

    here = tf_threads.configured()
    threads = here if cluster.serial else {k: cluster.threads for k in here}
    return {"versions": {"keras_pairs": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                         "numpy": numpy.__version__, "python": platform.python_version()},
            "code": source_hash(), **threads}


class JobsFailed(FailedCheck):
    """Jobs failed for good; nothing was written but the store (said in full, exit 1)."""


def job_name(job: dict) -> str:
    return " ".join(f"{k} {v}" for k, v in job.items())


def _key(job: dict) -> str:
    return json.dumps(job, sort_keys=True)


@dataclass(frozen=True)
class JobStore:
    """The finished jobs of one set of settings: ``folder`` holds one JSON record per job,
    ``{"store": key, "job": ..., "result": results.dump(result)}``, written whole then renamed."""

    folder: str
    key: str
    result_type: type

    def path(self, job: dict) -> str:
        return os.path.join(self.folder, hashlib.sha256(_key(job).encode()).hexdigest()[:20] + ".json")

    def save(self, job: dict, result) -> None:
        from ..files import write_json
        from ..results import dump

        path = self.path(job)
        write_json(path + ".tmp", {"store": self.key, "job": job, "result": dump(result)})
        os.replace(path + ".tmp", path)

    def finished(self) -> dict[str, Any]:
        """The kept results by job key. A file that is not such a record of these settings is said
        in one line and left out: its job runs again."""
        from ..results import load

        done = {}
        for name in sorted(os.listdir(self.folder)):
            if name == SETTINGS:
                continue
            try:
                if not name.endswith(".json"):
                    raise ValueError("not a JSON job record (only those are read)")
                with open(os.path.join(self.folder, name)) as f:
                    record = json.load(f)
                if not isinstance(record, dict) or record.get("store") != self.key:
                    raise ValueError("written by other code or settings")
                done[_key(record["job"])] = load(self.result_type, record["result"])
            except (OSError, ValueError, TypeError, KeyError) as err:
                why = f"not valid JSON ({err})" if isinstance(err, json.JSONDecodeError) else str(err) or type(err).__name__
                print(f"ignoring {os.path.join(self.folder, name)}: {why}; its job runs again", file=sys.stderr,
                      flush=True)
        return done


@contextlib.contextmanager
def kept_jobs(output: str, settings: dict, result_type: type, fresh: bool = False):
    """Yields the ``JobStore`` of the jobs of ``settings`` writing ``output``: ``.<name>.jobs-<hash>``
    beside it. Other settings, code or libraries get another store, so their jobs never mix;
    ``fresh`` empties it first. When the block (that writes the results) completes, the stores of
    ``output`` are removed, those left by interrupted runs with other settings too."""
    text = json.dumps(settings, sort_keys=True, default=str)
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    parent, name = os.path.split(os.path.abspath(output))
    store = JobStore(os.path.join(parent, f".{name}.jobs-{key}"), key, result_type)
    if fresh:
        shutil.rmtree(store.folder, ignore_errors=True)
    os.makedirs(store.folder, exist_ok=True)
    with open(os.path.join(store.folder, SETTINGS), "w") as f:
        f.write(text + "\n")
    yield store
    for folder in glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(name)}.jobs-*")):
        shutil.rmtree(folder, ignore_errors=True)


def run_jobs(fn: Callable, jobs: list[dict], cluster: Cluster, store: JobStore | None = None,
             shared: dict | None = None, summary: Callable[[Any], str] | None = None,
             group: Callable[[dict], Any] | None = None) -> list:
    """``fn(job, **shared)`` for every job not already in ``store``, in job order; with ``summary``
    (result -> text) one progress line per job as it finishes. Jobs of one ``group`` (job -> key:
    the rounds of one architecture, which share its compiled model) go to one Dask worker where
    they can (``placement``)."""
    shared = shared or {}
    done = store.finished() if store else {}
    todo = [job for job in jobs if _key(job) not in done]
    progress = Progress(len(jobs), len(jobs) - len(todo), summary)
    if summary and len(todo) < len(jobs):
        print(f"{len(jobs) - len(todo)} of {len(jobs)} job(s) already done, kept in {store.folder} (--fresh runs "
              f"them again); running {len(todo)} on {cluster.describe()}", flush=True)

    def finished(job, result):
        if store:
            store.save(job, result)
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
        with (local_cluster(cluster.workers, cluster.threads, cluster.verbose) if cluster.workers
              else contextlib.nullcontext(cluster.scheduler)) as address, Client(address) as client:
            sent = {name: client.scatter(value, broadcast=True) for name, value in shared.items()}
            client.wait_for_workers(1)
            where = placement(todo, group, sorted(client.scheduler_info()["workers"]))
            # In job order on every worker (priority): a worker that interleaved two architectures
            # would compile each again for every round (training.compiled keeps the last one).
            futures = [client.submit(run_on_worker, job, fn=fn, threads=cluster.threads, pure=False,
                                     retries=RETRIES, workers=worker, allow_other_workers=worker is not None,
                                     priority=len(todo) - i, **sent)
                       for i, (job, worker) in enumerate(zip(todo, where))]
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


def placement(jobs: list[dict], group: Callable[[dict], Any] | None, workers: list[str]) -> list:
    """The worker each job should run on: every job of a group on one worker, the groups spread
    so that each worker gets about as many jobs (largest group first, to the least loaded worker).
    A worker that runs out of its own jobs still takes others' (Dask's work stealing), so this
    only spares compiling one architecture on every worker. None without groups."""
    if group is None or not workers:
        return [None] * len(jobs)
    load, where = dict.fromkeys(workers, 0), {}
    for key, n in Counter(group(job) for job in jobs).most_common():
        where[key] = min(load, key=load.get)
        load[where[key]] += n
    return [[where[group(job)]] for job in jobs]


@contextlib.contextmanager
def local_cluster(workers: int, threads: int = 1, verbose: bool = False):
    """A ``LocalCluster`` of ``workers`` processes running one job at a time, every socket on
    127.0.0.1, no dashboard, no profiler (``PROFILER``); each worker's TensorFlow gets ``threads``
    threads per pool through its environment, set before the process starts
    (``distributed.nanny.pre-spawn-environ``)."""
    import dask
    from distributed import LocalCluster

    environ = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in tf_threads.environ(threads).items()}
    environ[PROFILER] = False
    before = dict(os.environ)  # a nanny copies what it hands its worker into this process's environment
    try:
        with dask.config.set(environ), LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                silence_logs=logging.INFO if verbose else logging.ERROR) as cluster:
            yield cluster
    finally:
        os.environ.clear()
        os.environ.update(before)


def run_on_worker(job: dict, fn: Callable, threads: int, **shared):
    """A job in a Dask worker, with ``threads`` TensorFlow threads per pool (``threads.apply``).

    A worker must run one job at a time: TensorFlow's pools, its global seed and Keras' state are
    the process's, so two rounds side by side in one process would share them.
    """
    from distributed import get_worker

    running = get_worker().state.nthreads
    if running != 1:
        raise RuntimeError(f"this Dask worker runs {running} tasks at once: start it with --nthreads 1 "
                           f"(--nworkers N for more processes; docs/distributed.md)")
    env = {k: os.environ.get(k) for k in tf_threads.environ(threads)}
    if any(v is not None and v != str(threads) for v in env.values()):
        log.warning("keras_pairs: this worker's environment asks TensorFlow for %s; the jobs ask for %d thread(s)",
                    ", ".join(f"{k}={v}" for k, v in env.items()), threads)
    try:
        tf_threads.apply(threads)
    except tf_threads.ThreadsFixed as err:
        raise RuntimeError(str(err)) from None
    return fn(job, **shared)


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
