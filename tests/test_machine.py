"""The machine state recorded with every timing: what it reads, when it calls the machine busy,
and its record in a results folder."""

import os

from keras_pairs import machine


def test_a_timing_records_the_cpu_cores_and_load_before_and_after(tmp_path, capsys):
    with machine.timed_machine("test") as state:
        sum(range(10_000))
    assert state.cpu and state.cores == os.cpu_count()
    assert len(state.load_before) == 3 and len(state.load_after) == 3 and state.seconds >= 0
    assert state.busy == (state.load_before[0] / state.cores > machine.BUSY_LOAD_PER_CORE)
    machine.write(str(tmp_path), state)
    assert machine.read(str(tmp_path)) == state
    assert machine.read(str(tmp_path / "elsewhere")) is None and not machine.quotable(str(tmp_path / "elsewhere"))


def test_a_busy_machine_is_warned_about_and_marked(tmp_path, capsys, monkeypatch):
    cores = os.cpu_count()
    monkeypatch.setattr(machine, "load_average", lambda: (0.5 * cores, 0.4 * cores, 0.1))
    with machine.timed_machine("test") as state:
        pass
    assert state.busy and "WARNING: this machine is busy" in capsys.readouterr().err
    assert "BUSY" in state.describe()
    machine.write(str(tmp_path), state)
    assert not machine.quotable(str(tmp_path))
    monkeypatch.setattr(machine, "load_average", lambda: (0.2 * cores, 0.2 * cores, 0.1))
    with machine.timed_machine("test") as state:
        pass
    assert not state.busy and capsys.readouterr().err == ""
    machine.write(str(tmp_path), state)
    assert machine.quotable(str(tmp_path))
