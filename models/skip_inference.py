"""Block-skipping inference on the CPU (torch): blocks that are off are not computed.

`SkipNetwork(model)` is an inference view of a trained `GatedNetwork` (deterministic gates, the
calibrated thresholds). Per gated layer it runs the gater in full, then groups the (example,
block) pairs that are on by block, the way MoE kernels sort tokens by expert, and runs one
matrix product per active block over just the examples that need it. A layer after a gated
layer reads only the weight columns of input units that can be non-zero for those examples
(their union within the group), so skipped blocks are skipped again when they would be read.
The output equals the dense masked forward (`GatedNetwork.eval()`) up to float summation order.

This is the reference skipping path every faster one is tested against; it favours clarity
over speed.

Letters: B examples, D input units of a layer, K blocks, S units per block, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .compute import ComputeReport, compute_reports
from .gated_network import ACTIVATION_FUNCTIONS, GatedLayer, GatedNetwork


@dataclass
class SkipOutput:
    logits: Tensor  # (B, C)
    active_blocks: Tensor  # (B, G) blocks on per example and gated layer
    gates: list[Tensor]  # per gated layer (B, K): the gate values that multiplied the blocks

    def reports(self, network: GatedNetwork) -> list[ComputeReport]:
        return compute_reports(network.config, self.active_blocks)


class SkipNetwork:
    def __init__(self, model: GatedNetwork) -> None:
        self.model = model.eval()

    @torch.no_grad()
    def __call__(self, x: Tensor) -> SkipOutput:
        if x.dim() != 2 or x.shape[1] != self.model.config.input_size:
            raise ValueError(f"x must be (B, {self.model.config.input_size}), got "
                             f"{tuple(x.shape)}")
        live = None  # (B, D) which input units can be non-zero; None: all of them
        gates, active = [], []
        for layer in self.model.layers:
            if layer.gater is None:
                x = _dense_layer(layer, x, live)
                live = None
            else:
                x, on, values = _gated_layer(layer, x, live)
                live = on.repeat_interleave(layer.config.block_size, dim=1)  # (B, K*S)
                gates.append(values)
                active.append(on.sum(-1))
        logits = _read_columns(self.model.readout.weight, self.model.readout.bias, x, live)
        return SkipOutput(logits, torch.stack(active, -1) if active else
                          torch.zeros(x.shape[0], 0, dtype=torch.int64), gates)


def _read_columns(weight: Tensor, bias: Tensor, x: Tensor, live: Tensor | None) -> Tensor:
    """x @ weight.T + bias, reading only the columns some example has live."""
    if live is not None:
        cols = live.any(0)  # (D,)
        return torch.addmm(bias, x[:, cols], weight[:, cols].T)
    return torch.addmm(bias, x, weight.T)


def _dense_layer(layer: GatedLayer, x: Tensor, live: Tensor | None) -> Tensor:
    act = ACTIVATION_FUNCTIONS[layer.config.activation]
    return act(_read_columns(layer.main.weight, layer.main.bias, x, live))


def _gated_layer(layer: GatedLayer, x: Tensor, live: Tensor | None
                 ) -> tuple[Tensor, Tensor, Tensor]:
    cfg = layer.config
    k, s = cfg.blocks, cfg.block_size
    logits = layer.gater(x)  # (B, K): the gater always runs in full
    on = logits > layer.threshold  # (B, K)
    values = layer.estimator.gate_values(logits, on)  # (B, K)
    act = ACTIVATION_FUNCTIONS[cfg.activation]
    weight = layer.main.weight.view(k, s, -1)  # (K, S, D): block k's rows, contiguous
    bias = layer.main.bias.view(k, s)
    out = x.new_zeros(x.shape[0], k, s)  # (B, K, S)
    blocks, examples = on.T.nonzero(as_tuple=True)  # pairs sorted by block
    counts = torch.bincount(blocks, minlength=k).tolist()
    start = 0
    for block, n in enumerate(counts):
        if n == 0:
            continue
        rows = examples[start:start + n]
        start += n
        xin = x[rows]  # (n, D)
        w = weight[block]  # (S, D)
        if live is not None:  # read only input units some of these examples have on
            cols = live[rows].any(0)
            xin, w = xin[:, cols], w[:, cols]
        y = act(torch.addmm(bias[block], xin, w.T))  # (n, S)
        out[rows, block] = y * values[rows, block].unsqueeze(-1)
    return out.view(x.shape[0], k * s), on, values
