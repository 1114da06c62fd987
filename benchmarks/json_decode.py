"""What decoding an Open Inference Protocol JSON body costs the server, part by part.

    python -m benchmarks.json_decode --json runs/bench/json-decode.json

For Open Inference Protocol bodies of the `blocks` shape's 784 inputs per example, batches 1, 8
and 32, in two number formats (`short`: five decimals; `full`: float32 values as a client's
`tolist()` writes them, up to 17 digits, as `benchmarks.peer` sends them): the server's whole
decode (`service.tensors.decode_infer`: parse, validate, check for JSON booleans, convert to a
float32 matrix; on one thread, and on two as for a request alone on the server), the same
decode by the full path alone (orjson, then numpy), and their parts: the two readers of tensors
straight into numpy (the compiled reader, `service.json_native`, on one thread and on two;
simdjson's, `service.json_arrays`), orjson's parse, simdjson's parse, the look for true and
false as the full path does it (the number bytes dropped by `bytes.translate`, then a search)
and as a plain search of the body for both words, the conversion of the parsed list to numpy,
and the count of JSON values as the body arrives in 64 KiB chunks (`service.json_budget`)
against three `bytes.count` calls per chunk. Medians of `--repeats` calls after warm-up, the
parts in alternating rounds (`benchmarks.timing`). Checks that both decodes give the same
matrix; prints a table and writes the rows as JSON.
"""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import simdjson

from service import json_arrays, json_native
from service.json_budget import JsonValueCounter
from service.tensors import INFER_NUMBERS, _may_hold_booleans, decode_infer

from .run_record import timing_parser, write_rows_if_asked
from .timing import median_ms

INPUT_SIZE = 784
BATCHES = (1, 8, 32)
FORMATS = ("short", "full")
CHUNK_BYTES = 64 * 1024


def body(batch: int, seed: int, numbers: str = "full") -> bytes:
    x = np.random.default_rng(seed).standard_normal((batch, INPUT_SIZE)).astype(np.float32)
    data = (x.astype(np.float64).round(5) if numbers == "short" else x).reshape(-1).tolist()
    return json.dumps({"inputs": [{"name": "input", "shape": [batch, INPUT_SIZE],
                                   "datatype": "FP32", "data": data}]}).encode()


def full_path(text: bytes, batch: int) -> np.ndarray:
    """decode_infer with simdjson's reading left out: orjson, then numpy."""
    return decode_infer(text, None, INPUT_SIZE, batch, arrays_from_bytes=math.inf)[1]


def count_values(chunks: list[bytes]) -> int:
    counter = JsonValueCounter(1 << 62, "")
    for chunk in chunks:
        counter.feed(chunk)
    return counter.values


def count_values_bytes_count(chunks: list[bytes]) -> int:
    return 1 + sum(c.count(b",") + c.count(b"[") + c.count(b"{") for c in chunks)


def rows(warmup: int, repeats: int, seed: int, batches=BATCHES) -> list[dict]:
    reader = json_native.load()
    if reader is None:
        raise SystemExit("no C compiler built the JSON reader (service.json_native)")
    out = []
    for numbers in FORMATS:
        for batch in batches:
            text = body(batch, seed, numbers)
            data = orjson.loads(text)["inputs"][0]["data"]
            chunks = [text[i:i + CHUNK_BYTES] for i in range(0, len(text), CHUNK_BYTES)]
            if not np.array_equal(decode_infer(text, None, INPUT_SIZE, batch)[1],
                                  full_path(text, batch)):
                raise SystemExit(f"the two decodes of the {numbers} batch-{batch} body differ")
            if count_values(chunks) != count_values_bytes_count(chunks):
                raise SystemExit("the two counts of JSON values differ")
            parts = {
                "decode_infer": lambda t=text, b=batch: decode_infer(t, None, INPUT_SIZE, b),
                "decode_infer_2_threads": lambda t=text, b=batch: decode_infer(
                    t, None, INPUT_SIZE, b, reader_threads=2),
                "full_path": lambda t=text, b=batch: full_path(t, b),
                "native_arrays": lambda t=text: json_native.parse_with_arrays(
                    t, INFER_NUMBERS, reader),
                "native_arrays_2_threads": lambda t=text: json_native.parse_with_arrays(
                    t, INFER_NUMBERS, reader, 2),
                "simdjson_arrays": lambda t=text: json_arrays.parse_with_arrays(
                    t, INFER_NUMBERS),
                "orjson_loads": lambda t=text: orjson.loads(t),
                "simdjson_parse": lambda t=text: simdjson.Parser().parse(t),
                "booleans_translated": lambda t=text: _may_hold_booleans(t),
                "booleans_searched": lambda t=text: b"true" in t or b"false" in t,
                "to_numpy": lambda d=data: np.asarray(d, dtype=np.float32),
                "count_values": lambda c=chunks: count_values(c),
                "count_values_bytes_count": lambda c=chunks: count_values_bytes_count(c),
            }
            times = median_ms(parts, warmup=warmup, repeats=repeats)
            out.append({"numbers_format": numbers, "batch": batch,
                        "numbers": batch * INPUT_SIZE, "body_bytes": len(text),
                        **{f"{name}_ms": ms for name, ms in times.items()}})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = timing_parser(__doc__, warmup=10, repeats=200)
    args = parser.parse_args(argv)
    results = rows(args.warmup, args.repeats, args.seed)
    names = [k for k in results[0] if k.endswith("_ms")]
    # A row per part, a column per body: the parts' names are too long for columns.
    print(f"{'ms':<26}" + "".join(f"{r['numbers_format'] + ' b' + str(r['batch']):>12}"
                                  for r in results))
    print(f"{'body bytes':<26}" + "".join(f"{r['body_bytes']:>12}" for r in results))
    for name in names:
        print(f"{name[:-3]:<26}" + "".join(f"{r[name]:>12.3f}" for r in results))
    write_rows_if_asked(args.json, results, warmup=args.warmup, repeats=args.repeats)


if __name__ == "__main__":
    main()
