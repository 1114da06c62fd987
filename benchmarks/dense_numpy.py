"""A network run densely in numpy (every block, no gater): its weights as plain arrays, saved to
and loaded from an .npz, and the forward over them. Needs no torch, so a fresh process can time
numpy's BLAS alone (`benchmarks.dense_blas`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.activations import ACTIVATIONS

# One (W.T (D, N), bias (N,), activation) per layer, then the read-out's with "linear".
DenseLayers = list[tuple[np.ndarray, np.ndarray, str]]


def dense_layers(model) -> DenseLayers:
    """The layers of a GatedNetwork as arrays."""
    layers = [(layer.main.weight.detach().T.contiguous().numpy(),
               layer.main.bias.detach().numpy(), layer.config.activation)
              for layer in model.layers]
    readout = model.readout
    return [*layers, (readout.weight.detach().T.contiguous().numpy(),
                      readout.bias.detach().numpy(), "linear")]


def save(layers: DenseLayers, path: Path) -> None:
    arrays = {}
    for i, (weight_t, bias, _) in enumerate(layers):
        arrays[f"w{i}"], arrays[f"b{i}"] = weight_t, bias
    np.savez(path, activations=np.array([act for *_, act in layers]), **arrays)


def load(path: Path) -> DenseLayers:
    with np.load(path) as data:
        return [(np.ascontiguousarray(data[f"w{i}"]), data[f"b{i}"], str(act))
                for i, act in enumerate(data["activations"])]


def forward(layers: DenseLayers) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        for weight_t, bias, activation in layers:
            h = x @ weight_t
            h += bias
            x = ACTIVATIONS[activation].numpy_(h)
        return x

    return run
