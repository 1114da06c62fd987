"""The activations a layer may have, each with every engine's form of it: one table.

A new activation is one row here (and a case in the Triton kernels' `_activation`, which
branches on the code): the config accepts it, the training network and every skipping engine
then run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def _numpy_sigmoid_(x: np.ndarray) -> np.ndarray:
    """In place; through tanh, which cannot overflow the way exp(-x) can."""
    np.multiply(x, 0.5, out=x)
    np.tanh(x, out=x)
    np.add(x, 1.0, out=x)
    return np.multiply(x, 0.5, out=x)


@dataclass(frozen=True)
class Activation:
    torch: Callable[[Tensor], Tensor]  # out of place: training and the dense reference
    torch_: Callable[[Tensor], Tensor]  # in place, right after a product (the CPU engine)
    numpy_: Callable[[np.ndarray], np.ndarray]  # in place (the CPU engine's bookkeeping)
    onnx_op: str | None  # the ONNX operator; None: the identity, no node
    triton_code: int  # what the Triton kernels branch on


def _identity(x):
    return x


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(_identity, _identity, _identity, None, 0),
    "relu": Activation(torch.relu, torch.relu_, lambda x: np.maximum(x, 0.0, out=x), "Relu", 1),
    "tanh": Activation(torch.tanh, torch.tanh_, lambda x: np.tanh(x, out=x), "Tanh", 2),
    "sigmoid": Activation(torch.sigmoid, torch.sigmoid_, _numpy_sigmoid_, "Sigmoid", 3),
}
