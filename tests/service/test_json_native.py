"""The compiled JSON reader (`service.json_native`): its table of powers, its numbers, where it
finds the arrays, what it declines, and its two-thread read of a long array.

Every result is compared with orjson's parse of the same text, each value at a tensor path
turned into the float64 array numpy makes of it: equal bit for bit, or the reader declines
(None). Where orjson refuses a text, the reader must decline it.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import orjson
import pytest

from service import json_native
from service.tensors import INFER_NUMBERS, PREDICT_NUMBERS

from .json_texts import number_texts

READER = json_native.load()
pytestmark = pytest.mark.skipif(READER is None, reason="no C compiler built the JSON reader")
# The byte count from which the reader splits a flat array between two threads.
SPLIT_BYTES = READER.split_bytes if READER is not None else 0


def read(text: bytes, numeric=INFER_NUMBERS, threads: int = 1):
    return json_native.parse_with_arrays(text, numeric, READER, threads)


def with_arrays(value, paths):
    """orjson's value with the values at `paths` as numpy's float64 arrays."""
    if not paths:
        return value
    if any(not path for path in paths):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, dict):
        return {key: with_arrays(item, tuple(p[1:] for p in paths if p[0] == key))
                for key, item in value.items()}
    star = tuple(p[1:] for p in paths if p[0] == "*")
    if isinstance(value, list) and star:
        return [with_arrays(item, star) for item in value]
    return value


def assert_same(got, want) -> None:
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray)
        assert (got.dtype, got.shape, got.tobytes()) == (want.dtype, want.shape, want.tobytes())
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert_same(a, b)
    else:
        assert type(got) is type(want) and got == want


def assert_read_as_orjson(text: bytes, numeric=INFER_NUMBERS, threads: int = 1) -> bool:
    """The reader's result is orjson's (with arrays), or None; None wherever orjson refuses.
    Returns whether it answered."""
    got = read(text, numeric, threads)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        assert got is None, text[:200]
        return False
    if got is not None:
        assert_same(got, with_arrays(parsed, numeric))
    return got is not None


def infer(data, **extra) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                   "data": data}], **extra}).encode()


def test_the_table_brackets_each_power_of_five():
    mantissas, exponents = json_native.powers_of_five()
    assert len(mantissas) == json_native.LARGEST_POWER - json_native.SMALLEST_POWER + 1
    for q, mantissa, exponent in zip(range(json_native.SMALLEST_POWER, 309),
                                     mantissas.tolist(), exponents.tolist(), strict=True):
        assert 2 ** 63 <= mantissa < 2 ** 64
        power, scale = Fraction(5) ** q, Fraction(2) ** exponent
        assert mantissa * scale <= power < (mantissa + 1) * scale, q


@pytest.mark.parametrize("threads", [1, 2])
def test_numbers_read_bit_for_bit_as_orjson_reads_them(threads):
    texts = number_texts(np.random.default_rng(1), SPLIT_BYTES // 64)
    text = infer(None).replace(b"null", ("[" + ", ".join(texts) + "]").encode())
    assert len(text) > SPLIT_BYTES + 1000  # long enough for two threads
    assert assert_read_as_orjson(text, threads=threads)


def test_arrays_are_found_where_json_puts_them():
    bodies = [
        infer([1, 2, 3, 4]),
        infer([[1, 2], [3, 4]]),
        infer([1.5, -2, 3e-3, 4], parameters={"data": [9, 9], "note": "\"data\": [1, 2]"}),
        json.dumps({"inputs": [{"name": "a", "data": [1, 2]}, {"name": "b", "data": [3]},
                               {"name": "c", "shape": [1]}]}).encode(),
        json.dumps({"id": "a\\\"[1,2]\"", "data": [5, 6], "inputs": []}).encode(),
        json.dumps({"inputs": {"*": {"data": [1, 2]}}}).encode(),  # "*" is also a key
        b'{ "inputs" :\n[ {\t"data"\r: [ 1 ,\n2 ] } ] }',
        b'{"inputs": [{"data": [1, 2, [3]]}]}',
        b'{"inputs": [{"data": [1, 2, 3]}], "inputs": [{"data": [4]}]}',
        b'{"inputs": [{"data": [1, 2], "data": [3, 4]}]}',
        b'{"inputs": [{"d\\u0061ta": [1, 2]}]}',  # an escape in a key on the path
        b'{"n\\u0061me": "x", "inputs": [{"data": [1, 2]}]}',  # in a key beside the path
        b'{"inputs": [{"data": [1, 2], "parameters": {"n\\u0061me": 1}}]}',  # off the path
        b'{"inputs": [{"data": [1, 2]}]} ',
        b'{"inputs": [{"data": [1, 2]}]}x',
        b'{"inputs": [{"data": [1, 2]]}',
    ]
    answered = [assert_read_as_orjson(body) for body in bodies]
    assert answered == [True, True, True, True, True, True, True, False, False, False, False,
                        False, True, True, False, False]
    two = read(bodies[3])["inputs"]
    assert [list(item.get("data", [])) for item in two] == [[1.0, 2.0], [3.0], []]
    assert read(bodies[4])["data"] == [5, 6]  # not on the path: left to orjson
    assert assert_read_as_orjson(json.dumps({"instances": [[1, 2], [3, 4]]}).encode(),
                                 PREDICT_NUMBERS)


def test_any_bytes_like_text_is_read():
    text = infer([1.5, 2, 3, 4])
    for like in (bytearray(text), memoryview(text)):
        assert_same(read(like), read(text))
        assert READER.value_marks(like) == text.count(b",") + text.count(b"[") + text.count(
            b"{")


def test_it_declines_what_only_the_full_path_reads():
    for data in ([], [[]], [1, [2]], [[1, 2], [3]], [[[1]]], [True], [None], ["1"], [2 ** 53],
                 [-(2.0 ** 60)], 5, "x", {"a": 1}):
        assert read(infer(data)) is None, data
    for text in (b'[1, 2]', b'{"inputs": [{"data": [1e400]}]}',
                 b'{"inputs": [{"data": [01]}]}', b'{"inputs": [{"data": [1.]}]}',
                 b'{"inputs": [{"data": [.5]}]}', b'{"inputs": [{"data": [+1]}]}',
                 b'{"inputs": [{"data": [1e]}]}', b'{"inputs": [{"data": [NaN]}]}',
                 b'{"inputs": [{"data": [1,]}]}', b'{"inputs": [{"data": [1 2]}]}',
                 b'{"inputs": [{"data": [0x10]}]}', b'{"inputs": [{"data": [1'):
        assert read(text) is None, text


def test_cut_and_mutated_bodies_are_read_as_orjson_reads_them_or_declined():
    body = json.dumps({"id": "r\"1", "inputs": [
        {"name": "input", "shape": [2, 3], "datatype": "FP32",
         "data": [[0.5, -1e-3, 7], [2.25, 0, -0.0]], "parameters": {"a": [1, "]"]}}],
        "outputs": [{"name": "logits"}]}).encode()
    for cut in range(len(body) + 1):
        assert_read_as_orjson(body[:cut])
    rng = np.random.default_rng(0)
    symbols = b'[]{}",:\\ 0123456789.-eE+tfn\x00\xff'
    answered = 0
    for _ in range(3000):
        text = bytearray(body)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(text)))
            kind = rng.integers(0, 3)
            if kind == 0:
                text[at] = symbols[int(rng.integers(0, len(symbols)))]
            elif kind == 1:
                del text[at]
            else:
                text.insert(at, symbols[int(rng.integers(0, len(symbols)))])
        answered += assert_read_as_orjson(bytes(text))
    assert answered > 100  # the mutations that keep a valid document are read, not declined


def test_nesting_past_orjsons_depth_declines():
    for depth in (1100, 5000):
        text = b'{"inputs": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
        assert read(text) is None
        assert read(b'{"a": ' + b"{" * depth) is None


@pytest.mark.parametrize("extra", range(0, 40, 7))
def test_two_threads_read_a_long_array_as_one_does(extra):
    rng = np.random.default_rng(extra)
    values = rng.standard_normal(SPLIT_BYTES // 16 + extra).astype(np.float32).tolist()
    text = infer(values)
    assert len(text) > SPLIT_BYTES + 1000
    one, two = read(text, threads=1), read(text, threads=2)
    assert_same(two, one)
    assert_same(two, with_arrays(orjson.loads(text), INFER_NUMBERS))
    start = text.index(b"[", text.index(b'"data"'))
    end = text.index(b"]", start)
    for at in (start + 40, (start + end) // 2 - 3, (start + end) // 2 + 3, end - 40):
        comma = text.index(b",", at)
        for bad in (b",,", b", ]", b", [", b" 1 ", b"-"):
            broken = text[:comma] + bad + text[comma + 1:]
            assert read(broken, threads=2) is None, (at, bad)
            assert read(broken, threads=1) is None, (at, bad)


def test_rows_and_short_arrays_read_the_same_on_two_threads():
    rows = np.random.default_rng(3).standard_normal((64, 784)).astype(np.float32).tolist()
    for text in (infer(rows), infer([1, 2, 3])):
        assert_same(read(text, threads=2), read(text, threads=1))


def test_without_a_compiler_there_is_no_reader(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSEGATE_CACHE", str(tmp_path))
    for name, value in (("SPARSEGATE_NATIVE", "0"), ("CC", "/bin/false")):
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            json_native.load.cache_clear()
            try:
                assert json_native.load() is None
            finally:
                json_native.load.cache_clear()
