"""Times a dense network (an .npz of `benchmarks.dense_numpy`) through numpy's BLAS in this
process, and prints JSON: {"blas": what threadpoolctl says of it, "ms": {batch: median ms}}.

    python -m benchmarks.dense_blas LAYERS.npz --batches 1,64 --threads 2

Run by `benchmarks.dense_baselines` in a process started without OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE, which OpenBLAS reads once, when it loads: set, they pin its kernels (to AVX2
ones on a CPU with AVX-512, on some machines). Imports no torch, whose own libraries could load
first."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from .dense_numpy import forward, load
from .timing import median_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layers", type=Path)
    parser.add_argument("--batches", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    layers = load(args.layers)
    run = forward(layers)
    times = {}
    with threadpool_limits(args.threads, user_api="blas"):
        for batch in (int(b) for b in args.batches.split(",")):
            x = np.random.default_rng(args.seed + batch).standard_normal(
                (batch, layers[0][0].shape[0]), dtype=np.float32)
            times[batch] = median_ms({"dense": lambda: run(x)},  # noqa: B023 (used at once)
                                     warmup=args.warmup, repeats=args.repeats,
                                     rounds=1)["dense"]
        blas = [{key: info.get(key) for key in ("internal_api", "architecture", "version",
                                                "num_threads")}
                for info in threadpool_info() if info.get("user_api") == "blas"]
    print(json.dumps({"blas": blas, "ms": times}))


if __name__ == "__main__":
    main()
