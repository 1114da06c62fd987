"""Both inference APIs fuzzed through the real app: whatever the body, the answer is 200 or a 4xx
carrying `{"error": message}`, never a 5xx, and 200 exactly when the body is valid.

"Valid" is the HTTP contract of service/schemas.py and service/tensors.py, restated here by
`expected_v1` and `expected_v2` without the server's code: JSON without NaN or Infinity, the
documented keys only, numbers that are numbers (no booleans, strings or nulls) and finite in
float32, the declared shapes, at most MAX_ROWS examples and MAX_BODY bytes. The server refuses
the three Content-Types a web page can send without a CORS preflight (forms, text/plain) and
reads the body whatever any other type says (as Triton does); `accepted` restates that.

Runs are deterministic (derandomized, no example database) and each property stops at
EXAMPLES examples.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import struct
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from starlette.requests import Request

from service.app import create_app
from service.tensors import read_body

from .conftest import INPUT_SIZE, settings, write_repository

MAX_ROWS = 8
MAX_BODY = 16384
EXAMPLES = 200
FUZZ = hypothesis_settings(max_examples=EXAMPLES, derandomize=True, database=None,
                           deadline=None, suppress_health_check=list(HealthCheck))
V1_PATHS = ["/v1/models/tiny:predict", "/v1/models/tiny/versions/2:predict"]
V2_PATHS = ["/v2/models/tiny/infer", "/v2/models/tiny/versions/2/infer"]
OUTPUTS = ["probabilities", "logits", "predicted_class", "executed_macs", "active_blocks"]
BINARY_HEADER = "Inference-Header-Content-Length"
# The smallest double that float32 rounds to infinity: max float32 plus half its last step.
F32_OVERFLOW = 2.0**128 - 2.0**103
CONTENT_TYPES = [None, "application/json", "text/plain", "application/octet-stream",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                 "application/json; charset=latin-1", "\u00e9/\u00b2", "Text/Plain ;x=y",
                 "text/plainer", "application/x-www-form-urlencoded-not"]
REFUSED_TYPES = {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    repository = write_repository(tmp_path_factory.mktemp("repo"))
    app = create_app(settings(repository, max_instances=MAX_ROWS, max_body_bytes=MAX_BODY))
    with TestClient(app) as client:
        yield client


def post(client: TestClient, path: str, body: bytes,
         headers: dict[str, bytes] | None = None) -> httpx.Response:
    """POST through the app in the test client's event loop (where its lifespan loaded the
    models), with header values sent byte for byte: TestClient re-encodes non-ASCII ones."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            raw = [(name.encode(), value) for name, value in (headers or {}).items()]
            return await http.post(path, content=body, headers=raw)

    return client.portal.call(send)


# --- the oracle -------------------------------------------------------------------------------


def all_of(verdicts) -> bool | None:
    """False if any is False; else None (the contract leaves it open) if any is None; else True."""
    verdicts = list(verdicts)
    if False in verdicts:
        return False
    return None if None in verdicts else True


