"""How a trained gated network spreads its gates over its blocks.

    python -m training.block_usage runs/study/variant-deterministic-s0 --data fashion-mnist

reads a run directory (its config.json and latest checkpoint) and prints, per gated layer and
on the validation split, how many blocks are never on and what share of the gates that are on
the busiest blocks carry (as many blocks as the target density keeps on per example). A layer
whose gates all go to the same few blocks is a fixed narrow layer, not a conditional one: the
gaters are not routing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor

from models.gated_network import GatedNetwork

from .checkpoint import load_run_network
from .data import DatasetError, load_data


@torch.no_grad()
def block_usage(model: GatedNetwork, x: Tensor, batch_size: int = 1024) -> list[Tensor]:
    """Per gated layer, the fraction of the examples of `x` each block is on for, (K,)."""
    model.eval()
    sums = [torch.zeros(layer.config.blocks, dtype=torch.float64)
            for layer in model.gated_layers]
    for start in range(0, x.shape[0], batch_size):
        for total, trace in zip(sums, model(x[start:start + batch_size]).traces, strict=True):
            total += (trace.gates != 0).double().sum(0).cpu()
    return [total / x.shape[0] for total in sums]


def usage_summary(usage: Tensor, density: float) -> dict[str, float]:
    """Blocks never on, and the share of on gates the round(density * K) busiest carry."""
    busiest = max(1, round(density * usage.numel()))
    on = float(usage.sum())
    return {"blocks": usage.numel(), "never_on": int((usage == 0).sum()),
            "busiest_blocks": busiest,
            "busiest_share": float(usage.sort(descending=True).values[:busiest].sum()) / on
            if on else 0.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.block_usage",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a training run's directory (config.json, "
                                              "checkpoints/)")
    p.add_argument("--data", required=True, help="the data set it was trained on")
    args = p.parse_args(argv)
    loaded = load_run_network(args.run_dir)
    if loaded is None:
        print(f"block_usage: no config.json and checkpoint in {args.run_dir}", file=sys.stderr)
        return 1
    model, epoch = loaded
    config = model.config
    try:
        data = load_data(args.data)
    except DatasetError as error:
        print(f"block_usage: {error}", file=sys.stderr)
        return 1
    print(f"{args.run_dir} after epoch {epoch}, validation split ({len(data.valid)} examples)")
    print("| gated layer | blocks | never on | share of on gates in the busiest |")
    print("|---:|---:|---:|---:|")
    for i, usage in enumerate(block_usage(model, data.valid.x)):
        s = usage_summary(usage, config.target_density)
        print(f"| {i + 1} | {s['blocks']} | {s['never_on']} | {100 * s['busiest_share']:.0f} % "
              f"({s['busiest_blocks']} blocks) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
