"""CPU rows of the skip benchmark: torch dense versus `models.skip.cpu.SkipNetwork`.

For each case, batch and density: the dense network in torch (the baseline of `speedup`), the
same dense network through numpy's OpenBLAS (`dense_openblas_ms`, since the skip path's
grouped products run there; `speedup_vs_openblas` reads the skip path against it), and the skip
path, with the fraction of multiply-adds its compute reports say it saved.
"""

from __future__ import annotations

import time

import torch
from threadpoolctl import threadpool_limits

from models.skip.cpu import SkipNetwork

from .cases import (
    LAYER_CASE,
    MODEL_CASE,
    dense_forward,
    dense_forward_numpy,
    layer_model,
    set_density,
    whole_model,
)
from .timing import median_ms

CPU_BATCHES = (1, 8, 64, 256)
DENSITIES = (1.0, 0.5, 0.25, 0.1, 0.05)


def rows(warmup: int, repeats: int, seed: int, batches=CPU_BATCHES, densities=DENSITIES,
         cases=(LAYER_CASE, MODEL_CASE), progress=None, dense_from: float | None = None
         ) -> list[dict]:
    """`dense_from`: SkipNetwork's routing fraction for every batch (None: its default rule)."""
    out = []
    for case in cases:
        torch.manual_seed(seed)
        model = layer_model() if case == LAYER_CASE else whole_model(seed)
        dense = dense_forward(model)
        dense_np = dense_forward_numpy(model)
        for batch in batches:
            x = torch.randn(batch, model.config.input_size,
                            generator=torch.Generator().manual_seed(seed + batch))
            for density in densities:
                set_density(model, x, density)
                skip = SkipNetwork(model, dense_from=dense_from)
                times = median_ms({"dense": lambda: dense(x),  # noqa: B023 (used at once)
                                   "skip": lambda: skip(x)},  # noqa: B023
                                  warmup=warmup, repeats=repeats)
                result = skip(x)
                reports = result.reports(model)
                blocks = torch.tensor([lay.config.blocks for lay in model.gated_layers])
                out.append({
                    "device": "cpu", "backend": "torch", "case": case, "batch": batch,
                    "density": density,
                    "realised_density": float((result.active_blocks / blocks).mean()),
                    "saved_fraction": sum(r.saved_fraction for r in reports) / len(reports),
                    "dense_ms": times["dense"], "skip_ms": times["skip"],
                    "speedup": times["dense"] / times["skip"],
                    "threads": torch.get_num_threads(),
                    # the routing fraction used; None: no example could be routed dense
                    "dense_from": route if (route := skip.dense_fraction(batch)) <= 1.0
                    else None})
                if progress:
                    progress(out[-1])
        # The OpenBLAS dense baseline does not depend on the density; it is timed last, apart
        # from everything else: OpenBLAS's worker threads keep spinning for ~0.1 s after each
        # of its multi-threaded products and would slow whatever ran next on these cores.
        for batch in batches:
            x_np = torch.randn(batch, model.config.input_size, generator=torch.Generator()
                               .manual_seed(seed + batch)).numpy()
            # At OpenBLAS's full thread count: the engine leaves it single-threaded.
            with threadpool_limits(torch.get_num_threads(), user_api="blas"):
                ms = median_ms({"dense_openblas": lambda: dense_np(x_np)},  # noqa: B023
                               warmup=warmup, repeats=repeats, rounds=1)["dense_openblas"]
            for row in out:
                if row["case"] == case and row["batch"] == batch:
                    row["dense_openblas_ms"] = ms
                    row["speedup_vs_openblas"] = ms / row["skip_ms"]
        time.sleep(0.25)  # let those threads park before the next case is timed
    return out
