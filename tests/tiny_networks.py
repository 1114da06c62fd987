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
