"""The state of the machine a timing is made on: CPU model and vector extensions, cores, load
average before, during and after.

A figure timed while other work loads the machine is not that machine's figure: a second training
or a test run beside a benchmark slows it several times. Every command that writes a timing into a
results file (experiments' seconds per round, ``python -m keras_pairs speed``, the server benchmark) wraps
its work in ``timed_machine`` and stores the ``MachineState`` beside its figures (``machine.json``).
When the 1-minute or the 5-minute load per core is above ``BUSY_LOAD_PER_CORE`` as the work starts,
it warns on the terminal and the record says ``busy``; the tables README quotes leave a busy figure
out. The 5-minute load matters: two minutes after an hour of training the 1-minute load has fallen
to ~0.4 on two cores while the 5-minute one still reads ~1.4, and the machine is still cooling down.
While the work runs, the 1-minute load is sampled every ``SAMPLE_SECONDS`` (``load_during``: how
many cores the work itself kept busy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass

from .errors import UserError

# Above this 1- or 5-minute load average per core when a timing starts, the machine counts as busy.
# A quiet machine shows ~0.0-0.1; one other single-threaded job adds ~0.5 per core on two cores.
BUSY_LOAD_PER_CORE = 0.3
SAMPLE_SECONDS = 5.0
# The CPU flags (/proc/cpuinfo) that decide which kernels TensorFlow and LiteRT run: AVX2 alone, or
# AVX-512 and its int8 dot products (VNNI), which make int8 files several times faster.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
FILE = "machine.json"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform says."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def vector_extensions() -> tuple[str, ...]:
    """Which of ``VECTOR_FLAGS`` the CPU has (empty where /proc/cpuinfo is not there)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return tuple(flag for flag in VECTOR_FLAGS if flag in flags)
    return ()


def load_average() -> tuple[float, float, float]:
    """The 1-, 5- and 15-minute load averages (zeros where the platform has none)."""
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        return (0.0, 0.0, 0.0)


@dataclass
class MachineState:
    """Where and in what state a timing was made.

    Attributes:
      what: the timed work, e.g. "experiments" or "keras-pairs speed".
      cpu: the CPU model; cores: logical cores the OS shows.
      load_before / load_after: load averages (1, 5, 15 min) as the work started and ended.
      busy: the 1- or 5-minute load per core was above BUSY_LOAD_PER_CORE as the work started.
      started / seconds: the start (UTC, ISO 8601) and the work's wall-clock seconds.
      vector: the CPU's vector extensions among VECTOR_FLAGS (None in older records).
      load_during: the 1-minute load sampled while the work ran: {"mean", "max", "samples"}
        (None in older records and for work shorter than one sample).
    """

    what: str
    cpu: str
    cores: int
    load_before: tuple[float, float, float]
    busy: bool
    started: str
    load_after: tuple[float, float, float] | None = None
    seconds: float | None = None
    vector: tuple[str, ...] | None = None
    load_during: dict | None = None

    @classmethod
    def now(cls, what: str) -> "MachineState":
        cores = os.cpu_count() or 1
        load = load_average()
        return cls(what=what, cpu=cpu_model(), cores=cores, load_before=load, busy=is_busy(load, cores),
                   started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), vector=vector_extensions())

    def warning(self) -> str:
        return (f"WARNING: this machine is busy: load {self.load_before[0]:.2f} over the last minute and "
                f"{self.load_before[1]:.2f} over five on {self.cores} core(s), above {BUSY_LOAD_PER_CORE} per "
                f"core. Its timings are not this machine's and the results are marked busy; for figures to "
                f"quote, wait until `uptime` shows 1- and 5-minute loads below "
                f"{BUSY_LOAD_PER_CORE * self.cores:.1f} with nothing else running, and run again.")

    def describe(self) -> str:
        """One line for tables: CPU, cores, load before -> after, and BUSY where it was."""
        after = f" -> {self.load_after[0]:.2f}" if self.load_after else ""
        during = f" (during: mean {self.load_during['mean']:.2f}, max {self.load_during['max']:.2f})" \
            if self.load_during else ""
        vector = f" ({', '.join(self.vector) or 'no AVX2'})" if self.vector is not None else ""
        return (f"{self.cpu}{vector}, {self.cores} cores, load {self.load_before[0]:.2f}{after}{during}"
                + (" (BUSY: timings not comparable)" if self.busy else ""))

    def to_dict(self) -> dict:
        """machine.json; the fields older records lack stay out while they are None."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if not (k in ("vector", "load_during") and v is None)}

    @classmethod
    def from_dict(cls, d: dict) -> "MachineState":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise UserError(f"unknown machine-state keys {sorted(unknown)}; valid: {sorted(fields)}")
        d = {**d, "load_before": tuple(d["load_before"]),
             "load_after": tuple(d["load_after"]) if d.get("load_after") else None,
             "vector": tuple(d["vector"]) if d.get("vector") is not None else None}
        return cls(**d)


def is_busy(load: tuple[float, float, float], cores: int) -> bool:
    """A machine is busy while its 1- or 5-minute load per core is above BUSY_LOAD_PER_CORE."""
    return max(load[0], load[1]) / cores > BUSY_LOAD_PER_CORE


class LoadSampler:
    """The 1-minute load every ``every`` seconds on a daemon thread, until ``stop``."""

    def __init__(self, every: float | None = None):
        self.every, self.samples, self._stop = every or SAMPLE_SECONDS, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="load-sampler")
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.every):
            self.samples.append(load_average()[0])

    def stop(self) -> dict | None:
        self._stop.set()
        self._thread.join()
        if not self.samples:
            return None
        return {"mean": round(sum(self.samples) / len(self.samples), 2), "max": max(self.samples),
                "samples": len(self.samples)}


@contextlib.contextmanager
def timed_machine(what: str, stream=None):
    """Yields the ``MachineState`` of the work in the block, warning on ``stream`` (stderr) when the
    machine is busy as it starts; the load after and the seconds are filled in when it ends."""
    state = MachineState.now(what)
    if state.busy:
        print(state.warning(), file=stream or sys.stderr, flush=True)
    start, sampler = time.perf_counter(), LoadSampler()
    try:
        yield state
    finally:
        state.load_during = sampler.stop()
    state.seconds = round(time.perf_counter() - start, 3)
    state.load_after = load_average()


def write(folder: str, state: MachineState) -> None:
    """machine.json in a results folder."""
    with open(os.path.join(folder, FILE), "w") as f:
        json.dump(state.to_dict(), f, indent=2)
        f.write("\n")


def read(folder: str) -> MachineState | None:
    """The folder's machine.json, or None where its timings were recorded without one."""
    path = os.path.join(folder, FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return MachineState.from_dict(json.load(f))


def quotable(folder: str) -> bool:
    """A folder's timings may be quoted: their machine state was recorded and was quiet by today's
    rule (``is_busy``: records made before it looked at the 5-minute load are judged again)."""
    state = read(folder)
    return state is not None and not state.busy and not is_busy(state.load_before, state.cores)
