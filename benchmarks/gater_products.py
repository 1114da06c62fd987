"""A gater's first product in numpy on one thread against the C kernels split by rows.

    python -m benchmarks.gater_products --json runs/bench/gater-products.json

The skipping forward runs each gater in full. Its first product (the layer's whole input
times the gater's hidden units) runs in numpy's OpenBLAS on the calling thread or, from
`GATER_NATIVE_FROM_MACS` multiply-adds, in the C kernels as one block of panels whose rows are
shared out over the kernels' thread pool (`models.skip.cpu._Gater`). This times both, for the
`blocks` model's two gaters (784 -> 64 and 4096 -> 64, tanh, -> 64) at batches 1 to 256: the
gater's forward once through numpy and once through the kernels (its `native_from` set to
infinity and to 0), medians of `--repeats` calls in alternating rounds (`benchmarks.timing`), each
first checked to give the same logits. Prints a table and writes the rows as JSON.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from models.skip import routing
from models.skip.cpu import SkipNetwork

from .cases import whole_model
from .run_record import timing_parser, write_rows_if_asked
from .timing import median_ms

BATCHES = (1, 2, 4, 8, 16, 64, 256)


def rows(warmup: int, repeats: int, seed: int, batches=BATCHES) -> list[dict]:
    skip = SkipNetwork(whole_model(seed))
    if skip.native is None:
        raise SystemExit("no C compiler built the kernels (see models/skip/c_kernels.py)")
    rng = np.random.default_rng(seed)
    out = []
    for stage in skip._stages:
        gater = stage.gater
        if gater is None or gater.native is None:
            continue
        weight = gater.first
        for batch in batches:
            x = rng.standard_normal((batch, weight.shape[0]), dtype=np.float32)

            def call(native_from: float, x=x, gater=gater) -> np.ndarray:
                gater.native_from = native_from
                return gater(x, skip._native_threads)

            numpy_logits, native_logits = call(math.inf), call(0)
            if not np.allclose(numpy_logits, native_logits, rtol=1e-4, atol=1e-4):
                raise RuntimeError(f"the kernels' gater differs from numpy's at batch {batch}")
            times = median_ms({"numpy": lambda: call(math.inf), "native": lambda: call(0)},
                              warmup=warmup, repeats=repeats)
            macs = batch * weight.size
            out.append({"gater_input": weight.shape[0], "gater_hidden": weight.shape[1],
                        "batch": batch, "macs": macs,
                        "numpy_us": 1e3 * times["numpy"], "native_us": 1e3 * times["native"],
                        "numpy_over_native": times["numpy"] / times["native"],
                        "chosen": ("native" if macs >= routing.GATER_NATIVE_FROM_MACS
                                   else "numpy")})
        gater.native_from = routing.GATER_NATIVE_FROM_MACS
    return out


def main(argv: list[str] | None = None) -> None:
    parser = timing_parser(__doc__, warmup=20, repeats=400)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    results = rows(args.warmup, args.repeats, args.seed)
    print(f"{'gater':>11} {'batch':>5} {'MACs':>10} {'numpy us':>9} {'kernels us':>10} "
          f"{'numpy/kernels':>13} chosen")
    for r in results:
        print(f"{r['gater_input']:>5} -> {r['gater_hidden']:<3} {r['batch']:>5} {r['macs']:>10} "
              f"{r['numpy_us']:>9.1f} {r['native_us']:>10.1f} {r['numpy_over_native']:>13.2f} "
              f"{r['chosen']}")
    write_rows_if_asked(args.json, results, warmup=args.warmup, repeats=args.repeats)


if __name__ == "__main__":
    main()
