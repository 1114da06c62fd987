"""Exact accounting of the multiply-adds a gated forward runs (design.md, "Compute accounting").

Counted from the shapes that run, per example:
- dense reference: the same network with every block on and no gater;
- executed: every gater in full (reading all of its input units); each gated layer's main path
  for the blocks it computed (the active ones, or all of them where the engine routed the
  example dense at that layer); and every layer after a gated layer, gated or not, reading
  only the units of the blocks that layer computed (an inactive block's units are zero and
  their weight rows are not read). An engine whose gated layers read the whole output of a
  gated layer before them (the Triton path) says so with `gated_reads_all_inputs`.
Bias additions and element-wise activations are not counted: they are not multiply-adds and are
negligible next to the matrix products.

Counts come in as any array of integers (torch tensors on any device, numpy arrays, lists) and
are worked out with numpy, so that a server with no torch (one serving ONNX graphs) counts them
by the same code.

Letters: B examples, L layers (gated or not), G gated layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .gated_config import GatedNetworkConfig

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class ComputeReport:
    """One example's compute: what a response reports."""

    dense_macs: int
    executed_macs: int
    gater_macs: int
    active_blocks: tuple[int, ...]  # per gated layer
    blocks: tuple[int, ...]  # per gated layer
    computed_blocks: tuple[int, ...]  # per gated layer: active, or all where routed dense

    @property
    def saved_fraction(self) -> float:
        return 1.0 - self.executed_macs / self.dense_macs

    def as_dict(self) -> dict[str, object]:
        return {"dense_macs": self.dense_macs, "executed_macs": self.executed_macs,
                "gater_macs": self.gater_macs, "saved_fraction": self.saved_fraction,
                "active_blocks": list(self.active_blocks), "blocks": list(self.blocks),
                "computed_blocks": list(self.computed_blocks)}


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


def _int64(counts: Any) -> np.ndarray:
    """Block counts as a numpy int64 array, from a torch tensor on any device or an array."""
    if hasattr(counts, "detach"):  # a torch tensor, perhaps on a GPU
        counts = counts.detach().cpu().numpy()
    return np.asarray(counts).astype(np.int64, copy=False)


def executed_macs(config: GatedNetworkConfig, active_blocks: Tensor | np.ndarray,
                  computed_blocks: Tensor | np.ndarray | None = None, *,
                  gated_reads_all_inputs: bool = False) -> np.ndarray:
    """Per-example multiply-adds, (B,) int64, given the blocks each example computed per gated
    layer (B, G); `computed_blocks` defaults to `active_blocks` (every block computed is on).
    `gated_reads_all_inputs`: a gated layer after a gated layer reads all of its input units
    rather than those of the blocks computed."""
    computed = _int64(active_blocks if computed_blocks is None else computed_blocks)
    gated = [layer for layer in config.layers if layer.gated]
    if computed.ndim != 2 or computed.shape[1] != len(gated):
        raise ValueError(f"blocks per example must be (B, {len(gated)}), got "
                         f"{tuple(computed.shape)}")
    total = np.full(computed.shape[:1], gater_macs(config), dtype=np.int64)
    width = config.input_size  # units the previous layer outputs
    reads = np.full_like(total, width)  # of those, units a dense layer reads, (B,)
    g = 0
    for layer in config.layers:
        if layer.gated:
            units = computed[:, g] * layer.block_size  # (B,) units computed
            total += (width if gated_reads_all_inputs else reads) * units
            reads = units
            g += 1
        else:
            total += reads * layer.width
            reads = np.full_like(total, layer.width)
        width = layer.width
    return total + reads * config.num_classes


def compute_reports(config: GatedNetworkConfig, active_blocks: Tensor | np.ndarray,
                    computed_blocks: Tensor | np.ndarray | None = None, *,
                    gated_reads_all_inputs: bool = False) -> list[ComputeReport]:
    """One ComputeReport per example from active blocks per gated layer (B, G) and the blocks
    computed (default: the active ones); see `executed_macs`."""
    dense = dense_macs(config)
    gater = gater_macs(config)
    active_blocks = _int64(active_blocks)
    computed_blocks = active_blocks if computed_blocks is None else _int64(computed_blocks)
    executed = executed_macs(config, active_blocks, computed_blocks,
                             gated_reads_all_inputs=gated_reads_all_inputs).tolist()
    blocks = tuple(layer.blocks for layer in config.layers if layer.gated)
    active = active_blocks.tolist()
    computed = computed_blocks.tolist()
    return [ComputeReport(dense, e, gater, tuple(a), blocks, tuple(c))
            for e, a, c in zip(executed, active, computed, strict=True)]


def active_blocks_of(gates: list[Tensor]) -> Tensor:
    """Active blocks per example and gated layer, (B, G), from each layer's gates (B, K)."""
    if not gates:
        raise ValueError("the network has no gated layer")
    import torch

    return torch.stack([(g != 0).sum(-1) for g in gates], dim=-1)
