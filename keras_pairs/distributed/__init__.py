"""Many independent trainings over worker processes, on one machine or several: KerasTuner's oracle.

The reproduction (architecture x round) and the grid search (configuration x fold) are lists of
independent trials. ``run_trials`` runs such a list in one of three roles (``Cluster``):

  serial  this process runs every trial (KerasTuner in-process, no network);
  chief   this process serves KerasTuner's oracle over gRPC (KerasTuner's own servicer and
          protocol) and trains nothing: workers ask it for the next trial and hand back results.
          With ``local_workers`` it also starts that many workers on this machine;
  worker  this process asks the chief at HOST:PORT for trials until the chief says stop.

The engine is KerasTuner 1.4's distributed oracle: its ``Oracle`` keeps the trial records, hands
trials out, re-queues a failed one (``max_retries_per_trial``) and saves every trial to disk; its
``OracleServicer``/``OracleClient`` carry the calls. What this module adds is what KerasTuner
lacks for long unattended runs:

* ``TrialOracle.populate_space`` hands out the fixed list in order. KerasTuner's ``GridSearch``
  oracle derives each grid point from a FINISHED trial, so with several workers all but one
  would wait: it runs a grid one trial at a time.
* A trial's result travels to the chief inside KerasTuner's own EndTrial call, as a JSON value
  (``PAYLOAD``) added to the trial's hyperparameter values; the chief's oracle takes it out before
  KerasTuner's bookkeeping and keeps it as the trial's message (so it is in trial.json too).
* Every process stops by itself. The chief's own wait loop replaces KerasTuner's
  (``oracle_chief.start_server`` sleeps 20 s per check and never ends while a dead worker holds a
  trial, keras-tuner #915): a worker that exits or stays silent for ``Cluster.timeout`` seconds
  loses its trial, which goes back to the queue; with no worker left the run ends and lists the
  missing trials. Workers tell the chief every few seconds that they are alive (a GetTrial call)
  and give up on a chief that has not answered for ``timeout`` seconds (KerasTuner's client would
  wait an hour per call, keras-tuner #990).
* A run identity (``RUN``: the settings and a fresh id) sits in the oracle's space: a worker with
  other settings is refused before it trains, and a result of another run is ignored, so a
  results folder never mixes two runs.
"""

from __future__ import annotations

import _thread
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass
from typing import Callable

import grpc
import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.engine.base_tuner import BaseTuner
from keras_tuner.engine.trial import TrialStatus
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief, oracle_client

from ..runs import json_default
from .oracle import PAYLOAD, POLL_SECONDS, RUN, SCORE, TrialOracle, describe, point_values

log = logging.getLogger(__name__)

DRAIN_SECONDS = 15  # after the last trial: how long the chief waits for workers to hear "stop"
DEFAULT_TIMEOUT = 120.0
MAX_MESSAGE = 64 * 1024 * 1024


@dataclass(frozen=True)
class Cluster:
    """This process's part in a run (module doc). ``port`` 0 lets a chief pick a free port;
    ``worker_command`` is the argv a chief runs for each local worker (the address is appended
    as ``--worker HOST:PORT``)."""

    role: str = "serial"
    host: str = "127.0.0.1"
    port: int = 0
    local_workers: int = 0
    remote_workers: bool = False
    worker_command: tuple[str, ...] = ()
    tuner_id: str = ""
    timeout: float = DEFAULT_TIMEOUT


