"""What a round, a run, an export, a speed comparison and a grid search return: frozen dataclasses.

A reader sees the fields, and a renamed field fails where it is used, not three modules later. Each
type states only what is its own: its fields, where its files differ from them (``_file``), its rows
of rounds.csv or trials.csv (``to_row``). ``codec`` writes and reads them all: ``to_dict`` /
``from_dict`` in the files' form, ``dump`` / ``load`` (re-exported here) losslessly for the job
store. One file is more than its types' fields: results.json keeps each architecture's histories
apart from its rounds (the end of this module). Nothing here imports TensorFlow: the server reads
exports through this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .codec import File, FileForm, file_hooks, register_file_hooks
from .codec import dump, load  # noqa: F401 - callers write results.dump / results.load
from .config import ArchConfig
from .machine import MachineState


# --- scores of one set of pairs -------------------------------------------------------------------


@dataclass(frozen=True)
class Scores(File):
    """``metrics.score`` of one set of pairs."""

    pair_accuracy: float  # share of pairs whose decision a <= b is right
    pair_argmax_accuracy: float | None = None  # the same by the arg-max of the digits (probabilistic head)
    digit_accuracy: float | None = None  # share of digits read right, both of every pair (digit outputs only)

    def to_row(self, prefix: str) -> dict:
        """CSV columns: ``prefix`` + field name."""
        return {prefix + k: v for k, v in self.to_dict().items()}


@dataclass(frozen=True)
class Summary(File):
    """Mean, sample std (ddof=1; 0 for one value), min and max of a quantity over rounds."""

    mean: float
    std: float
    min: float
    max: float


@dataclass(frozen=True)
class RoundsSummary(File):
    """``metrics.summarise_rounds``: each test score, the seconds and the epochs over the rounds."""

    pair_accuracy: Summary
    seconds_per_round: Summary
    epochs_run: Summary
    digit_accuracy: Summary | None = None
    pair_argmax_accuracy: Summary | None = None
    # Read from files written when every round also scored the views' models without their views;
    # new runs leave it None (research/test_time_views.py measures it).
    without_views: dict[str, Summary] | None = None


# --- a round and a run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalisation(File):
    """The mean and std of the fitted pairs' pixels: inputs are (x - mean) / std."""

    mean: float
    std: float


@dataclass(frozen=True)
class TeacherResult(File):
    """A student's teacher, trained first in the same round: its architecture, seconds and scores."""

    arch: str
    seconds: float
    test: Scores
    validation: Scores | None = None


@dataclass(frozen=True)
class Round(File):
    """One round of ``training.fit_round`` / ``train_round``."""

    seed: int  # the round's seed (pairs, split, initialisation, dropout, augmentation, shuffling)
    seconds: float  # training and scoring time; a student's includes its teacher's
    epochs_run: int  # fewer than asked when early stopping ended the round
    test: Scores  # on the round's test pairs (a fold's held-out pairs in the grid search)
    validation: Scores | None = None  # None without validation pairs
    normalisation: Normalisation | None = None  # the fitted pairs' statistics (results.json leaves it out)
    teacher: TeacherResult | None = None  # students only
    # Keras' per-epoch metrics (``metrics.history_rows``), kept apart from the round's JSON
    # (history/round_XX.csv, results.json's "histories").
    history: tuple[dict, ...] = field(default=(), compare=False, repr=False)
    index: int | None = None  # the round's number in its run ("round" in the files)
    # Only in files written when every round scored the models with test-time views without them too.
    test_without_views: Scores | None = None

    _file = FileForm(order=("index", "seed", "seconds", "epochs_run", "normalisation", "teacher", "test_without_views",
                         "test", "validation"), omit=("history",), rename={"index": "round"})

    @classmethod
    def from_dict(cls, d: dict, history=()) -> "Round":
        """The round of a file's JSON, with its history read from elsewhere."""
        return dataclasses.replace(super().from_dict(d), history=tuple(history))

    def to_row(self) -> dict:
        """The round's columns of rounds.csv (after "arch")."""
        row = {"round": self.index, "seed": self.seed, "epochs_run": self.epochs_run, "seconds": round(self.seconds, 3)}
        for prefix, scores in (("test_", self.test), ("test_without_views_", self.test_without_views),
                               ("val_", self.validation)):
            row.update(scores.to_row(prefix) if scores is not None else {})
        if self.teacher is not None:
            row.update({"teacher_seconds": round(self.teacher.seconds, 3), **self.teacher.test.to_row("teacher_test_")})
        return row


