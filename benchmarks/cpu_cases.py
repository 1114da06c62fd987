"""CPU rows of the skip benchmark: `models.skip.cpu.SkipNetwork` against the fastest dense
implementation of the same network on this machine.

For each case, batch and density, in the same alternating rounds: the skip path, the dense
network in torch (`dense_ms`, `speedup`), and every other dense implementation of
`benchmarks.dense_baselines` (numpy's OpenBLAS here and in a fresh process without the OPENBLAS_
overrides, onnxruntime's dense graph), each round begun with calls to its function off the
clock, long enough for the last one's worker threads to park. The skip path is timed through
both of its interfaces: tensors in and out (`skip_ms`, `SkipNetwork.__call__`) and arrays in and
out (`skip_numpy_ms`, `SkipNetwork.forward_numpy`, as the server calls it). Each dense
implementation is read against the skip path through the interface it has itself: torch's
against `skip_ms`, OpenBLAS's and onnxruntime's (numpy arrays in and out) against
`skip_numpy_ms`. `best_dense` names the one the skip path is least faster than, `best_dense_ms`
its time, `skip_best_ms` the skip path's time through its interface and `speedup_vs_best` the
ratio. Rates in G multiply-adds per second: `dense_gmacs` of the fastest dense implementation
(the network's dense multiply-adds), and `skip_gmacs` of the skip path (the multiply-adds its
compute reports say it executed, gaters included); `skip_rate_vs_dense` is their ratio, how near
the skipping kernels run to the dense GEMM's speed.

With `block_weights="bfloat16"` the networks' main-path weights are rounded to bfloat16 first
(`models.block_weights`), so every implementation computes the same function; the skip path
then streams bfloat16 panels, and torch's dense network in bfloat16 (oneDNN's bfloat16 GEMM:
weights and activations in bfloat16) joins the dense implementations, as the dense answer to
the same halving of the bytes.

With `inputs` > 1 the skip path is timed on that many different input batches in turn (the
first one the others' runs use; gates set over all of them), as a server sees its requests:
each call's blocks differ, so their weights are less often still in cache than when one input
is timed again and again, which is also timed, in the same rounds (`skip_one_input_ms`). The
dense side reads every weight whatever the input.
"""

from __future__ import annotations

import itertools

import torch

from models.block_weights import precision_of, round_main_weights
from models.compute import dense_macs
from models.skip.cpu import SkipNetwork

from . import dense_numpy
from .cases import (
    LAYER_CASE,
    MODEL_CASE,
    batch_input,
    dense_forward,
    layer_model,
    set_density,
    whole_model,
)
from .dense_baselines import (
    SETTLE_S,
    FreshProcessBlas,
    InProcessBlas,
    fastest,
    onnxruntime_dense,
)
from .timing import median_ms

CPU_BATCHES = (1, 8, 64, 256)
# Dense implementations that take and give torch tensors; the others take numpy arrays.
TORCH_INTERFACE = ("torch", "torch-bfloat16")
DENSITIES = (1.0, 0.5, 0.25, 0.1, 0.05)
# Rounds per cell: more and shorter than benchmarks.timing's default, as the skip path and
# every dense implementation take turns in them.
ROUNDS = 6


