"""What decoding an Open Inference Protocol JSON body costs the server, part by part.

    python -m benchmarks.json_decode --json runs/bench/json-decode.json

For the bodies `benchmarks.peer` sends (the `blocks` shape's 784 inputs per example, float32
values as a client's `tolist()` writes them, batches 1 and 32): the server's whole decode
(`service.tensors.decode_infer`: parse, validate, check for JSON booleans, convert to a float32
matrix) and its parts: orjson's parse alone, the look for true and false as the server does it
(the number bytes dropped by `bytes.translate`, then a search) and as a plain search of the
body for both words, and the conversion of the parsed list to numpy. Medians of `--repeats`
calls after warm-up, the parts in alternating rounds (`benchmarks.timing`). Prints a table and
writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import orjson

from service.tensors import _may_hold_booleans, decode_infer

from .run_record import write_rows
from .timing import median_ms

INPUT_SIZE = 784
BATCHES = (1, 32)


def body(batch: int, seed: int) -> bytes:
    x = np.random.default_rng(seed).standard_normal((batch, INPUT_SIZE)).astype(np.float32)
    return json.dumps({"inputs": [{"name": "input", "shape": [batch, INPUT_SIZE],
                                   "datatype": "FP32",
                                   "data": x.round(5).reshape(-1).tolist()}]}).encode()


def rows(warmup: int, repeats: int, seed: int, batches=BATCHES) -> list[dict]:
    out = []
    for batch in batches:
        text = body(batch, seed)
        data = orjson.loads(text)["inputs"][0]["data"]
        parts = {
            "decode_infer": lambda t=text, b=batch: decode_infer(t, None, INPUT_SIZE, b),
            "orjson_loads": lambda t=text: orjson.loads(t),
            "booleans_translated": lambda t=text: _may_hold_booleans(t),
            "booleans_searched": lambda t=text: b"true" in t or b"false" in t,
            "to_numpy": lambda d=data: np.asarray(d, dtype=np.float32),
        }
        times = median_ms(parts, warmup=warmup, repeats=repeats)
        out.append({"batch": batch, "numbers": batch * INPUT_SIZE, "body_bytes": len(text),
                    **{f"{name}_ms": ms for name, ms in times.items()}})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = rows(args.warmup, args.repeats, args.seed)
    names = [k for k in results[0] if k.endswith("_ms")]
    print(f"{'batch':>5} {'bytes':>8} " + " ".join(f"{n[:-3]:>20}" for n in names))
    for r in results:
        print(f"{r['batch']:>5} {r['body_bytes']:>8} "
              + " ".join(f"{r[n]:>20.3f}" for n in names))
    if args.json:
        write_rows(args.json, results, warmup=args.warmup, repeats=args.repeats)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
