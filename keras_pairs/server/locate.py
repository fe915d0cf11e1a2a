"""Which .tflite files the server runs, and what to tell the user when one is missing.

A path the user names (--model FILE, --run DIR) must exist, or serve.py stops with a message.
Files derived from it (the web file beside a --model file, the float32 file of a run) and the default
search may come up empty: the server still starts, and the page and the API say which command makes
the missing file. The default rule: under --models-dir, the most recently exported run among the
deployable ones (export.json says "deployable": at most a twentieth of siamese-prob-aug-tta-x2's
multiply-adds per pair, which a browser runs at drawing speed), else the most recently exported run,
else the model shipped in the package (keras_pairs/pretrained), with a note saying so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import pretrained
from ..config import DEFAULT_MODELS_DIR
from ..errors import UserError
from ..results import ExportResult

EXPORT_HINT = "make it with `python export.py --tflite` (see docs/export.md)"


class ModelNotFound(UserError):
    """A path the user named does not hold what serve.py needs."""


@dataclass(frozen=True)
class ModelFiles:
    """What to serve: the API's .tflite (any batch) and the page's fixed-batch `<arch>_web.tflite`.

    A file that is missing is None, and its *_problem says what to run. `export` is the export.json
    beside the files (None when there is none); `note` tells the user when the shipped model is served.
    """

    api: Path | None
    web: Path | None
    export: ExportResult | None = None
    api_problem: str | None = None
    web_problem: str | None = None
    note: str | None = None


def find_model_files(model: str | None = None, run: str | None = None,
                     models_dir: str = DEFAULT_MODELS_DIR) -> ModelFiles:
    """--model FILE, else --run DIR, else the most recently exported run under models_dir."""
    if model:
        path = Path(model)
        if not path.is_file():
            raise ModelNotFound(f"--model {model}: no such file; {EXPORT_HINT}")
        export = _read_export(path.parent)
        if export is None:
            return ModelFiles(path, None, None, web_problem=(
                f"no export.json beside {path}, so the page's <arch>_web.tflite is unknown; "
                f"serve an export folder (--run) or {EXPORT_HINT}"))
        return _existing(path, path.parent / f"{export.arch}_web.tflite", export)
    if run:
        export_dir = Path(run) / "export"
        if not (export_dir / "export.json").is_file():
            raise ModelNotFound(f"--run {run}: {export_dir}/export.json does not exist; "
                                f"make it with `python export.py --run {run} --tflite`")
        return _from_export_dir(export_dir)
    found = sorted(Path(models_dir).glob("*/export/export.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        if pretrained.available():
            files = _from_export_dir(pretrained.DIR / "export")
            return ModelFiles(files.api, files.web, files.export, files.api_problem, files.web_problem,
                              f"no exported run in {models_dir}/: using {pretrained.describe()}")
        problem = (f"no exported model under {models_dir}/: train one (`python train.py --arch v5`), "
                   f"then {EXPORT_HINT}")
        return ModelFiles(None, None, None, problem, problem)
    deployable = [p for p in found if _is_deployable(p.parent)]
    return _from_export_dir((deployable or found)[-1].parent)


def _from_export_dir(export_dir: Path) -> ModelFiles:
    """The API runs the float32 file (the Keras model's answers to 1e-4), or the int8 one when an
    export holds only that."""
    export = _read_export(export_dir)
    arch = export.arch if export else ""
    api = export_dir / f"{arch}_float32.tflite"
    if not api.is_file() and (export_dir / f"{arch}_int8.tflite").is_file():
        api = export_dir / f"{arch}_int8.tflite"
    return _existing(api, export_dir / f"{arch}_web.tflite", export)


def _existing(api: Path, web: Path, export: ExportResult | None) -> ModelFiles:
    """Keeps the files that exist; a missing one becomes a problem naming the command."""
    return ModelFiles(api if api.is_file() else None, web if web.is_file() else None, export,
                      None if api.is_file() else f"the API's model {api} is missing; {EXPORT_HINT}",
                      None if web.is_file() else f"the page's model {web} is missing; {EXPORT_HINT}")


def _is_deployable(export_dir: Path) -> bool:
    try:
        export = _read_export(export_dir)
        return export is not None and bool(export.deployable)  # None: written before it was counted
    except ModelNotFound:  # an unreadable export elsewhere does not stop the default search
        return False


def _read_export(export_dir: Path) -> ExportResult | None:
    """export.json of an export folder (None when there is none)."""
    path = export_dir / "export.json"
    if not path.is_file():
        return None
    try:
        with open(path) as f:
            return ExportResult.from_dict(json.load(f))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelNotFound(f"{path} cannot be read as an export ({type(error).__name__}: {error}); "
                            f"{EXPORT_HINT}") from error
