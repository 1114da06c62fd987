"""A lone example's whole forward in one call into the C kernels
(`models/skip/csrc/lone_forward.h`).

At batch 1 the products of a layer with a tenth of its blocks on take tens of microseconds,
and the steps between them (the gater, the threshold, the block list, bias and activation, a
numpy call each) took as long again in Python. `LoneProgram.of` writes the network's stages,
once, as C structures (`models.skip.program_stages`), and `run` hands one example to C, which
runs every stage on the same kernels and returns the logits, the blocks on per gated layer and
the gate values.

It runs where every stage is one C runs (`models.skip.program_stages`); elsewhere `of`
returns None and the Python path runs. Every block it computes is one that is on, and a
layer after a gated layer reads only the units of those blocks, so the counts it returns are
exact for `models.compute`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from . import c_kernels
from .program_stages import ProgramStage, dense_stage, gated_stage

if TYPE_CHECKING:
    from .cpu import _Stage


class LoneProgram:
    """The stages of a `SkipNetwork` (its layers, then its read-out) as one C forward."""

    def __init__(self, native: c_kernels.NativeKernels, stages: list[ProgramStage],
                 arrays: list[np.ndarray], gate_widths: Sequence[int], classes: int,
                 threads: int, threads_from: int) -> None:
        self._arrays = arrays  # the memory the stages point into, kept alive with them
        self._stages = (ProgramStage * len(stages))(*stages)
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
                structure = gated_stage(stage, arrays)
                widths.append(stage.plan.gated.config.blocks)
            else:
                structure = dense_stage(stage, previous_gated, arrays)
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
