"""A `SkipNetwork`'s stages as the C forwards read them (`program_stage` in
models/skip/csrc/lone_forward.h): one structure per layer, pointing at the weights the engine
already holds (the kernels' panels, the gaters' matrices), written once when the engine is
built. A lone example's forward (`models.skip.lone_program`) and a batch's
(`models.skip.batch_program`) run the same structures.

A gated stage is one C runs where its blocks are a multiple of the kernels' 64 columns wide
and C computes its units' evaluation value (`gate_value_code`); the builders return None for
any other, and the engine keeps its Python path.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
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
# `widen_from` of a stage that never computes an off block.
NEVER_WIDEN = 2.0


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


class ProgramStage(ctypes.Structure):
    """`program_stage` in lone_forward.h, field for field."""

    _fields_ = [(name, ctypes.c_int64) for name in
                ("kind", "in_width", "out_width", "activation", "precision")] + [
        ("bias", ctypes.c_void_p), ("panels", ctypes.c_void_p), ("columns", ctypes.c_void_p),
        ("blocks", ctypes.c_int64), ("block_size", ctypes.c_int64),
        ("gater_width", ctypes.c_int64), ("gater_panels", ctypes.c_void_p),
        ("gater_first", ctypes.c_void_p), ("gater_hidden_bias", ctypes.c_void_p),
        ("gater_out", ctypes.c_void_p), ("gater_out_bias", ctypes.c_void_p),
        ("threshold", ctypes.c_double), ("gate_value", ctypes.c_int64),
        ("gater_out_panels", ctypes.c_void_p), ("widen_from", ctypes.c_double)]


def keep(arrays: list[np.ndarray], array: np.ndarray | None) -> int | None:
    """The array's address for C (None for none), the array kept alive in `arrays`."""
    if array is None:
        return None
    if not array.flags.c_contiguous:
        raise ValueError("a C program reads C-contiguous arrays only")
    arrays.append(array)
    return array.ctypes.data


def gated_stage(stage: _Stage, arrays: list[np.ndarray],
                widen_from: float = NEVER_WIDEN) -> ProgramStage | None:
    """A gated layer's stage; `widen_from`: the fraction of its blocks on from which a batch's
    example computes them all (`SkipNetwork._route`)."""
    layer, linear, gater = stage.plan.gated, stage.linear, stage.gater
    gate_value = gate_value_code(layer.estimator)
    if gate_value is None or not (stage.lone_native and linear.out_panels is not None):
        return None
    config = layer.config
    hidden = gater.hidden
    return ProgramStage(
        kind=GATED, in_width=linear.weight.shape[1], out_width=config.width,
        activation=ACTIVATIONS[config.activation].code,
        precision=c_kernels.PRECISIONS.index(linear.out_panels.precision),
        bias=keep(arrays, linear.bias), panels=keep(arrays, linear.out_panels.array),
        columns=None, blocks=config.blocks, block_size=config.block_size,
        gater_width=gater.first.shape[1],
        gater_panels=keep(arrays, gater.panels.array if gater.panels is not None else None),
        gater_first=keep(arrays, gater.first),
        gater_hidden_bias=keep(arrays, hidden[1] if hidden is not None else None),
        gater_out=keep(arrays, gater.out[0] if hidden is not None else None),
        gater_out_bias=keep(arrays, gater.out[1]), threshold=gater.threshold,
        gate_value=gate_value,
        gater_out_panels=keep(arrays, gater.out_panels.array
                              if gater.out_panels is not None else None),
        widen_from=widen_from)


def dense_stage(stage: _Stage, after_gated: bool, arrays: list[np.ndarray],
                widest_row: int | None = None) -> ProgramStage | None:
    """A dense layer's stage: reading a gated layer's pairs (`after_gated`), or dense rows by a
    dot product per output unit; `widest_row`: the most output units such a stage may have
    (None: any), else None is returned."""
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
    elif widest_row is not None and n > widest_row:
        return None
    else:
        columns = linear.weight.numpy()  # (N, D): a dot product per output unit
    return ProgramStage(
        kind=DENSE, in_width=d, out_width=n, activation=ACTIVATIONS[stage.plan.activation].code,
        precision=c_kernels.PRECISIONS.index(precision), bias=keep(arrays, linear.bias),
        panels=keep(arrays, panels), columns=keep(arrays, columns))


@dataclass(frozen=True)
class CompiledStages:
    """A network's stages as the C array both forwards take, with the memory they point into."""

    array: ctypes.Array  # (ProgramStage * count)
    count: int
    arrays: list[np.ndarray]  # kept alive with the structures that point into them
    gate_widths: tuple[int, ...]  # K of each gated layer, in order
    classes: int

    @property
    def address(self) -> int:
        return ctypes.addressof(self.array)


def compile_stages(stages: Sequence[_Stage], widen_from: float = NEVER_WIDEN,
                   widest_row: int | None = None) -> CompiledStages | None:
    """The stages (the read-out last) as C structures, or None where one is a stage C does not
    run. `widen_from`: for a gated layer read by a gated layer, the fraction of its blocks on
    from which an example computes them all; `widest_row`: see `dense_stage`."""
    structures, arrays, widths = [], [], []
    previous_gated = False
    for stage in stages:
        if stage.plan.gated is not None:
            structure = gated_stage(stage, arrays, widen_from if stage.plan.read_by_gated
                                    else NEVER_WIDEN)
            widths.append(stage.plan.gated.config.blocks)
        else:
            structure = dense_stage(stage, previous_gated, arrays, widest_row)
        if structure is None:
            return None
        structures.append(structure)
        previous_gated = stage.plan.gated is not None
    return CompiledStages((ProgramStage * len(structures))(*structures), len(structures),
                          arrays, tuple(widths), stages[-1].linear.bias.shape[0])


class ProgramOutputs:
    """Where a C forward of `batch` examples writes its outputs, in one buffer: the logits
    (B, C) float32, the counts (2, B, G) int64 (blocks on, then computed), each gated layer's
    gate values (B, K) float32, one layer after another; the arrays `views` returns share it."""

    def __init__(self, batch: int, classes: int, gate_widths: Sequence[int]) -> None:
        self._logits, self._counts = (batch, classes), (2, batch, len(gate_widths))
        self.counts_at = _aligned(4 * batch * classes)
        self.gates_at = [self.counts_at + 16 * batch * len(gate_widths) + 4 * batch * int(start)
                         for start in np.cumsum([0, *gate_widths])]
        self._gate_shapes = [(batch, k) for k in gate_widths]
        self.bytes = _aligned(self.gates_at[-1])

    def views(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        return (np.ndarray(self._logits, np.float32, out, 0),
                np.ndarray(self._counts, np.int64, out, self.counts_at),
                [np.ndarray(shape, np.float32, out, at)
                 for shape, at in zip(self._gate_shapes, self.gates_at[:-1], strict=True)])


def _aligned(size: int) -> int:
    return (size + 7) // 8 * 8
