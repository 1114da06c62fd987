"""Request bodies to input matrices, and output tensors to response bodies: every check a
request's data must pass before it reaches a model, each failure a 400 or 413 that names it.

- JSON is parsed by orjson, which is strict: NaN and Infinity are refused, as JSON has no such
  numbers (Python's json accepts them). A body of at least `ARRAYS_FROM_BYTES` first has its
  tensors' numbers read straight into numpy, by the compiled reader (`service.json_native`;
  orjson parses the rest) or, where no C compiler built it, by simdjson
  (`service.json_arrays`); where that would not give exactly orjson's result, orjson reads it
  all.
- The Open Inference Protocol's binary tensor extension: a body of JSON followed by raw tensor
  bytes, the JSON's length in the `Inference-Header-Content-Length` header, each input's byte
  count in its `binary_data_size` parameter (little-endian, row-major). tritonclient sends
  this by default.
- Data must be numbers (no booleans, strings or nulls), of the declared shape, finite in
  float32 (1e39 is finite in JSON but infinite in float32).
- Bodies are bounded while they are read, in bytes and in JSON values (`service.json_budget`),
  and decoded (`decode_predict`, `decode_infer`) off the event loop (`service.off_loop`).

Letters: B examples, D input units.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from . import json_native
from .body_memory import RECEIVING
from .errors import bad_request, too_large
from .json_arrays import parse_with_arrays
from .json_budget import JsonValueCounter
from .schemas import InferenceRequest, PredictRequest, RequestInput

BINARY_HEADER = "inference-header-content-length"
INPUT_NAME = "input"


# JSON values a body may hold where the caller sets no budget: far more than any small
# control body needs, few enough to parse in a few milliseconds.
DEFAULT_JSON_VALUES = 4096


async def read_body(request: Request, limit: int, counter: JsonValueCounter | None = None,
                    receiving_limit: int | None = None, retry_after_s: int = 1) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (chunked bodies too) or
    `counter`'s budget of JSON values (`service.json_budget`; by default DEFAULT_JSON_VALUES),
    which then holds the count; with `receiving_limit`, refused with 503 where the bodies being
    received at once would pass it (`service.body_memory`). The rest of a refused body is not
    read: the server's protocol lingers and closes (`service.http_protocol`)."""
    declared = _byte_count(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise too_large(f"request body of {declared} bytes is over the limit of {limit}")
    counter = counter or JsonValueCounter(DEFAULT_JSON_VALUES, "send a smaller body")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            if receiving_limit is not None:
                RECEIVING.take(len(chunk), receiving_limit, retry_after_s)
            size += len(chunk)
            chunks.append(chunk)
            if size > limit:
                raise too_large(f"request body is over the limit of {limit} bytes")
            counter.feed(chunk)
    except ClientDisconnect:
        # Gone (or closed by the server's body timeout): nobody reads the answer, but it must
        # not count as a server error.
        raise bad_request("the client disconnected before the body was complete") from None
    finally:
        if receiving_limit is not None:
            RECEIVING.give_back(size)
    return b"".join(chunks)


def _byte_count(header: str | None) -> int | None:
    """A header's decimal byte count, else None. Not str.isdigit alone: it passes "²" (a header
    is decoded as latin-1), which int() then refuses."""
    if header is None or not (header.isascii() and header.isdigit()):
        return None
    return int(header)


# Where orjson stops at one of these, the body holds a number JSON does not allow.
NON_JSON_NUMBERS = (b"NaN", b"Infinity", b"-Infinity")


def parse_json(text: bytes, what: str = "request body") -> Any:
    if not text.strip():
        raise bad_request(f"the {what} is empty; send a JSON object")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise bad_request(_json_problem(text, error, what)) from None


def _json_problem(text: bytes, error: orjson.JSONDecodeError, what: str) -> str:
    if "UTF-8" in error.msg:
        return f"the {what} is not UTF-8 text"
    found = next((n for n in NON_JSON_NUMBERS if text.startswith(n, error.pos)), None)
    if found is not None:
        return (f"the {what} is not valid JSON: {found.decode()} is not a number JSON allows; "
                "send finite numbers only")
    return (f"the {what} is not valid JSON: {error.msg} at line {error.lineno} column "
            f"{error.colno}")


def validate(model: type[BaseModel], payload: Any, what: str = "request body"):
    """payload as `model`, or a 400 listing every field that is wrong and why."""
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False)[:10]:
            where = ".".join(str(p) for p in item["loc"]) or "(body)"
            problems.append(f"{where}: {item['msg']}")
        raise bad_request(f"invalid {what}: " + "; ".join(problems)) from None


