"""Command-line plumbing of export.py: flags -> ExportConfig -> export_run, errors -> exit 2."""

from __future__ import annotations

import argparse
import sys

from .cli import setup_logging


def run_export(args: argparse.Namespace) -> int:
    setup_logging()
    from .data import DataError
    from .export_lib import ExportConfig, ExportError, export_run

    try:
        cfg = ExportConfig(
            models_dir=args.models_dir, arch=args.arch, run_dir=args.run_dir, tflite=args.tflite,
            modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()), int8_io=args.int8_io,
            prune=args.prune, target_sparsity=args.sparsity, qat_epochs=args.qat_epochs,
            prune_epochs=args.prune_epochs).validate()
        result = export_run(cfg)
    except (ExportError, DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the previous export (if any) was left untouched", file=sys.stderr)
        return 130
    print(f"\nexported {result['run_dir']} ({result['selected_because']})")
    if "pruning" in result:
        p = result["pruning"]
        print(f"pruning: encoder kernel sparsity {100 * p['sparsity']:.1f} % (target {100 * p['target_sparsity']:.0f} %)")
    print(f"test pairs: {result['test_pairs']}\n")
    print(result["table"])
    for note in result["targets"]:
        print(f"- {note}")
    print(f"\nartifacts, export.json and export_table.md in {result['export_dir']}")
    return 0
