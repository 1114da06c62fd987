"""A cap on how many values the JSON of a request body may hold, checked on each chunk as the
body arrives, before anything is parsed.

Why: parsing is what one client can make slow. Under the byte limit, `{"instances": [[], [],
...]}` is millions of lists; the parser builds them all in one C call, which holds the GIL all
that time, on a worker thread too, so every other request waits. Counting is cheap: every value
of a JSON text but the outermost one is an element of an array or object, and a container of k
elements holds k - 1 commas, so
    values <= 1 + commas + opening brackets ("[" and "{").
The compiled JSON reader (`service.json_native`) counts the three bytes in one vectorized pass;
without it, numpy counts them in three, still several times faster than three `bytes.count`
calls (`python -m benchmarks.json_decode`). No tokenizer either way. Commas and brackets inside
strings are counted too: the bound only grows, so a valid body is never refused as long as the
budget leaves room for what strings a request carries.
"""

from __future__ import annotations

import numpy as np

from . import json_native
from .errors import too_large

_COMMA, _BRACKET, _BRACE = (ord(c) for c in ",[{")

# Room for what a valid request holds besides its numbers: the keys' values, shape, datatype,
# parameters, requested outputs, and commas inside its strings.
SLACK_VALUES = 1024


def input_budget(input_size: int, max_instances: int) -> int:
    """Values in the largest valid inference request: max_instances rows (a list each, or
    none when flat) of input_size numbers, plus slack."""
    return max_instances * (input_size + 1) + SLACK_VALUES


def budget_reason(input_size: int, max_instances: int) -> str:
    return (f"this model takes at most {max_instances} examples of {input_size} numbers per "
            "request")


class JsonValueCounter:
    """Counts an upper bound on the JSON values of the first `json_bytes` bytes fed (all of
    them when None) and refuses with 413 as soon as it passes `limit`."""

    def __init__(self, limit: int, why: str, json_bytes: int | None = None) -> None:
        self.limit = limit
        self.why = why
        self.left = json_bytes  # bytes of JSON still to come; None: all of the body is JSON
        self.values = 1  # the outermost value

    def feed(self, chunk: bytes) -> None:
        if self.left is not None:
            chunk = chunk[:self.left]
            self.left -= len(chunk)
        if not chunk:
            return
        self.values += value_marks(chunk)
        if self.values > self.limit:
            raise too_large(f"the request body's JSON holds more than {self.limit} values "
                            f"(commas and brackets counted, inside strings too); {self.why}")


def value_marks(chunk: bytes) -> int:
    """Commas and opening brackets in `chunk`."""
    reader = json_native.load()
    if reader is not None:
        return reader.value_marks(chunk)
    data = np.frombuffer(chunk, dtype=np.uint8)
    return int(np.count_nonzero(data == _COMMA) + np.count_nonzero(data == _BRACKET)
               + np.count_nonzero(data == _BRACE))