def number(value: Any) -> bool | None:
    """Whether `value` is a number the APIs take. Integers beyond int64 are left open: numpy
    cannot hold them as integers, and the server refuses them as not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int) and not -2**63 <= value < 2**63:
        return None
    return math.isfinite(value) and abs(value) < F32_OVERFLOW


def parameters_ok(parameters: Any) -> bool:
    """Absent, or an object of strings, numbers (finite) and booleans."""
    if parameters is None:
        return True
    return isinstance(parameters, dict) and all(
        isinstance(v, str | int) or (isinstance(v, float) and math.isfinite(v))
        for v in parameters.values())


def parse(raw: bytes) -> tuple[bool, Any]:
    """(True, the JSON value) of a body, or (False, None): JSON without NaN or Infinity."""

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    try:
        return True, json.loads(raw, parse_constant=refuse)
    except (ValueError, RecursionError):
        return False, None


def expected_v1(body: Any) -> bool | None:
    if not (isinstance(body, dict) and set(body) == {"instances"}):
        return False
    rows = body["instances"]
    if not (isinstance(rows, list) and 1 <= len(rows) <= MAX_ROWS):
        return False
    if not all(isinstance(row, list) and len(row) == INPUT_SIZE for row in rows):
        return False
    return all_of(number(v) for row in rows for v in row)


def expected_v2(body: Any, binary: bytes | None = None) -> bool | None:
    """`binary`: the bytes after the JSON part, where the binary extension's header is sent."""
    if not (isinstance(body, dict) and "inputs" in body
            and set(body) <= {"id", "parameters", "inputs", "outputs"}):
        return False
    if not (body.get("id") is None or isinstance(body["id"], str)):
        return False
    if not parameters_ok(body.get("parameters")):
        return False
    outputs = body.get("outputs")
    if outputs is not None and not (isinstance(outputs, list) and all(
            isinstance(o, dict) and set(o) <= {"name", "parameters"} and o.get("name") in OUTPUTS
            and parameters_ok(o.get("parameters")) for o in outputs)):
        return False
    inputs = body["inputs"]
    if not (isinstance(inputs, list) and len(inputs) == 1):
        return False
    tensor = inputs[0]
    if not (isinstance(tensor, dict) and {"name", "shape", "datatype"} <= set(tensor)
            <= {"name", "shape", "datatype", "parameters", "data"}):
        return False
    shape = tensor["shape"]
    if not (tensor["name"] == "input" and tensor["datatype"] == "FP32"
            and isinstance(shape, list) and len(shape) == 2
            and all(type(n) is int for n in shape)
            and 1 <= shape[0] <= MAX_ROWS and shape[1] == INPUT_SIZE
            and parameters_ok(tensor.get("parameters"))):
        return False
    count, data = shape[0] * INPUT_SIZE, tensor.get("data")
    if "binary_data_size" in (tensor.get("parameters") or {}):
        size = tensor["parameters"]["binary_data_size"]
        if binary is None or data is not None or type(size) is not int or size != 4 * count \
                or len(binary) < size:
            return False
        return all(math.isfinite(v) for v in struct.unpack(f"<{count}f", binary[:size]))
    if not isinstance(data, list):  # absent, or one number where `count` are needed
        return False
    flat = len(data) == count and all(not isinstance(v, list) for v in data)
    nested = len(data) == shape[0] and all(
        isinstance(row, list) and len(row) == INPUT_SIZE for row in data)
    if not (flat or nested):
        return False
    return all_of(number(v) for v in (data if flat else (v for row in data for v in row)))


# --- checking an answer -----------------------------------------------------------------------


def strict_json(text: bytes) -> Any:
    """Responses are JSON as RFC 8259 has it: no NaN or Infinity."""
    ok, value = parse(text)
    assert ok, f"the response is not strict JSON: {text[:300]!r}"
    return value


def answered(response: httpx.Response) -> int:
    """How many examples a 200 answers."""
    head = response.content
    if BINARY_HEADER.lower() in response.headers:
        head = head[:int(response.headers[BINARY_HEADER])]
    body = strict_json(head)
    if "predictions" in body:
        return len(body["predictions"])
    batches = {output["shape"][0] for output in body["outputs"]}
    assert len(batches) == 1, body["outputs"]
    return batches.pop()


def check(response: httpx.Response, valid: bool | None, examples: int | None) -> None:
    status = response.status_code
    event(f"status {status}")  # see --hypothesis-show-statistics
    assert status < 500, f"server error {status}: {response.text}"
    if status == 200:
        assert valid is not False, f"an invalid body was served: {response.text[:300]}"
        assert answered(response) == examples
        return
    assert 400 <= status < 500, status
    body = strict_json(response.content)
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    assert valid is not True, f"a valid body was refused with {status}: {body['error']}"


def examples_in(body: Any) -> int | None:
    """The batch size of a body, where it has one."""
    try:
        if isinstance(body, dict) and "instances" in body:
            return len(body["instances"])
        return body["inputs"][0]["shape"][0]
    except (KeyError, IndexError, TypeError):
        return None


def encode(body: Any) -> bytes:
    # allow_nan: NaN and infinities go out as the NaN / Infinity tokens the server refuses.
    return json.dumps(body, allow_nan=True).encode()


