"""Dense versus block-skipping forward, as ratios measured in the same run.

    python -m benchmarks.skip --device cpu --json runs/bench/skip-cpu.json

Today it times the CPU reference skipping path (`models.skip_inference.SkipNetwork`, backend
`torch-reference`) on the layer 1024 -> 64 blocks x 64 -> 1024 against the same layer run
densely (two matrix products, no gater), at densities 1.0, 0.5, 0.25, 0.1, 0.05 and batches
1, 8, 64, 256. Each figure is the median of `--repeats` timed calls after `--warmup` calls.
The gate pattern is per example: the gater's logits thresholded at the density's quantile.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from models.gated_config import GatedNetworkConfig
from models.gated_network import GatedNetwork
from models.skip_inference import SkipNetwork

DENSITIES = (1.0, 0.5, 0.25, 0.1, 0.05)
CPU_BATCHES = (1, 8, 64, 256)


def layer_model(d_in: int = 1024, blocks: int = 64, block_size: int = 64,
                d_out: int = 1024) -> GatedNetwork:
    """The issue's layer as a one-gated-layer network; the read-out is 2 classes (negligible)."""
    config = GatedNetworkConfig.from_dict({
        "input_size": d_in, "num_classes": 2, "target_density": 0.1, "layers": [
            {"blocks": blocks, "block_size": block_size, "gater_hidden": 64,
             "activation": "relu"},
            {"blocks": d_out, "block_size": 1, "activation": "linear", "gated": False}]})
    return GatedNetwork(config).eval()


def median_seconds(fn, x, warmup: int, repeats: int) -> float:
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(device: str, warmup: int, repeats: int, seed: int) -> list[dict]:
    if device != "cpu":
        raise SystemExit("benchmarks.skip: only --device cpu is implemented so far")
    torch.manual_seed(seed)
    model = layer_model()
    skip = SkipNetwork(model)
    gated, dense_next = model.layers
    w1, b1 = gated.main.weight.detach(), gated.main.bias.detach()
    w2, b2 = dense_next.main.weight.detach(), dense_next.main.bias.detach()

    def dense(x):  # the same layer with every block on and no gater
        return torch.addmm(b2, torch.relu(torch.addmm(b1, x, w1.T)), w2.T)

    rows = []
    for batch in CPU_BATCHES:
        x = torch.randn(batch, 1024)
        with torch.no_grad():
            logits = gated.gater(x)
        for density in DENSITIES:
            tau = -1e9 if density >= 1 else float(torch.quantile(logits.flatten(), 1 - density))
            gated.threshold.fill_(tau)
            dense_s = median_seconds(dense, x, warmup, repeats)
            skip_s = median_seconds(skip, x, warmup, repeats)
            realised = float(skip(x).active_blocks.float().mean()) / gated.config.blocks
            rows.append({"device": device, "backend": "torch-reference",
                         "case": "layer-1024-64x64-1024", "batch": batch, "density": density,
                         "realised_density": realised, "dense_ms": dense_s * 1e3,
                         "skip_ms": skip_s * 1e3, "speedup": dense_s / skip_s,
                         "threads": torch.get_num_threads()})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.skip", description=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = run(args.device, args.warmup, args.repeats, args.seed)
    print(f"{'batch':>5} {'density':>7} {'dense ms':>9} {'skip ms':>9} {'speedup':>7}")
    for r in rows:
        print(f"{r['batch']:>5} {r['density']:>7.2f} {r['dense_ms']:>9.3f} {r['skip_ms']:>9.3f} "
              f"{r['speedup']:>7.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                         "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
