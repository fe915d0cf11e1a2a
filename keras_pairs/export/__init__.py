"""Export a trained run: a SavedModel with two signatures and verified TFLite files.

``export_run(ExportConfig(...))`` does everything ``python export.py`` does:

1. picks the run (``--run`` / ``--arch`` / else the siamese run with the best mean VALIDATION
   pair accuracy; test accuracy is never used to choose) and loads its ``model.keras``;
2. rebuilds the selected round's pairs from the digits the run recorded (``runs.run_pairs``):
   the training pairs calibrate int8 and fine-tune QAT/pruning, the test pairs verify;
3. writes ``saved_model/`` with the signatures of ``serving.py``;
4. with ``tflite=True`` converts the raw-image signature to one ``.tflite`` per mode (``tflite.py``),
   and writes ``<arch>_web.tflite`` for the browser page (float32, one pair per call: ``browser.py``);
5. runs every artifact on the test pairs and compares it with the Keras model (``verify.py``),
   then writes ``export.json`` and ``export_table.md``.

Everything is written into a temporary folder and swapped in as ``<run>/export/`` only when every
artifact was verified: a failed export leaves the previous artifacts intact.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass

import keras

from .. import files, runs
from ..config import ArchConfig
from ..cost import deploy_budget, multiply_adds_per_pair
from ..data import Mnist
from ..errors import UserError
from ..results import ExportResult, Normalisation
from . import tfmot
from .browser import convert_fixed_batch
from .serving import signature_doc, write_saved_model
from .tflite import INT8_IO, MODES, check_mode, convert_tflite, representative_images
from .verify import (artifact, artifact_scores, format_table, keras_reference, quantization_notes, verify_saved_model,
                     verify_tflite)

log = logging.getLogger(__name__)

EXPORT_DIR = "export"


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how.

    Attributes:
      models_dir: root of the run folders (train.py --output).
      arch: export models_dir/<arch>; None = the best siamese run by validation accuracy.
      run_dir: an explicit run folder (wins over arch).
      tflite: also write and verify the TFLite files.
      modes: the TFLite modes (a subset of tflite.MODES).
      int8_io: output type of the int8 files (tflite.INT8_IO).
      prune: prune the digit encoder (magnitude pruning, fine-tuned) before exporting.
      target_sparsity: final sparsity of the pruned encoder kernels.
      prune_epochs / qat_epochs: fine-tuning epochs on the run's training pairs.
      calibration_pairs: training pairs fed to the int8 calibration.
      latency_pairs: single-pair calls timed per artifact.
    """

    models_dir: str = runs.DEFAULT_MODELS_DIR
    arch: str | None = None
    run_dir: str | None = None
    tflite: bool = False
    modes: tuple[str, ...] = MODES
    int8_io: str = "float32"
    prune: bool = False
    target_sparsity: float = 0.5
    prune_epochs: int = 4
    qat_epochs: int = 3
    calibration_pairs: int = 300
    latency_pairs: int = 200

    def validate(self) -> "ExportConfig":
        for mode in self.modes:
            check_mode(mode)
        if self.int8_io not in INT8_IO:
            raise UserError(f"unknown int8 I/O type {self.int8_io!r}; valid: {', '.join(INT8_IO)}")
        if not 0.0 < self.target_sparsity < 1.0:
            raise UserError(f"target sparsity must lie in (0, 1), got {self.target_sparsity}")
        if self.qat_epochs < 1 or self.prune_epochs < 1:
            raise UserError("qat_epochs and prune_epochs must be >= 1")
        return self


def export_run(cfg: ExportConfig, mnist: Mnist | None = None) -> ExportResult:
    """Exports one run (see the module doc); returns what export.json holds, with the folder it
    was installed in. ``mnist``: digits already loaded (checked against the run's record like a
    fresh load)."""
    cfg = cfg.validate()
    run, why = runs.resolve_run(cfg.models_dir, cfg.arch, cfg.run_dir)
    log.info("exporting %s: %s", run.path, why)
    model = runs.load_model(run.model_path)
    arch = run.arch
    mean, std = run.normalisation
    pairs = runs.run_pairs(run, mnist)
    log.info("pairs: %d training (calibration / fine-tuning), %d test (verification), seed %d",
             len(pairs.fit), len(pairs.test), run.config["seed"])
    with files.staged_folder(os.path.join(run.path, EXPORT_DIR)) as work:
        result = _export(ExportJob(cfg=cfg, run=run, why=why, model=model, arch=arch, mean=mean, std=std,
                                   pairs=pairs, work=work))
    return dataclasses.replace(result, export_dir=os.path.join(run.path, EXPORT_DIR))


