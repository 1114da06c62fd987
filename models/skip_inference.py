"""Block-skipping inference on the CPU (torch): blocks that are off are not computed.

`SkipNetwork(model)` is an inference view of a trained `GatedNetwork` (deterministic gates, the
calibrated thresholds). Per gated layer it runs the gater in full, then groups the (example,
block) pairs that are on by block, the way MoE kernels sort tokens by expert, and runs one
matrix product per active block over just the examples that need it. A dense layer or the
read-out after a gated layer reads, for each example, only the weight rows of that example's
active input blocks (grouped by input block, products summed into the output rows); a gated
layer after a gated layer reads, per output block, the input units live in any of that block's
examples. Skipped blocks are thus skipped again where they would be read.
The output equals the dense masked forward (`GatedNetwork.eval()`) up to float summation order.

For a single example, one product over its active blocks' rows gathered together; otherwise
the grouped loop above. Every strategy runs exactly the (example, block) products that the
compute report counts; a faster path that runs more (a dense fallback at high density, padded
groups) must report what it ran.

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
        # A dense layer (or the read-out) after a gated layer reads its input block by block:
        # its weight laid out once as (K_in, S_in, N) so each input block's rows are contiguous.
        self._by_input_block: dict[int, Tensor] = {}
        previous = None
        consumers = [*model.layers, model.readout]
        for consumer in consumers:
            linear = consumer.main if isinstance(consumer, GatedLayer) else consumer
            is_dense = not isinstance(consumer, GatedLayer) or consumer.gater is None
            if previous is not None and previous.gater is not None and is_dense:
                k, s = previous.config.blocks, previous.config.block_size
                self._by_input_block[id(consumer)] = (
                    linear.weight.detach().T.reshape(k, s, -1).contiguous())
            previous = consumer if isinstance(consumer, GatedLayer) else None

    @torch.no_grad()
    def __call__(self, x: Tensor) -> SkipOutput:
        if x.dim() != 2 or x.shape[1] != self.model.config.input_size:
            raise ValueError(f"x must be (B, {self.model.config.input_size}), got "
                             f"{tuple(x.shape)}")
        on = None  # (B, K_in) blocks of the input that can be non-zero; None: all units
        live = None  # the same per unit, (B, D)
        gates, active = [], []
        for layer in self.model.layers:
            if layer.gater is None:
                act = ACTIVATION_FUNCTIONS[layer.config.activation]
                x = act(self._read(layer, layer.main, x, on))
                on = live = None
            else:
                x, on, values = _gated_layer(layer, x, live)
                live = on.repeat_interleave(layer.config.block_size, dim=1)  # (B, K*S)
                gates.append(values)
                active.append(on.sum(-1))
        logits = self._read(self.model.readout, self.model.readout, x, on)
        return SkipOutput(logits, torch.stack(active, -1) if active else
                          torch.zeros(x.shape[0], 0, dtype=torch.int64), gates)

    def _read(self, consumer, linear: torch.nn.Linear, x: Tensor, on: Tensor | None) -> Tensor:
        """x @ W.T + b; after a gated layer, each example reads only its own active blocks:
        grouped by input block, one product per block over the examples that have it on,
        summed into the output rows (MoE's scatter-add)."""
        if on is None:
            return torch.addmm(linear.bias, x, linear.weight.T)
        weight = self._by_input_block[id(consumer)]  # (K_in, S_in, N)
        s = weight.shape[1]
        if x.shape[0] == 1:  # one example: one product over its active input blocks
            idx = on[0].nonzero().squeeze(1)  # (n,)
            rows = weight.index_select(0, idx).view(-1, weight.shape[-1])  # (n*S, N)
            xin = x.view(on.shape[1], s).index_select(0, idx).view(1, -1)  # (1, n*S)
            return torch.addmm(linear.bias, xin, rows)
        blocks, examples = on.T.nonzero(as_tuple=True)  # P pairs sorted by input block
        pairs = x.view(x.shape[0], -1, s)[examples, blocks]  # (P, S): one small gather
        out = linear.bias.expand(x.shape[0], -1).clone()  # (B, N)
        start = 0
        for block, n in enumerate(torch.bincount(blocks, minlength=on.shape[1]).tolist()):
            if n:  # one product per input block over a contiguous slice of the pairs, summed
                # into its examples' rows (a (P, N) buffer of all parts would not fit cache)
                rows = examples[start:start + n]
                out.index_add_(0, rows, pairs[start:start + n] @ weight[block])
                start += n
        return out


PAIR_GATHER_ELEMENTS = 1 << 20  # 4 MB of float32 input rows gathered at once, at most


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
    if x.shape[0] == 1 and live is None:  # one example: one product over its active blocks
        idx = on[0].nonzero().squeeze(1)  # (n,)
        w = weight.index_select(0, idx).view(-1, weight.shape[-1])  # (n*S, D)
        h = act(torch.addmm(bias.index_select(0, idx).view(-1), x, w.T))  # (1, n*S)
        out = x.new_zeros(1, k, s)
        out[0, idx] = h.view(-1, s) * values[0, idx].unsqueeze(-1)
        return out.view(1, k * s), on, values
    out = x.new_zeros(x.shape[0], k, s)  # (B, K, S)
    blocks, examples = on.T.nonzero(as_tuple=True)  # P pairs sorted by block
    counts = torch.bincount(blocks, minlength=k).tolist()
    # One gather of every pair's input row when that copy stays small (cache-sized); beyond,
    # a gather per block reuses a small buffer instead of streaming a huge one.
    gather_once = live is None and examples.numel() * x.shape[1] <= PAIR_GATHER_ELEMENTS
    rows_of_pairs = x[examples] if gather_once else None  # (P, D)
    parts = []
    start = 0
    for block, n in enumerate(counts):
        if n == 0:
            continue
        if gather_once:  # one product per block over a contiguous slice of the pairs
            parts.append(torch.addmm(bias[block], rows_of_pairs[start:start + n],
                                     weight[block].T))  # (n, S)
        elif live is None:
            rows = examples[start:start + n]
            parts.append(torch.addmm(bias[block], x[rows], weight[block].T))
        else:  # read only the input units some of this block's examples have on
            rows = examples[start:start + n]
            cols = live[rows].any(0)
            parts.append(torch.addmm(bias[block], x[rows][:, cols], weight[block][:, cols].T))
        start += n
    if parts:
        h = act(torch.cat(parts)) * values[examples, blocks].unsqueeze(-1)  # (P, S)
        out[examples, blocks] = h
    return out.view(x.shape[0], k * s), on, values