def parse_address(text: str, flag: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{flag} expects HOST:PORT (e.g. 127.0.0.1:8000), got {text!r}")
    return host, int(port)


def cluster_from_flags(workers: int | None = None, chief: str | None = None, worker: str | None = None,
                       worker_command=(), timeout: float = DEFAULT_TIMEOUT) -> Cluster:
    """The Cluster of ``--workers N`` / ``--chief HOST:PORT`` / ``--worker HOST:PORT``, else of
    KerasTuner's variables (KERASTUNER_TUNER_ID "chief" or a worker id, KERASTUNER_ORACLE_IP,
    KERASTUNER_ORACLE_PORT), else serial."""
    env = os.environ
    if worker:
        if workers or chief:
            raise ValueError("--worker makes this process one worker; drop --workers and --chief")
        host, port = parse_address(worker, "--worker")
        return Cluster("worker", host, port, tuner_id=env.get("KERASTUNER_TUNER_ID") or default_tuner_id(),
                       timeout=timeout)
    if chief or workers:
        host, port = parse_address(chief, "--chief") if chief else ("127.0.0.1", 0)
        return Cluster("chief", host, port, local_workers=workers or 0, remote_workers=bool(chief),
                       worker_command=tuple(worker_command), timeout=timeout)
    if env.get("KERASTUNER_ORACLE_IP"):
        tuner_id = env.get("KERASTUNER_TUNER_ID", "")
        port = env.get("KERASTUNER_ORACLE_PORT", "")
        if not tuner_id or not port.isdigit():
            raise ValueError("KERASTUNER_ORACLE_IP is set: set KERASTUNER_ORACLE_PORT (a number) and "
                             "KERASTUNER_TUNER_ID (chief, or a unique worker id) too")
        if "chief" in tuner_id:  # KerasTuner's own rule (keras_tuner.src.distribute.utils)
            return Cluster("chief", env["KERASTUNER_ORACLE_IP"], int(port), remote_workers=True,
                           worker_command=tuple(worker_command), timeout=timeout)
        return Cluster("worker", env["KERASTUNER_ORACLE_IP"], int(port), tuner_id=tuner_id, timeout=timeout)
    return Cluster()


def default_tuner_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def worker_command(script: str, argv: list[str]) -> list[str]:
    """The command line of a local worker: the chief's own, without --workers and --chief."""
    return [sys.executable, os.path.abspath(script), *strip_flags(argv, ("--workers", "--chief"))]


def strip_flags(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """``argv`` without ``flags`` and their values (``--flag value`` or ``--flag=value``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in flags:
            skip = True
        elif not arg.startswith(tuple(f + "=" for f in flags)):
            out.append(arg)
    return out


# --- the tuner (serial run and workers) ----------------------------------------------------------


class TrialTuner(BaseTuner):
    """Runs trials with ``trial_fn(values) -> result`` (a JSON-able dict with a float "score").

    In a worker, KerasTuner replaces ``self.oracle`` with its gRPC client to the chief (the
    KERASTUNER_* variables are set by ``work``)."""

    def __init__(self, oracle: TrialOracle, trial_fn: Callable[[dict], dict], directory: str,
                 overwrite: bool, fail_fast: bool = False):
        super().__init__(oracle, directory=directory, project_name="tuner", overwrite=overwrite)
        self.trial_fn, self.fail_fast = trial_fn, fail_fast
        self.current_trial_id: str | None = None
        self.trials_run = 0
        self.worker_id: str | None = None  # set on a worker: it then logs each trial it begins
        self._asked = False

    def pre_create_trial(self):
        """KerasTuner asks again at once when the oracle answers IDLE (others' trials still
        running): pause between two such asks instead of spinning."""
        if self._asked:
            time.sleep(POLL_SECONDS)
        self._asked = True

    def on_trial_begin(self, trial):
        self._asked = False
        self.current_trial_id = trial.trial_id
        if self.worker_id:
            log.info("worker %s: begins trial %s (%s)", self.worker_id, trial.trial_id, describe(point_values(trial)))

    def run_trial(self, trial, *args, **kwargs):
        result = self.trial_fn(point_values(trial))
        trial.hyperparameters.values[PAYLOAD] = json.dumps(result, default=json_default)
        return {SCORE: float(result[SCORE])}

    def on_trial_end(self, trial):
        if self.fail_fast and trial.status != TrialStatus.COMPLETED:  # serial: no other worker to retry
            raise RuntimeError(f"trial {describe(point_values(trial))} failed:\n{trial.message}")
        super().on_trial_end(trial)
        self.current_trial_id = None
        self.trials_run += 1


# --- roles ---------------------------------------------------------------------------------------


def run_trials(points: list[dict], settings: dict, trial_fn: Callable[[dict], dict], cluster: Cluster,
               directory: str | None = None, overwrite: bool = True,
               on_result: Callable[[dict, dict], None] | None = None) -> list[dict] | None:
    """Runs every point once with ``trial_fn`` in this process's role; returns the results in the
    order of ``points`` on the serial run and the chief (MissingTrials if some did not finish),
    None on a worker.

    Args:
      points: the trials, each a dict of JSON-able values handed to ``trial_fn``.
      settings: everything the results depend on (the library versions are added); workers must
        have the same.
      directory: where the chief keeps KerasTuner's project (``directory/tuner``; default a
        temporary folder); with ``overwrite`` False an existing project is resumed.
      on_result: ``(values, result)`` on the serial run or chief as each trial finishes.
    """
    settings = json.loads(json.dumps({**settings, "versions": versions()}, default=json_default))
    if cluster.role == "worker":
        work(cluster, settings, trial_fn)
        return None
    with tempfile.TemporaryDirectory(prefix="keras_pairs-chief-") as scratch:
        run = json.dumps({"settings": settings, "id": uuid.uuid4().hex})
        oracle = TrialOracle(points, run, on_result)
        tuner = TrialTuner(oracle, trial_fn, directory or scratch, overwrite, fail_fast=cluster.role == "serial")
        check_settings(run_settings(oracle.hyperparameters.values.get(RUN)), settings,
                       f"the project in {os.path.join(directory or scratch, 'tuner')}", "drop --resume to start afresh")
        if cluster.role == "chief":
            serve(oracle, cluster)
        else:
            tuner.search()
        return oracle.results()


def versions() -> dict:
    """The libraries whose versions change the numbers."""
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "keras_tuner": keras_tuner.__version__}


def run_settings(run: str | None) -> dict:
    """The settings inside a run identity (none for a project this module did not make)."""
    return json.loads(run).get("settings", {}) if run else {}


def check_settings(theirs: dict, ours: dict, where: str, advice: str) -> None:
    """Raises when another run's settings differ from ours, naming each difference."""
    if theirs != ours:
        diff = [f"{k} is {ours.get(k)!r} here and {theirs.get(k)!r} there"
                for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)]
        raise ValueError(f"the settings differ from {where} ({advice}): " + "; ".join(diff))


