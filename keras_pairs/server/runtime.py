"""The page's runtime: the files of LiteRT.js that the page loads, shipped inside the package.

    keras_pairs/server/litertjs/
      core/dist/index.js, wasm-utils/dist/index.js        LiteRT.js's two ES modules (the import map)
      core/wasm/litert_wasm_internal.{js,wasm}            the wasm build for browsers with relaxed SIMD
      core/wasm/litert_wasm_compat_internal.{js,wasm}     the build for browsers without it
      LICENSE, manifest.json                              Apache-2.0; versions, npm integrity, SHA-256s

They are committed, not fetched when the wheel is built, so that `pip install` (from a wheel, an
sdist or the repository) needs no Node and no network. `loadLiteRt(dir)` with no options picks one
of the two builds by the browser's features; the threaded and JSPI builds (~9.4 MB each) load only
when the page asks for them, and it does not, so they are left out.

    npm ci && python -m keras_pairs.server.runtime            # refresh from package-lock.json
    python -m keras_pairs.server.runtime --check              # the committed files are the lock's

The files come from node_modules as `npm ci` installs it, which checks every package against the
lock's integrity; the refresh also checks that node_modules holds the lock's versions, and records
both in manifest.json. tests/test_wheel.py compares the committed files with the lock.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

DIR = Path(__file__).resolve().parent / "litertjs"
URL = "/litertjs"  # where the server serves DIR
ROOT = Path(__file__).resolve().parents[2]  # the repository, in a checkout
# (npm package, file inside it): the two modules, then both wasm builds that loadLiteRt picks from.
FILES = (("@litertjs/core", "dist/index.js"), ("@litertjs/wasm-utils", "dist/index.js"),
         ("@litertjs/core", "wasm/litert_wasm_internal.js"), ("@litertjs/core", "wasm/litert_wasm_internal.wasm"),
         ("@litertjs/core", "wasm/litert_wasm_compat_internal.js"),
         ("@litertjs/core", "wasm/litert_wasm_compat_internal.wasm"))
PACKAGES = ("@litertjs/core", "@litertjs/wasm-utils")
REFRESH = "npm ci && python -m keras_pairs.server.runtime"


def vendored_path(package: str, file: str) -> str:
    """Its path under DIR (and under URL): @litertjs/core + dist/index.js -> core/dist/index.js."""
    return f"{package.split('/')[1]}/{file}"


def missing(directory: Path = DIR) -> list[str]:
    """The runtime files a build of the package lacks ([] when it is whole)."""
    return [p for p in (vendored_path(*f) for f in FILES) if not (directory / p).is_file()]


def lock_entries(lock: Path = ROOT / "package-lock.json") -> dict[str, dict]:
    """package -> {"version", "integrity", "license"} as package-lock.json pins it."""
    packages = json.loads(lock.read_text())["packages"]
    return {name: {key: packages[f"node_modules/{name}"][key] for key in ("version", "integrity", "license")}
            for name in PACKAGES}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refresh(node_modules: Path = ROOT / "node_modules", lock: Path = ROOT / "package-lock.json",
            directory: Path = DIR) -> dict:
    """Copies FILES from node_modules (as `npm ci` installed it from the lock) into ``directory`` and
    writes manifest.json; returns the manifest. Raises RuntimeError when node_modules is not the lock's."""
    pinned = lock_entries(lock)
    for name, entry in pinned.items():
        installed = node_modules / name / "package.json"
        if not installed.is_file():
            raise RuntimeError(f"{installed} is missing: run `npm ci` in {lock.parent} first")
        version = json.loads(installed.read_text())["version"]
        if version != entry["version"]:
            raise RuntimeError(f"node_modules holds {name} {version}, package-lock.json pins {entry['version']}: "
                               f"run `npm ci` in {lock.parent}")
    files = {}
    for package, file in FILES:
        target = directory / vendored_path(package, file)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(node_modules / package / file, target)
        files[vendored_path(package, file)] = sha256(target)
    manifest = {"source": "npm, as package-lock.json pins it (npm ci checks each package's integrity)",
                "packages": pinned, "files": files}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def differences(node_modules: Path = ROOT / "node_modules", lock: Path = ROOT / "package-lock.json",
                directory: Path = DIR) -> list[str]:
    """What keeps the committed files from being the lock's ([] when they are): the manifest against
    the lock, each file against its SHA-256 in the manifest and, where node_modules is there, against
    the file `npm ci` installed."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        return [f"{manifest_path} is missing"]
    manifest = json.loads(manifest_path.read_text())
    found = []
    if manifest["packages"] != lock_entries(lock):
        found.append(f"manifest.json records {manifest['packages']}, package-lock.json pins {lock_entries(lock)}")
    expected = [vendored_path(*f) for f in FILES]
    if sorted(manifest["files"]) != sorted(expected):
        found.append(f"manifest.json lists {sorted(manifest['files'])}, not {sorted(expected)}")
    for package, file in FILES:
        path = vendored_path(package, file)
        if not (directory / path).is_file():
            found.append(f"{path} is missing")
            continue
        if sha256(directory / path) != manifest["files"].get(path):
            found.append(f"{path} differs from its SHA-256 in manifest.json")
        installed = node_modules / package / file
        if installed.is_file() and installed.read_bytes() != (directory / path).read_bytes():
            found.append(f"{path} differs from {installed}")
    return found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="compare the committed files with the lock; change nothing")
    p.add_argument("--node-modules", type=Path, default=ROOT / "node_modules", help="where `npm ci` installed them")
    args = p.parse_args(argv)
    if args.check:
        if not (args.node_modules / PACKAGES[0]).is_dir():
            print(f"error: {args.node_modules} has no {PACKAGES[0]}: run `npm ci` first", file=sys.stderr)
            return 2
        found = differences(args.node_modules)
        for line in found:
            print(f"differs: {line}", file=sys.stderr)
        if found:
            print(f"refresh them with `{REFRESH}`", file=sys.stderr)
            return 1
        print(f"{DIR} holds the files of package-lock.json")
        return 0
    try:
        manifest = refresh(args.node_modules)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    size = sum((DIR / path).stat().st_size for path in manifest["files"])
    print(f"wrote {len(manifest['files'])} files ({size / 1e6:.1f} MB) and manifest.json to {DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
