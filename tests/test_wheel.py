"""The package as users get it: the wheel holds the shipped model and the page's runtime (LiteRT.js),
and the runtime committed in keras_pairs/server/litertjs is the one package-lock.json pins.

The whole path (the wheel installed in a clean venv outside the checkout, then predict, the API and
the page in Chromium from there) is .ci/wheel-check, which .ci/run runs after the slow tests.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from keras_pairs import pretrained
from keras_pairs.server import runtime

ROOT = Path(__file__).resolve().parents[1]
MAX_WHEEL_BYTES = 15 * 1024 * 1024  # installs in seconds; the runtime is ~6 MB of it compressed


def build_wheel(folder: Path) -> Path:
    """A wheel of this checkout, built from a copy of it so that the build leaves nothing behind."""
    source = folder / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "keras_pairs", source / "keras_pairs", ignore=shutil.ignore_patterns("__pycache__"))
    # With setuptools here (a Python 3.11 venv has it) the build takes ~2 s and no network; else pip
    # fetches it into an isolated build environment.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation,
                           "--wheel-dir", str(folder / "dist"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (folder / "dist").glob("keras_pairs-*.whl")
    return wheel


def test_the_wheel_holds_the_runtime_and_the_shipped_model(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    package = Path("keras_pairs")
    runtime_files = [f"server/litertjs/{runtime.vendored_path(*f)}" for f in runtime.FILES]
    shipped = pretrained.DIR.relative_to(ROOT / "keras_pairs")
    expected = [*runtime_files, "server/litertjs/LICENSE", "server/litertjs/manifest.json",
                "server/static/index.html", "server/static/model.js", "server/static/samples.json",
                f"{shipped}/model.keras", f"{shipped}/provenance.json", f"{shipped}/export/export.json",
                f"{shipped}/export/{pretrained.ARCH}_int8.tflite", f"{shipped}/export/{pretrained.ARCH}_web.tflite"]
    assert not [name for name in expected if str(package / name) not in names]
    assert wheel.stat().st_size <= MAX_WHEEL_BYTES, f"{wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB"
    left_out = [n for n in names if "litert_wasm_threaded" in n or "litert_wasm_jspi" in n]
    assert not left_out, "builds the page never loads stay out of the wheel"


def test_the_committed_runtime_is_the_locks():
    """Versions and integrity as package-lock.json pins them, each file as its SHA-256 in manifest.json
    and, where `npm ci` has filled node_modules, byte for byte the file npm installed."""
    assert runtime.differences() == [], f"refresh with `{runtime.REFRESH}`"
    assert "Apache License" in (runtime.DIR / "LICENSE").read_text()
    assert {entry["license"] for entry in runtime.lock_entries().values()} == {"Apache-2.0"}


def test_refresh_takes_the_files_from_node_modules_as_the_lock_pins_them(tmp_path):
    node_modules = tmp_path / "node_modules"
    for name, entry in runtime.lock_entries().items():
        (node_modules / name).mkdir(parents=True)
        version = "9.9.9" if name == "@litertjs/core" else entry["version"]
        (node_modules / name / "package.json").write_text(json.dumps({"version": version}))
    with pytest.raises(RuntimeError, match=r"holds @litertjs/core 9\.9\.9, package-lock\.json pins"):
        runtime.refresh(node_modules, directory=tmp_path / "out")
    if not (ROOT / "node_modules" / runtime.PACKAGES[0]).is_dir():
        pytest.skip("the refresh itself needs `npm ci` (node_modules); .ci/run runs it")
    manifest = runtime.refresh(directory=tmp_path / "refreshed")
    assert manifest == json.loads((runtime.DIR / "manifest.json").read_text())
