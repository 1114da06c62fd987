"""What every skipping engine returns for a batch, and how its compute report is made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..compute import ComputeReports, compute_reports
from ..gated_config import GatedNetworkConfig

if TYPE_CHECKING:
    from torch import Tensor

    from ..gated_network import GatedNetwork


@dataclass
class SkipOutput:
    """torch tensors from the torch and Triton engines; numpy arrays from onnxruntime, which
    serves without torch."""

    logits: Tensor | np.ndarray  # (B, C)
    active_blocks: Tensor | np.ndarray  # (B, G) blocks on per example and gated layer
    # (B, G) blocks computed: the active ones, or all for a dense route
    computed_blocks: Tensor | np.ndarray
    # per gated layer (B, K): the gate values that multiplied the blocks (arrays from
    # `SkipNetwork.forward_numpy`)
    gates: list[Tensor] | list[np.ndarray]
    # Whether a gated layer after a gated layer read all of its input units rather than those
    # of the blocks computed: the backend's `reads_all_gated_inputs(batch)`, which every
    # backend has, so the server can also price an example before it runs.
    gated_reads_all_inputs: bool = False
    # Whether a gater after a gated layer read all of its input units, rather than those of the
    # blocks computed there (the CPU engine's forwards in C read only those): the backend's
    # `gaters_read_all_inputs(batch)` prices an example before it runs.
    gaters_read_all_inputs: bool = True

    def reports(self, network: GatedNetwork | GatedNetworkConfig) -> ComputeReports:
        config = network if isinstance(network, GatedNetworkConfig) else network.config
        return compute_reports(config, self.active_blocks, self.computed_blocks,
                               gated_reads_all_inputs=self.gated_reads_all_inputs,
                               gaters_read_all_inputs=self.gaters_read_all_inputs)
