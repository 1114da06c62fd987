"""JSON request bodies whose tensors a C reader (service/csrc/json_numbers.c) reads straight
into doubles, leaving orjson only the rest of the document.

The reader finds the arrays of numbers at the request's tensor paths, reads each number as
orjson would (correctly rounded to a double; "-0" the integer 0) into one float64 buffer, and
writes the body with each array replaced by `0`: that skeleton, a few hundred bytes, is what
orjson parses, validating everything outside the arrays by its own rules; the arrays are then
put back where the placeholders are. For 32 examples of 784 numbers (517 KB) it reads at about
simdjson's parsing speed and saves the walk of simdjson's document that `service.json_arrays`
needs; a request alone on the server has a long flat tensor read by two threads (`python -m
benchmarks.json_decode`).

`parse_with_arrays` answers only where its result is exactly orjson's with each tensor as the
float64 array numpy would make of it; anything else returns None (the caller then takes the
full path, which words every refusal): a value at a tensor path that is not a non-empty array
of numbers or of equal rows of numbers, a magnitude of 2**53 or more, a key on the way to a
tensor that holds an escape, a skeleton orjson refuses, or keys repeated on a tensor's path
(orjson keeps the last; the count of placeholders found then falls short).
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from models import native_build

SOURCES = (Path(__file__).with_name("csrc") / "json_numbers.c",)
# No fast-math: the exact fast path needs each operation rounded as IEEE 754 says.
FLAGS = ("-O3", "-shared", "-fPIC", "-pthread")
SMALLEST_POWER, LARGEST_POWER = -342, 308
_WILDCARD = 255  # a path step's length byte meaning "every element of an array"


def powers_of_five() -> tuple[np.ndarray, np.ndarray]:
    """5**q for q in [SMALLEST_POWER, LARGEST_POWER] as (mantissa, exponent): mantissa the
    leading 64 bits (truncated, in [2**63, 2**64)), 5**q ~ mantissa * 2**exponent."""
    mantissas, exponents = [], []
    for q in range(SMALLEST_POWER, LARGEST_POWER + 1):
        if q >= 0:
            bits = (5 ** q).bit_length()
            mantissas.append((5 ** q) >> (bits - 64) if bits > 64 else (5 ** q) << (64 - bits))
            exponents.append(bits - 64)
        else:
            scale = 63 + (5 ** -q).bit_length()
            mantissas.append((1 << scale) // 5 ** -q)
            exponents.append(-scale)
    return np.array(mantissas, dtype=np.uint64), np.array(exponents, dtype=np.int32)


@functools.cache
def encode_paths(numeric: tuple[tuple[str, ...], ...]) -> bytes:
    """Key paths ("*": every element of an array) in the reader's byte layout."""
    out = bytearray([len(numeric)])
    for path in numeric:
        out.append(len(path))
        for step in path:
            key = step.encode()
            if step == "*":
                out.append(_WILDCARD)
                continue
            if len(key) >= _WILDCARD:
                raise ValueError(f"path step {step!r} is too long")
            out += bytes([len(key)]) + key
    return bytes(out)


