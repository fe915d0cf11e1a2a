"""Reproduce the reports' experiments: N rounds per architecture, one results folder.

``run_experiments(ExperimentConfig(...))`` trains every architecture for N rounds through
``training.train_round`` (the loop ``train.py`` uses: round r draws its pairs, validation split
and initialisation with seed + r, and scores its test pairs once at the end) and writes

  results/<name>/results.json   everything: settings, per-round metrics, per-epoch histories,
                                per-epoch test curves, confusion matrices, comparator matrices
  results/<name>/rounds.csv     one row per (architecture, round)
  results/<name>/epochs.csv     one row per (architecture, round, epoch)
  results/<name>/table.md       mean +- std next to the reports' figures (``tables.py``)
  results/<name>/machine.json   the machine the seconds were timed on, and whether it was busy

Figures are drawn from results.json by ``plots.py``.

Each (architecture, round) is one job (``run_job``) and the folder is assembled from the jobs'
records (``arch_result``), so the same rounds can be spread over Dask worker processes on one machine
or several (``distributed/``, docs/distributed.md) and writes the same folder. Finished rounds are
kept on disk as they arrive: the same command run again after an interruption runs only the rest.

Per-epoch TEST curves are computed for plotting only (report A Figure 2 and report B Figures 1
and 3 plot test curves): a callback scores the test pairs at each epoch end and keeps the numbers
in its own list. It never writes into Keras' ``logs``, so early stopping (validation pair
accuracy) and model selection never see them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from . import files, machine
from .architectures import get_arch, resolve_archs
from .config import TEST_CURVES, ArchConfig, Protocol
from .data import Mnist, PairSet, load_mnist, prepare_round
from .distributed import Cluster, clock, kept_jobs, job_conditions, run_jobs
from .errors import UserError
from .metrics import COMPARATOR_HEADS, comparator_matrix, confusion_matrix, score_with_losses, summarise_rounds
from .results import ArchResult, ExperimentsResult, Round
from .tables import markdown_table
from .training import RoundModel, compiled, describe_devices, train_round

log = logging.getLogger(__name__)

# Architectures whose report figures plot per-epoch test curves: report A Figure 2, report B
# Figure 1 (v2, v4) and Figure 3 (v5).
FIGURE_ARCHS = ("baseline", "siamese2", "siamese10", "v2", "v4", "v5")


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of one reproduction run.

    Attributes:
      archs: architecture names or sets (``architectures.resolve_archs``).
      rounds: independent rounds per architecture (report A used 10, report B 20).
      epochs: epochs per round (None = the architecture's).
      protocol: data, seed, pair counts, validation share and patience, as train.py (``config.Protocol``).
      output: results folder (written atomically: a temporary sibling swapped in at the end).
      test_curves: score the test pairs at each epoch end, for the figures only: "figures"
        (FIGURE_ARCHS), "all" or "none". Each costs ~1-2 s per round.
    """

    archs: tuple[str, ...]
    rounds: int = 10
    epochs: int | None = None
    protocol: Protocol = Protocol()
    output: str = "results/reproduction"
    test_curves: str = "figures"

    def validate(self) -> "ExperimentConfig":
        resolve_archs(self.archs)
        self.protocol.validate()
        if self.test_curves not in TEST_CURVES:
            raise UserError(f"test_curves must be one of {TEST_CURVES}, got {self.test_curves!r}")
        if self.rounds < 1:
            raise UserError(f"rounds must be >= 1, got {self.rounds}")
        return self

    def arch(self, name: str) -> ArchConfig:
        cfg = get_arch(name)
        return dataclasses.replace(cfg, epochs=self.epochs).validate() if self.epochs else cfg

    def to_dict(self) -> dict:
        """results.json's "settings": the protocol's fields flat, where they were before Protocol
        existed (archs, rounds, epochs, data, seed, nb_train, ..., output, test_curves)."""
        d = dataclasses.asdict(self)
        del d["protocol"]
        head = {k: d.pop(k) for k in ("archs", "rounds", "epochs")}
        return {**head, **self.protocol.to_dict(), **d}