@dataclass(frozen=True)
class RunResult(File):
    """What ``training.train_and_evaluate`` returns; its JSON is metrics.json."""

    arch: str
    data: dict  # the digits' record (``Mnist.describe``)
    device: dict  # where it trained (``training.describe_devices``)
    seed: int  # the first round's seed (round r uses seed + r)
    rounds: tuple[Round, ...]  # every round, with its history
    test: RoundsSummary
    selected_round: int  # the round saved as model.keras (best validation pair accuracy)
    selected_by: str  # how it was chosen
    run_dir: str | None = None  # the run folder, when one was written (not part of metrics.json)

    _file = FileForm(omit=("run_dir",))

    @property
    def selected(self) -> Round:
        return self.rounds[self.selected_round]

    @property
    def histories(self) -> list[list[dict]]:
        return [list(r.history) for r in self.rounds]

    @classmethod
    def from_dict(cls, d: dict, run_dir: str | None = None) -> "RunResult":
        """metrics.json, with the folder it was read from."""
        return dataclasses.replace(super().from_dict(d), run_dir=run_dir)


# --- a reproduction: many architectures x rounds (results.json) -----------------------------------


@dataclass(frozen=True)
class ArchResult(File):
    """One architecture of ``experiments.run_experiments``: its entry of results.json."""

    arch: str  # arch ... reference: the architecture, as the registry states it
    report: str
    description: str
    config: dict
    reference: tuple | None  # the report's (mean, std) figure
    params: int
    predicts_digits: bool
    rounds: tuple[Round, ...]  # in order, each with its history (results.json: "histories", after "test")
    test: RoundsSummary
    test_curves: tuple[list[dict], ...]  # per round, the per-epoch test scores of the figures ([] if not asked)
    confusion: list | None = None  # digit confusion counts summed over the rounds (digit outputs only)
    comparator: list[dict] | None = None  # report B's comparator analysis, one per round (heads that have one)

    _file = FileForm(absent={"test_curves": ()})

    @property
    def histories(self) -> list[list[dict]]:
        return [list(r.history) for r in self.rounds]


@dataclass(frozen=True)
class ExperimentsResult(File):
    """What ``experiments.run_experiments`` returns; its JSON is results.json."""

    settings: dict  # the ``ExperimentConfig`` it ran
    data: dict  # the digits' record (``Mnist.describe``)
    device: dict  # where the first round trained
    workers: int  # the Dask workers the rounds ran on (0: this process)
    scheduler: str | None  # or the Dask scheduler
    total_seconds: float
    machine: MachineState | None  # the machine while it ran (its seconds are quoted only from a quiet one)
    archs: dict[str, ArchResult]  # in the order they ran

    _file = FileForm(absent={"workers": 0, "scheduler": None, "machine": None})  # older files lack them


# --- an export and the speed of exports ------------------------------------------------------------


@dataclass(frozen=True)
class Artifact(File):
    """One exported artifact verified against the Keras model on the run's test pairs (``export.verify``)."""

    mode: str  # "keras", "saved_model", a TFLite mode ("float32", "int8", ...) or "web"
    file: str  # its file name in the export folder
    bytes: int
    pair_accuracy: float  # on the test pairs
    max_deviation: float  # largest |artifact - Keras| over its probability outputs
    latency_ms: float | None  # median ms of a single-pair call (None for the Keras model, not timed)
    digit_accuracy: float | None = None  # models with digit outputs

    _file = FileForm(order=("mode", "file", "bytes", "pair_accuracy", "digit_accuracy", "max_deviation", "latency_ms"))


