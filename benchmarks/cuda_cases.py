"""GPU timings of the Triton block-skipping path against dense bf16 matmuls, same run.

    python -m benchmarks.cuda_cases --json runs/bench/skip-cuda.json

The case is the benchmark layer, 4096 -> 128 blocks x 128 -> 4096 (`benchmarks.skip.layer_model`:
a gated relu layer, then a dense linear layer that reads only the active blocks' rows), in
bf16, at densities 1.0, 0.5, 0.25, 0.1, 0.05 and batches 1, 16, 256, 4096. The gate pattern
is per example: the gated layer's threshold is set between two of the gater's logits over the
batch, the density's share of them above it (`benchmarks.cases.threshold_between`, as
`benchmarks.skip.run` does).

Dense is the same network in bf16 with every block on and no gater (the two products and the
2-class read-out, `dense_forward`), timed eagerly and as a CUDA graph; the faster is the
baseline (`dense_baseline` says which). The skip path (`TritonSkipNetwork`: its
gater, kernels and the 2-class read-out) is timed eagerly (backend "triton") and as a CUDA
graph replay (backend "triton-graph"). From `BATCH_ROUTE_MIN_BATCH` examples eager batches
may take the batch route (torch GEMMs once enough pairs are on, `models.skip.cuda`); the
backend "triton-no-batch-route" times the same forward without it, so one run compares the
two. Each time is the median of `repeats` calls after
`warmup` calls, with `torch.cuda.synchronize()` before the clock is read. Before any timing,
each (batch, density) is checked against the dense masked forward in fp32: the read-out is
replaced by the identity for that check, so all 4096 outputs of the dense layer are compared.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.cases import threshold_between
from benchmarks.run_record import write_rows
from benchmarks.skip import layer_model
from models.gated_network import ACTIVATION_FUNCTIONS, GatedNetwork
from models.skip import cuda as gpu_skip
from models.skip.cuda import (
    GEMV_MAX_BATCH,
    CudaGraphSkipNetwork,
    TritonSkipNetwork,
)

CASE = "layer-4096-128x128-4096"
DENSITIES = (1.0, 0.5, 0.25, 0.1, 0.05)
CUDA_BATCHES = (1, 16, 256, 4096)
# Largest |skip - reference| over the batch, relative to the largest |reference|: bf16 rounds
# inputs, weights and the hidden layer to 8 bits (about 0.4 %), fp32 accumulates.
TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 1e-2, torch.float32: 1e-4}
# A graph replays the same kernels as eager; only the order of fp32 atomic adds may differ.
GRAPH_TOLERANCE = 1e-2
# The eager forward without the batch route, at the batches where it can apply.
NO_BATCH_ROUTE = {"triton-no-batch-route": {"batch_dense_from": math.inf}}
# Extra eager variants (`--calibrate`): the grouped path without dense routing (every
# consumer through atomics) and the GEMV path past GEMV_MAX_BATCH, to place both rules.
CALIBRATION = {"triton-no-route": {"dense_from": 2.0, "batch_dense_from": math.inf},
               "triton-gemv": {"path": "gemv"}}


def rows(warmup: int, repeats: int, seed: int) -> list[dict]:
    """The benchmark layer's case on CUDA, one row per (batch, density, backend)."""
    if not torch.cuda.is_available():
        raise RuntimeError("benchmarks.cuda_cases needs a CUDA device")
    return case_rows("cuda", warmup, repeats, seed)


def median_ms(fn: Callable[[], object], warmup: int, repeats: int, device: str) -> float:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _graph(fn: Callable[[], object]) -> torch.cuda.CUDAGraph:
    """fn captured as a CUDA graph (its inputs must be static tensors)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def _identity_readout(model: GatedNetwork) -> GatedNetwork:
    """A copy whose read-out returns the last hidden layer unchanged (for checking)."""
    checked = copy.deepcopy(model)
    width = model.readout.in_features
    readout = torch.nn.Linear(width, width).to(model.readout.weight.device)
    with torch.no_grad():
        readout.weight.copy_(torch.eye(width))
        readout.bias.zero_()
    checked.readout = readout
    return checked.eval()


def dense_forward(model: GatedNetwork, dtype: torch.dtype, x: torch.Tensor
                  ) -> Callable[[], torch.Tensor]:
    """The network's dense forward in `dtype` on a fixed input: every block on, no gater."""
    layers = []
    for layer in [*model.layers, model.readout]:
        linear = getattr(layer, "main", layer)
        activation = (ACTIVATION_FUNCTIONS[layer.config.activation]
                      if hasattr(layer, "config") else (lambda h: h))
        layers.append((linear.weight.detach().to(dtype).T, linear.bias.detach().to(dtype),
                       activation))
    x_dense = x.to(dtype)

    def forward() -> torch.Tensor:
        h = x_dense
        for weight_t, bias, activation in layers:
            h = activation(torch.addmm(bias, h, weight_t))
        return h

    return forward


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    scale = float(want.abs().max().clamp_min(1e-6))
    return float((got.float() - want).abs().max()) / scale