def serve(oracle: TrialOracle, cluster: Cluster) -> None:
    """The chief: serves ``oracle`` with KerasTuner's servicer until every trial has ended or no
    worker is left, starting ``cluster.local_workers`` workers on this machine."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE)])
    protos.get_service_grpc().add_OracleServicer_to_server(oracle_chief.OracleServicer(oracle), server)
    address = f"{cluster.host}:{cluster.port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if not port:
        raise ConnectionError(f"the chief cannot listen at {address}: the port is taken or the address is "
                              "not this machine's; choose another --chief HOST:PORT")
    server.start()
    workers: dict[str, subprocess.Popen] = {}
    try:
        log.info("chief: %d trial(s), serving KerasTuner's oracle at %s:%d", len(oracle.points), cluster.host, port)
        workers = start_local_workers(cluster, port)
        wait_for_trials(oracle, cluster, workers)
        drain(oracle, workers)
    finally:
        stop_processes(workers)
        server.stop(grace=1).wait(5)


def start_local_workers(cluster: Cluster, port: int) -> dict[str, subprocess.Popen]:
    host = "127.0.0.1" if cluster.host in ("0.0.0.0", "::", "") else cluster.host
    workers = {}
    for i in range(cluster.local_workers):
        tuner_id = f"tuner{i}"
        env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id}
        proc = subprocess.Popen([*cluster.worker_command, "--worker", f"{host}:{port}"], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        log.info("chief: started worker %s (pid %d)", tuner_id, proc.pid)
        workers[tuner_id] = proc
    return workers


def wait_for_trials(oracle: TrialOracle, cluster: Cluster, workers: dict[str, subprocess.Popen]) -> None:
    """Until every trial has ended; gives up on workers that exited or went silent, and stops
    waiting when no worker is left to run what remains."""
    while not oracle.finished():
        time.sleep(POLL_SECONDS)
        for tuner_id, proc in workers.items():
            if proc.poll() is not None and tuner_id in oracle.tuner_ids:
                oracle.release(tuner_id, f"worker {tuner_id} exited with code {proc.returncode}")
        for tuner_id in oracle.silent_workers(cluster.timeout):
            oracle.release(tuner_id, f"no word from worker {tuner_id} for {cluster.timeout:.0f} s")
        local_left = any(proc.poll() is None for proc in workers.values())
        silent_for = time.monotonic() - oracle.last_contact
        if not local_left and not oracle.ongoing_trials and (not cluster.remote_workers or silent_for > cluster.timeout):
            codes = ", ".join(f"{t} exited with {p.returncode}" for t, p in workers.items())
            log.warning("chief: no worker left (%s); ending the run", codes or f"none heard of for {silent_for:.0f} s")
            return


def drain(oracle: TrialOracle, workers: dict[str, subprocess.Popen]) -> None:
    """Gives the workers time to ask once more and hear "stop" (they leave ``tuner_ids``), so
    none is left calling a chief that is gone."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline and (oracle.tuner_ids or any(p.poll() is None for p in workers.values())):
        time.sleep(POLL_SECONDS / 5)