# --- strategies -------------------------------------------------------------------------------

EXTREMES = [float("nan"), float("inf"), -float("inf"), 1e39, -1e39, F32_OVERFLOW,
            3.4028234e38, -3.4028234e38, 5e-324, 2**63 - 1, 2**63, 2**64, -2**63 - 1, 10**30]
finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
good_numbers = st.one_of(finite32, st.integers(-10**6, 10**6))
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                   st.sampled_from(EXTREMES))
keys = st.one_of(st.sampled_from(["instances", "inputs", "outputs", "name", "shape", "datatype",
                                  "data", "parameters", "id", "binary_data_size"]),
                 st.text(max_size=6))
json_values = st.recursive(leaves, lambda children: st.one_of(
    st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=4)), max_leaves=24)
# What numpy or pydantic could mistake for a number, or a number that is not finite in float32.
ODD = [True, False, None, "1", "1.5", "", [], {}, [1.0], float("nan"), float("inf"),
       -float("inf"), 1e39, -F32_OVERFLOW, 2**64, -2**63 - 1]
odd_values = st.one_of(st.sampled_from(ODD), st.text(max_size=4))


def rows_of(batch: int):
    return st.lists(st.lists(good_numbers, min_size=INPUT_SIZE, max_size=INPUT_SIZE),
                    min_size=batch, max_size=batch)


def pick(draw, items: list) -> int:
    return draw(st.integers(0, len(items) - 1))


def mutate_numbers(draw, rows: Any) -> None:
    """One number of a list of rows (or a flat list) becomes something else, in place."""
    if not isinstance(rows, list) or not rows:
        return
    i = pick(draw, rows)
    if isinstance(rows[i], list) and rows[i]:
        rows[i][pick(draw, rows[i])] = draw(odd_values)
    else:
        rows[i] = draw(odd_values)


def resize(draw, rows: Any) -> None:
    """A row (or a flat list) loses or gains a number, in place."""
    if not isinstance(rows, list) or not rows:
        return
    target = rows[pick(draw, rows)] if isinstance(rows[0], list) else rows
    if isinstance(target, list):
        if draw(st.booleans()) and target:
            target.pop()
        else:
            target.append(draw(good_numbers))


V1_CHANGES = ["number", "resize", "row", "nest", "flatten", "key", "extra", "instances", "wrap"]


@st.composite
def v1_bodies(draw) -> Any:
    """A valid v1 body, or one to three small changes away from one."""
    body: Any = {"instances": draw(rows_of(draw(st.integers(0, MAX_ROWS + 1))))}
    for change in draw(st.lists(st.sampled_from(V1_CHANGES), max_size=3)):
        rows = body.get("instances") if isinstance(body, dict) else None
        if change == "number":
            mutate_numbers(draw, rows)
        elif change == "resize":
            resize(draw, rows)
        elif change == "row" and isinstance(rows, list) and rows:
            rows[pick(draw, rows)] = draw(json_values)
        elif change == "nest" and isinstance(body, dict):
            body["instances"] = [rows]
        elif change == "flatten" and isinstance(rows, list) and rows:
            body["instances"] = rows[0]
        elif change == "key" and isinstance(body, dict):
            body = {draw(st.sampled_from(["instance", "inputs", "Instances", ""])): rows}
        elif change == "extra" and isinstance(body, dict):
            body[draw(keys)] = draw(json_values)
        elif change == "instances" and isinstance(body, dict):
            body["instances"] = draw(json_values)
        elif change == "wrap":
            body = [body]
    return body


BAD_SHAPES = [[True, INPUT_SIZE], ["1", INPUT_SIZE], [1.0, INPUT_SIZE], [1], [1, INPUT_SIZE, 1],
              [0, INPUT_SIZE], [-1, INPUT_SIZE], [MAX_ROWS + 1, INPUT_SIZE], [1, INPUT_SIZE - 1],
              [1, INPUT_SIZE + 0.5], [2**70, INPUT_SIZE], None, "1,12", []]