class TestCurve(keras.callbacks.Callback):
    """Test metrics per epoch FOR PLOTTING ONLY: kept in ``rows``, never put into ``logs``."""

    def __init__(self, round_model: RoundModel, test: PairSet):
        super().__init__()
        self.round_model, self.test, self.rows = round_model, test, []

    def on_epoch_end(self, epoch, logs=None):
        out = self.round_model.predict(self.test.images)
        self.rows.append({"epoch": epoch + 1, **score_with_losses(out, self.test, self.round_model.arch)})


def wants_test_curve(arch: ArchConfig, exp: ExperimentConfig) -> bool:
    return exp.test_curves == "all" or (exp.test_curves == "figures" and arch.name in FIGURE_ARCHS)


@dataclass(frozen=True)
class RoundRecord:
    """What one round of a reproduction keeps beyond ``results.Round``.

    Attributes:
      round: the round (its history inside; results.json keeps no normalisation).
      test_curve: per-epoch test scores for the figures ([] when not asked).
      params: the model's parameter count.
      confusion: digit confusion counts on the test pairs (models with digit outputs).
      comparator: report B's comparator analysis (heads in ``metrics.COMPARATOR_HEADS``).
    """

    round: Round
    test_curve: list[dict]
    params: int
    confusion: list | None = None
    comparator: dict | None = None


def run_round(round_model: RoundModel, exp: ExperimentConfig, mnist: Mnist, r: int) -> RoundRecord:
    """Round ``r`` of one architecture through ``training.train_round``: one trial of the run.

    Depends on nothing but its arguments (``RoundModel`` re-initialises every variable), so any
    process may run any round.
    """
    arch = round_model.arch
    protocol = exp.protocol
    seed = protocol.seed + r
    data = prepare_round(mnist, protocol.nb_train, protocol.nb_test, protocol.val_fraction, seed)
    curve = TestCurve(round_model, data.test) if wants_test_curve(arch, exp) else None
    done, out = train_round(round_model, data, seed, [curve] if curve else [], protocol.patience)
    confusion = comparator = None
    if arch.predicts_digits:
        confusion = (confusion_matrix(data.test.classes[:, 0], out["digit_a"].argmax(-1))
                     + confusion_matrix(data.test.classes[:, 1], out["digit_b"].argmax(-1))).tolist()
    if arch.siamese and arch.head in COMPARATOR_HEADS:
        comparator = comparator_matrix(round_model.model, arch, data.fit.images)
    return RoundRecord(dataclasses.replace(done, index=r, normalisation=None), curve.rows if curve else [],
                       round_model.model.count_params(), confusion, comparator)


def arch_result(arch: ArchConfig, records: list[RoundRecord]) -> ArchResult:
    """One architecture's entry of results.json from its rounds' records, in round order."""
    rounds = tuple(rec.round for rec in records)
    comparators = [rec.comparator for rec in records if rec.comparator is not None]
    return ArchResult(
        arch=arch.name, report=arch.report, description=arch.description, config=arch.to_dict(),
        reference=arch.reference, params=records[0].params, predicts_digits=arch.predicts_digits, rounds=rounds,
        test=summarise_rounds(rounds), test_curves=tuple(rec.test_curve for rec in records),
        confusion=(np.sum([rec.confusion for rec in records], axis=0).tolist() if arch.predicts_digits else None),
        comparator=comparators or None)


@dataclass(frozen=True)
class RoundResult:
    """A finished job: the round's record (``run_round``) and the device that trained it."""

    record: RoundRecord
    device: dict


def run_job(job: dict, exp: ExperimentConfig, mnist: Mnist) -> RoundResult:
    """One job {"arch", "round"}. Module-level, so a Dask worker imports it by name."""
    tf.config.experimental.enable_op_determinism()
    arch = exp.arch(job["arch"])
    return RoundResult(run_round(compiled(arch), exp, mnist, job["round"]), describe_devices())


def round_summary(result: RoundResult) -> str:
    """A finished round in the progress line."""
    done = result.record.round
    digits = f" digit {100 * done.test.digit_accuracy:.1f}%" if done.test.digit_accuracy is not None else ""
    return f"pair {100 * done.test.pair_accuracy:.1f}%{digits} ({done.epochs_run} ep, {done.seconds:.1f} s)"