def stop_processes(workers: dict[str, subprocess.Popen]) -> None:
    for proc in workers.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def work(cluster: Cluster, settings: dict, trial_fn: Callable[[dict], dict]) -> int:
    """A worker: runs the chief's trials until it says stop; returns how many it ran.

    Raises ValueError when the chief's run has other settings, ConnectionError when the chief does
    not answer for ``cluster.timeout`` seconds (before the first trial or later)."""
    address = f"{cluster.host}:{cluster.port}"
    os.environ.update(KERASTUNER_ORACLE_IP=cluster.host, KERASTUNER_ORACLE_PORT=str(cluster.port),
                      KERASTUNER_TUNER_ID=cluster.tuner_id)
    oracle_client.TIMEOUT = cluster.timeout  # KerasTuner's client waits up to an hour per call
    with tempfile.TemporaryDirectory(prefix="keras_pairs-worker-") as directory:
        tuner = TrialTuner(TrialOracle([], json.dumps({"settings": settings})), trial_fn, directory, overwrite=True)
        tuner.worker_id = cluster.tuner_id
        heartbeat = Heartbeat(tuner, cluster.timeout)
        try:
            check_settings(run_settings(tuner.oracle.get_space().values.get(RUN)), settings,
                           f"the chief's at {address}", "start this worker with the chief's flags")
            log.info("worker %s: joined the chief at %s", cluster.tuner_id, address)
            heartbeat.start()
            tuner.search()
        except grpc.RpcError as err:
            raise ConnectionError(f"the chief at {address} did not answer ({err.code().name}) within "
                                  f"{cluster.timeout:.0f} s: start it first, or check the address") from None
        except KeyboardInterrupt:
            if heartbeat.lost:
                raise ConnectionError(f"the chief at {address} has not answered for {cluster.timeout:.0f} s; "
                                      "this worker stops") from None
            raise
        finally:
            heartbeat.stopped.set()
    log.info("worker %s: the chief says stop after %d trial(s)", cluster.tuner_id, tuner.trials_run)
    return tuner.trials_run


class Heartbeat(threading.Thread):
    """Tells the chief every few seconds that this worker still works on its trial; interrupts
    the worker when the chief has not answered for ``timeout`` seconds (the main thread may be
    deep in training, and KerasTuner would only notice at the trial's end)."""

    def __init__(self, tuner: TrialTuner, timeout: float):
        super().__init__(daemon=True, name="heartbeat")
        self.tuner, self.timeout = tuner, timeout
        self.interval = max(0.5, min(5.0, timeout / 4))
        self.stopped, self.lost = threading.Event(), False

    def run(self):
        last_answer = time.monotonic()
        while not self.stopped.wait(self.interval):
            trial_id = self.tuner.current_trial_id
            if trial_id is None:  # between trials the main thread's own calls time out
                last_answer = time.monotonic()
                continue
            try:
                self.tuner.oracle.get_trial(trial_id)
                last_answer = time.monotonic()
            except grpc.RpcError:
                pass
            if time.monotonic() - last_answer > self.timeout and not self.stopped.is_set():
                self.lost = True
                _thread.interrupt_main()
                return
