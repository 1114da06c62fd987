"""The networks the skip benchmarks time, and how their gates are set to a density.

- `layer_model`: the benchmark layer, D -> K blocks x S -> N, as a one-gated-layer network whose
  read-out is 2 classes (negligible next to the layer).
- `whole_model`: the `blocks` preset (784 -> 64 x 64 -> 64 x 64 -> 10, two gated layers with a
  64-unit gater each), written as an artifact and loaded back, the way a server loads it.

Densities are set per example, the way calibrated gaters behave: each gated layer's threshold is
halfway between two of its gater's logits over the batch, with the density's share of them
above it (for density 1, below all of them), layer by layer, since a gated layer's logits
depend on the layer before.

Letters: B examples, D input units.
"""

from __future__ import annotations

import dataclasses
import tempfile

import torch
from torch import Tensor

from models.gated_artifact import load_gated_network, save_gated_network
from models.gated_config import GatedNetworkConfig, preset
from models.gated_network import GatedNetwork

LAYER_CASE = "layer-1024-64x64-1024"
MODEL_CASE = "model-blocks-784-2x(64x64)-10"


def layer_model(d_in: int = 1024, blocks: int = 64, block_size: int = 64,
                d_out: int = 1024, estimator: str = "st") -> GatedNetwork:
    """The benchmark layer as a one-gated-layer network; the read-out is 2 classes (negligible)."""
    config = GatedNetworkConfig.from_dict({
        "input_size": d_in, "num_classes": 2, "target_density": 0.1, "estimator": estimator,
        "layers": [
            {"blocks": blocks, "block_size": block_size, "gater_hidden": 64,
             "activation": "relu"},
            {"blocks": d_out, "block_size": 1, "activation": "linear", "gated": False}]})
    return GatedNetwork(config).eval()


def whole_model(seed: int = 0, estimator: str = "st") -> GatedNetwork:
    """The `blocks` preset, through an artifact written and read back (random weights)."""
    torch.manual_seed(seed)
    model = GatedNetwork(dataclasses.replace(preset("blocks"), estimator=estimator)).eval()
    with tempfile.TemporaryDirectory() as repository:
        folder = save_gated_network(model, repository, "blocks", 1)
        loaded, _ = load_gated_network(folder)
    return loaded


def batch_input(model: GatedNetwork, batch: int, seed: int, index: int = 0) -> Tensor:
    """The benchmarks' input (B, D) for a batch size: the same in every module for the same
    seed, so the torch, onnxruntime and A/B rows time the same gate patterns; `index` > 0
    gives other inputs of that size (`benchmarks.cpu_cases`' changing inputs)."""
    generator = torch.Generator().manual_seed(seed + batch + 7919 * index)
    return torch.randn(batch, model.config.input_size, generator=generator)


def threshold_between(logits: Tensor, density: float) -> float:
    """A threshold with round(density * n) of the n logits above it, halfway between the last
    one left off and the first one on (below all of them for density 1, above for 0)."""
    values = logits.detach().flatten().double().sort().values
    on = round(density * values.numel())
    if on >= values.numel():
        return float(values[0]) - 1.0
    if on <= 0:
        return float(values[-1]) + 1.0
    cut = values.numel() - on
    return float(values[cut - 1] + values[cut]) / 2.0


@torch.no_grad()
def set_density(model: GatedNetwork, x: Tensor, density: float) -> None:
    """Threshold every gated layer so that the density's share of its logits on x (B, D) lie
    above it: halfway between the last logit left off and the first one on, so no logit sits
    at the threshold, where another implementation's rounding of the gater (onnxruntime's,
    the kernels') could turn its gate the other way."""
    for layer in model.layers:
        if layer.gater is not None:
            layer.threshold.fill_(threshold_between(layer.gater(x), density))
        x, _ = layer(x)


def dense_forward(model: GatedNetwork, dtype: torch.dtype = torch.float32):
    """The same network run densely in torch: every block, no gater (the baseline); in
    `dtype` (weights, activations and input; bfloat16 runs oneDNN's bfloat16 GEMM where the CPU
    has it)."""
    layers = [(lay.main.weight.detach().to(dtype), lay.main.bias.detach().to(dtype),
               lay.activation) for lay in model.layers]
    readout = (model.readout.weight.detach().to(dtype), model.readout.bias.detach().to(dtype))

    @torch.no_grad()
    def forward(x: Tensor) -> Tensor:
        x = x.to(dtype)
        for weight, bias, act in layers:
            x = act(torch.addmm(bias, x, weight.T))
        return torch.addmm(readout[1], x, readout[0].T)

    return forward