@dataclass(frozen=True)
class ExportJob:
    """One export under way: what ``export_run`` chose and loaded, and the folder it writes into."""

    cfg: ExportConfig
    run: runs.Run  # the run folder exported
    why: str  # why that run (runs.resolve_run: named by --run / --arch, or the best by validation)
    model: keras.Model  # its model.keras
    arch: ArchConfig  # its architecture (config.json)
    mean: float  # its normalisation (config.json): the exported graphs normalise raw pixels with it
    std: float
    pairs: runs.RunPairs  # the selected round's pairs: training pairs calibrate, test pairs verify
    work: str  # the staged export folder, swapped in as <run>/export/ when complete


def _export(job: ExportJob) -> ExportResult:
    """Writes and verifies every artifact of ``job`` into ``job.work``; returns export.json's content."""
    # Local names for the fields, as the steps below read them.
    cfg, run, why, model, arch, mean, std, pairs, work = (
        job.cfg, job.run, job.why, job.model, job.arch, job.mean, job.std, job.pairs, job.work)
    multiply_adds = multiply_adds_per_pair(arch)
    pruning = qat = None
    if cfg.prune:
        pruning = tfmot.prune(model, arch, pairs, mean, std, work, cfg.prune_epochs, cfg.target_sparsity)
        log.info("pruning: encoder sparsity %.1f %% (target %.0f %%)",
                 100 * pruning["sparsity"], 100 * cfg.target_sparsity)
    ref = keras_reference(model, pairs.test, mean, std)
    rows = [artifact("keras", "model.keras" + (" (pruned)" if cfg.prune else ""), os.path.getsize(run.model_path),
                     artifact_scores(ref, pairs.test), 0.0, None)]
    sm_dir = os.path.join(work, "saved_model")
    write_saved_model(model, mean, std, sm_dir)
    rows.append(verify_saved_model(sm_dir, pairs.test, pairs.test_digits, ref, mean, std, cfg.latency_pairs))
    log.info("saved_model verified (both signatures)")
    skipped = []
    if cfg.tflite:
        rep = representative_images(*pairs.fit_digits, cfg.calibration_pairs)
        for mode in cfg.modes:
            path = os.path.join(work, f"{arch.name}_{mode}.tflite")
            if mode == "qat-int8" and tfmot.unsupported(arch):
                skipped.append(f"qat-int8 skipped: {tfmot.unsupported(arch)}, which the quantization-"
                               f"aware twin cannot hold; the int8 file is post-training")
                log.info(skipped[-1])
                continue
            if mode == "qat-int8":
                qat = tfmot.quantization_aware(model, arch, pairs, mean, std, work, cfg.qat_epochs,
                                                         cfg.calibration_pairs, cfg.int8_io, path)
            else:
                with open(path, "wb") as f:
                    f.write(convert_tflite(sm_dir, mode, rep, cfg.int8_io))
            rows.append(verify_tflite(path, mode, pairs.test, pairs.test_digits, ref, cfg.latency_pairs))
            log.info("%s verified", os.path.basename(path))
        # The browser page's file: float32 with inputs fixed at one pair (LiteRT.js needs static shapes).
        path = os.path.join(work, f"{arch.name}_web.tflite")
        with open(path, "wb") as f:
            f.write(convert_fixed_batch(sm_dir))
        rows.append(verify_tflite(path, "web", pairs.test, pairs.test_digits, ref, cfg.latency_pairs, batch=1))
        log.info("%s verified, one pair per call", os.path.basename(path))
    result = ExportResult(
        run_dir=run.path, selected_because=why, arch=arch.name, normalisation=Normalisation(mean, std),
        test_pairs=len(pairs.test), multiply_adds_per_pair=multiply_adds, deployable=multiply_adds <= deploy_budget(),
        rows=tuple(rows), table=format_table(rows), notes=tuple(quantization_notes(rows) + skipped),
        signatures=signature_doc(model.output_names), pruning=pruning, qat=qat)
    files.write_json(os.path.join(work, "export.json"), result.to_dict())
    with open(os.path.join(work, "export_table.md"), "w") as f:
        f.write(result.table + "\n\n" + "".join(f"- {n}\n" for n in result.notes))
    for name in os.listdir(work):
        if name.startswith("_"):  # scratch files of the child process (training pairs, weights)
            path = os.path.join(work, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return result

