"""What a round, a run, an export, a speed comparison and a grid search return: frozen dataclasses.

A reader sees the fields, and a renamed field fails where it is used, not three modules later.
Each type is written to JSON (``to_dict``) and read back (``from_dict``) here and nowhere else;
``to_row`` gives its columns of a CSV file. The forms are those the files have always had
(``metrics.json``, ``results.json``, ``rounds.csv``, ``export.json``, ``speed.json``,
``trials.csv``), so committed results and shipped models read as they are: fields that are
absent are None and are left out again when written.

Nothing here imports TensorFlow: the server reads exports through this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .config import ArchConfig
from .machine import MachineState


def _strict(cls, d: dict, extra: tuple[str, ...] = ()) -> None:
    """Refuses keys that are no field of ``cls`` (a typo or a file of another kind)."""
    known = {f.name for f in fields(cls)} | set(extra)
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown}; known: {sorted(known)}")


def _present(pairs) -> dict:
    """The items whose value is not None, in order (absent fields stay absent in the files)."""
    return {k: v for k, v in pairs if v is not None}


# --- scores of one set of pairs -------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """``metrics.score`` of one set of pairs.

    Attributes:
      pair_accuracy: share of pairs whose decision a <= b is right.
      pair_argmax_accuracy: the same for the arg-max comparison of the digits (probabilistic head).
      digit_accuracy: share of digits read right, both digits of every pair (digit outputs only).
    """

    pair_accuracy: float
    pair_argmax_accuracy: float | None = None
    digit_accuracy: float | None = None

    def to_dict(self) -> dict:
        return _present((f.name, getattr(self, f.name)) for f in fields(self))

    @classmethod
    def from_dict(cls, d: dict) -> "Scores":
        _strict(cls, d)
        return cls(**d)

    def to_row(self, prefix: str) -> dict:
        """CSV columns: ``prefix`` + field name."""
        return {prefix + k: v for k, v in self.to_dict().items()}


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof=1; 0 for one value), min and max of a quantity over rounds."""

    mean: float
    std: float
    min: float
    max: float

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, d: dict) -> "Summary":
        _strict(cls, d)
        return cls(**d)