def binary_json_bytes(request: Request) -> int | None:
    """The JSON part's length under the binary tensor extension, None without it."""
    header = request.headers.get(BINARY_HEADER)
    if header is None:
        return None
    size = _byte_count(header)
    if size is None:
        raise bad_request(f"Inference-Header-Content-Length {header!r} must be a byte count")
    return size


def split_binary_body(json_bytes: int | None, body: bytes) -> tuple[bytes, bytes | None]:
    """(JSON part, binary part or None) of a body, per the binary tensor extension."""
    if json_bytes is None:
        return body, None
    if json_bytes > len(body):
        raise bad_request(f"Inference-Header-Content-Length {json_bytes} must be no larger "
                          f"than the body ({len(body)} bytes)")
    return body[:json_bytes], body[json_bytes:]


# Bodies from this size have their tensors read straight into numpy first (`service.json_native`
# or `service.json_arrays`): below it, orjson's whole parse costs about what either reader's
# setup does (`python -m benchmarks.json_decode`).
ARRAYS_FROM_BYTES = 8 * 1024
# Where the tensors of each API's bodies lie.
PREDICT_NUMBERS = (("instances",),)
INFER_NUMBERS = (("inputs", "*", "data"),)


def _parse_numbers(text: bytes, numeric: tuple[tuple[str, ...], ...],
                   arrays_from_bytes: float, reader_threads: int) -> Any:
    """The JSON text as Python values, its tensors (at `numeric`) as float64 arrays where
    the compiled reader (on `reader_threads`), or without one simdjson, reads them exactly as
    orjson and numpy would (texts of `arrays_from_bytes` or more), else as lists."""
    if len(text) < arrays_from_bytes:
        return parse_json(text)
    reader = json_native.load()
    fast = (json_native.parse_with_arrays(text, numeric, reader, reader_threads)
            if reader is not None else parse_with_arrays(text, numeric))
    return fast if fast is not None else parse_json(text)


def decode_predict(body: bytes, input_size: int, max_rows: int, *,
                   arrays_from_bytes: float = ARRAYS_FROM_BYTES,
                   reader_threads: int = 1) -> np.ndarray:
    """A JSON API body as its (B, D) input matrix. Costly for large bodies: run it through
    `service.off_loop`. `arrays_from_bytes`: the body size from which its tensor is read
    straight into numpy first (infinity: orjson alone, the full path); `reader_threads`: 2 lets
    the compiled reader read a long tensor on two threads."""
    payload = _parse_numbers(body, PREDICT_NUMBERS, arrays_from_bytes, reader_threads)
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if isinstance(instances, np.ndarray):  # the schema's other checks, on a stand-in list
        validate(PredictRequest, {**payload, "instances": [None]})
        return matrix(instances, input_size, max_rows, "instances")
    request = validate(PredictRequest, payload)
    return matrix(request.instances, input_size, max_rows, "instances",
                  may_hold_booleans=_may_hold_booleans(body))


def decode_infer(body: bytes, json_bytes: int | None, input_size: int, max_rows: int, *,
                 arrays_from_bytes: float = ARRAYS_FROM_BYTES, reader_threads: int = 1
                 ) -> tuple[InferenceRequest, np.ndarray]:
    """An Open Inference Protocol body as (the request, its (B, D) input matrix). Costly for
    large bodies: run it through `service.off_loop`. `arrays_from_bytes`, `reader_threads`: as
    for `decode_predict`."""
    header, binary = split_binary_body(json_bytes, body)
    payload = validate(InferenceRequest, _parse_numbers(header, INFER_NUMBERS,
                                                        arrays_from_bytes, reader_threads))
    if len(payload.inputs) != 1:
        raise bad_request(f"this model takes exactly one input ({INPUT_NAME!r}), got "
                          f"{len(payload.inputs)}")
    tensor = payload.inputs[0]
    x, _ = oip_matrix(tensor, binary, 0, input_size, max_rows, may_hold_booleans=(
        not isinstance(tensor.data, np.ndarray) and _may_hold_booleans(header)))
    return payload, x


# The bytes of JSON numbers and the punctuation between them, dropped before looking for
# true and false: what is left of a body of numbers is its keys and strings, a few hundred
# bytes, so the search costs one pass of `bytes.translate` (0.17 ms for 25,088 numbers in
# 517 KB, against 0.54 ms for searching the body for both words: `python -m
# benchmarks.json_decode`).
_NUMBER_BYTES = b"0123456789.,-+eE[] \t\r\n"


def _may_hold_booleans(text: bytes) -> bool:
    """Whether JSON text could hold true or false anywhere: where it cannot, the walk over
    every number looking for them is skipped. Dropping the number bytes leaves "tru" of true
    and "fals" of false (their e goes), so neither is ever missed; a string holding either
    only costs the walk."""
    rest = text.translate(None, _NUMBER_BYTES)
    return b"tru" in rest or b"fals" in rest


