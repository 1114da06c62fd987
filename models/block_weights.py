"""The precision a gated network's main-path weights are kept in: float32, or bfloat16.

The main-path weights are every layer's weight matrix (`layers.<i>.main.weight`) and the
read-out's (`readout.weight`): what the skipping forward streams, block by block, and what
bounds it where it runs from memory (one example, or a tenth of the blocks at batch 64: every
block's weights read once per call). Gaters, biases and thresholds stay float32: a gater decides
which blocks run, and the rest is a few kilobytes.

A network with `bfloat16` main weights holds them as float32 parameters whose values are
bfloat16 numbers (rounded to nearest even, `round_main_weights`), so every forward (torch's,
the ONNX graph's, the GPU's) computes the same function; its artifact stores those tensors as
bfloat16 (half the bytes) and says so in config.json (`block_weights`); the CPU skipping forward
packs them in bfloat16 panels, which loses nothing and reads half the bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .gated_network import GatedNetwork

PRECISIONS = ("float32", "bfloat16")
DEFAULT = "float32"
CONFIG_KEY = "block_weights"  # config.json's field, absent for float32


def is_main_weight(name: str) -> bool:
    """Whether state-dict entry `name` is a main-path weight matrix."""
    return name == "readout.weight" or (name.startswith("layers.")
                                        and name.endswith(".main.weight"))


def check_precision(value: Any, shown: str = "block_weights") -> str:
    if value not in PRECISIONS:
        raise ValueError(f"{shown} must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


def stored_precision(config: dict[str, Any]) -> str:
    """The precision an artifact's config.json says its main-path weights are stored in
    (unchecked: `models.gated_artifact` checks it at load)."""
    return config.get(CONFIG_KEY, DEFAULT)


def precision_of(model: GatedNetwork) -> str:
    return getattr(model, "block_weights", DEFAULT)


def round_main_weights(model: GatedNetwork, precision: str) -> GatedNetwork:
    """Round `model`'s main-path weights to `precision`, in place, and mark the model so its
    artifact stores them in it. float32 changes no value (and marks the model float32)."""
    import torch

    check_precision(precision)
    if precision == "bfloat16":
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if is_main_weight(name):
                    parameter.copy_(parameter.to(torch.bfloat16).to(parameter.dtype))
    model.block_weights = precision
    return model


def stored_tensors(model: GatedNetwork) -> dict[str, torch.Tensor]:
    """The state dict as an artifact stores it: main-path weights in the model's precision."""
    import torch

    bfloat16 = precision_of(model) == "bfloat16"
    return {name: (value.to(torch.bfloat16) if bfloat16 and is_main_weight(name) else value)
            for name, value in model.state_dict().items()}


def stored_dtype(name: str, dtype: str, precision: str) -> str:
    """The dtype an artifact of `precision` stores entry `name` in, for a network whose state
    holds it in `dtype`."""
    return "bfloat16" if precision == "bfloat16" and is_main_weight(name) else dtype