@dataclass(frozen=True)
class RoundsSummary:
    """``metrics.summarise_rounds``: each test score, the seconds and the epochs over the rounds.

    ``without_views`` is read from files written when every round also scored the views' models
    without their views; new runs leave it None (research/test_time_views.py measures it).
    """

    pair_accuracy: Summary
    seconds_per_round: Summary
    epochs_run: Summary
    digit_accuracy: Summary | None = None
    pair_argmax_accuracy: Summary | None = None
    without_views: dict[str, Summary] | None = None

    def to_dict(self) -> dict:
        out = {k: s.to_dict() for k, s in _present(
            (f.name, getattr(self, f.name)) for f in fields(self) if f.name != "without_views").items()}
        if self.without_views is not None:
            out["without_views"] = {k: s.to_dict() for k, s in self.without_views.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "RoundsSummary":
        _strict(cls, d)
        values = {k: Summary.from_dict(v) for k, v in d.items() if k != "without_views"}
        if "without_views" in d:
            values["without_views"] = {k: Summary.from_dict(v) for k, v in d["without_views"].items()}
        return cls(**values)


# --- a round and a run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalisation:
    """The mean and std of the fitted pairs' pixels: inputs are (x - mean) / std."""

    mean: float
    std: float

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalisation":
        _strict(cls, d)
        return cls(float(d["mean"]), float(d["std"]))


@dataclass(frozen=True)
class TeacherResult:
    """A student's teacher, trained first in the same round: its architecture, seconds and scores."""

    arch: str
    seconds: float
    test: Scores
    validation: Scores | None = None

    def to_dict(self) -> dict:
        return _present([("arch", self.arch), ("seconds", self.seconds), ("test", self.test.to_dict()),
                         ("validation", self.validation.to_dict() if self.validation else None)])

    @classmethod
    def from_dict(cls, d: dict) -> "TeacherResult":
        _strict(cls, d)
        return cls(d["arch"], d["seconds"], Scores.from_dict(d["test"]),
                   Scores.from_dict(d["validation"]) if "validation" in d else None)


@dataclass(frozen=True)
class Round:
    """One round of ``training.fit_round`` / ``train_round``.

    Attributes:
      seed: the round's seed (pairs, split, initialisation, dropout, augmentation, shuffling).
      seconds: training and scoring time; a student's includes its teacher's.
      epochs_run: epochs trained (fewer than asked when early stopping ended the round).
      test: scores on the round's test pairs (a fold's held-out pairs in the grid search).
      validation: scores on the validation pairs (None without them).
      normalisation: the fitted pairs' statistics (results.json leaves it out).
      teacher: the teacher trained first in this round (students only).
      history: Keras' per-epoch metrics (``metrics.history_rows``); kept apart from the round's
        JSON (history/round_XX.csv, results.json's "histories").
      index: the round's number in its run ("round" in the files).
      test_without_views: only in files written when every round scored the models with test-time
        views without them too.
    """

    seed: int
    seconds: float
    epochs_run: int
    test: Scores
    validation: Scores | None = None
    normalisation: Normalisation | None = None
    teacher: TeacherResult | None = None
    history: tuple[dict, ...] = field(default=(), compare=False, repr=False)
    index: int | None = None
    test_without_views: Scores | None = None

    def to_dict(self) -> dict:
        """The round's JSON (metrics.json, results.json), without its history."""
        return _present([
            ("round", self.index), ("seed", self.seed), ("seconds", self.seconds), ("epochs_run", self.epochs_run),
            ("normalisation", self.normalisation.to_dict() if self.normalisation else None),
            ("teacher", self.teacher.to_dict() if self.teacher else None),
            ("test_without_views", self.test_without_views.to_dict() if self.test_without_views else None),
            ("test", self.test.to_dict()),
            ("validation", self.validation.to_dict() if self.validation else None)])

    @classmethod
    def from_dict(cls, d: dict, history=()) -> "Round":
        _strict(cls, d, extra=("round",))
        return cls(seed=d["seed"], seconds=d["seconds"], epochs_run=d["epochs_run"],
                   test=Scores.from_dict(d["test"]),
                   validation=Scores.from_dict(d["validation"]) if "validation" in d else None,
                   normalisation=Normalisation.from_dict(d["normalisation"]) if "normalisation" in d else None,
                   teacher=TeacherResult.from_dict(d["teacher"]) if "teacher" in d else None,
                   history=tuple(history), index=d.get("round"),
                   test_without_views=(Scores.from_dict(d["test_without_views"])
                                       if "test_without_views" in d else None))

    def to_row(self) -> dict:
        """The round's columns of rounds.csv (after "arch")."""
        row = {"round": self.index, "seed": self.seed, "epochs_run": self.epochs_run, "seconds": round(self.seconds, 3),
               **self.test.to_row("test_")}
        if self.test_without_views is not None:
            row.update(self.test_without_views.to_row("test_without_views_"))
        if self.validation is not None:
            row.update(self.validation.to_row("val_"))
        if self.teacher is not None:
            row["teacher_seconds"] = round(self.teacher.seconds, 3)
            row.update(self.teacher.test.to_row("teacher_test_"))
        return row


@dataclass(frozen=True)
class RunResult:
    """What ``training.train_and_evaluate`` returns; its JSON is metrics.json.

    Attributes:
      arch: the architecture's name.
      data: the digits' record (``Mnist.describe``).
      device: where it trained (``training.describe_devices``).
      seed: the first round's seed (round r uses seed + r).
      rounds: every round, with its history.
      test: the test scores, seconds and epochs over the rounds.
      selected_round: the round saved as model.keras (best validation pair accuracy).
      selected_by: how it was chosen.
      run_dir: the run folder, when one was written (not part of metrics.json).
    """

    arch: str
    data: dict
    device: dict
    seed: int
    rounds: tuple[Round, ...]
    test: RoundsSummary
    selected_round: int
    selected_by: str
    run_dir: str | None = None

    @property
    def selected(self) -> Round:
        return self.rounds[self.selected_round]

    @property
    def histories(self) -> list[list[dict]]:
        return [list(r.history) for r in self.rounds]

    def to_dict(self) -> dict:
        """metrics.json."""
        return {"arch": self.arch, "data": self.data, "device": self.device, "seed": self.seed,
                "rounds": [r.to_dict() for r in self.rounds], "test": self.test.to_dict(),
                "selected_round": self.selected_round, "selected_by": self.selected_by}

    @classmethod
    def from_dict(cls, d: dict, run_dir: str | None = None) -> "RunResult":
        _strict(cls, d)
        return cls(d["arch"], d["data"], d["device"], d["seed"], tuple(Round.from_dict(r) for r in d["rounds"]),
                   RoundsSummary.from_dict(d["test"]), d["selected_round"], d["selected_by"],
                   run_dir or d.get("run_dir"))


# --- a reproduction: many architectures x rounds (results.json) -----------------------------------


@dataclass(frozen=True)
class ArchResult:
    """One architecture of ``experiments.run_experiments``: its entry of results.json.

    Attributes:
      arch / report / description / config / reference: the architecture, as the registry states it
        (``reference``: the report's (mean, std) figure, or None).
      params: its parameter count.
      predicts_digits: it has digit outputs.
      rounds: its rounds in order, each with its history (results.json keeps the histories apart).
      test: the test scores, seconds and epochs over the rounds.
      test_curves: per round, the per-epoch test scores drawn in the figures ([] when not asked).
      confusion: digit confusion counts summed over the rounds (models with digit outputs).
      comparator: report B's comparator analysis, one per round (heads that have one).
    """

    arch: str
    report: str
    description: str
    config: dict
    reference: tuple | None
    params: int
    predicts_digits: bool
    rounds: tuple[Round, ...]
    test: RoundsSummary
    test_curves: tuple[list[dict], ...]
    confusion: list | None = None
    comparator: list[dict] | None = None

    @property
    def histories(self) -> list[list[dict]]:
        return [list(r.history) for r in self.rounds]

    def to_dict(self) -> dict:
        out = {"arch": self.arch, "report": self.report, "description": self.description, "config": self.config,
               "reference": list(self.reference) if self.reference is not None else None, "params": self.params, "predicts_digits": self.predicts_digits,
               "rounds": [r.to_dict() for r in self.rounds], "test": self.test.to_dict(),
               "histories": self.histories, "test_curves": list(self.test_curves)}
        return {**out, **_present([("confusion", self.confusion), ("comparator", self.comparator)])}

    @classmethod
    def from_dict(cls, d: dict) -> "ArchResult":
        _strict(cls, d, extra=("histories",))
        histories = d.get("histories") or [()] * len(d["rounds"])
        reference = tuple(d["reference"]) if d["reference"] is not None else None
        return cls(d["arch"], d["report"], d["description"], d["config"], reference, d["params"],
                   d["predicts_digits"], tuple(Round.from_dict(r, h) for r, h in zip(d["rounds"], histories)),
                   RoundsSummary.from_dict(d["test"]), tuple(d.get("test_curves", ())), d.get("confusion"),
                   d.get("comparator"))


@dataclass(frozen=True)
class ExperimentsResult:
    """What ``experiments.run_experiments`` returns; its JSON is results.json.

    Attributes:
      settings: the ``ExperimentConfig`` it ran.
      data: the digits' record (``Mnist.describe``).
      device: where the first round trained.
      workers / scheduler: the Dask workers or scheduler the rounds ran on (0 / None: this process).
      total_seconds: the whole run's time.
      machine: the machine's state while it ran (its seconds are quoted only from a quiet one).
      archs: each architecture's result, in the order they ran.
    """

    settings: dict
    data: dict
    device: dict
    workers: int
    scheduler: str | None
    total_seconds: float
    machine: MachineState | None
    archs: dict[str, ArchResult]

    def to_dict(self) -> dict:
        return {"settings": self.settings, "data": self.data, "device": self.device, "workers": self.workers,
                "scheduler": self.scheduler, "total_seconds": self.total_seconds,
                "machine": self.machine.to_dict() if self.machine else None,
                "archs": {name: a.to_dict() for name, a in self.archs.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentsResult":
        _strict(cls, d)
        return cls(d["settings"], d["data"], d["device"], d.get("workers", 0), d.get("scheduler"),
                   d["total_seconds"], MachineState.from_dict(d["machine"]) if d.get("machine") else None,
                   {name: ArchResult.from_dict(a) for name, a in d["archs"].items()})


# --- an export and the speed of exports ------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """One exported artifact verified against the Keras model on the run's test pairs (``export.verify``).

    Attributes:
      mode: "keras", "saved_model", a TFLite mode ("float32", "int8", ...) or "web".
      file: its file name in the export folder.
      bytes: its size.
      pair_accuracy / digit_accuracy: its scores on the test pairs (digits: models with digit outputs).
      max_deviation: largest |artifact - Keras| over its probability outputs.
      latency_ms: median milliseconds of a single-pair call (None for the Keras model, not timed).
    """

    mode: str
    file: str
    bytes: int
    pair_accuracy: float
    max_deviation: float
    latency_ms: float | None
    digit_accuracy: float | None = None

    def to_dict(self) -> dict:
        out = {"mode": self.mode, "file": self.file, "bytes": self.bytes, "pair_accuracy": self.pair_accuracy}
        if self.digit_accuracy is not None:
            out["digit_accuracy"] = self.digit_accuracy
        return {**out, "max_deviation": self.max_deviation, "latency_ms": self.latency_ms}

    @classmethod
    def from_dict(cls, d: dict) -> "Artifact":
        _strict(cls, d)
        return cls(**d)


@dataclass(frozen=True)
class ExportResult:
    """What ``export.export_run`` returns; its JSON is export.json.

    Attributes:
      run_dir: the exported run folder.
      selected_because: why that run (named, or the best by validation accuracy).
      arch: the architecture's name.
      normalisation: the run's input statistics, built into the artifacts.
      test_pairs: the test pairs every artifact was verified on.
      multiply_adds_per_pair: the model's cost (``cost.multiply_adds_per_pair``).
      deployable: within the deployment budget (``cost.deploy_budget``).
      rows: one per artifact, in the order they were made.
      table: those rows as markdown.
      notes: what the quantization did, and modes skipped.
      signatures: the SavedModel's signatures in words.
      pruning / qat: the fine-tunings' records, when they ran.
      export_dir: where the artifacts are (in export.json only when an installer wrote it there).
    """

    run_dir: str
    selected_because: str
    arch: str
    normalisation: Normalisation
    test_pairs: int
    multiply_adds_per_pair: int
    deployable: bool
    rows: tuple[Artifact, ...]
    table: str
    notes: tuple[str, ...]
    signatures: dict
    pruning: dict | None = None
    qat: dict | None = None
    export_dir: str | None = None

    def row(self, mode: str) -> Artifact | None:
        """The artifact of ``mode`` ("keras", "saved_model", "float32", "int8", ...)."""
        return next((r for r in self.rows if r.mode == mode), None)

    def to_dict(self) -> dict:
        return _present([
            ("run_dir", self.run_dir), ("selected_because", self.selected_because), ("arch", self.arch),
            ("normalisation", self.normalisation.to_dict()), ("test_pairs", self.test_pairs),
            ("multiply_adds_per_pair", self.multiply_adds_per_pair), ("deployable", self.deployable),
            ("pruning", self.pruning), ("qat", self.qat), ("rows", [r.to_dict() for r in self.rows]),
            ("table", self.table),
            ("notes", list(self.notes)), ("signatures", self.signatures), ("export_dir", self.export_dir)])

    @classmethod
    def from_dict(cls, d: dict) -> "ExportResult":
        _strict(cls, d)
        return cls(**{**d, "normalisation": Normalisation.from_dict(d["normalisation"]),
                      "rows": tuple(Artifact.from_dict(r) for r in d["rows"]), "notes": tuple(d["notes"])})


@dataclass(frozen=True)
class SpeedRow:
    """One architecture's exported int8 file timed by ``export.speed.compare_exports``."""

    arch: str
    run_dir: str
    multiply_adds: int
    int8_bytes: int
    int8_pair_accuracy: float
    float32_pair_accuracy: float
    test_pairs: int
    pairs_per_s: float
    ms_per_pair: float

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "SpeedRow":
        _strict(cls, d)
        return cls(**d)


@dataclass(frozen=True)
class SpeedResult:
    """``compare_exports``: the rows (ratios are to the last one) and how they were timed; its JSON
    is speed.json. ``machine`` (a ``machine.MachineState``) goes to machine.json, not speed.json."""

    rows: tuple[SpeedRow, ...]
    threads: int
    batch: int
    repeats: int
    budget_multiply_adds: int
    machine: MachineState | None = None

    @property
    def reference(self) -> SpeedRow:
        return self.rows[-1]

    def to_dict(self) -> dict:
        return {"rows": [r.to_dict() for r in self.rows], "threads": self.threads, "batch": self.batch,
                "repeats": self.repeats, "budget_multiply_adds": self.budget_multiply_adds}

    @classmethod
    def from_dict(cls, d: dict) -> "SpeedResult":
        _strict(cls, d)
        return cls(tuple(SpeedRow.from_dict(r) for r in d["rows"]), d["threads"], d["batch"], d["repeats"],
                   d["budget_multiply_adds"])


# --- a grid search ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One grid point of ``search.grid_search``.

    Attributes:
      values: the point's hyperparameters ({name: value}, names in ``grids.HYPERPARAMETERS``).
      val_pair_accuracy: the objective: mean held-out pair accuracy over the point's folds.
      val_pair_accuracy_std: its sample std over the folds.
    """

    values: dict
    val_pair_accuracy: float
    val_pair_accuracy_std: float

    def to_row(self) -> dict:
        """Its row of trials.csv: the values, then the score."""
        return {**self.values, "val_pair_accuracy": self.val_pair_accuracy,
                "val_pair_accuracy_std": self.val_pair_accuracy_std}

    @classmethod
    def from_row(cls, row: dict, names) -> "Trial":
        return cls({n: row[n] for n in names}, float(row["val_pair_accuracy"]), float(row["val_pair_accuracy_std"]))


@dataclass(frozen=True)
class SearchResult:
    """What ``search.grid_search`` returns.

    Attributes:
      trials: every grid point, best first.
      best: the best point's ArchConfig (best_config.json).
      seconds: the search's time.
      paths: the files written ({"trials.csv", "table.md", "best_config.json"} -> path).
    """

    trials: tuple[Trial, ...]
    best: ArchConfig
    seconds: float
    paths: dict

    @property
    def best_values(self) -> dict:
        return dict(self.trials[0].values)
