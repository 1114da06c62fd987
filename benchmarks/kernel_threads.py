"""The C grouped products on one thread against the same products split over the kernels'
thread pool, at the sizes a lone example runs.

    python -m benchmarks.kernel_threads --json runs/bench/kernel-threads.json

For the benchmark layer's two products (1024 -> blocks of 64 units, and the 1024-unit layer
reading them: `rows_times_blocks` and `accumulate_blocks_times_rows`) with one example and
1, 7 (10 %), 16, 32 and 64 (every block) of its 64 blocks on, and for a product of one block
and one row, too small to gain from a second thread: what handing it to the pool costs. Each
figure is the median of `--repeats` calls after warm-up, one thread and two in alternating
rounds (`benchmarks.timing`). Prints a table and writes the rows as JSON.
"""

from __future__ import annotations

import numpy as np

from models.skip import c_kernels

from .run_record import timing_parser, write_rows_if_asked
from .timing import median_ms

D_IN, BLOCKS, BLOCK_SIZE, D_OUT = 1024, 64, 64, 1024


def rows(warmup: int, repeats: int, seed: int, threads: int) -> list[dict]:
    kernels = c_kernels.load()
    if kernels is None:
        raise SystemExit("no C compiler built the kernels (see models/skip/c_kernels.py)")
    rng = np.random.default_rng(seed)
    w_in = kernels.pack(rng.standard_normal((BLOCKS, D_IN, BLOCK_SIZE), dtype=np.float32))
    w_out = kernels.pack(rng.standard_normal((BLOCKS, BLOCK_SIZE, D_OUT), dtype=np.float32))
    x = rng.standard_normal((1, D_IN), dtype=np.float32)
    out = []
    for on in (1, 7, 16, 32, 64):
        blocks = np.sort(rng.choice(BLOCKS, on, replace=False))
        examples = np.zeros(on, np.int64)
        spans = np.stack([blocks, np.arange(on), np.arange(1, on + 1)], 1).astype(np.int64)
        pairs = np.empty((on, BLOCK_SIZE), np.float32)
        summed = np.zeros((1, D_OUT), np.float32)
        products = {
            "rows_times_blocks": lambda n: kernels.rows_times_blocks(
                x, examples, w_in, spans, pairs, n),  # noqa: B023 (timed at once)
            "accumulate_blocks_times_rows": lambda n: kernels.accumulate_blocks_times_rows(
                pairs, examples, w_out, spans, summed, n)}  # noqa: B023
        for name, product in products.items():
            times = median_ms({"one": lambda: product(1),  # noqa: B023
                               "split": lambda: product(threads)},  # noqa: B023
                              warmup=warmup, repeats=repeats)
            out.append({"product": name, "blocks_on": on, "threads": threads,
                        "macs": on * BLOCK_SIZE * (D_IN if name == "rows_times_blocks"
                                                   else D_OUT),
                        "one_thread_us": times["one"] * 1e3, "split_us": times["split"] * 1e3,
                        "speedup": times["one"] / times["split"]})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = timing_parser(__doc__, warmup=50, repeats=600)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    results = rows(args.warmup, args.repeats, args.seed, args.threads)
    print(f"{'product':>30} {'blocks on':>9} {'MACs':>9} {'1 thread us':>12} "
          f"{args.threads} threads us  speed-up")
    for r in results:
        print(f"{r['product']:>30} {r['blocks_on']:>9} {r['macs']:>9} "
              f"{r['one_thread_us']:>12.1f} {r['split_us']:>13.1f} {r['speedup']:>9.2f}")
    write_rows_if_asked(args.json, results, warmup=args.warmup, repeats=args.repeats)

if __name__ == "__main__":
    main()
