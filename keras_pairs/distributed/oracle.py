"""The chief's side of a distributed run: KerasTuner's oracle over a fixed list of trials.

``TrialOracle`` hands the trials out in order (KerasTuner's ``GridSearch`` derives each point from
a FINISHED trial, so with several workers all but one would wait), takes each result out of the
EndTrial call that carries it (``PAYLOAD``), notes when it last heard about each running trial,
and lists what did not finish (``MissingTrials``). See the package docstring for the whole design.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable

import keras_tuner
from keras_tuner.engine.trial import Trial, TrialStatus

log = logging.getLogger(__name__)

RUN = "run"  # Fixed hyperparameter: JSON {"settings", "id"} of the run
PAYLOAD = "payload"  # value a worker adds to a finished trial's hyperparameters: its result (JSON)
SCORE = "score"  # each trial's result carries a float "score", KerasTuner's objective
RETRIES = 2  # a trial whose worker fails or dies is run at most this many more times
POLL_SECONDS = 0.5  # how often the chief checks its workers; how long an idle worker waits to ask again

class MissingTrials(ValueError):
    """The run ended with trials that no worker finished; nothing was written."""


# --- the oracle (chief side) -----------------------------------------------------------------


class TrialOracle(keras_tuner.Oracle):
    """KerasTuner's oracle over a fixed list of trials (``points``: one dict of values each),
    handed out in order; also notes when it last heard about each running trial."""

    def __init__(self, points: list[dict], run: str, on_result: Callable[[dict, dict], None] | None = None,
                 retries: int = RETRIES):
        space = keras_tuner.HyperParameters()
        space.Fixed(RUN, run)
        super().__init__(objective=keras_tuner.Objective(SCORE, "max"), hyperparameters=space,
                         allow_new_entries=False, tune_new_entries=False, max_retries_per_trial=retries,
                         max_consecutive_failed_trials=None)
        self.verbose = 0  # KerasTuner's tables would print the run JSON; callers report progress
        self.points, self.on_result = points, on_result
        self.heard: dict[str, float] = {}
        self.last_contact = time.monotonic()

    @property
    def run(self) -> str:
        """The run identity (a resumed project keeps the one it was made with)."""
        return self.hyperparameters.values[RUN]

    def populate_space(self, trial_id):
        if len(self.trials) < len(self.points):
            return {"status": TrialStatus.RUNNING, "values": {RUN: self.run, **self.points[len(self.trials)]}}
        # All handed out: idle workers wait, in case a running trial comes back to the queue.
        return {"status": TrialStatus.IDLE if self.ongoing_trials else TrialStatus.STOPPED, "values": None}

    def _hear(self, trial_id: str) -> None:
        self.last_contact = self.heard[trial_id] = time.monotonic()

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        self.last_contact = time.monotonic()
        trial = super().create_trial(tuner_id)
        if trial.status == TrialStatus.RUNNING:
            self._hear(trial.trial_id)
        return trial

    def get_space(self):
        """A worker's first call (it checks the run's settings)."""
        self.last_contact = time.monotonic()
        return super().get_space()

    def get_trial(self, trial_id):
        """Also the workers' heartbeat."""
        self._hear(trial_id)
        return super().get_trial(trial_id)

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        self._hear(trial_id)
        return super().update_trial(trial_id, metrics, step=step)

    @keras_tuner.synchronized
    def end_trial(self, trial):
        """Takes the result out of the trial's values; a trial that is not running here (its worker
        was given up, or it belongs to another run) is ignored, so nothing is counted twice."""
        payload = trial.hyperparameters.values.pop(PAYLOAD, None)
        running = {t.trial_id for t in self.ongoing_trials.values()}
        if trial.trial_id not in running or trial.hyperparameters.values.get(RUN) != self.run:
            log.warning("ignored a result for trial %s: not running in this run (late or foreign worker)",
                        trial.trial_id)
            return
        self._hear(trial.trial_id)
        if trial.status == TrialStatus.COMPLETED:
            if payload is None:
                trial.status, trial.message = TrialStatus.INVALID, "the worker sent no result"
            else:
                trial.message = payload
        super().end_trial(trial)
        ended = self.trials[trial.trial_id]
        if ended.status == TrialStatus.COMPLETED and self.on_result:
            self.on_result(point_values(ended), json.loads(payload))
        elif ended.status == TrialStatus.FAILED:
            log.warning("trial %s failed for good: %s", point_values(ended), last_line(ended.message))

    @keras_tuner.synchronized
    def release(self, tuner_id: str, reason: str) -> None:
        """Gives up on a worker: the chief stops waiting for it and its trial goes back to the
        queue (KerasTuner's retry, counted against ``retries``)."""
        self.tuner_ids.discard(tuner_id)
        trial = self.ongoing_trials.get(tuner_id)
        if trial is not None:
            log.warning("%s: trial %s goes back to the queue", reason, point_values(trial))
            self.end_trial(Trial(trial.hyperparameters.copy(), trial_id=trial.trial_id,
                                 status=TrialStatus.INVALID, message=reason))

    def silent_workers(self, timeout: float) -> list[str]:
        now = time.monotonic()
        return [tuner_id for tuner_id, trial in list(self.ongoing_trials.items())
                if now - self.heard.get(trial.trial_id, now) > timeout]

    def finished(self) -> bool:
        """Every trial has ended, completed or failed for good."""
        return len(self.end_order) >= len(self.points) and not self.ongoing_trials

    def results(self) -> list[dict]:
        """The results in the order of ``points``; raises MissingTrials listing what is missing."""
        results, reasons = {}, {}
        for trial in self.trials.values():
            key = point_key(point_values(trial))
            if trial.status == TrialStatus.COMPLETED and trial.message:
                results[key] = json.loads(trial.message)
            else:
                reasons[key] = last_line(trial.message) or "unfinished"
        missing = [p for p in self.points if point_key(p) not in results]
        if missing:
            shown = "; ".join(f"{describe(p)} ({reasons.get(point_key(p), 'never started')})" for p in missing[:10])
            more = f"; and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise MissingTrials(f"{len(missing)} of {len(self.points)} trial(s) did not finish, so no results "
                                f"were written: {shown}{more}")
        return [results[point_key(p)] for p in self.points]


def point_values(trial: Trial) -> dict:
    return {k: v for k, v in trial.hyperparameters.values.items() if k not in (RUN, PAYLOAD)}


def point_key(values: dict) -> str:
    return json.dumps(values, sort_keys=True)


def describe(values: dict) -> str:
    return " ".join(f"{k} {v}" for k, v in values.items())


def last_line(message: str | None) -> str:
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
