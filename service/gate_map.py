"""Which blocks of each gated layer an example turned on: the pattern behind its compute
report's counts, for clients that show it (the gate-map page) or study routing.

A block is on where its gate value is not zero (a zero gate multiplies nothing, so the engines
skip its block): the same rule that counts `active_blocks`, so each layer's list holds exactly
that many indices.

Letters: B examples, K blocks of a layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _numpy(gates: Any) -> np.ndarray:
    """A layer's gates (B, K) as numpy: torch tensors (perhaps on a GPU) or arrays."""
    if hasattr(gates, "detach"):
        gates = gates.detach().cpu().numpy()
    return np.asarray(gates)


def active_block_indices(gates: list[Any], gated_layers: int, examples: int
                         ) -> list[list[list[int]]] | None:
    """Per example (of `examples`), per gated layer, the indices of the blocks on, in
    increasing order; None where the engine did not report its gates (one array per gated
    layer is expected)."""
    if len(gates) != gated_layers:
        return None
    on = [_numpy(layer) != 0 for layer in gates]  # per layer (B, K)
    return [[np.flatnonzero(layer[row]).tolist() for layer in on] for row in range(examples)]
