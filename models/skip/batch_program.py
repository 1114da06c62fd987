"""A batch's whole forward in one call into the C kernels (`models/skip/csrc/batch_forward.h`).

At batch 64 and a tenth of the blocks on, the kernels stream a layer's weights at about the
cache's bandwidth, and the Python steps between them (the gater, the threshold, sorting the
(example, block) pairs by block, bias, activation and gate values, the counts) took as long
again. `BatchProgram.of` writes the network's stages once (`models.skip.program_stages`), and
`run` hands a batch to C, which runs every stage on the same kernels, routes as the Python
engine does (`SkipNetwork._route`: before a gated layer an example with most blocks on computes
them all, so the next reads its whole row), and returns the logits, the blocks on and computed
per example and gated layer, and the gate values.

It runs where every stage is one C runs (`models.skip.program_stages`) and every dense layer
that reads whole rows, rather than a gated layer's blocks, is narrower than the kernels'
panels (a class read-out: a dot product per unit); elsewhere `of` returns None and the Python
path runs. A batch with some binary gated layer all on may run faster as dense products
(`_AllOn` in cpu.py): `run(x, stop_all_on=True)` returns None there, having computed nothing
the caller keeps.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from . import c_kernels
from .program_stages import NEVER_WIDEN, ProgramStage, dense_stage, gated_stage

if TYPE_CHECKING:
    from .cpu import _Stage


class BatchProgram:
    """The stages of a `SkipNetwork` (its layers, then its read-out) as one C forward of a
    batch."""

    def __init__(self, native: c_kernels.NativeKernels, stages: list[ProgramStage],
                 arrays: list[np.ndarray], gate_widths: Sequence[int], classes: int,
                 threads: int, threads_from: int) -> None:
        self._arrays = arrays  # the memory the stages point into, kept alive with them
        self._stages = (ProgramStage * len(stages))(*stages)
        self._count = len(stages)
        self._forward = native.batch_forward
        self._stages_address = ctypes.addressof(self._stages)
        self._gate_widths = tuple(gate_widths)
        self._classes = classes
        self.threads, self.threads_from = threads, threads_from

    @classmethod
    def of(cls, native: c_kernels.NativeKernels | None, stages: Sequence[_Stage],
           threads: int, threads_from: int, widen_from: float) -> BatchProgram | None:
        """The program for these stages (the read-out last), or None where one is a stage the
        batch forward does not run (see the module's docstring) or the kernels did not build.
        `widen_from`: the fraction of a gated layer's blocks on from which an example computes
        them all where the next layer is gated too."""
        if native is None:
            return None
        structures, arrays, widths = [], [], []
        previous_gated = False
        for stage in stages:
            if stage.plan.gated is not None:
                structure = gated_stage(stage, arrays, widen_from if stage.plan.read_by_gated
                                        else NEVER_WIDEN)
                widths.append(stage.plan.gated.config.blocks)
            else:
                structure = dense_stage(stage, previous_gated, arrays,
                                        widest_row=c_kernels.TILE - 1)
            if structure is None:
                return None
            structures.append(structure)
            previous_gated = stage.plan.gated is not None
        return cls(native, structures, arrays, widths, stages[-1].linear.bias.shape[0],
                   threads, threads_from)

    def run(self, x: np.ndarray, stop_all_on: bool = False
            ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None:
        """A batch x (B, D), B >= 1, C-contiguous float32: its logits (B, C), the blocks on and
        computed per example and gated layer (2, B, G), and each gated layer's gate values
        (B, K); or None where, with `stop_all_on`, a binary gated layer had every gate on."""
        batch = x.shape[0]
        gates = len(self._gate_widths)
        counts_at = _aligned(4 * batch * self._classes)
        gates_at = [counts_at + 16 * batch * gates + 4 * batch * int(start)
                    for start in np.cumsum([0, *self._gate_widths])]
        out = np.empty(_aligned(gates_at[-1]), dtype=np.uint8)
        base = out.ctypes.data
        status = self._forward(self._stages_address, self._count, batch, x.ctypes.data, base,
                               base + counts_at, base + gates_at[0], self.threads,
                               self.threads_from, int(stop_all_on))
        if status < 0:
            raise MemoryError("the batch forward could not allocate its working memory")
        if status > 0:
            return None
        return (np.ndarray((batch, self._classes), np.float32, out, 0),
                np.ndarray((2, batch, gates), np.int64, out, counts_at),
                [np.ndarray((batch, k), np.float32, out, at)
                 for k, at in zip(self._gate_widths, gates_at[:-1], strict=True)])


def _aligned(size: int) -> int:
    return (size + 7) // 8 * 8