def rows(warmup: int, repeats: int, seed: int, batches=CPU_BATCHES, densities=DENSITIES,
         cases=(LAYER_CASE, MODEL_CASE), progress=None, dense_from: float | None = None,
         inputs: int = 1, block_weights: str = "float32", settle_s: float | None = None
         ) -> list[dict]:
    """`dense_from`: SkipNetwork's routing fraction for every batch (None: its default rule).
    `inputs`: input batches the skip path cycles through; `block_weights`: the main-path
    weights' precision (see the module docstring); `settle_s`: how long `benchmarks.timing`
    calls each round's function off the clock first (None: `dense_baselines.SETTLE_S`, which
    OpenBLAS's spinning workers need)."""
    if inputs < 1:
        raise ValueError(f"inputs must be >= 1, got {inputs}")
    settle_s = SETTLE_S if settle_s is None else settle_s
    out = []
    threads = torch.get_num_threads()
    for case in cases:
        torch.manual_seed(seed)
        model = layer_model() if case == LAYER_CASE else whole_model(seed)
        round_main_weights(model, block_weights)
        dense = dense_forward(model)
        layers = dense_numpy.dense_layers(model)
        ort_dense = onnxruntime_dense(model, threads)
        bfloat16_dense = (dense_forward(model, torch.bfloat16)
                          if precision_of(model) == "bfloat16" else None)
        macs = dense_macs(model.config)
        with FreshProcessBlas(layers, threads=threads, seed=seed) as fresh:
            for batch in batches:
                xs = [batch_input(model, batch, seed, i) for i in range(inputs)]
                x, x_numpy = xs[0], xs[0].numpy()
                # Every dense implementation of the batch, timed in each row's rounds.
                baselines = {"openblas": InProcessBlas(layers, x_numpy, threads),
                             "openblas-fresh": fresh.at_batch(batch)}
                if ort_dense is not None:
                    baselines["onnxruntime"] = lambda: ort_dense(x_numpy)  # noqa: B023
                if bfloat16_dense is not None:
                    baselines["torch-bfloat16"] = lambda: bfloat16_dense(x)  # noqa: B023
                for density in densities:
                    set_density(model, torch.cat(xs), density)
                    skip = SkipNetwork(model, dense_from=dense_from)
                    turns = itertools.cycle(xs)
                    arrays = itertools.cycle([t.numpy() for t in xs])
                    timed = {"dense": lambda: dense(x),  # noqa: B023 (used at once)
                             "skip": lambda: skip(next(turns)),  # noqa: B023
                             "skip_numpy": lambda: skip.forward_numpy(next(arrays)),  # noqa: B023
                             **baselines}
                    if inputs > 1:  # the one input again and again, in the same rounds
                        timed["skip_one_input"] = lambda: skip(x)  # noqa: B023
                    times = median_ms(timed, warmup=warmup, repeats=repeats,
                                      rounds=min(ROUNDS, repeats), settle_s=settle_s)
                    result = skip(x)
                    reports = result.reports(model)
                    blocks = torch.tensor([lay.config.blocks for lay in model.gated_layers])
                    row = {
                        "device": "cpu", "backend": "torch", "case": case, "batch": batch,
                        "density": density,
                        "realised_density": float((result.active_blocks / blocks).mean()),
                        "saved_fraction": sum(r.saved_fraction for r in reports) / len(reports),
                        "executed_macs": sum(r.executed_macs for r in reports),
                        "dense_ms": times["dense"], "skip_ms": times["skip"],
                        "skip_numpy_ms": times["skip_numpy"],
                        "speedup": times["dense"] / times["skip"], "threads": threads,
                        "inputs": inputs, "block_weights": block_weights,
                        "settle_ms": settle_s * 1e3, "rounds": min(ROUNDS, repeats),
                        "fresh_process_blas": fresh.blas,
                        **({"skip_one_input_ms": times["skip_one_input"]} if inputs > 1
                           else {}),
                        # the routing fraction used; None: no example could be routed dense
                        "dense_from": route if (route := skip.dense_fraction(batch)) <= 1.0
                        else None,
                        # where every gate is on, the route the engine measured faster
                        "all_on_route": skip.all_on_route(batch)}
                    row.update(against_fastest_dense(
                        row, {name: times[name] for name in baselines}, macs * batch))
                    out.append(row)
                    if progress:
                        progress(row)
    return out


def against_fastest_dense(row: dict, baselines: dict[str, float], dense_macs_: int) -> dict:
    """The row's fields that read the skip path against every dense implementation: torch's
    (`row["dense_ms"]`) and `baselines` (name -> ms), each against the skip path through the
    interface it has itself (torch's against tensors, the others' against numpy arrays)."""
    candidates = {"torch": row["dense_ms"], **baselines}
    skip_like = {name: row["skip_ms"] if name in TORCH_INTERFACE else row["skip_numpy_ms"]
                 for name in candidates}
    name = min(candidates, key=lambda n: candidates[n] / skip_like[n])
    best, skip_best = candidates[name], skip_like[name]
    fields = {f"dense_{key.replace('-', '_')}_ms": ms for key, ms in baselines.items()}
    fields.update(best_dense=name, best_dense_ms=best, skip_best_ms=skip_best,
                  speedup_vs_best=best / skip_best, fastest_dense=fastest(candidates)[0],
                  dense_gmacs=dense_macs_ / (best * 1e6),
                  skip_gmacs=row["executed_macs"] / (skip_best * 1e6))
    fields["skip_rate_vs_dense"] = fields["skip_gmacs"] / fields["dense_gmacs"]
    return fields
