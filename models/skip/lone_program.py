"""A lone example's whole forward in one call into the C kernels
(`models/skip/csrc/lone_forward.h`).

At batch 1 the products of a layer with a tenth of its blocks on take tens of microseconds,
and the steps between them (the gater, the threshold, the block list, bias and activation, a
numpy call each) took as long again in Python. `LoneProgram.of` writes the network's stages,
once, as C structures pointing at the weights `SkipNetwork` already holds (the kernels'
panels, the gaters' matrices), and `run` hands one example to C, which runs every stage on the
same kernels and returns the logits, the blocks on per gated layer and the gate values.

It runs where every gated layer's blocks are a multiple of the kernels' 64 columns wide and
its units' evaluation value is one C computes (binary units, worth 1; or the sigmoid, the
rectifier and stochastic times smooth, worth their smooth gate: `gate_value_code`); elsewhere
`of` returns None and the Python path runs. Every block it computes is one that is on, and a
layer after a gated layer reads only the units of those blocks, so the counts it returns are
exact for `models.compute`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..activations import ACTIVATIONS
from ..estimators.base import Estimator
from ..estimators.noise_injection import Rectifier
from ..estimators.stochastic_times_smooth import StochasticTimesSmooth
from . import c_kernels

if TYPE_CHECKING:
    from .cpu import _Stage

GATED, DENSE = 0, 1
# What a gate on is worth, as C computes it (LONE_GATE_ONE .. LONE_GATE_SQRT_SIGMOID).
GATE_ONE, GATE_RELU, GATE_SIGMOID, GATE_SQRT_SIGMOID = 0, 1, 2, 3


def gate_value_code(estimator) -> int | None:
    """How C computes the estimator's evaluation value of a gate that is on: binary units are
    worth 1; units whose value is their smooth gate (`Estimator.eval_value`, not overridden)
    and whose smooth gate C has (the sigmoid, the rectifier's max(0, a), stochastic times
    smooth's sqrt(sigm(a))) are worth it; None for any other (the Python path runs them)."""
    if estimator.binary:
        return GATE_ONE
    kind = type(estimator)
    if kind.eval_value is not Estimator.eval_value:
        return None
    return {Estimator.smooth: GATE_SIGMOID, Rectifier.smooth: GATE_RELU,
            StochasticTimesSmooth.smooth: GATE_SQRT_SIGMOID}.get(kind.smooth)


class LoneStage(ctypes.Structure):
    """`lone_stage` in lone_forward.h, field for field."""

    _fields_ = [(name, ctypes.c_int64) for name in
                ("kind", "in_width", "out_width", "activation", "precision")] + [
        ("bias", ctypes.c_void_p), ("panels", ctypes.c_void_p), ("columns", ctypes.c_void_p),
        ("blocks", ctypes.c_int64), ("block_size", ctypes.c_int64),
        ("gater_width", ctypes.c_int64), ("gater_panels", ctypes.c_void_p),
        ("gater_first", ctypes.c_void_p), ("gater_hidden_bias", ctypes.c_void_p),
        ("gater_out", ctypes.c_void_p), ("gater_out_bias", ctypes.c_void_p),
        ("threshold", ctypes.c_double), ("gate_value", ctypes.c_int64)]


class LoneProgram:
    """The stages of a `SkipNetwork` (its layers, then its read-out) as one C forward."""

    def __init__(self, native: c_kernels.NativeKernels, stages: list[LoneStage],
                 arrays: list[np.ndarray], gate_widths: Sequence[int], classes: int,
                 threads: int, threads_from: int) -> None:
        self._arrays = arrays  # the memory the stages point into, kept alive with them
        self._stages = (LoneStage * len(stages))(*stages)
        self._count = len(stages)
        self._forward = native.lone_forward
        self._stages_address = ctypes.addressof(self._stages)
        # One buffer per call holds every output: the logits (1, C) float32, the counts
        # (2, 1, G) int64, the gate values (1, sum of K) float32; the arrays returned are views.
        gates = len(gate_widths)
        self._logits = (1, classes)
        self._counts_at = _aligned(4 * classes)
        self._counts = (2, 1, gates)
        self._gates_at = [self._counts_at + 16 * gates + 4 * int(start)
                          for start in np.cumsum([0, *gate_widths])]
        self._gate_shapes = [(1, k) for k in gate_widths]
        self._bytes = _aligned(self._gates_at[-1])
        self.threads, self.threads_from = threads, threads_from

    @classmethod
    def of(cls, native: c_kernels.NativeKernels | None, stages: Sequence[_Stage],
           threads: int, threads_from: int) -> LoneProgram | None:
        """The program for these stages (the read-out last), or None where a stage is one the
        C forward does not run (see the module's docstring) or the kernels did not build."""
        if native is None:
            return None
        structures, arrays, widths = [], [], []
        previous_gated = False
        for stage in stages:
            if stage.plan.gated is not None:
                structure = _gated(stage, arrays)
                widths.append(stage.plan.gated.config.blocks)
            else:
                structure = _dense(stage, previous_gated, arrays)
            if structure is None:
                return None
            structures.append(structure)
            previous_gated = stage.plan.gated is not None
        return cls(native, structures, arrays, widths, stages[-1].linear.bias.shape[0],
                   threads, threads_from)

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """One example x (1, D), C-contiguous float32: its logits (1, C), the blocks on and
        computed per gated layer (2, 1, G), and each gated layer's gate values (1, K)."""
        out = np.empty(self._bytes, dtype=np.uint8)
        # Addresses through ctypes.c_char.from_buffer: a third of the cost of `.ctypes.data`,
        # which at a few microseconds each is felt in a forward of tens.
        base = _addressof(_c_char.from_buffer(out))
        source = (_addressof(_c_char.from_buffer(x)) if x.flags.writeable
                  else x.ctypes.data)
        if self._forward(self._stages_address, self._count, source, base,
                         base + self._counts_at, base + self._gates_at[0], self.threads,
                         self.threads_from) != 0:
            raise MemoryError("the lone forward could not allocate its working memory")
        return (np.ndarray(self._logits, np.float32, out, 0),
                np.ndarray(self._counts, np.int64, out, self._counts_at),
                [np.ndarray(shape, np.float32, out, at)
                 for shape, at in zip(self._gate_shapes, self._gates_at[:-1], strict=True)])


def _aligned(size: int) -> int:
    return (size + 7) // 8 * 8


_addressof, _c_char = ctypes.addressof, ctypes.c_char


def _keep(arrays: list[np.ndarray], array: np.ndarray | None) -> int | None:
    """The array's address for C (None for none), the array kept alive in `arrays`."""
    if array is None:
        return None
    if not array.flags.c_contiguous:
        raise ValueError("a lone program reads C-contiguous arrays only")
    arrays.append(array)
    return array.ctypes.data


def _gated(stage: _Stage, arrays: list[np.ndarray]) -> LoneStage | None:
    layer, linear, gater = stage.plan.gated, stage.linear, stage.gater
    gate_value = gate_value_code(layer.estimator)
    if gate_value is None or not (stage.lone_native and linear.out_panels is not None):
        return None
    config = layer.config
    hidden = gater.hidden
    return LoneStage(
        kind=GATED, in_width=linear.weight.shape[1], out_width=config.width,
        activation=ACTIVATIONS[config.activation].code,
        precision=c_kernels.PRECISIONS.index(linear.out_panels.precision),
        bias=_keep(arrays, linear.bias), panels=_keep(arrays, linear.out_panels.array),
        columns=None, blocks=config.blocks, block_size=config.block_size,
        gater_width=gater.first.shape[1],
        gater_panels=_keep(arrays, gater.panels.array if gater.panels is not None else None),
        gater_first=_keep(arrays, gater.first),
        gater_hidden_bias=_keep(arrays, hidden[1] if hidden is not None else None),
        gater_out=_keep(arrays, gater.out[0] if hidden is not None else None),
        gater_out_bias=_keep(arrays, gater.out[1]), threshold=gater.threshold,
        gate_value=gate_value)


def _dense(stage: _Stage, after_gated: bool, arrays: list[np.ndarray]) -> LoneStage | None:
    linear = stage.linear
    n, d = linear.weight.shape
    panels = columns = None
    precision = "float32"
    if after_gated:
        if linear.in_panels is not None:
            panels, precision = linear.in_panels.array, linear.in_panels.precision
        elif linear.in_columns is not None:
            columns = linear.in_columns
        else:
            return None
    else:
        columns = linear.weight.numpy()  # (N, D): a dot product per output unit
    return LoneStage(
        kind=DENSE, in_width=d, out_width=n, activation=ACTIVATIONS[stage.plan.activation].code,
        precision=c_kernels.PRECISIONS.index(precision), bias=_keep(arrays, linear.bias),
        panels=_keep(arrays, panels), columns=_keep(arrays, columns))
