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

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from . import c_kernels
from .program_stages import CompiledStages, ProgramOutputs, compile_stages

if TYPE_CHECKING:
    from .cpu import _Stage


class BatchProgram:
    """The stages of a `SkipNetwork` (its layers, then its read-out) as one C forward of a
    batch."""

    def __init__(self, native: c_kernels.NativeKernels, stages: CompiledStages, threads: int,
                 threads_from: int) -> None:
        self._stages = stages
        self._forward = native.batch_forward
        self.threads, self.threads_from = threads, threads_from

    @classmethod
    def of(cls, native: c_kernels.NativeKernels | None, stages: Sequence[_Stage],
           threads: int, threads_from: int, widen_from: float) -> BatchProgram | None:
        """The program for these stages (the read-out last), or None where one is a stage the
        batch forward does not run (see the module's docstring) or the kernels did not build.
        `widen_from`: the fraction of a gated layer's blocks on from which an example computes
        them all where the next layer is gated too."""
        compiled = (compile_stages(stages, widen_from, widest_row=c_kernels.TILE - 1)
                    if native is not None else None)
        return cls(native, compiled, threads, threads_from) if compiled is not None else None

    def run(self, x: np.ndarray, stop_all_on: bool = False
            ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None:
        """A batch x (B, D), B >= 1, C-contiguous float32: its logits (B, C), the blocks on and
        computed per example and gated layer (2, B, G), and each gated layer's gate values
        (B, K); or None where, with `stop_all_on`, a binary gated layer had every gate on."""
        stages = self._stages
        outputs = ProgramOutputs(x.shape[0], stages.classes, stages.gate_widths)
        out = np.empty(outputs.bytes, dtype=np.uint8)
        base = out.ctypes.data
        status = self._forward(stages.address, stages.count, x.shape[0], x.ctypes.data, base,
                               base + outputs.counts_at, base + outputs.gates_at[0],
                               self.threads, self.threads_from, int(stop_all_on))
        if status < 0:
            raise MemoryError("the batch forward could not allocate its working memory")
        return None if status > 0 else outputs.views(out)
