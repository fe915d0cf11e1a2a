"""The machine state beside every timing: busy while the 1- or the 5-minute load is high, the
CPU's vector extensions, the load sampled while the work runs, older records read as they are."""

import json
import time

from keras_pairs import machine


def test_a_machine_cooling_down_from_a_long_run_is_busy(tmp_path, monkeypatch):
    # Two minutes after an hour of training on 2 cores: the 1-minute load is low, the 5-minute not.
    monkeypatch.setattr(machine, "load_average", lambda: (0.44, 1.41, 2.07))
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    state = machine.MachineState.now("test")
    assert state.busy and "1.41 over five" in state.warning()
    monkeypatch.setattr(machine, "load_average", lambda: (0.10, 0.35, 0.60))
    assert not machine.MachineState.now("test").busy


def test_records_made_before_the_five_minute_rule_are_judged_again(tmp_path):
    record = {"what": "speed", "cpu": "Intel(R) Xeon(R) Processor", "cores": 2, "load_before": [0.44, 1.41, 2.07],
              "busy": False, "started": "2026-12-01T10:00:00Z", "load_after": [0.9, 1.3, 2.0], "seconds": 23.5}
    (tmp_path / "machine.json").write_text(json.dumps(record, indent=2) + "\n")
    assert not machine.read(str(tmp_path)).busy  # as recorded
    assert not machine.quotable(str(tmp_path))  # but not quotable by today's rule
    machine.write(str(tmp_path), machine.read(str(tmp_path)))  # an older record writes back unchanged
    assert json.loads((tmp_path / "machine.json").read_text()) == record


def test_the_record_names_the_vector_extensions_and_the_load_during_the_work(monkeypatch):
    monkeypatch.setattr(machine, "SAMPLE_SECONDS", 0.05)
    with machine.timed_machine("test") as state:
        time.sleep(0.3)
    assert set(state.vector) <= set(machine.VECTOR_FLAGS)
    assert state.load_during["samples"] >= 2 and state.load_during["max"] >= state.load_during["mean"] >= 0
    again = machine.MachineState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state and "during: mean" in again.describe()
