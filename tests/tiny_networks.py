"""The tiny gated networks the tests build, from one builder: a layer list, an estimator and
a seed give the same weights in every suite."""

from __future__ import annotations

from typing import Any

import torch

from models.gated_config import GatedNetworkConfig
from models.gated_network import GatedNetwork


def tiny_network(layers: list[dict[str, Any]], *, estimator: str = "st", seed: int = 0,
                 input_size: int = 12, num_classes: int = 4, density: float = 0.3,
                 gate_spread: float = 4.0) -> GatedNetwork:
    """A network in evaluation mode, seeded. `gate_spread` scales the gaters' output weights
    so their logits spread and a threshold cuts anywhere (1.0: PyTorch's initialisation)."""
    torch.manual_seed(seed)
    config = GatedNetworkConfig.from_dict({
        "input_size": input_size, "num_classes": num_classes, "estimator": estimator,
        "target_density": density, "layers": layers})
    model = GatedNetwork(config).eval()
    if gate_spread != 1.0:
        with torch.no_grad():
            for layer in model.gated_layers:
                layer.gater.out.weight.mul_(gate_spread)
    return model


# An input with this value in its first two places overflows `overflowing_network`.
OVERFLOW = 3e38


def overflowing_network(block_size: int, *, seed: int = 4, input_size: int = 12,
                        num_classes: int = 4) -> GatedNetwork:
    """A gated rectifier layer (3 blocks, every gate on) and a dense linear layer whose logits
    are NaN for an input of `OVERFLOW` in its first two places, and only for such inputs:
    every unit of the gated layer weighs them by 2 and -2, so its sum adds +inf to -inf, NaN
    in any order of summation, and a rectifier keeps NaN (max(NaN, 0) is NaN, as in torch).
    The gater's tanh keeps its own logits finite, so no gate turns off on the NaN."""
    model = tiny_network([
        {"blocks": 3, "block_size": block_size, "gater_hidden": 5, "activation": "relu"},
        {"blocks": 8, "block_size": 1, "activation": "linear", "gated": False}],
        seed=seed, input_size=input_size, num_classes=num_classes)
    first = model.gated_layers[0]
    with torch.no_grad():
        first.threshold.fill_(-1e30)
        first.main.weight[:, 0] = 2.0
        first.main.weight[:, 1] = -2.0
    return model
