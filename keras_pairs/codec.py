"""The project's dataclasses to JSON-able data and back: one cattrs converter per form, built from
the type hints (cattrs takes plain frozen dataclasses as they are, with per-field overrides; pydantic
would make every type a model). Its code names no type: any dataclass goes through it.

Two forms:

- the files' (``File.to_dict`` / ``File.from_dict``): metrics.json, results.json, export.json,
  speed.json as they have always been, so committed results and shipped models read and write byte
  for byte. Fields that default to None are left out when they are None; a type's ``_file``
  (a ``FileForm``) states where else its files differ from its fields: the key order, fields left
  out, renamed keys, values for keys that older files lack. A type whose file is more than that
  registers its own functions (``register_file_hooks``), built on the generic ones (``file_hooks``).
- the lossless one (``dump`` / ``load``): every field of any dataclass by its name, ``Round.history``
  included, for the job store (``distributed.JobStore``).

In both, numpy scalars are written as Python numbers and a number is read as it is (an int stays
an int in a float field). Reading refuses unknown keys, missing ones and values of the wrong type
with one ValueError that says where. Nothing here imports TensorFlow: the server reads exports
through this module.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

import cattrs
import numpy as np
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override


@dataclass(frozen=True)
class FileForm:
    """Where a type's file form is not simply its fields (the files came first)."""

    order: tuple[str, ...] = ()  # the files' key order (field names), where it is not the fields'
    omit: tuple[str, ...] = ()  # fields the file never holds
    rename: dict = field(default_factory=dict)  # field -> key
    absent: dict = field(default_factory=dict)  # key -> value, for keys that older files lack


class File:
    """``to_dict`` / ``from_dict``: the type's JSON in the files, as its ``_file`` states."""

    _file = FileForm()

    def to_dict(self) -> dict:
        return _FILES.unstructure(self)

    @classmethod
    def from_dict(cls, d: dict):
        return _read(_FILES, cls, d)


def dump(obj) -> dict | list:
    """JSON-able data of a project dataclass (or a list, tuple or dict of them) with EVERY field,
    ``Round.history`` included; tuples become lists, numpy scalars Python numbers."""
    return _ALL.unstructure(obj)


def load(cls, data):
    """The ``cls`` (a dataclass, or a type such as ``list[Round]``) whose ``dump`` is ``data``.

    Raises ValueError, saying where, when ``data`` does not fit ``cls``: a required key missing, a
    key that is no field, a value of the wrong type. Absent keys of fields with defaults take them.
    """
    return _read(_ALL, cls, data)


def file_hooks(cls) -> tuple[Callable[[Any], dict], Callable[[dict], Any]]:
    """The write and read functions of ``cls``'s file form as its ``_file`` states it: ``write(obj)``
    gives the file's dict, ``read(d)`` the object (raising cattrs' errors; ``from_dict`` turns them
    into one ValueError)."""
    form = _form(cls)
    keys = {f: override(omit=True) for f in form.omit} | {f: override(rename=k) for f, k in form.rename.items()}
    write = make_dict_unstructure_fn(cls, _FILES, _cattrs_omit_if_default=True, **keys)
    structure = make_dict_structure_fn(cls, _FILES, _cattrs_forbid_extra_keys=True, **keys)
    order = [form.rename.get(f, f) for f in form.order]

    def ordered(obj) -> dict:
        d = write(obj)
        return {**{k: d[k] for k in order if k in d}, **d}

    def read(d):
        return structure({**form.absent, **d} if isinstance(d, dict) else d, cls)
    return ordered, read


def register_file_hooks(cls, write: Callable[[Any], dict], read: Callable[[dict], Any]) -> None:
    """``cls`` is written to and read from the files by ``write`` and ``read`` (as ``file_hooks``
    gives them), wherever it appears; the lossless form keeps its fields."""
    _FILES.register_unstructure_hook(cls, write)
    _FILES.register_structure_hook(cls, lambda d, _: read(d))


def _read(converter: cattrs.Converter, cls, data):
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, cattrs.ForbiddenExtraKeysError, AttributeError, KeyError, TypeError,
            ValueError) as err:
        problems = cattrs.transform_error(err, format_exception=lambda e, _: _describe(e, converter))
        problems.sort(key=lambda p: not p.startswith("unknown"))  # a misspelt key first, then what it left missing
        raise ValueError(f"{getattr(cls, '__name__', cls)}: {'; '.join(problems)}") from None


def _describe(err: BaseException, converter: cattrs.Converter) -> str:
    if isinstance(err, cattrs.ForbiddenExtraKeysError):
        form = _form(err.cl) if converter is _FILES else FileForm()
        known = [form.rename.get(f.name, f.name) for f in dataclasses.fields(err.cl) if f.name not in form.omit]
        return f"unknown keys {sorted(err.extra_fields)}; known: {sorted(known)}"
    if isinstance(err, (KeyError, AttributeError)):
        return "required key missing" if isinstance(err, KeyError) else "expected a JSON object"
    return str(err) or type(err).__name__


def _form(cls) -> FileForm:
    return getattr(cls, "_file", FileForm())


def _exactly(*types):
    """Takes a value of ``types`` as it is (an int stays an int in a float field, so a file reads and
    writes the same bytes) and refuses any other, bool for a number included."""
    def structure(value, cls):
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise TypeError(f"expected {cls.__name__}, got {type(value).__name__} {value!r}")
        return value
    return structure


def _number(value):
    return value.item() if isinstance(value, np.generic) else value


def _structure_hook(cls):
    read = file_hooks(cls)[1]
    return lambda d, _: read(d)


_ALL = cattrs.Converter(forbid_extra_keys=True)  # the lossless form: every field, by its name
for _type, _accepted in ((int, numbers.Integral), (float, numbers.Real), (bool, bool), (str, str), (dict, dict),
                         (list, list)):
    _ALL.register_structure_hook(_type, _exactly(_accepted))
for _type in (int, float, bool):
    _ALL.register_unstructure_hook(_type, _number)
_ALL.register_unstructure_hook_func(lambda t: isinstance(t, type) and issubclass(t, np.generic), _number)

_FILES = _ALL.copy()  # the files' form: each dataclass through its ``_file``
_FILES.register_unstructure_hook_factory(dataclasses.is_dataclass, lambda cls: file_hooks(cls)[0])
_FILES.register_structure_hook_factory(dataclasses.is_dataclass, _structure_hook)
