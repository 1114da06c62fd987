"""Times a dense network (an .npz of `benchmarks.dense_numpy`) through numpy's BLAS in this
process, for another process's timing rounds: reads requests from stdin, one JSON line each,
and answers each with one JSON line.

    python -m benchmarks.dense_blas LAYERS.npz --threads 2 --seed 0
    <- {"blas": [what threadpoolctl says of numpy's BLAS]}
    -> {"batch": 64, "calls": 10}
    <- {"ms": [the milliseconds of each of the 10 calls, made back to back]}

Run by `benchmarks.dense_baselines.FreshProcessBlas` in a process started without
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which OpenBLAS reads once, when it loads: set, they pin
its kernels (to AVX2 ones on a CPU with AVX-512, on some machines). The process stays up, so
its calls are timed in the same alternating rounds as the benchmark's own. Imports no torch,
whose own libraries could load first. Each batch's input is drawn from `--seed` + the batch
size."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from .dense_numpy import forward, load
from .timing import clock_calls


def serve(layers_path: Path, threads: int, seed: int, requests, answers) -> None:
    """Answer timing requests (JSON lines) from `requests` on `answers` until it ends."""
    layers = load(layers_path)
    run = forward(layers)
    inputs: dict[int, np.ndarray] = {}
    with threadpool_limits(threads, user_api="blas"):
        blas = [{key: info.get(key) for key in ("internal_api", "architecture", "version",
                                                "num_threads")}
                for info in threadpool_info() if info.get("user_api") == "blas"]
        print(json.dumps({"blas": blas}), file=answers, flush=True)
        for line in requests:
            request = json.loads(line)
            batch, count = int(request["batch"]), int(request["calls"])
            if batch not in inputs:
                inputs[batch] = np.random.default_rng(seed + batch).standard_normal(
                    (batch, layers[0][0].shape[0]), dtype=np.float32)
            x = inputs[batch]
            ms = clock_calls(lambda: run(x), count)  # noqa: B023 (called at once)
            print(json.dumps({"ms": ms}), file=answers, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layers", type=Path)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    serve(args.layers, args.threads, args.seed, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
