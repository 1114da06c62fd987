"""Request bodies whose tensors simdjson reads straight into numpy: the numbers of a request's
data never become Python floats. The server's reader where no C compiler built the compiled one
(`service.json_native`).

The full path (`service.tensors.parse_json`, then numpy) has orjson build a Python float for
every number and numpy read them back one by one; for 32 examples of 784 numbers that is most
of what the server spends on a JSON request beside the forward (`python -m
benchmarks.json_decode`). simdjson parses the whole document, as strictly as orjson (UTF-8,
no NaN or Infinity, no trailing commas, numbers rounded correctly to doubles), and copies an
array's numbers into a buffer of doubles in C.

`parse_with_arrays` answers only where its result is exactly the full path's: the same Python
values, and each numeric field as the float64 array numpy would have made of it. Anything
else returns None and the caller takes the full path, which also words every refusal. It
declines:
- documents simdjson refuses (including integers past 64 bits, or numbers past a double's
  range), and objects with a key twice (orjson keeps the last value);
- a numeric field that is not a non-empty flat array of numbers or a 2-D array of rows of
  equal length (booleans, nulls and strings among them included);
- a numeric field holding a number of magnitude 2**53 or more: where its numbers are all
  integers numpy makes an int64 or uint64 array of them (or refuses a mix it cannot hold) and
  rounds each to float32 once, where the doubles here would be rounded twice; values that
  large are not worth telling the cases apart;
- a document holding more "[" than the arrays seen: simdjson's copy flattens nested arrays, so
  [1, [2]] would pass as [1, 2]. Every array outside the numeric fields is seen as it is turned
  into a list, and strings or keys holding "[" are declined, so the count is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simdjson

# Doubles hold every integer below this exactly.
EXACT_INTEGERS = 2.0 ** 53
_OPEN_BRACKET = ord("[")


class _FullPath(Exception):
    """This document is the full parser's to read."""


class _Walk:
    """Turns a simdjson document into Python values, keeping numeric fields as arrays."""

    def __init__(self) -> None:
        self.arrays = 0  # arrays of the document seen, numeric fields' own rows included

    def value(self, node: Any) -> Any:
        if isinstance(node, simdjson.Object):
            return {key: self.value(node[key]) for key in self.keys(node)}
        if isinstance(node, simdjson.Array):
            self.arrays += 1
            return [self.value(item) for item in node]
        if isinstance(node, str) and "[" in node:
            raise _FullPath
        return node

    @staticmethod
    def keys(node: simdjson.Object) -> list[str]:
        keys = list(node.keys())
        if len(set(keys)) != len(keys) or any("[" in key for key in keys):
            raise _FullPath
        return keys

    def numbers(self, node: Any) -> Any:
        """A numeric field's value: its numbers as a float64 array (1-D, or 2-D for rows), or,
        where it is no array, the value itself."""
        if not isinstance(node, simdjson.Array):
            return self.value(node)
        count = len(node)
        if count == 0:
            raise _FullPath
        try:
            leaves = np.frombuffer(node.as_buffer(of_type="d"), dtype=np.float64)
        except (TypeError, ValueError):  # booleans, nulls, strings or objects among them
            raise _FullPath from None
        shape: tuple[int, ...] = (count,)
        self.arrays += 1
        first = node[0]
        if isinstance(first, simdjson.Array):
            columns = len(first)
            for row in node:
                if not isinstance(row, simdjson.Array) or len(row) != columns:
                    raise _FullPath
            shape = (count, columns)
            self.arrays += count
        if leaves.size != int(np.prod(shape)) or float(np.abs(leaves).max()) >= EXACT_INTEGERS:
            raise _FullPath
        return leaves.reshape(shape)


def parse_with_arrays(text: bytes, numeric: tuple[tuple[str, ...], ...]) -> dict | None:
    """The JSON object `text` as Python values, with the fields at the key paths `numeric`
    (a "*" step: every element of an array) as float64 arrays; None where only the full path
    gives exactly what it would (see the module's docstring)."""
    try:
        document = simdjson.Parser().parse(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, simdjson.Object):
        return None
    walk = _Walk()
    try:
        result = _object(walk, document, numeric)
    except (_FullPath, RecursionError):
        return None
    if walk.arrays != int(np.count_nonzero(np.frombuffer(text, dtype=np.uint8)
                                            == _OPEN_BRACKET)):
        return None
    return result


def _object(walk: _Walk, node: simdjson.Object, numeric: tuple[tuple[str, ...], ...]) -> dict:
    out = {}
    for key in walk.keys(node):
        paths = tuple(path[1:] for path in numeric if path[0] == key)
        out[key] = _at(walk, node[key], paths)
    return out


def _at(walk: _Walk, node: Any, paths: tuple[tuple[str, ...], ...]) -> Any:
    """node's value, where `paths` lead on from it to numeric fields."""
    if not paths:
        return walk.value(node)
    if any(not path for path in paths):
        return walk.numbers(node)
    if isinstance(node, simdjson.Object):
        return _object(walk, node, paths)
    star = tuple(path[1:] for path in paths if path[0] == "*")
    if isinstance(node, simdjson.Array) and star:
        walk.arrays += 1
        return [_at(walk, item, star) for item in node]
    return walk.value(node)