V2_CHANGES = ["datatype", "shape", "name", "no data", "data", "number", "resize", "reshape",
              "tensor key", "inputs", "two inputs", "parameters", "binary size", "outputs", "id",
              "key"]


def v2_tensor(draw, batch: int) -> dict[str, Any]:
    rows = draw(rows_of(batch))
    data = rows if draw(st.booleans()) else [v for row in rows for v in row]
    return {"name": "input", "shape": [batch, INPUT_SIZE], "datatype": "FP32", "data": data}


@st.composite
def v2_bodies(draw) -> Any:
    """A valid v2 body (with or without id, parameters and outputs), or one to three small
    changes away from one."""
    tensor = v2_tensor(draw, draw(st.integers(1, MAX_ROWS)))
    body: dict[str, Any] = {"inputs": [tensor]}
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=8))
    if draw(st.booleans()):
        body["parameters"] = {"binary_data_output": draw(st.booleans())}
    if draw(st.booleans()):
        body["outputs"] = [{"name": n} for n in draw(st.lists(st.sampled_from(OUTPUTS)))]
    for change in draw(st.lists(st.sampled_from(V2_CHANGES), max_size=3)):
        if change == "datatype":
            tensor["datatype"] = draw(st.sampled_from(["FP64", "INT32", "fp32", "BYTES", "", 32,
                                                       None]))
        elif change == "shape":
            tensor["shape"] = draw(st.sampled_from(BAD_SHAPES) | json_values)
        elif change == "name":
            tensor["name"] = draw(st.sampled_from(["x", "INPUT", "", None, 1]))
        elif change == "no data":
            tensor.pop("data", None)
        elif change == "data":
            tensor["data"] = draw(json_values)
        elif change == "number":
            mutate_numbers(draw, tensor.get("data"))
        elif change == "resize":
            resize(draw, tensor.get("data"))
        elif change == "reshape" and isinstance(tensor.get("data"), list):
            flat = [v for row in tensor["data"] for v in (row if isinstance(row, list)
                                                            else [row])]
            width = draw(st.sampled_from([1, 2, 6, 24]))
            tensor["data"] = [flat[i:i + width] for i in range(0, len(flat), width)]
        elif change == "tensor key":
            tensor[draw(keys)] = draw(json_values)
        elif change == "inputs":
            body["inputs"] = draw(st.sampled_from([[], None, "input", [None]]) | json_values)
        elif change == "two inputs":
            body["inputs"] = [tensor, dict(tensor)]
        elif change == "parameters":
            where = tensor if draw(st.booleans()) else body
            where["parameters"] = {draw(keys): draw(json_values)}
        elif change == "binary size":
            tensor["parameters"] = {"binary_data_size": draw(st.integers(-4, 4 * INPUT_SIZE * 9))}
        elif change == "outputs":
            body["outputs"] = draw(st.sampled_from(
                [[{"name": "nope"}], [{"name": "logits", "extra": 1}], "logits", [{}], [None]])
                | json_values)
        elif change == "id":
            body["id"] = draw(st.sampled_from([5, None, [], {"a": 1}]))
        elif change == "key":
            body[draw(keys)] = draw(json_values)
    return body


def headers(draw) -> dict[str, bytes]:
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    return {} if content_type is None else {"Content-Type": content_type.encode("utf-8")}


def post_checked(app_client, data, paths: list[str], raw: bytes, valid: bool | None,
                 body: Any) -> None:
    """POST raw to one of paths with a drawn Content-Type, and check the answer against the
    oracle's verdict for that body and type."""
    path = data.draw(st.sampled_from(paths))
    sent = headers(data.draw)
    check(post(app_client, path, raw, sent), accepted(valid, sent), examples_in(body))


def accepted(valid: bool | None, sent: dict[str, bytes]) -> bool | None:
    """The oracle's verdict once the Content-Type is known: form types are never served."""
    value = sent.get("Content-Type")
    kind = None if value is None else value.decode("latin-1").split(";")[0].strip().lower()
    return False if kind in REFUSED_TYPES else valid


# --- properties -------------------------------------------------------------------------------


