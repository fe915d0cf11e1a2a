"""TF Serving's REST predict bodies -> checked uint8 digit arrays, and outputs -> response bodies.

Row format:      {"instances": [{"digit_a": 28x28, "digit_b": 28x28}, ...]}
Columnar format: {"inputs": {"digit_a": N x 28 x 28, "digit_b": N x 28 x 28}}
Pixels are integers 0..255 (white digit on black, MNIST style). Every way a body can be wrong raises
BadRequest with a message naming the problem, which the server returns as a 400.

Parsing: `json.loads` makes a Python int per pixel (200,704 of them in a 64-pair request) and
`np.asarray` then walks them again. The fast path (`_pixel_blocks`) first cuts every nested array of
plain unsigned integers out of the body and parses it with NumPy in C, then `json.loads` only the
small rest. It hands over only what the general path would read identically (a regular array of
integers of at most three digits, in a body without backslashes); anything else stays in the JSON and
takes the general path, so answers and error messages are the same for every body (tests/test_serve.py
runs both on the same bodies).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_INSTANCES = 256
DIGITS = ("digit_a", "digit_b")
SIGNATURE = "serving_default"


class BadRequest(ValueError):
    """The request cannot be served as sent; the message says why."""


def parse_predict(body: bytes, fast: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """-> (digit_a, digit_b, format): uint8 [N, 28, 28] each, format "instances" or "inputs".
    ``fast=False`` parses everything with json.loads (the reference the fast path is tested against)."""
    request = _pixel_blocks(body) if fast else None
    if request is None:
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


# --- the fast path ------------------------------------------------------------------------------

# A candidate: "[" "[" then only digits, commas, brackets and whitespace, ending "]" "]". It cannot
# cross a string, a key or an object (no quotes, colons or braces), so it is at most one JSON array.
_CANDIDATE = re.compile(rb"\[\s*\[[0-9,\s\[\]]*\]\s*\]")
_WHITESPACE = b" \t\n\r"  # JSON's whitespace
_NUMBERS_ONLY = bytes.maketrans(b"[]|", b"  ,")  # "[[1,2],[3]]|[[4]]" -> "  1,2 , 3  ,  4  "
_DIGITS = b"0123456789"
_MARK = "\x00"  # placeholders are "\u0000<k>": a raw NUL cannot occur in a valid JSON string


def _pixel_blocks(body: bytes) -> dict | None:
    """The request with its integer arrays parsed by NumPy, or None: use json.loads on the body.

    Every candidate array is replaced by a placeholder string; json.loads reads the rest and the
    placeholders are swapped for the arrays. Without backslashes in the body no JSON string can
    hide a placeholder, and a candidate inside a string leaves the rest invalid JSON. When any
    candidate is not a regular array of plain integers 0..999, the whole body takes the general path.
    """
    if b"\\" in body:
        return None
    blocks: list[bytes] = []

    def stash(match: re.Match) -> bytes:
        blocks.append(match.group())
        return b'"\\u0000%d"' % (len(blocks) - 1)

    skeleton = _CANDIDATE.sub(stash, body)
    arrays = _int_arrays(blocks) if blocks else None
    if arrays is None:
        return None
    try:
        return _swap_in(json.loads(skeleton), arrays)
    except (ValueError, RecursionError):  # the general path names the problem
        return None
    except LookupError:  # a placeholder where JSON allows no array (a key): not the same document
        return None


def _int_arrays(blocks: list[bytes]) -> list[np.ndarray] | None:
    """The int64 arrays np.asarray(json.loads(block)) gives, when every block is a regular array of
    plain integers below 1000; else None. All blocks at once: a 64-pair request has 128 of them,
    and a few calls over all of them cost less than a few calls each."""
    compact = b"|".join(blocks).translate(None, _WHITESPACE)
    if not _plain_numbers(compact):
        return None
    skeletons = compact.translate(None, _DIGITS).split(b"|")
    shapes = {}
    for skeleton in set(skeletons):  # usually one: every digit is 28 x 28
        shape = _shape(skeleton)
        # A regular skeleton has at least one character per element; the bound also keeps a
        # crafted first element from asking for a huge comparison string.
        if shape is None or math.prod(shape) > len(skeleton) or skeleton != _skeleton(shape):
            return None
        shapes[skeleton] = shape
    values = np.fromstring(compact.translate(_NUMBERS_ONLY), dtype=np.int64, sep=",")
    sizes = [math.prod(shapes[skeleton]) for skeleton in skeletons]
    if values.size != sum(sizes):
        return None
    arrays, start = [], 0
    for skeleton, size in zip(skeletons, sizes):
        arrays.append(values[start:start + size].reshape(shapes[skeleton]))
        start += size
    return arrays


def _plain_numbers(compact: bytes) -> bool:
    """No leading zero (invalid JSON), no number over 999, no empty slot ("[]", "[,", ",,", ",]").
    Vectorised: a regular expression over the 240 kB of a 64-pair request took 14 ms."""
    chars = np.frombuffer(compact, np.uint8)
    digit = (chars >= ord("0")) & (chars <= ord("9"))
    opens = (chars == ord("[")) | (chars == ord(","))  # what a number follows
    closes = (chars == ord(",")) | (chars == ord("]"))  # what a number precedes
    four_digits = digit[:-3] & digit[1:-2] & digit[2:-1] & digit[3:]
    leading_zero = opens[:-2] & (chars[1:-1] == ord("0")) & digit[2:]
    empty = opens[:-1] & closes[1:]
    return not (four_digits.any() or leading_zero.any() or empty.any())


def _shape(skeleton: bytes) -> tuple[int, ...] | None:
    """The shape the array would have if it is regular: the sizes along its first elements; None
    beyond three dimensions (no input has more)."""
    depth = len(skeleton) - len(skeleton.lstrip(b"["))
    if depth > 3:
        return None
    shape = []
    for k in range(1, depth + 1):  # the first k-dimensional element, innermost first
        end = skeleton.find(b"]" * k)
        first = skeleton[depth - k:end + k]
        shape.append(first.count(b"]" * (k - 1) + b"," + b"[" * (k - 1)) + 1)
    return tuple(reversed(shape))


def _skeleton(shape: tuple[int, ...]) -> bytes:
    """What a regular array of this shape looks like without its digits: [[,,],[,,]] for (2, 3)."""
    if len(shape) == 1:
        return b"[" + b"," * (shape[0] - 1) + b"]"
    return b"[" + b",".join([_skeleton(shape[1:])] * shape[0]) + b"]"


def _swap_in(request: Any, arrays: list[np.ndarray]) -> Any:
    """The request with its placeholders replaced: by the NumPy array where a digit's pixels belong
    (instances[i].digit_a, inputs.digit_b, ...), by the nested lists json.loads would have made
    anywhere else (a "signature_name" or an "instances" that is an array), so that every check and
    every message sees what the general path sees."""
    def plain(value, pixels=False):
        if isinstance(value, str) and value.startswith(_MARK):
            array = arrays[int(value[1:])]
            return array if pixels else array.tolist()
        if isinstance(value, dict):
            return {key: plain(item) for key, item in _checked(value).items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    def digits(value):
        if not isinstance(value, dict):
            return plain(value)
        return {key: plain(item, pixels=key in DIGITS) for key, item in _checked(value).items()}

    if not isinstance(request, dict):
        return plain(request)
    swapped = {}
    for key, value in _checked(request).items():
        if key == "instances" and isinstance(value, list):
            swapped[key] = [digits(item) for item in value]
        elif key == "inputs":
            swapped[key] = digits(value)
        else:
            swapped[key] = plain(value)
    return swapped


def _checked(obj: dict) -> dict:
    if any(key.startswith(_MARK) for key in obj):
        raise LookupError("a placeholder as a key: the body was not valid JSON")
    return obj
