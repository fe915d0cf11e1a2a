"""What exported models cost to run: their int8 files timed side by side through ai-edge-litert,
each beside its float32 file.

Each file gets two interpreters with ``threads`` threads, one fed ``batch`` pairs per call
(throughput, pairs/s) and one fed a single pair per call (latency, ms per pair). The files are
timed in alternation, ``repeats`` turns each, and the median turn is kept: load on the machine
falls on every file alike, so their ratio is what a comparison should quote. The machine's state
(CPU, cores, load before and after) is recorded with the figures; a busy machine is warned about and
marked (``machine.py``). Whether the int8 or the float32 file is the faster one depends on the CPU:
int8 wins where LiteRT has int8 dot-product kernels for it (AVX-512 VNNI), and can lose elsewhere,
so each table says which is faster on the machine it was timed on.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .. import runs
from ..cost import deploy_budget, multiply_adds_per_pair
from ..errors import UserError
from ..machine import timed_machine
from ..results import ExportResult, SpeedResult, SpeedRow
from ..tables import cost_cells, float32_cell
from .tflite import signature_runner

SPEED_MODE = "int8"


def time_calls(call, seconds: float) -> tuple[int, float]:
    """Calls ``call`` for about ``seconds`` after one warm-up call: (calls, elapsed seconds)."""
    call()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        call()
        n += 1
    return n, elapsed


def measure_speed(paths: dict, digits: tuple[np.ndarray, np.ndarray], threads: int = 2,
                  batch: int = 100, repeats: int = 5, seconds: float = 1.0) -> dict:
    """{key: {"pairs_per_s", "ms_per_pair"}} of each .tflite file of ``paths`` ({key: path}), timed
    in alternation."""
    a, b = digits
    if len(a) < batch:
        raise UserError(f"{batch} pairs per call need at least {batch} digits, got {len(a)}")
    turns: dict = {name: [] for name in paths}
    calls = {}
    for name, path in paths.items():
        many = signature_runner(path, threads)
        one = signature_runner(path, threads)
        calls[name] = (lambda r=many: r(digit_a=a[:batch], digit_b=b[:batch]),
                       lambda r=one: r(digit_a=a[:1], digit_b=b[:1]))
    for _ in range(repeats):
        for name, (many, one) in calls.items():
            n, elapsed = time_calls(many, seconds)
            pairs_per_s = n * batch / elapsed
            n, elapsed = time_calls(one, seconds / 2)
            turns[name].append((pairs_per_s, 1000 * elapsed / n))
    return {name: {"pairs_per_s": float(np.median([t[0] for t in ts])),
                   "ms_per_pair": float(np.median([t[1] for t in ts]))} for name, ts in turns.items()}


def compare_exports(archs: list[str], models_dir: str = runs.DEFAULT_MODELS_DIR, threads: int = 2,
                    batch: int = 100, repeats: int = 5) -> SpeedResult:
    """The deployment figures of each architecture's exported run (``export.py --tflite``):
    multiply-adds per pair, int8 file size and accuracy beside the float32 file's, and the
    int8 and float32 files' speed measured side by side on the first run's test digits."""
    found, paths, digits = [], {}, None
    for arch in archs:
        run, _ = runs.resolve_run(models_dir, arch)
        export = _read_export(run.path)
        for mode in (SPEED_MODE, "float32"):
            path = os.path.join(run.path, "export", export.row(mode).file) if export.row(mode) else None
            if path is None or not os.path.isfile(path):
                raise runs.RunError(f"{run.path}/export has no {mode} file; run `python export.py --models-dir "
                                    f"{models_dir} --arch {arch} --tflite --modes float32,{SPEED_MODE}`")
            paths[arch, mode] = path
        if digits is None:
            digits = runs.run_pairs(run).test_digits
        found.append((arch, run, export))
    with timed_machine("keras-pairs speed") as machine:
        speed = measure_speed(paths, digits, threads, batch, repeats)
    rows = tuple(SpeedRow(arch=arch, run_dir=run.path, multiply_adds=multiply_adds_per_pair(run.arch),
                          int8_bytes=export.row(SPEED_MODE).bytes,
                          int8_pair_accuracy=export.row(SPEED_MODE).pair_accuracy,
                          float32_pair_accuracy=export.row("float32").pair_accuracy,
                          test_pairs=export.test_pairs, **speed[arch, SPEED_MODE],
                          float32_pairs_per_s=speed[arch, "float32"]["pairs_per_s"]) for arch, run, export in found)
    return SpeedResult(rows, threads, batch, repeats, deploy_budget(), machine)


def format_speed_table(result: SpeedResult) -> str:
    """Markdown: each architecture's cost, and its ratio to the last row (the reference); the
    machine it was timed on below."""
    ref = result.reference
    lines = [f"| arch | multiply-adds per pair | int8 size (KiB) | int8 pair accuracy (%) | vs float32 (pt) "
             f"| pairs/s, batch {result.batch}, {result.threads} threads | ms per pair, batch 1 | float32 pairs/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result.rows:
        multiply_adds, pairs_per_s = cost_cells(r, ref)
        lines.append(f"| {r.arch} | {multiply_adds} | {r.int8_bytes / 1024:.1f} | {100 * r.int8_pair_accuracy:.2f} "
                     f"| {100 * (r.int8_pair_accuracy - r.float32_pair_accuracy):+.2f} | {pairs_per_s} "
                     f"| {r.ms_per_pair:.3f} | {float32_cell(r)} |")
    lines += ["", f"Timed on {result.machine.describe()}."]
    return "\n".join(lines) + "\n"


def _read_export(run_path: str) -> ExportResult:
    path = os.path.join(run_path, "export", "export.json")
    if not os.path.isfile(path):
        raise runs.RunError(f"{run_path} has no export; run `python export.py --run {run_path} --tflite`")
    with open(path) as f:
        return ExportResult.from_dict(json.load(f))
