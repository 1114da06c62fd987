"""Exact accounting of the multiply-adds a gated forward runs (design.md, "Compute accounting").

Counted from the shapes that run, per example:
- dense reference: the same network with every block on and no gater;
- executed: every gater in full, plus each layer's main path restricted to the blocks that are
  on, reading only the input units that are non-zero (the previous layer's active blocks, or
  the whole input for the first layer), plus the read-out over the last layer's active units.
Bias additions and element-wise activations are not counted: they are not multiply-adds and are
negligible next to the matrix products.

Letters: B examples, L layers (gated or not), G gated layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .gated_config import GatedNetworkConfig


@dataclass(frozen=True)
class ComputeReport:
    """One example's compute: what a response reports."""

    dense_macs: int
    executed_macs: int
    gater_macs: int
    active_blocks: tuple[int, ...]  # per gated layer
    blocks: tuple[int, ...]  # per gated layer

    @property
    def saved_fraction(self) -> float:
        return 1.0 - self.executed_macs / self.dense_macs

    def as_dict(self) -> dict[str, object]:
        return {"dense_macs": self.dense_macs, "executed_macs": self.executed_macs,
                "gater_macs": self.gater_macs, "saved_fraction": self.saved_fraction,
                "active_blocks": list(self.active_blocks), "blocks": list(self.blocks)}


def dense_macs(config: GatedNetworkConfig) -> int:
    """Multiply-adds of the network run densely: every block, no gater."""
    total, width = 0, config.input_size
    for layer in config.layers:
        total += width * layer.width
        width = layer.width
    return total + width * config.num_classes


def gater_macs(config: GatedNetworkConfig) -> int:
    """Multiply-adds of all gaters; they always run in full (they decide what else runs)."""
    total, width = 0, config.input_size
    for layer in config.layers:
        if layer.gated:
            hidden = layer.gater_hidden
            total += width * hidden + hidden * layer.blocks if hidden else width * layer.blocks
        width = layer.width
    return total


def executed_macs(config: GatedNetworkConfig, active_blocks: Tensor) -> Tensor:
    """Per-example multiply-adds, (B,) int64, given active blocks per gated layer (B, G)."""
    active_blocks = active_blocks.to(torch.int64)
    gated = [layer for layer in config.layers if layer.gated]
    if active_blocks.dim() != 2 or active_blocks.shape[1] != len(gated):
        raise ValueError(f"active_blocks must be (B, {len(gated)}), got "
                         f"{tuple(active_blocks.shape)}")
    total = torch.full(active_blocks.shape[:1], gater_macs(config), dtype=torch.int64)
    inputs = torch.full_like(total, config.input_size)  # non-zero input units, (B,)
    g = 0
    for layer in config.layers:
        if layer.gated:
            outputs = active_blocks[:, g] * layer.block_size  # (B,)
            g += 1
        else:
            outputs = torch.full_like(total, layer.width)
        total += inputs * outputs
        inputs = outputs
    return total + inputs * config.num_classes


def compute_reports(config: GatedNetworkConfig, active_blocks: Tensor) -> list[ComputeReport]:
    """One ComputeReport per example from active blocks per gated layer (B, G)."""
    dense = dense_macs(config)
    gater = gater_macs(config)
    executed = executed_macs(config, active_blocks).tolist()
    blocks = tuple(layer.blocks for layer in config.layers if layer.gated)
    rows = active_blocks.to(torch.int64).tolist()
    return [ComputeReport(dense, e, gater, tuple(r), blocks)
            for e, r in zip(executed, rows, strict=True)]


def active_blocks_of(gates: list[Tensor]) -> Tensor:
    """Active blocks per example and gated layer, (B, G), from each layer's gates (B, K)."""
    if not gates:
        raise ValueError("the network has no gated layer")
    return torch.stack([(g != 0).sum(-1) for g in gates], dim=-1)
