"""The state of the machine a timing is made on: CPU model, cores, load average before and after.

A figure timed while other work loads the machine is not that machine's figure: a second training
or a test run beside a benchmark slows it several times. Every command that writes a timing into a
results file (experiments' seconds per round, ``python -m keras_pairs speed``, the server benchmark) wraps
its work in ``timed_machine`` and stores the ``MachineState`` beside its figures (``machine.json``).
When the 1-minute load per core is above ``BUSY_LOAD_PER_CORE`` as the work starts, it warns on the
terminal and the record says ``busy``; the tables README quotes leave a busy figure out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

from .errors import UserError

# Above this 1-minute load average per core when a timing starts, the machine counts as busy. A
# quiet machine shows ~0.0-0.1; one other single-threaded job adds ~0.5 per core on two cores.
BUSY_LOAD_PER_CORE = 0.3
FILE = "machine.json"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform says."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


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
      busy: the 1-minute load per core was above BUSY_LOAD_PER_CORE as the work started.
      started / seconds: the start (UTC, ISO 8601) and the work's wall-clock seconds.
    """

    what: str
    cpu: str
    cores: int
    load_before: tuple[float, float, float]
    busy: bool
    started: str
    load_after: tuple[float, float, float] | None = None
    seconds: float | None = None

    @classmethod
    def now(cls, what: str) -> "MachineState":
        cores = os.cpu_count() or 1
        load = load_average()
        return cls(what=what, cpu=cpu_model(), cores=cores, load_before=load,
                   busy=load[0] / cores > BUSY_LOAD_PER_CORE,
                   started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def warning(self) -> str:
        return (f"WARNING: this machine is busy: load {self.load_before[0]:.2f} over the last minute on "
                f"{self.cores} core(s), above {BUSY_LOAD_PER_CORE} per core. Its timings are not this "
                f"machine's and the results are marked busy; for figures to quote, wait until `uptime` "
                f"shows a load below {BUSY_LOAD_PER_CORE * self.cores:.1f} with nothing else running, "
                f"and run again.")

    def describe(self) -> str:
        """One line for tables: CPU, cores, load before -> after, and BUSY where it was."""
        after = f" -> {self.load_after[0]:.2f}" if self.load_after else ""
        return (f"{self.cpu}, {self.cores} cores, load {self.load_before[0]:.2f}{after}"
                + (" (BUSY: timings not comparable)" if self.busy else ""))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MachineState":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise UserError(f"unknown machine-state keys {sorted(unknown)}; valid: {sorted(fields)}")
        d = {**d, "load_before": tuple(d["load_before"]),
             "load_after": tuple(d["load_after"]) if d.get("load_after") else None}
        return cls(**d)


@contextlib.contextmanager
def timed_machine(what: str, stream=None):
    """Yields the ``MachineState`` of the work in the block, warning on ``stream`` (stderr) when the
    machine is busy as it starts; the load after and the seconds are filled in when it ends."""
    state = MachineState.now(what)
    if state.busy:
        print(state.warning(), file=stream or sys.stderr, flush=True)
    start = time.perf_counter()
    yield state
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
    """A folder's timings may be quoted: their machine state was recorded and was not busy."""
    state = read(folder)
    return state is not None and not state.busy
