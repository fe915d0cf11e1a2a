"""Writing results safely: JSON with numpy values, and folders swapped in only when complete."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np


def json_default(obj):
    """``json.dump`` fallback for numpy scalars and arrays and tuples."""
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(type(obj).__name__)


def write_json(path: str, obj, indent: int = 2) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent, default=json_default)
        f.write("\n")


def swap_in(work_dir: str, final_dir: str) -> None:
    """Replaces ``final_dir`` with the completed ``work_dir``; the old folder goes only after the swap.

    Both are renames on one file system, so a reader sees the old folder or the new one, never a
    half-written one; an interruption before the swap leaves ``final_dir`` untouched.
    """
    old = f"{final_dir}.old-{os.getpid()}"
    if os.path.exists(final_dir):
        os.replace(final_dir, old)
    os.replace(work_dir, final_dir)
    shutil.rmtree(old, ignore_errors=True)
