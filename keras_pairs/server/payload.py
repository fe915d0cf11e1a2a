"""TF Serving's REST predict bodies -> checked uint8 digit arrays, and outputs -> response bodies.

Row format:      {"instances": [{"digit_a": 28x28, "digit_b": 28x28}, ...]}
Columnar format: {"inputs": {"digit_a": N x 28 x 28, "digit_b": N x 28 x 28}}
Pixels are integers 0..255 (white digit on black, MNIST style). Every way a body can be wrong raises
BadRequest with a message naming the problem, which the server returns as a 400.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_INSTANCES = 256
DIGITS = ("digit_a", "digit_b")
SIGNATURE = "serving_default"


class BadRequest(ValueError):
    """The request cannot be served as sent; the message says why."""


def parse_predict(body: bytes) -> tuple[np.ndarray, np.ndarray, str]:
    """-> (digit_a, digit_b, format): uint8 [N, 28, 28] each, format "instances" or "inputs"."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise BadRequest(f"the body is not valid JSON ({type(error).__name__})") from None
    if not isinstance(request, dict):
        raise BadRequest('the body must be a JSON object with "instances" or "inputs"')
    signature = request.pop("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        raise BadRequest(f'unknown signature_name {signature!r}: the model has only "{SIGNATURE}"')
    if set(request) == {"instances"}:
        return *_rows(request["instances"]), "instances"
    if set(request) == {"inputs"}:
        return *_columns(request["inputs"]), "inputs"
    raise BadRequest('the body must have exactly one of "instances" (row format) or "inputs" '
                     f'(columnar format); it has {sorted(request)}')


def format_outputs(outputs: dict[str, np.ndarray], request_format: str) -> dict:
    """The response body in the request's format, as TF Serving answers."""
    columns = {name: values.tolist() for name, values in sorted(outputs.items())}
    if request_format == "inputs":
        return {"outputs": columns}
    count = len(next(iter(columns.values())))
    return {"predictions": [{name: values[i] for name, values in columns.items()} for i in range(count)]}


def _rows(instances: Any) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(instances, list):
        raise BadRequest('"instances" must be a list of {"digit_a": ..., "digit_b": ...} objects')
    _check_count(len(instances), '"instances"')
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or set(instance) != set(DIGITS):
            keys = sorted(instance) if isinstance(instance, dict) else type(instance).__name__
            raise BadRequest(f'instances[{i}] must be an object with exactly "digit_a" and "digit_b" '
                             f"(got {keys})")
    return tuple(np.stack([_pixels(inst[name], f"instances[{i}].{name}", 2)
                           for i, inst in enumerate(instances)]) for name in DIGITS)


def _columns(inputs: Any) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(inputs, dict) or set(inputs) != set(DIGITS):
        keys = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise BadRequest(f'"inputs" must be an object with exactly "digit_a" and "digit_b" (got {keys})')
    digit_a, digit_b = (_pixels(inputs[name], f"inputs.{name}", 3) for name in DIGITS)
    _check_count(len(digit_a), "inputs.digit_a")
    if len(digit_a) != len(digit_b):
        raise BadRequest(f"inputs.digit_a has {len(digit_a)} digits but inputs.digit_b has {len(digit_b)}")
    return digit_a, digit_b


def _check_count(count: int, where: str) -> None:
    if not 1 <= count <= MAX_INSTANCES:
        raise BadRequest(f"{where} holds {count} digit pairs; send 1 to {MAX_INSTANCES} per request")


def _pixels(value: Any, where: str, ndim: int) -> np.ndarray:
    """A 28 x 28 digit (ndim 2) or a list of them (ndim 3) of integers 0..255 -> uint8."""
    expected = "28 x 28" if ndim == 2 else "N x 28 x 28"
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError):
        raise BadRequest(f"{where} must be a {expected} array of integers 0..255; "
                         "its rows have different lengths") from None
    if array.ndim != ndim or array.shape[-2:] != (28, 28):
        raise BadRequest(f"{where} has shape {list(array.shape)}; expected {expected}")
    integral_floats = array.dtype.kind == "f" and bool(np.all(np.isfinite(array) & (array == np.floor(array))))
    if array.dtype.kind not in "iu" and not integral_floats:  # 12.0 is an integer written as a float
        raise BadRequest(f"{where} must hold integers 0..255; found {_kind(array)}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise BadRequest(f"{where} must hold integers 0..255; found values from {array.min()} to {array.max()}")
    return array.astype(np.uint8)


def _kind(array: np.ndarray) -> str:
    return {"f": "non-integer numbers", "b": "true/false", "U": "strings"}.get(
        array.dtype.kind, "values that are not numbers, or numbers far too large")
