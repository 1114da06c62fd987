"""Dense versus block-skipping forward, as ratios measured in the same run.

    python -m benchmarks.skip --device cpu --json runs/bench/skip-cpu.json
    python -m benchmarks.skip --device cuda --json runs/bench/skip-cuda.json

CPU: torch (`benchmarks.cpu_cases`) and onnxruntime (`benchmarks.onnx_cases`) on the layer
1024 -> 64 blocks x 64 -> 1024 and the whole `blocks` model, batches 1, 8, 64, 256.
CUDA: the Triton path (`benchmarks.cuda_cases`) on the layer 4096 -> 128 x 128 -> 4096 in
bf16, batches 1, 16, 256, 4096. Densities 1.0, 0.5, 0.25, 0.1, 0.05; gates set per example
(`benchmarks.cases.set_density`). Each figure is the median of `--repeats` calls after
`--warmup`, dense and skip timed in alternating rounds, the device synchronised before every
clock read. Prints a table, writes the rows as JSON and a PNG of speed-up against density
beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from models.block_weights import PRECISIONS

from .cases import (
    LAYER_CASE,
    MODEL_CASE,
    layer_model,  # noqa: F401 (re-exported: other benchmark modules use it)
)
from .dense_baselines import SETTLE_S
from .run_record import write_rows

# What --cases accepts: the full case names and these short ones.
CASE_NAMES = {"layer": LAYER_CASE, "model": MODEL_CASE, LAYER_CASE: LAYER_CASE,
              MODEL_CASE: MODEL_CASE}

TABLE = ("{backend:>12} {case:>30} {batch:>5} {density:>7.2f} {realised_density:>8.3f} "
         "{dense_ms:>9.3f} {skip_ms:>9.3f} {speedup:>7.2f}")


# The CPU engine against the strongest dense implementation timed (benchmarks.dense_baselines),
# each through its own interface (see benchmarks.cpu_cases), with both sides' G multiply-adds
# per second.
BEST_TABLE = ("{case:>30} {batch:>5} {density:>7.2f} {best_dense:>14} {best_dense_ms:>9.3f} "
              "{skip_best_ms:>9.3f} {speedup_vs_best:>7.2f} {dense_gmacs:>7.1f} "
              "{skip_gmacs:>7.1f}")
BEST_HEADER = (f"{'case':>30} {'batch':>5} {'density':>7} {'best dense':>14} {'dense ms':>9} "
               f"{'skip ms':>9} {'vs best':>7} {'dense G':>7} {'skip G':>7}")


BACKENDS = ("torch", "onnxruntime", "onnxruntime-ops")
# How long each onnxruntime round first calls its function off the clock: onnxruntime's and the
# kernels' workers spin a few milliseconds after a run.
ONNX_SETTLE_MS = 10.0


def run(device: str, warmup: int, repeats: int, seed: int, quick: bool = False,
        backends: tuple[str, ...] = ("torch", "onnxruntime"), batches=None, densities=None,
        cases=None, dense_from: float | None = None, inputs: int = 1,
        block_weights: str = "float32", settle_ms: float | None = None) -> list[dict]:
    """`settle_ms`: how long each timing round first calls its function off the clock (None:
    each backend's default)."""
    def show(row: dict) -> None:
        print(TABLE.format(**row), flush=True)

    print(TABLE.replace(":>7.2f", ":>7").replace(":>8.3f", ":>8").replace(":>9.3f", ":>9")
          .format(backend="backend", case="case", batch="batch", density="density",
                  realised_density="realised", dense_ms="dense ms", skip_ms="skip ms",
                  speedup="speedup"))
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("benchmarks.skip: --device cuda needs a CUDA GPU")
        from . import cuda_cases

        rows = cuda_cases.rows(warmup, repeats, seed)
        for row in rows:
            show(row)
        return rows
    sizes = {"batches": (1, 8), "densities": (1.0, 0.1)} if quick else {}
    sizes |= {k: v for k, v in (("batches", batches), ("densities", densities),
                                ("cases", cases)) if v}
    rows = []
    if "torch" in backends:
        from . import cpu_cases

        torch_rows = cpu_cases.rows(warmup, repeats, seed, progress=show,
                                    dense_from=dense_from, inputs=inputs,
                                    block_weights=block_weights,
                                    settle_s=None if settle_ms is None else settle_ms / 1e3,
                                    **sizes)
        print(BEST_HEADER)
        for row in torch_rows:
            print(BEST_TABLE.format(**row))
        rows += torch_rows
    for backend in ("onnxruntime", "onnxruntime-ops"):
        if backend not in backends:
            continue
        from . import onnx_cases

        onnx_rows = onnx_cases.rows(warmup, repeats, seed,
                                    settle_s=(ONNX_SETTLE_MS if settle_ms is None
                                              else settle_ms) / 1e3,
                                    custom_ops=backend == "onnxruntime-ops", **sizes)
        for row in onnx_rows:
            show(row)
        rows += onnx_rows
    return rows


def _case_names(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in CASE_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown case(s) {unknown or [value]}; valid: "
                                         f"{', '.join(CASE_NAMES)}")
    return tuple(CASE_NAMES[name] for name in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.skip", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", type=Path, help="write the rows here (and a PNG beside it)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default="torch,onnxruntime",
                        help="CPU backends to time, comma-separated: torch, onnxruntime (the "
                             "portable graph), onnxruntime-ops (the graph on sparsegate's "
                             "onnxruntime operators) (default: torch,onnxruntime)")
    parser.add_argument("--quick", action="store_true",
                        help="batches 1 and 8, densities 1.0 and 0.1 only (a smoke run)")
    parser.add_argument("--batches", type=lambda v: tuple(int(b) for b in v.split(",")),
                        help="CPU batch sizes, comma-separated (default 1,8,64,256)")
    parser.add_argument("--densities", type=lambda v: tuple(float(d) for d in v.split(",")),
                        help="densities, comma-separated (default 1,0.5,0.25,0.1,0.05)")
    parser.add_argument("--cases", type=_case_names,
                        help=f"cases, comma-separated: layer, model or the full names "
                             f"{LAYER_CASE}, {MODEL_CASE} (default: both)")
    parser.add_argument("--inputs", type=int, default=1,
                        help="CPU torch: time the skip path on this many different input "
                             "batches in turn, as a server's requests (default 1: one input "
                             "timed again and again)")
    parser.add_argument("--dense-from", type=float,
                        help="CPU torch: route an example dense from this fraction of its "
                             "blocks on, at every batch size (default: the engine's rule; "
                             "> 1: never), to compare routing rules")
    parser.add_argument("--block-weights", choices=PRECISIONS, default="float32",
                        help="CPU torch: the main-path weights' precision; bfloat16 rounds "
                             "them for every implementation and adds torch's bfloat16 dense "
                             "network to the dense ones (default float32)")
    parser.add_argument("--settle-ms", type=float,
                        help="CPU: how long each round of dense or skip calls first calls its "
                             "function off the clock, so the last round's worker threads, which "
                             "spin after its last call, have parked (default: "
                             f"{SETTLE_S * 1e3:g} for the torch rows, whose rounds OpenBLAS "
                             f"joins; {ONNX_SETTLE_MS:g} for the onnxruntime rows; 0: none)")
    args = parser.parse_args(argv)
    if args.settle_ms is not None and args.settle_ms < 0:
        parser.error("--settle-ms must be >= 0")
    if args.dense_from is not None and not args.dense_from > 0:
        parser.error("--dense-from must be > 0")
    if args.inputs < 1:
        parser.error("--inputs must be >= 1")
    if args.warmup < 0 or args.repeats < 1:
        parser.error("--warmup must be >= 0 and --repeats >= 1")
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s) {sorted(unknown)}; valid: {', '.join(BACKENDS)}")
    if args.block_weights != "float32" and (args.device != "cpu" or backends != ("torch",)):
        parser.error("--block-weights bfloat16 takes --device cpu --backends torch")
    rows = run(args.device, args.warmup, args.repeats, args.seed, args.quick, backends,
               args.batches, args.densities, args.cases, args.dense_from, args.inputs,
               args.block_weights, args.settle_ms)
    if args.json:
        from .skip_plot import plot_speedups

        write_rows(args.json, rows, warmup=args.warmup, repeats=args.repeats)
        png = plot_speedups(rows, args.json.with_suffix(".png"))
        print(f"wrote {args.json} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
