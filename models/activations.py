"""The activations a layer may have, each with every engine's form of it: one table.

A new activation is one row here (and a case in the Triton kernels' `_activation` and in the
C lone forward's `lone_activate`, which branch on the code): the config accepts it, the
training network and every skipping engine then run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor


def _numpy_sigmoid_(x: np.ndarray) -> np.ndarray:
    """In place; through tanh, which cannot overflow the way exp(-x) can."""
    np.multiply(x, 0.5, out=x)
    np.tanh(x, out=x)
    np.add(x, 1.0, out=x)
    return np.multiply(x, 0.5, out=x)


def _identity(x):
    return x


@dataclass(frozen=True)
class Activation:
    # torch.<torch_name> out of place (training, the dense reference) and torch.<torch_name>_
    # in place (the CPU engine, right after a product); None: the identity. Looked up when
    # used, so that reading a config needs no torch (a server of ONNX graphs runs without it).
    torch_name: str | None
    numpy_: Callable[[np.ndarray], np.ndarray]  # in place (the CPU engine's bookkeeping)
    onnx_op: str | None  # the ONNX operator; None: the identity, no node
    code: int  # what the Triton kernels and the C lone forward (lone_forward.h) branch on

    @property
    def torch(self) -> Callable[[Tensor], Tensor]:
        return self._torch_function("")

    @property
    def torch_(self) -> Callable[[Tensor], Tensor]:
        return self._torch_function("_")

    def _torch_function(self, suffix: str) -> Callable[[Tensor], Tensor]:
        if self.torch_name is None:
            return _identity
        import torch

        return getattr(torch, self.torch_name + suffix)


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(None, _identity, None, 0),
    "relu": Activation("relu", lambda x: np.maximum(x, 0.0, out=x), "Relu", 1),
    "tanh": Activation("tanh", lambda x: np.tanh(x, out=x), "Tanh", 2),
    "sigmoid": Activation("sigmoid", _numpy_sigmoid_, "Sigmoid", 3),
}