@dataclass(frozen=True)
class ExportResult(File):
    """What ``export.export_run`` returns; its JSON is export.json."""

    run_dir: str  # the exported run folder
    selected_because: str  # why that run (named, or the best by validation accuracy)
    arch: str
    normalisation: Normalisation  # the run's input statistics, built into the artifacts
    test_pairs: int  # every artifact was verified on them
    rows: tuple[Artifact, ...]  # one per artifact, in the order they were made
    table: str  # the rows as markdown
    notes: tuple[str, ...]  # what the quantization did, and modes skipped
    signatures: dict  # the SavedModel's signatures in words
    # ``cost.multiply_adds_per_pair``, and whether that is within ``cost.deploy_budget`` (None in
    # exports written before they were counted: such an export is never served as the deployable one)
    multiply_adds_per_pair: int | None = None
    deployable: bool | None = None
    pruning: dict | None = None  # pruning / qat: the fine-tunings' records, when they ran
    qat: dict | None = None
    export_dir: str | None = None  # where the artifacts are (only when an installer wrote it)

    _file = FileForm(order=("run_dir", "selected_because", "arch", "normalisation", "test_pairs", "multiply_adds_per_pair",
                         "deployable", "pruning", "qat", "rows", "table", "notes", "signatures", "export_dir"))

    def row(self, mode: str) -> Artifact | None:
        """The artifact of ``mode`` ("keras", "saved_model", "float32", "int8", ...)."""
        return next((r for r in self.rows if r.mode == mode), None)


@dataclass(frozen=True)
class SpeedRow(File):
    """One architecture's exported int8 file timed by ``export.speed.compare_exports``."""

    arch: str
    run_dir: str
    multiply_adds: int
    int8_bytes: int
    int8_pair_accuracy: float
    float32_pair_accuracy: float
    test_pairs: int
    pairs_per_s: float  # the int8 file's, batch calls
    ms_per_pair: float  # the int8 file's, one pair a call
    # The float32 file's pairs/s, timed beside it: which file is faster depends on the CPU (files
    # timed before it was measured leave it out).
    float32_pairs_per_s: float | None = None


@dataclass(frozen=True)
class SpeedResult(File):
    """``compare_exports``: the rows (ratios are to the last one) and how they were timed; its JSON
    is speed.json."""

    rows: tuple[SpeedRow, ...]
    threads: int
    batch: int
    repeats: int
    budget_multiply_adds: int
    machine: MachineState | None = None  # written to machine.json, not speed.json

    _file = FileForm(omit=("machine",))

    @property
    def reference(self) -> SpeedRow:
        return self.rows[-1]


# --- a grid search ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One grid point of ``search.grid_search``; a row of trials.csv."""

    values: dict  # the point's hyperparameters ({name: value}, names in ``grids.HYPERPARAMETERS``)
    val_pair_accuracy: float  # the objective: mean held-out pair accuracy over the point's folds
    val_pair_accuracy_std: float  # its sample std over the folds

    def to_row(self) -> dict:
        """Its row of trials.csv: the values, then the score."""
        return {**self.values, "val_pair_accuracy": self.val_pair_accuracy,
                "val_pair_accuracy_std": self.val_pair_accuracy_std}

    @classmethod
    def from_row(cls, row: dict, names) -> "Trial":
        return cls({n: row[n] for n in names}, float(row["val_pair_accuracy"]), float(row["val_pair_accuracy_std"]))


@dataclass(frozen=True)
class SearchResult:
    """What ``search.grid_search`` returns."""

    trials: tuple[Trial, ...]  # every grid point, best first
    best: ArchConfig  # the best point's (best_config.json)
    seconds: float
    paths: dict  # the files written ({"trials.csv", "table.md", "best_config.json"} -> path)

    @property
    def best_values(self) -> dict:
        return dict(self.trials[0].values)


# --- where a file holds more than the fields -------------------------------------------------------


_write_arch, _read_arch = file_hooks(ArchResult)


def _write_arch_result(a: ArchResult) -> dict:
    """results.json keeps the rounds' histories apart, in "histories" after "test"."""
    d = _write_arch(a)
    after = {k: d.pop(k) for k in ("test_curves", "confusion", "comparator") if k in d}
    return {**d, "histories": a.histories, **after}


def _read_arch_result(d: dict) -> ArchResult:
    d = dict(d)
    histories = d.pop("histories", None) or [()] * len(d.get("rounds", ()))
    a = _read_arch(d)
    return dataclasses.replace(a, rounds=tuple(dataclasses.replace(r, history=tuple(h))
                                               for r, h in zip(a.rounds, histories, strict=True)))


register_file_hooks(ArchResult, _write_arch_result, _read_arch_result)
# machine.py owns machine.json's form, which results.json's "machine" repeats.
register_file_hooks(MachineState, MachineState.to_dict, MachineState.from_dict)
