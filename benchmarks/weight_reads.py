"""The skipping forward against reading its weights and nothing else, where it reads every one.

    python -m benchmarks.weight_reads --json runs/bench/weight-reads.json   # ~1 min

At batch 64 and 256 with a tenth of the benchmark layer's blocks on per example, and at batch 1
with every block on, some example has each block on, so the forward streams all 32 MiB of the
layer's panels. `read_ms` is the time to read those same panels, on the engine's threads, each a
contiguous share, prefetching ahead as its products stream them, doing nothing else
(`NativeKernels.read_through`); `read_plain_ms` the same read with the hardware's prefetchers
alone (no software prefetch), and `floor_ms` the faster of the two: the floor under such a
forward on this machine. `read_one_thread_ms` is the first read on one thread, which tells a
limit of each core's reads from one of the cache or memory they share. Beside
them, in the same rounds, the fastest dense implementation of the layer (onnxruntime's dense
graph and numpy's OpenBLAS, as `benchmarks.skip` times them). The forward is
`SkipNetwork.forward_numpy`, numpy arrays in and out as those two take and give. Which gives:

- `forward_over_read`: how far above the floor the forward runs (forward_ms / floor_ms);
- `ceiling_vs_best`: the speed-up over the fastest dense of a forward that only read its
  weights (best_dense_ms / floor_ms), the most a skipping forward that reads them all can
  reach;
- `needed_ms` per `--target`: the forward time the target speed-up asks for;
- `gates_off_ms`: the same network's forward with every gate off, timed in the same rounds:
  the gater, the thresholds and the stages around the products, without a block product,
  what the forward costs beside reading its weights (`products_ms` = forward_ms - it).

The forward, the reads and the dense implementations are timed in alternating rounds, each
begun with calls to its function off the clock until the last one's worker threads have parked
(`dense_baselines.SETTLE_S`).
Medians of `--repeats` calls. Prints a table and writes the rows as JSON.
"""

from __future__ import annotations

import torch

from models.skip.cpu import SkipNetwork

from . import dense_numpy
from .cases import batch_input, layer_model, set_density
from .dense_baselines import SETTLE_S, InProcessBlas, fastest, onnxruntime_dense
from .run_record import timing_parser, write_rows_if_asked
from .timing import median_ms

# (batch, density) cells in which some example has each of the layer's blocks on
CELLS = ((1, 1.0), (64, 0.1), (256, 0.1))


