"""The readers of a body's tensors straight into numpy give exactly what orjson and numpy give,
or decline: the compiled reader (`service.json_native`) and simdjson (`service.json_arrays`,
the server's where no C compiler built the other), each test run with each.

Every body here is decoded twice: as the server does (a reader first, for bodies of
`ARRAYS_FROM_BYTES` and more) and by the full path alone (orjson, then numpy). The matrices
must be equal bit for bit, in dtype and shape, and a refused body refused with the same status
and message. Bodies are padded past ARRAYS_FROM_BYTES with a long `id`, so the fast path is
tried on each; the tests of `parse_with_arrays` itself check which it takes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest

from service import json_arrays, json_native, tensors
from service.errors import ApiError
from service.tensors import ARRAYS_FROM_BYTES, INFER_NUMBERS, PREDICT_NUMBERS

from .json_texts import number_texts

D = 4
PAD = "x" * ARRAYS_FROM_BYTES


@pytest.fixture(autouse=True, params=["native", "simdjson"])
def reader(request, monkeypatch) -> str:
    """Which reader the server's decode takes: the compiled one, or simdjson (as where no
    compiler built the compiled one)."""
    if request.param == "simdjson":
        monkeypatch.setattr(json_native, "load", lambda: None)
    elif json_native.load() is None:
        pytest.skip("no C compiler built the JSON reader")
    return request.param


def parse_with_arrays(body: bytes, numeric, reader: str):
    if reader == "simdjson":
        return json_arrays.parse_with_arrays(body, numeric)
    return json_native.parse_with_arrays(body, numeric, json_native.load())


def infer_body(data, shape=(2, D), **extra) -> bytes:
    return json.dumps({"id": PAD, **extra, "inputs": [{"name": "input", "shape": list(shape),
                                                       "datatype": "FP32", "data": data}]}
                      ).encode()


def outcome(decode, *args, **options):
    try:
        x = decode(*args, **options)
    except ApiError as error:
        return ("refused", error.status, str(error))
    x = x[1] if isinstance(x, tuple) else x
    return ("matrix", x.dtype.str, x.shape, x.tobytes())


def both_ways(decode, body: bytes):
    """(the server's outcome, the full path's outcome) for body."""
    return outcome(decode, body), outcome(decode, body, arrays_from_bytes=math.inf)


def decode_infer(body: bytes, **options):
    return tensors.decode_infer(body, None, D, 64, **options)


def decode_predict(body: bytes, **options):
    return tensors.decode_predict(body, D, 64, **options)


ROWS = [[0.5, -1.25, 3e-8, 7], [1e15, -0.0, 2, 0.1]]
FLAT = [v for row in ROWS for v in row]
INFER_BODIES = [
    infer_body(FLAT),  # flat, integers among floats
    infer_body(ROWS),  # nested rows
    infer_body([1, 2, 3, 4, 5, 6, 7, 8]),  # integers only
    infer_body([2 ** 53 + 1] + [1] * 7),  # an integer doubles cannot hold
    infer_body([2 ** 63 + 1] + [1] * 7),  # uint64 in numpy
    infer_body([2 ** 63 + 1, -1] + [1] * 6),  # neither int64 nor uint64
    infer_body([1e30] + [1] * 7),
    # Just above halfway between two float32s, and exactly halfway once rounded to a double:
    # rounded twice, it goes down to the even float32; once, up.
    infer_body([2 ** 60 + 2 ** 36 + 1] + [1] * 7),
    infer_body([2 ** 24 + 1] + [1] * 7),  # one float32 rounds, doubles hold
    infer_body([[1, [2]], [3, 4]]),  # nested deeper in a row
    infer_body([1, [2], 3, 4, 5, 6, 7, 8]),  # an array among numbers, count unchanged
    infer_body([[1, 2, 3, 4], [5, 6, 7]]),  # ragged
    infer_body([[[1, 2, 3, 4], [5, 6, 7, 8]]]),  # three levels
    infer_body([True, 1, 2, 3, 4, 5, 6, 7]),
    infer_body([None] * 8),
    infer_body(["1"] * 8),
    infer_body([]),
    infer_body(7.5, shape=(1, 1)),  # a scalar
    infer_body([1e39] * 8),  # finite as a double, not as float32
    infer_body([1] * 8, shape=(2, D), parameters={"note": "a [bracket]"}),
    infer_body([1] * 8, shape=(2, D), parameters={"note": "\u005b"}),
    infer_body([1] * 7),  # too few numbers for the shape
    infer_body(ROWS, shape=(4, 2)),  # nested rows that are not the shape's
    infer_body(ROWS, shape=(2, 3)),
    infer_body([0.1] * 8, outputs=[{"name": "logits"}]),
    (b'{"id": "' + PAD.encode() + b'", "inputs": [{"name": "input", "shape": [2, 4], '
     b'"datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, -0]}]}'),
    (b'{"id": "' + PAD.encode() + b'", "inputs": [{"name": "input", "shape": [2, 4], '
     b'"datatype": "FP32", "data": [1e400, 2, 3, 4, 5, 6, 7, 8]}]}'),
    (b'{"id": "' + PAD.encode() + b'", "inputs": [{"name": "input", "shape": [2, 4], '
     b'"datatype": "FP32", "data": [NaN, 2, 3, 4, 5, 6, 7, 8]}]}'),
    (b'{"id": "' + PAD.encode() + b'", "inputs": [{"name": "input", "shape": [2, 4], '
     b'"datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 8,]}]}'),
    (b'{"id": "' + PAD.encode() + b'", "inputs": [{"name": "input", "shape": [2, 4], '
     b'"datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 8], "data": [8, 7, 6, 5, 4, 3, 2, 1]'
     b'}]}'),
    (b'{"id": "' + PAD.encode() + b'", "inputs": [{"name": "input", "shape": [2, 4], '
     b'"datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 18446744073709551616]}]}'),
    (b'{"id": "' + PAD.encode() + b'\xff", "inputs": []}'),
    (b'{"id": "' + PAD.encode() + b'", "inputs": [{"name": "input", "shape": [2.0, 4], '
     b'"datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}'),
    (b'{"id": "' + PAD.encode() + b'", "extra": 1, "inputs": [{"name": "input", '
     b'"shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}'),
    b'[' + b'1, ' * ARRAYS_FROM_BYTES + b'1]',
]


@pytest.mark.parametrize("body", INFER_BODIES, ids=range(len(INFER_BODIES)))
def test_an_infer_body_decodes_as_the_full_path_decodes_it(body):
    fast, full = both_ways(decode_infer, body)
    assert fast == full


def predict_body(instances) -> bytes:
    """A JSON API body, padded with trailing spaces past ARRAYS_FROM_BYTES."""
    return json.dumps({"instances": instances}).encode() + b" " * ARRAYS_FROM_BYTES


PREDICT_BODIES = [
    json.dumps({"instances": ROWS, "pad": PAD}).encode(),  # a key the schema refuses
    predict_body(ROWS),
    predict_body(FLAT),
    predict_body([[1, 2, 3, True], [1, 2, 3, 4]]),
    predict_body([[1, 2, 3, [4]], [1, 2, 3, 4]]),
    predict_body([[1, 2, 3, 4]] * 65),  # over the 64 examples allowed
]


@pytest.mark.parametrize("body", PREDICT_BODIES, ids=range(len(PREDICT_BODIES)))
def test_a_predict_body_decodes_as_the_full_path_decodes_it(body):
    fast, full = both_ways(decode_predict, body)
    assert fast == full


def test_random_numbers_read_bit_for_bit_as_the_full_path_reads_them(reader):
    rng = np.random.default_rng(0)
    texts = number_texts(rng, 4000)
    body = (b'{"inputs": [{"name": "input", "shape": [1, %d], "datatype": "FP32", "data": [%s]}]}'
            % (len(texts), ", ".join(texts).encode()))
    fast = parse_with_arrays(body, INFER_NUMBERS, reader)
    assert fast is not None, f"{reader} declined a body of plain numbers"
    expected = np.asarray(orjson.loads(body)["inputs"][0]["data"], dtype=np.float64)
    assert fast["inputs"][0]["data"].tobytes() == expected.tobytes()
    # And as float32 matrices.
    fast, full = both_ways(lambda b, **o: tensors.decode_infer(b, None, len(texts), 1, **o),
                           body)
    assert fast[0] == "matrix" and fast == full


def test_plain_bodies_take_the_fast_path_and_odd_ones_decline(reader):
    flat = parse_with_arrays(infer_body(FLAT), INFER_NUMBERS, reader)
    nested = parse_with_arrays(infer_body(ROWS), INFER_NUMBERS, reader)
    assert isinstance(flat["inputs"][0]["data"], np.ndarray)
    assert flat["inputs"][0]["data"].shape == (8,)
    assert nested["inputs"][0]["data"].shape == (2, 4)
    assert flat["id"] == PAD and flat["inputs"][0]["shape"] == [2, 4]
    predict = parse_with_arrays(json.dumps({"instances": ROWS}).encode(), PREDICT_NUMBERS,
                                reader)
    assert predict["instances"].shape == (2, 4)
    for body in (infer_body([1, [2], 3, 4, 5, 6, 7, 8]), infer_body([True] * 8),
                 infer_body([2 ** 53] * 8), infer_body([2.0 ** 60] + [1] * 7),
                 infer_body([]), infer_body([[1, 2], [3]]), b'[1, 2]', b'{"inputs": [NaN]}'):
        assert parse_with_arrays(body, INFER_NUMBERS, reader) is None, body[-80:]
    # simdjson declines a "[" in a string (its copy would flatten nested arrays) and repeated
    # keys; the compiled reader knows where strings are, and leaves repeated keys off its
    # paths to orjson.
    for body in (infer_body([1] * 8, parameters={"note": "["}), b'{"inputs": 1, "inputs": 2}'):
        parsed = parse_with_arrays(body, INFER_NUMBERS, reader)
        if reader == "simdjson":
            assert parsed is None
        else:
            assert isinstance(parsed, dict) and parsed.keys() == orjson.loads(body).keys()


def test_fields_outside_the_numeric_paths_stay_python_values(reader):
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32",
                                   "data": [1.5, 2], "parameters": {"a": [1, 2]}}],
                       "outputs": [{"name": "logits"}], "id": None}).encode()
    parsed = parse_with_arrays(body, INFER_NUMBERS, reader)
    assert parsed["inputs"][0]["parameters"] == {"a": [1, 2]}
    assert parsed["outputs"] == [{"name": "logits"}] and parsed["id"] is None
    np.testing.assert_array_equal(parsed["inputs"][0]["data"], [1.5, 2.0])
