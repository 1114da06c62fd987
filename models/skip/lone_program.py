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
from .program_stages import CompiledStages, ProgramOutputs, compile_stages

if TYPE_CHECKING:
    from .cpu import _Stage


class LoneProgram:
    """The stages of a `SkipNetwork` (its layers, then its read-out) as one C forward."""

    def __init__(self, native: c_kernels.NativeKernels, stages: CompiledStages, threads: int,
                 threads_from: int) -> None:
        self._stages = stages
        self._stages_address = stages.address
        self._forward = native.lone_forward
        self._outputs = ProgramOutputs(1, stages.classes, stages.gate_widths)
        self.threads, self.threads_from = threads, threads_from

    @classmethod
    def of(cls, native: c_kernels.NativeKernels | None, stages: Sequence[_Stage],
           threads: int, threads_from: int) -> LoneProgram | None:
        """The program for these stages (the read-out last), or None where a stage is one the
        C forward does not run (see the module's docstring) or the kernels did not build."""
        compiled = compile_stages(stages) if native is not None else None
        return cls(native, compiled, threads, threads_from) if compiled is not None else None

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """One example x (1, D), C-contiguous float32: its logits (1, C), the blocks on and
        computed per gated layer (2, 1, G), and each gated layer's gate values (1, K)."""
        outputs = self._outputs
        out = np.empty(outputs.bytes, dtype=np.uint8)
        # Addresses through ctypes.c_char.from_buffer: a third of the cost of `.ctypes.data`,
        # which at a few microseconds each is felt in a forward of tens.
        base = _addressof(_c_char.from_buffer(out))
        source = (_addressof(_c_char.from_buffer(x)) if x.flags.writeable
                  else x.ctypes.data)
        if self._forward(self._stages_address, self._stages.count, source, base,
                         base + outputs.counts_at, base + outputs.gates_at[0], self.threads,
                         self.threads_from) != 0:
            raise MemoryError("the lone forward could not allocate its working memory")
        return outputs.views(out)


_addressof, _c_char = ctypes.addressof, ctypes.c_char