class NumberReader:
    def __init__(self, library: ctypes.CDLL) -> None:
        size = ctypes.c_int64
        self._read = library.json_numeric_arrays
        self._read.argtypes = [ctypes.c_char_p, size, ctypes.c_char_p, size, ctypes.c_void_p,
                               size, ctypes.c_int]
        self._read.restype = size
        self._marks = library.json_value_marks
        self._marks.argtypes = [ctypes.c_char_p, size]
        self._marks.restype = size
        layout = (size * 3)()
        library.json_layout(layout)
        # split_bytes: arrays of this many bytes or more are read on two threads where
        # allowed; the scratch's header holds a count, then `fields` per array, at most
        # `max_arrays`.
        self.split_bytes, self._max_arrays, self._fields = (int(v) for v in layout)
        mantissas, exponents = powers_of_five()
        init = library.json_numbers_init
        init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, size]
        if init(mantissas.ctypes.data, exponents.ctypes.data, len(mantissas)) != 0:
            raise OSError("the JSON number reader refused its table of powers")

    def value_marks(self, chunk: bytes) -> int:
        """Commas and opening brackets in `chunk` (`service.json_budget`'s count)."""
        chunk = chunk if type(chunk) is bytes else bytes(chunk)  # ctypes takes bytes only
        return self._marks(chunk, len(chunk))

    def arrays(self, text: bytes, numeric: tuple[tuple[str, ...], ...], threads: int = 1
               ) -> tuple[bytes, list[tuple[int, np.ndarray]]] | None:
        """(the skeleton, (path index, array) for each array at `numeric`, in document
        order), or None where the reader declines. `threads` 2 or more: a long flat array is
        read by two threads."""
        text = text if type(text) is bytes else bytes(text)  # ctypes takes bytes only
        length = len(text)
        # One buffer, laid out as the source's scratch_bytes_needed says (header, numbers,
        # skeleton); the arrays returned are views of it.
        header_end = 8 * (1 + self._fields * self._max_arrays)
        skeleton_start = header_end + 8 * (length // 2 + 1)
        scratch = np.empty(skeleton_start + length, dtype=np.uint8)
        spec = encode_paths(numeric)
        found = self._read(text, length, spec, len(spec), scratch.ctypes.data, scratch.nbytes,
                           threads)
        if found < 0:
            return None
        header = scratch[:header_end].view(np.int64)
        numbers = scratch[header_end:skeleton_start].view(np.float64)
        skeleton = scratch[skeleton_start:skeleton_start + int(header[0])].tobytes()
        out = []
        for first, count, rows, columns, path in (
                header[1:1 + self._fields * found].reshape(found, self._fields).tolist()):
            values = numbers[first:first + count]
            out.append((path, values.reshape(rows, columns) if rows else values))
        return skeleton, out


@functools.cache
def load() -> NumberReader | None:
    """The compiled reader, or None (no compiler, a failed build, or SPARSEGATE_NATIVE=0)."""
    library = native_build.compiled("json_numbers", SOURCES, FLAGS)
    return NumberReader(library) if library is not None else None


def _put_back(value: Any, path: tuple[str, ...], arrays: list[np.ndarray]) -> int:
    """Replaces the placeholders at `path` under `value` (in place, in document order) by the
    next of `arrays`; returns how many it replaced. Steps match as the reader's do: a key, or
    "*": every element of a list (or the key "*")."""
    step, rest = path[0], path[1:]
    if isinstance(value, dict):
        slots: Any = [step] if step in value else []
    elif isinstance(value, list) and step == "*":
        slots = range(len(value))
    else:
        return 0
    replaced = 0
    for slot in slots:
        if rest:
            replaced += _put_back(value[slot], rest, arrays[replaced:])
            continue
        placeholder = value[slot]
        if type(placeholder) is not int or placeholder != 0 or replaced == len(arrays):
            raise ValueError("no placeholder where the reader put one")
        value[slot] = arrays[replaced]
        replaced += 1
    return replaced


def parse_with_arrays(text: bytes, numeric: tuple[tuple[str, ...], ...],
                      reader: NumberReader, threads: int = 1) -> dict | None:
    """The JSON object `text` as orjson reads it, with the values at the key paths `numeric`
    ("*": every element of an array) as float64 arrays; None where only the full path gives
    exactly that (see the module's docstring). `threads`: as for `NumberReader.arrays`."""
    read = reader.arrays(text, numeric, threads)
    if read is None:
        return None
    skeleton, arrays = read
    try:
        document = orjson.loads(skeleton)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    for index, path in enumerate(numeric):
        mine = [array for at, array in arrays if at == index]
        try:
            if _put_back(document, path, mine) != len(mine):
                return None
        except ValueError:
            return None
    return document
