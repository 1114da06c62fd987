"""The server's forward without HTTP: `service.engine.ModelEngine.infer` (the skipping engine,
softmax and compute reports) on random-weight presets written as real artifacts, median ms per
call after warm-up.

    python -m benchmarks.engine_infer
    cd OTHER_CHECKOUT && python THIS_CHECKOUT/benchmarks/engine_infer.py

The second times another commit's engine (the `service` and `models` of the folder it is run
from) with this script, for before/after comparisons. `--density 0.1` sets each gated layer's
threshold for a tenth of its gates on Gaussian inputs; without it a random network keeps its
own thresholds, which may leave every gate off (then the forward is the gaters and the
bookkeeping around them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

if not __package__:  # run as a file: import from the working folder, not this file's folder
    sys.path[0] = os.getcwd()

import numpy as np
import torch

from benchmarks.cases import set_density
from models.gated_artifact import save_gated_network
from models.gated_config import preset
from models.gated_network import GatedNetwork
from service.engine import ModelEngine


def median_ms(engine: ModelEngine, x: np.ndarray, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        engine.infer(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.infer(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="blocks-digits,blocks")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--repeats", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--density", type=float,
                        help="thresholds set for this share of gates on Gaussian inputs "
                             "(default: the random network's own, which may leave all off)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = {}
    with tempfile.TemporaryDirectory() as repository:
        for name in args.presets.split(","):
            torch.manual_seed(0)
            config = preset(name)  # each preset's own input size
            model = GatedNetwork(config).eval()
            if args.density is not None:
                set_density(model, torch.randn(512, config.input_size), args.density)
            save_gated_network(model, repository, name, 1)
            engine = ModelEngine(f"{repository}/{name}/1", "cpu", repository=repository,
                                 backend=args.backend)
            rng = np.random.default_rng(0)
            for batch in (int(b) for b in args.batches.split(",")):
                x = rng.random((batch, config.input_size), dtype=np.float32)
                rows[f"{name} batch {batch}"] = median_ms(engine, x, args.repeats, args.warmup)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