def run_experiments(exp: ExperimentConfig, mnist: Mnist | None = None, progress: bool = True,
                    cluster: Cluster | None = None, fresh: bool = False) -> ExperimentsResult:
    """Runs every (architecture, round) of ``exp`` as one job each and writes the results folder;
    returns what results.json holds.

    ``cluster`` (``distributed.Cluster``) runs the jobs as Dask tasks; the folder is the serial
    loop's. Finished rounds are kept beside the output folder until it is written, and a rerun
    with the same settings runs only the missing ones; ``fresh`` forgets them first.
    """
    exp = exp.validate()
    cluster = cluster or Cluster()
    archs = [exp.arch(name) for name in resolve_archs(exp.archs)]
    tf.config.experimental.enable_op_determinism()
    mnist = mnist or load_mnist(exp.protocol.data)
    jobs = [{"arch": arch.name, "round": r} for arch in archs for r in range(exp.rounds)]
    settings = {"kind": "experiments", "data": mnist.describe(), **job_conditions(cluster),
                **{k: v for k, v in exp.to_dict().items() if k != "output"},
                "configs": {arch.name: arch.to_dict() for arch in archs}}
    start = time.perf_counter()
    with kept_jobs(exp.output, settings, RoundResult, fresh) as store:
        with machine.timed_machine("experiments") as state:
            done = run_jobs(run_job, jobs, cluster, store, {"exp": exp, "mnist": mnist},
                            round_summary if progress else None, group=lambda job: job["arch"])
        records = [result.record for result in done]
        total = time.perf_counter() - start
        results = {arch.name: arch_result(arch, records[i * exp.rounds:(i + 1) * exp.rounds])
                   for i, arch in enumerate(archs)}
        doc = ExperimentsResult(settings=exp.to_dict(), data=mnist.describe(), device=done[0].device,
                                workers=cluster.workers, scheduler=cluster.scheduler, total_seconds=total,
                                machine=state, archs=results)
        write_results(doc, exp.output)
    if progress:
        print(f"total {clock(total)} ({total:.0f} s) for {len(archs)} architecture(s) x "
              f"{exp.rounds} round(s) on {cluster.describe()}; results in {exp.output}", flush=True)
    return doc


def write_results(doc: ExperimentsResult, output: str) -> None:
    """Writes results.json, rounds.csv, epochs.csv and table.md as one folder swap; figures
    already in the folder are kept."""
    with files.staged_folder(output, keep_existing=True) as work:
        files.write_json(os.path.join(work, "results.json"), doc.to_dict(), indent=1)
        files.write_csv(os.path.join(work, "rounds.csv"), round_rows(doc))
        files.write_csv(os.path.join(work, "epochs.csv"), epoch_rows(doc))
        with open(os.path.join(work, "table.md"), "w") as f:
            f.write(markdown_table(doc))
        if doc.machine:
            machine.write(work, doc.machine)


def load_results(output: str) -> ExperimentsResult:
    """results.json of a results folder (or the file itself)."""
    path = os.path.join(output, "results.json") if os.path.isdir(output) else output
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: run experiments.py first (it writes results.json)")
    try:
        with open(path) as f:
            doc = json.load(f)
    except ValueError as err:
        raise UserError(f"{path} is not valid JSON ({err}); run experiments.py again") from None
    if not isinstance(doc, dict) or "archs" not in doc:
        raise UserError(f"{path} is not a results.json of experiments.py (no 'archs')")
    try:
        return ExperimentsResult.from_dict(doc)
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path} cannot be read as experiments.py's results ({type(err).__name__}: {err})") from None


def round_rows(doc: ExperimentsResult) -> list[dict]:
    """rounds.csv: one row per architecture and round (``results.Round.to_row``)."""
    return [{"arch": name, **r.to_row()} for name, res in doc.archs.items() for r in res.rounds]


def epoch_rows(doc: ExperimentsResult) -> list[dict]:
    """epochs.csv: one row per architecture, round and epoch, with the test curve's scores."""
    rows = []
    for name, res in doc.archs.items():
        for r, (hist, curve) in enumerate(zip(res.histories, res.test_curves)):
            tests = {c["epoch"]: c for c in curve}
            for h in hist:
                row = {"arch": name, "round": r, **h}
                row.update({f"test_{k}": v for k, v in tests.get(h["epoch"], {}).items() if k != "epoch"})
                rows.append(row)
    return rows