def case_rows(device: str, warmup: int, repeats: int, seed: int, *, d_in: int = 4096,
              blocks: int = 128, block_size: int = 128, d_out: int = 4096,
              batches: tuple[int, ...] = CUDA_BATCHES,
              densities: tuple[float, ...] = DENSITIES,
              dtype: torch.dtype = torch.bfloat16, case: str = CASE,
              calibrate: bool = False) -> list[dict]:
    """Rows for one layer size; graphs on CUDA only (on CPU the Triton interpreter runs the
    kernels: correctness of this code at small sizes, timings meaningless). `calibrate` adds
    eager rows of the CALIBRATION variants, to check the path rules against measurements."""
    torch.manual_seed(seed)
    model = layer_model(d_in, blocks, block_size, d_out).to(device)
    checked_model = _identity_readout(model)
    gated = model.layers[0]
    checked_gated = checked_model.layers[0]
    variants = {"triton": {}, **NO_BATCH_ROUTE, **(CALIBRATION if calibrate else {})}
    skips = {name: (TritonSkipNetwork(model, dtype, **options),
                    TritonSkipNetwork(checked_model, dtype, **options))
             for name, options in variants.items()}
    graphs = device == "cuda"
    graphed = CudaGraphSkipNetwork(skips["triton"][0], buckets=batches) if graphs else None
    generator = torch.Generator(device=device).manual_seed(seed)
    out = []
    for batch in batches:
        x = torch.randn(batch, d_in, device=device, generator=generator)
        dense = dense_forward(model, dtype, x)
        with torch.no_grad():
            logits = gated.gater(x).float().flatten()
        dense_eager = median_ms(dense, warmup, repeats, device)
        dense_graph = (median_ms(_graph(dense).replay, warmup, repeats, device)
                       if graphs else float("inf"))
        dense_ms = min(dense_eager, dense_graph)
        baseline = "graph" if dense_graph < dense_eager else "eager"
        captured = graphed.captured(batch) if graphs else None
        if captured is not None:
            captured.input.copy_(x)
        for density in densities:
            tau = threshold_between(logits, density)
            gated.threshold.fill_(tau)
            checked_gated.threshold.fill_(tau)
            with torch.no_grad():
                want = checked_model(x).logits  # (B, d_out): the fp32 dense masked forward
            for name, (skip, checked_skip) in skips.items():
                if not _variant_applies(name, batch):
                    continue
                # Correctness first: every hidden output against the reference.
                error = relative_error(checked_skip(x).logits, want)
                if error > TOLERANCE[dtype]:
                    raise AssertionError(f"{case} {name} batch {batch} density {density}: "
                                         f"relative error {error:.3g} > {TOLERANCE[dtype]}")
                eager = skip(x)
                computed = getattr(eager, "computed_blocks", eager.active_blocks)
                gemv = skip.path == "gemv" or (skip.path == "auto" and batch <= GEMV_MAX_BATCH)
                common = {"device": device, "case": case, "batch": batch, "density": density,
                          "realised_density": float(eager.active_blocks.float().mean()) / blocks,
                          "computed_density": float(computed.float().mean()) / blocks,
                          "path": "gemv" if gemv else "grouped",
                          "dtype": str(dtype).removeprefix("torch."), "dense_ms": dense_ms,
                          "dense_baseline": baseline, "dense_eager_ms": dense_eager,
                          "dense_graph_ms": dense_graph if graphs else None,
                          "max_rel_error": error}
                skip_ms = median_ms(lambda skip=skip, x=x: skip(x), warmup, repeats, device)
                out.append({**common, "backend": name, "skip_ms": skip_ms,
                            "speedup": dense_ms / skip_ms})
                if name != "triton" or captured is None:
                    continue
                captured.replay()
                graph_error = relative_error(captured.output.logits, eager.logits)
                if graph_error > GRAPH_TOLERANCE or not torch.equal(
                        captured.output.active_blocks, eager.active_blocks):
                    raise AssertionError(f"{case} batch {batch} density {density}: graph "
                                         f"replay differs from eager ({graph_error:.3g})")
                graph_ms = median_ms(captured.replay, warmup, repeats, device)
                out.append({**common, "backend": "triton-graph", "skip_ms": graph_ms,
                            "speedup": dense_ms / graph_ms})
    return out


def _variant_applies(name: str, batch: int) -> bool:
    """Calibration variants only where they differ from the default and stay affordable."""
    if name == "triton-no-batch-route":
        return batch >= gpu_skip.BATCH_ROUTE_MIN_BATCH
    if name == "triton-no-route":
        return batch > GEMV_MAX_BATCH
    if name == "triton-gemv":
        return GEMV_MAX_BATCH < batch <= 16
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cuda_cases", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibrate", action="store_true",
                        help="add rows of the CALIBRATION variants (eager)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.cuda_cases needs a CUDA device")
    table = case_rows("cuda", args.warmup, args.repeats, args.seed, calibrate=args.calibrate)
    print(f"{'backend':>15} {'batch':>5} {'density':>7} {'real':>5} {'dense ms':>9} "
          f"{'(base)':>6} {'skip ms':>9} {'speedup':>7} {'err':>8}")
    for r in table:
        print(f"{r['backend']:>15} {r['batch']:>5} {r['density']:>7.2f} "
              f"{r['realised_density']:>5.2f} {r['dense_ms']:>9.4f} {r['dense_baseline']:>6} "
              f"{r['skip_ms']:>9.4f} {r['speedup']:>7.2f} {r['max_rel_error']:>8.1e}")
    if args.json:
        write_rows(args.json, table, triton=importlib.metadata.version("triton"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