@FUZZ
@given(body=json_values, v1=st.booleans(), data=st.data())
def test_any_json_body_is_a_200_or_a_4xx_error(app_client, body, v1, data):
    valid = expected_v1(body) if v1 else expected_v2(body)
    post_checked(app_client, data, V1_PATHS if v1 else V2_PATHS, encode(body), valid, body)


@FUZZ
@given(body=v1_bodies(), data=st.data())
def test_near_valid_v1_bodies_are_served_exactly_when_valid(app_client, body, data):
    raw = encode(body)
    valid = expected_v1(body) if len(raw) <= MAX_BODY else False
    post_checked(app_client, data, V1_PATHS, raw, valid, body)


@FUZZ
@given(body=v2_bodies(), data=st.data())
def test_near_valid_v2_bodies_are_served_exactly_when_valid(app_client, body, data):
    raw = encode(body)
    valid = expected_v2(body) if len(raw) <= MAX_BODY else False
    post_checked(app_client, data, V2_PATHS, raw, valid, body)


NUMBER = re.compile(rb"(?<=[\[ ])-?[0-9][0-9.eE+-]*")  # a number in a list
LITERALS = [b"1e400", b"-1e400", b"1e39", b"9" * 5000, b"1E+38", b"-0", b"0.0e0", b"NaN",
            b"-Infinity", b"true", b"null", b'"1"', b"0x10", b"1_000", b"+1", b".5", b"01"]


