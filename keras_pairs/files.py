"""Writing files: JSON with numpy values, CSV tables, and folders that appear whole or not at all.

Every folder this project writes (run folders, results folders, exports) is built in a temporary
sibling and swapped in only when complete (``staged_folder``): an interrupted or failed write
leaves the previous folder exactly as it was. No Keras or TensorFlow here, so the commands that
must not load them (the server, the shipped model's installer) can write files too.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil

import numpy as np


def json_default(obj):
    """``json.dump``'s fallback: numpy scalars and arrays as plain numbers and lists, tuples as lists."""
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(type(obj).__name__)


def write_json(path: str, obj, indent: int = 2) -> None:
    """JSON with numpy scalars and arrays as plain numbers and lists."""
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent, default=json_default)
        f.write("\n")


def write_csv(path: str, rows, columns=None, append: bool = False) -> None:
    """Rows (dicts) as a CSV table with a header line. ``columns``: the header, by default every key
    of the rows in the order they first appear; a row's missing columns are left empty.
    ``append`` adds the rows to the file, with the header only when the file is new or empty: a
    study writes each row as it ends, so that an interrupted one keeps what it finished."""
    rows = list(rows)
    columns = list(dict.fromkeys(k for row in rows for k in row)) if columns is None else list(columns)
    header = not (append and os.path.isfile(path) and os.path.getsize(path) > 0)
    with open(path, "a" if append else "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if header:
            writer.writeheader()
        writer.writerows(rows)


@contextlib.contextmanager
def staged_folder(final_dir: str, keep_existing: bool = False):
    """Yields an empty temporary sibling of ``final_dir``, swapped in when the block completes.

    Both moves are renames on one file system, so a reader sees the old folder or the new one,
    never a half-written one; on any exception (Ctrl-C included) the temporary folder is removed
    and ``final_dir`` is untouched. ``keep_existing`` copies files of the old folder that the new
    one does not write (figures beside a results table).
    """
    parent = os.path.dirname(os.path.abspath(final_dir))
    os.makedirs(parent, exist_ok=True)
    work = os.path.join(parent, f".{os.path.basename(final_dir)}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    try:
        yield work
        if keep_existing and os.path.isdir(final_dir):
            for name in os.listdir(final_dir):
                source, target = os.path.join(final_dir, name), os.path.join(work, name)
                if not os.path.exists(target):
                    (shutil.copytree if os.path.isdir(source) else shutil.copy2)(source, target)
        old = os.path.join(parent, f".{os.path.basename(final_dir)}.old-{os.getpid()}")
        if os.path.exists(final_dir):
            os.replace(final_dir, old)
        os.replace(work, final_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