def rows(warmup: int, repeats: int, seed: int, targets: dict[float, float],
         cells=CELLS, settle_s: float = SETTLE_S) -> list[dict]:
    """`targets`: density -> the speed-up over the fastest dense aimed at (for `needed_ms`);
    `settle_s`: how long each round first calls its function off the clock."""
    threads = torch.get_num_threads()
    torch.manual_seed(seed)
    model = layer_model()
    layers = dense_numpy.dense_layers(model)
    ort_dense = onnxruntime_dense(model, threads)
    out = []
    for batch, density in cells:
        x = batch_input(model, batch, seed)
        set_density(model, x, density)
        skip = SkipNetwork(model)
        if skip.native is None:
            raise SystemExit("no C compiler built the kernels (see models/skip/c_kernels.py)")
        gates_off = _every_gate_off(model)
        panels = skip.weight_panels()
        x_numpy = x.numpy()

        def read(threads: int, prefetch: bool = True) -> None:
            for array in panels:  # noqa: B023 (timed at once)
                skip.native.read_through(array, threads, prefetch)  # noqa: B023

        timed = {"forward": lambda: skip.forward_numpy(x_numpy),  # noqa: B023
                 "read": lambda: read(skip.threads),  # noqa: B023
                 "read_plain": lambda: read(skip.threads, prefetch=False),  # noqa: B023
                 "read_one_thread": lambda: read(1),
                 "gates_off": lambda: gates_off.forward_numpy(x_numpy),  # noqa: B023
                 "openblas": InProcessBlas(layers, x_numpy, threads)}
        if ort_dense is not None:
            timed["onnxruntime"] = lambda: ort_dense(x_numpy)  # noqa: B023
        times = median_ms(timed, warmup=warmup, repeats=repeats, settle_s=settle_s)
        openblas, onnx = times["openblas"], times.get("onnxruntime")
        best, best_ms = fastest({"openblas": openblas, "onnxruntime": onnx})
        read_bytes = sum(array.nbytes for array in panels)
        floor = min(times["read"], times["read_plain"])
        target = targets.get(density)
        out.append({
            "case": "layer-1024-64x64-1024", "batch": batch, "density": density,
            "threads": threads, "weights_bytes": read_bytes,
            "forward_ms": times["forward"], "read_ms": times["read"],
            "read_gb_per_s": read_bytes / times["read"] / 1e6,
            "read_plain_ms": times["read_plain"],
            "read_plain_gb_per_s": read_bytes / times["read_plain"] / 1e6,
            "floor_ms": floor,
            "read_one_thread_ms": times["read_one_thread"],
            "read_one_thread_gb_per_s": read_bytes / times["read_one_thread"] / 1e6,
            "forward_gb_per_s": read_bytes / times["forward"] / 1e6,
            "forward_over_read": times["forward"] / floor,
            "gates_off_ms": times["gates_off"],
            "products_ms": times["forward"] - times["gates_off"],
            "dense_openblas_ms": openblas, "dense_onnxruntime_ms": onnx,
            "best_dense": best, "best_dense_ms": best_ms,
            "speedup_vs_best": best_ms / times["forward"],
            "ceiling_vs_best": best_ms / floor,
            "target": target, "needed_ms": best_ms / target if target else None})
    return out


def _every_gate_off(model) -> SkipNetwork:
    """The engine over `model` with every gate off (its thresholds left as they were)."""
    thresholds = [float(layer.threshold) for layer in model.gated_layers]
    model.set_thresholds([float("inf")] * len(thresholds))
    try:
        return SkipNetwork(model)
    finally:
        model.set_thresholds(thresholds)


def _targets(text: str) -> dict[float, float]:
    pairs = (item.split("=") for item in text.split(",") if item)
    return {float(density): float(speedup) for density, speedup in pairs}


def main(argv: list[str] | None = None) -> None:
    parser = timing_parser(__doc__, warmup=20, repeats=300)
    parser.add_argument("--targets", type=_targets, default=_targets("1.0=0.9,0.1=5"),
                        help="density=speed-up over the fastest dense, comma-separated")
    parser.add_argument("--settle-ms", type=float, default=SETTLE_S * 1e3,
                        help="how long each round first calls its function off the clock, so "
                             "the last round's worker threads have parked (default "
                             f"{SETTLE_S * 1e3:g}, past OpenBLAS's spin)")
    args = parser.parse_args(argv)
    results = rows(args.warmup, args.repeats, args.seed, args.targets,
                   settle_s=args.settle_ms / 1e3)
    print(f"{'batch':>5} {'density':>7} {'forward ms':>10} {'gates off':>9} {'read ms':>8} "
          f"{'plain ms':>8} {'fwd/floor':>9} "
          f"{'read GB/s':>9} {'best dense':>16} {'vs best':>7} {'ceiling':>7} {'needed ms':>9}")
    for r in results:
        needed = f"{r['needed_ms']:.3f}" if r["needed_ms"] else "-"
        print(f"{r['batch']:>5} {r['density']:>7} {r['forward_ms']:>10.3f} "
              f"{r['gates_off_ms']:>9.3f} {r['read_ms']:>8.3f} {r['read_plain_ms']:>8.3f} "
              f"{r['forward_over_read']:>9.2f} {r['read_gb_per_s']:>9.1f} "
              f"{r['best_dense']:>10} {r['best_dense_ms']:>5.2f} {r['speedup_vs_best']:>6.2f}x "
              f"{r['ceiling_vs_best']:>6.2f}x {needed:>9}")
    write_rows_if_asked(args.json, results, warmup=args.warmup, repeats=args.repeats)


if __name__ == "__main__":
    main()