@st.composite
def raw_bodies(draw) -> bytes:
    """Random bytes, or the text of a near-valid body cut, spliced or with one number literal
    swapped for another (big, non-finite, or not JSON)."""
    kind = draw(st.sampled_from(["bytes", "cut", "splice", "literal"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    text = encode(draw(v1_bodies() | v2_bodies()))
    if kind == "cut":
        return text[:draw(st.integers(0, len(text)))]
    if kind == "splice":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
    numbers = list(NUMBER.finditer(text))
    if not numbers:
        return text
    found = numbers[draw(st.integers(0, len(numbers) - 1))]
    return text[:found.start()] + draw(st.sampled_from(LITERALS)) + text[found.end():]


@FUZZ
@given(raw=raw_bodies(), v1=st.booleans(), data=st.data())
def test_raw_bytes_and_any_content_type_never_cause_a_server_error(app_client, raw, v1, data):
    ok, body = parse(raw)
    valid = ok and len(raw) <= MAX_BODY and (expected_v1(body) if v1 else expected_v2(body))
    post_checked(app_client, data, V1_PATHS if v1 else V2_PATHS, raw, valid, body)


HEADER_VALUES = [b"", b" ", b"-1", b"+12", b"0x1f", b"1e2", b"\xb2", b"\xb9\xb3", b"12 ",
                 b"\xd9\xa1", b"99999999999999999999999", b"abc"]


@FUZZ
@given(data=st.data())
def test_binary_tensor_extension_is_served_exactly_when_consistent(app_client, data):
    batch = data.draw(st.integers(1, MAX_ROWS))
    floats = data.draw(st.lists(finite32, min_size=batch * INPUT_SIZE,
                                max_size=batch * INPUT_SIZE))
    blob = struct.pack(f"<{len(floats)}f", *floats)
    tensor = {"name": "input", "shape": [batch, INPUT_SIZE], "datatype": "FP32",
              "parameters": {"binary_data_size": len(blob)}}
    changes = data.draw(st.lists(st.sampled_from(["header", "size", "tail", "data", "bytes"]),
                                 max_size=2))
    if "size" in changes:
        tensor["parameters"]["binary_data_size"] = data.draw(
            st.sampled_from([len(blob) - 4, len(blob) + 4, 0, True, str(len(blob)), 1.5]))
    if "data" in changes:
        tensor["data"] = floats
    if "tail" in changes:
        cut = data.draw(st.integers(-len(blob), 8))
        blob = blob[:cut] if cut < 0 else blob + bytes(cut)
    if "bytes" in changes:  # any 4 bytes, so NaN and infinities too
        at = data.draw(st.integers(0, len(floats) - 1)) * 4
        blob = blob[:at] + data.draw(st.binary(min_size=4, max_size=4)) + blob[at + 4:]
    head = encode({"inputs": [tensor]})
    length = str(len(head)).encode()
    if "header" in changes:
        near = [str(len(head) + 1).encode(), str(len(head) - 1).encode()]
        length = data.draw(st.sampled_from([*HEADER_VALUES, *near]))
    body = head + blob
    # The oracle: the header must be a decimal byte count within the body, splitting it into a
    # JSON part and the tensor bytes.
    valid: bool | None = False
    if length.isdigit() and int(length) <= len(body):
        ok, payload = parse(body[:int(length)])
        valid = ok and expected_v2(payload, body[int(length):])
    response = post(app_client, V2_PATHS[0], body, {BINARY_HEADER: length})
    check(response, valid, batch)


@FUZZ
@given(batch=st.integers(1, MAX_ROWS), form=st.sampled_from(["v1", "flat", "nested", "binary"]),
       binary_output=st.booleans(), data=st.data())
def test_valid_bodies_of_any_batch_size_get_one_answer_per_example(app_client, batch, form,
                                                                   binary_output, data):
    rows = data.draw(st.lists(st.lists(finite32, min_size=INPUT_SIZE, max_size=INPUT_SIZE),
                              min_size=batch, max_size=batch))
    flat = [v for row in rows for v in row]
    if form == "v1":
        response = post(app_client, V1_PATHS[0], encode({"instances": rows}))
        check(response, True, batch)
        probabilities = [p["probabilities"] for p in response.json()["predictions"]]
        assert all(math.isclose(sum(p), 1.0, abs_tol=1e-5) for p in probabilities)
        return
    tensor = {"name": "input", "shape": [batch, INPUT_SIZE], "datatype": "FP32"}
    extra, sent = {}, b""
    if form == "binary":
        sent = struct.pack(f"<{len(flat)}f", *flat)
        tensor["parameters"] = {"binary_data_size": len(sent)}
    else:
        tensor["data"] = rows if form == "nested" else flat
    head = encode({"inputs": [tensor], "parameters": {"binary_data_output": binary_output}})
    if form == "binary":
        extra = {BINARY_HEADER: str(len(head)).encode()}
    response = post(app_client, V2_PATHS[0], head + sent, extra)
    check(response, True, batch)


BAD_FIELDS = {"shape": BAD_SHAPES, "datatype": ["FP64", "fp32", "FP16", "", 32, None],
              "name": ["x", "INPUT", "", None, 1]}


@FUZZ
@given(batch=st.integers(1, MAX_ROWS), form=st.sampled_from(["v1", "flat", "nested"]),
       field=st.sampled_from(["number", *BAD_FIELDS]), data=st.data())
def test_one_wrong_value_in_a_valid_body_is_refused(app_client, batch, form, field, data):
    rows = data.draw(rows_of(batch))
    row, column = data.draw(st.integers(0, batch - 1)), data.draw(st.integers(0, INPUT_SIZE - 1))
    if form == "v1" or field == "number":
        rows[row][column] = data.draw(odd_values)
    if form == "v1":
        body: Any = {"instances": rows}
    else:
        tensor = {"name": "input", "shape": [batch, INPUT_SIZE], "datatype": "FP32",
                  "data": rows if form == "nested" else [v for r in rows for v in r]}
        if field in BAD_FIELDS:
            tensor[field] = data.draw(st.sampled_from(BAD_FIELDS[field]))
        body = {"inputs": [tensor]}
    valid = expected_v1(body) if form == "v1" else expected_v2(body)
    assert valid is not True  # the oracle agrees that one wrong value spoils the body
    response = post(app_client, V1_PATHS[0] if form == "v1" else V2_PATHS[0], encode(body))
    check(response, valid, batch)


def test_a_content_length_that_is_not_ascii_digits_is_not_a_server_error():
    """Servers in front (h11, httptools) refuse such a header; the app must not rely on it."""
    scope = {"type": "http", "method": "POST", "path": "/", "headers": [
        (b"content-length", b"\xb2")]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    assert asyncio.run(read_body(Request(scope, receive), limit=1024)) == b"{}"
