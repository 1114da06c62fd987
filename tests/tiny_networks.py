"""The tiny gated networks the tests build, from one builder: a layer list, an estimator and
a seed give the same weights in every suite."""

from __future__ import annotations

import copy
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


# An input with this value in its first two places overflows the networks below.
OVERFLOW = 3e38


def overflowing_network(block_size: int, *, seed: int = 4, input_size: int = 12,
                        num_classes: int = 4) -> GatedNetwork:
    """Two gated rectifier layers (3 blocks each, every gate on) and a dense linear layer whose
    logits are NaN for an input of `OVERFLOW` in its first two places: in whatever order an
    engine sums, fused or not. The first layer weighs those places by 2 and 2 (its gater by
    0), so every unit it outputs is +inf; the second layer's gater weighs every such unit
    positively (its tanh gives 1: logits finite, gates on), and its units weigh them by 1 and
    -1, so +inf and -inf meet (NaN) in each, and a rectifier keeps NaN (max(NaN, 0) is NaN, as
    in torch). Other inputs give finite logits."""
    model = tiny_network([
        {"blocks": 3, "block_size": block_size, "gater_hidden": 5, "activation": "relu"},
        {"blocks": 3, "block_size": block_size, "gater_hidden": 5, "activation": "relu"},
        {"blocks": 8, "block_size": 1, "activation": "linear", "gated": False}],
        seed=seed, input_size=input_size, num_classes=num_classes)
    first, second = model.gated_layers
    with torch.no_grad():
        for layer in (first, second):
            layer.threshold.fill_(-1e30)
        first.gater.hidden.weight[:, :2] = 0.0
        first.main.weight[:, :2] = 2.0
        second.gater.hidden.weight.abs_()
        second.main.weight[:, 0] = 1.0
        second.main.weight[:, 1] = -1.0
    return model


def off_block_overflow_case(block_size: int, *, before_gated: bool = False, seed: int = 6
                            ) -> tuple[GatedNetwork, GatedNetwork, torch.Tensor]:
    """A network, the same network made finite in the blocks an overflowing input leaves off,
    and inputs (hostile, mate, mate): gated (8 blocks, rectifier, gater without hidden units)
    then dense. The hostile input (`OVERFLOW` in its first two places) gives blocks 0 and 1
    gater logits of -inf (off) and units of +inf, whatever the order of summation: an engine
    that computes them anyway (a dense route, a batch's union of blocks) and multiplies them
    by their gate's 0 gets NaN, where an off block must add exactly 0. So the hostile
    example's logits are the second network's, finite. Block 2 is on for every input; block 0
    also for the first mate, blocks 0 and 1 for the second (their first input is large and
    negative), so their union with the hostile example is two blocks of eight, then three.
    `before_gated`: a second gated layer reads the first, and blocks 2 to 7 are on for every
    input, so the hostile example has 6 of 8 on, which the CPU engine's batches compute as
    all 8 before a gated layer (`WHOLE_BEFORE_GATED_FROM`); the second layer's gates are all
    on, unless a NaN let through makes its gater's logits NaN."""
    later = ([{"blocks": 4, "block_size": block_size, "gater_hidden": 0, "activation": "relu"}]
             if before_gated else [])
    model = tiny_network([
        {"blocks": 8, "block_size": block_size, "gater_hidden": 0, "activation": "relu"},
        *later, {"blocks": 8, "block_size": 1, "activation": "linear", "gated": False}],
        seed=seed, input_size=12, num_classes=4)
    layer = model.gated_layers[0]
    with torch.no_grad():
        layer.threshold.fill_(0.0)
        layer.gater.out.weight[:, :2] = 0.0
        layer.gater.out.weight[:2, :2] = -2.0
        layer.gater.out.bias[:] = 50.0 if before_gated else -50.0  # blocks 3 to 7
        layer.gater.out.bias[:3] = torch.tensor([-50.0, -500.0, 50.0])
        layer.main.weight[:, :2] = 0.0
        if before_gated:  # every gate of the second on, unless a NaN reaches its gater
            model.gated_layers[1].threshold.fill_(-1e30)
    finite = copy.deepcopy(model)
    with torch.no_grad():
        layer.main.weight[:2 * block_size, :2] = 2.0  # the units of blocks 0 and 1
    x = torch.randn(3, 12, generator=torch.Generator().manual_seed(seed))
    x[0, :2] = OVERFLOW
    x[1, :2] = torch.tensor([-60.0, 0.0])
    x[2, :2] = torch.tensor([-300.0, 0.0])
    return model, finite, x