def matrix(data: Any, input_size: int, max_rows: int, where: str, *,
           may_hold_booleans: bool = True) -> np.ndarray:
    """A JSON list of rows (the JSON API's instances), or the array simdjson made of it, as a
    finite float32 (B, D) matrix."""
    if not isinstance(data, list | np.ndarray) or not len(data):
        raise bad_request(f"{where} must be a non-empty list of examples, each a list of "
                          f"{input_size} numbers")
    if len(data) > max_rows:
        raise too_large(f"{where} holds {len(data)} examples; the limit per request is "
                        f"{max_rows}")
    array = data if isinstance(data, np.ndarray) else _numbers(data, where, may_hold_booleans)
    if array.ndim != 2 or array.shape[1] != input_size:
        shape = list(array.shape)
        raise bad_request(f"{where} must be examples of {input_size} numbers each, shape "
                          f"[n, {input_size}]; got shape {shape}")
    return _finite_float32(array, where)


def oip_matrix(tensor: RequestInput, binary: bytes | None, offset: int, input_size: int,
               max_rows: int, *, may_hold_booleans: bool = True) -> tuple[np.ndarray, int]:
    """The (B, D) matrix of one v2 input, and the binary offset after it."""
    where = f"input {tensor.name!r}"
    if tensor.name != INPUT_NAME:
        raise bad_request(f"unknown input {tensor.name!r}; this model takes one input "
                          f"named {INPUT_NAME!r}")
    if tensor.datatype != "FP32":
        raise bad_request(f"{where} has datatype {tensor.datatype!r}; this model takes FP32")
    shape = tensor.shape
    if len(shape) != 2 or shape[1] != input_size or shape[0] < 1:
        raise bad_request(f"{where} has shape {shape}; this model takes [batch, {input_size}] "
                          "with batch >= 1")
    if shape[0] > max_rows:
        raise too_large(f"{where} holds {shape[0]} examples; the limit per request is "
                        f"{max_rows}")
    count = shape[0] * shape[1]
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        if binary is None:
            raise bad_request(f"{where} has binary_data_size but the request has no "
                              "Inference-Header-Content-Length header")
        if not isinstance(size, int) or isinstance(size, bool) or size != 4 * count:
            raise bad_request(f"{where}: binary_data_size must be {4 * count} (shape {shape} "
                              f"of FP32), got {size!r}")
        if tensor.data is not None:
            raise bad_request(f"{where} has both data and binary_data_size")
        if offset + size > len(binary):
            raise bad_request(f"{where}: the body holds {len(binary) - offset} binary bytes "
                              f"for it, binary_data_size says {size}")
        # A copy: torch wants writable memory, and the body's bytes are read-only.
        array = np.frombuffer(binary, dtype="<f4", count=count, offset=offset).copy()
        return _finite_float32(array.reshape(shape), where), offset + size
    if tensor.data is None:
        raise bad_request(f"{where} has no data")
    array = (tensor.data if isinstance(tensor.data, np.ndarray) else
             _numbers(tensor.data if isinstance(tensor.data, list) else [tensor.data], where,
                      may_hold_booleans))
    if array.size != count:
        raise bad_request(f"{where}: shape {shape} needs {count} numbers, data holds "
                          f"{array.size}")
    if array.ndim != 1 and list(array.shape) != shape:
        raise bad_request(f"{where}: nested data of shape {list(array.shape)} does not match "
                          f"shape {shape}")
    return _finite_float32(array.reshape(shape), where), offset


def _numbers(data: list, where: str, may_hold_booleans: bool = True) -> np.ndarray:
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):  # ragged nesting
        raise bad_request(f"{where}: rows of different lengths or mixed nesting") from None
    if array.dtype.kind not in "iuf" or (may_hold_booleans
                                          and _holds_booleans(data, array.ndim)):
        raise bad_request(f"{where} must hold numbers only (no strings, booleans or nulls)")
    return array


def _holds_booleans(data: list, depth: int) -> bool:
    """Whether JSON true/false hides among numbers: numpy makes [true, 0.5] a float array.
    `data` became a numeric array of `depth` dimensions, so it is regular and its leaves lie
    `depth` levels down; chain and map keep the walk in C (about 20 ns a number, as much as
    np.asarray takes)."""
    leaves = iter(data)
    for _ in range(depth - 1):
        leaves = chain.from_iterable(leaves)
    return bool in set(map(type, leaves))


def _finite_float32(array: np.ndarray, where: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out))[0].tolist()
        raise bad_request(f"{where}: the number at index {bad} is not finite in float32 (NaN, "
                          f"infinity, or beyond ±3.4e38)")
    return out


def binary_output(array: np.ndarray) -> bytes:
    """A response tensor's bytes for the binary extension: little-endian, row-major."""
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()

