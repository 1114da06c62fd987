"""The sparsegate operators for onnxruntime (`models/skip/csrc/ort_ops.c`): a gated layer's blocks
computed per (example, block) pair on the CPU engine's kernels, inside an ONNX graph.

    GroupedBlocks(x, on, values, weight, bias[, computed]) -> (B, K*S), off blocks zero
    GroupedBlocksRead(x, on, values, weight, bias, reader_weight, reader_bias[, computed])
        -> (B, N)

(domain `DOMAIN`; attributes `activation`, `reader_activation`: `models.activations` codes; the
C file says what each input is). `computed` (B, J), optional: where x is a gated layer's output,
the blocks it computed, so that each pair multiplies only its example's. `export_onnx(model,
custom_ops=True)` writes graphs that use them where the portable graph has its grouped branch
(`models.skip.onnx_grouped`); such a graph runs only in an onnxruntime that has loaded this
library (`register`), which is compiled from the C sources on first use (`models.native_build`)
and built for the best instruction set the CPU runs (SPARSEGATE_KERNEL_SET picks another, as for
the engine), its one-row groups and its tiles kernel prefetching as measured when it registers
(as the engine's: SPARSEGATE_ONE_ROW_PREFETCH and SPARSEGATE_TILE_PREFETCH ask for one way).

Importing this module needs neither torch nor the `onnx` package, so a server of exported
graphs can register the operators.
"""

from __future__ import annotations

import functools
from pathlib import Path

from .. import native_build
from . import c_kernels

DOMAIN = "sparsegate"
DOMAIN_VERSION = 1
GROUPED_BLOCKS = "GroupedBlocks"
GROUPED_BLOCKS_READ = "GroupedBlocksRead"
SOURCES = (Path(__file__).with_name("csrc") / "ort_ops.c", *c_kernels.SOURCES)
# The kernels' flags, and: never unloaded (onnxruntime closes the library with the last session
# options that loaded it, while the kernels' pool threads still run its code), and nothing
# exported but RegisterCustomOps (its kernels' functions never bind to the engine's copy).
FLAGS = (*c_kernels.FLAGS, "-Wl,-z,nodelete", "-fvisibility=hidden")


class OperatorsUnavailable(RuntimeError):
    """The operators' library could not be built here (no C compiler, or SPARSEGATE_NATIVE=0)."""


@functools.cache
def library_path() -> Path | None:
    """The compiled operators' library, or None where it cannot be built."""
    return native_build.built("ort_ops", SOURCES, FLAGS, c_kernels.LIBRARIES)


def available() -> bool:
    return library_path() is not None


def register(options) -> None:
    """Make the operators available to sessions made with `options` (onnxruntime
    SessionOptions)."""
    path = library_path()
    if path is None:
        raise OperatorsUnavailable(
            "the graph uses sparsegate's onnxruntime operators, whose library needs a C "
            "compiler to build (cc, or $CC; SPARSEGATE_NATIVE=0 turns it off)")
    options.register_custom_ops_library(str(path))


def uses_operators(model: bytes) -> bool:
    """Whether a serialized ONNX model has a node of the operators' domain. Read from the bytes
    (no `onnx` package): a node's domain is its field 7, a string, so such a node holds
    0x3a, the domain's length, then the domain. Bytes of another field that spell the same
    would only make a caller register the operators for nothing."""
    return bytes((0x3A, len(DOMAIN))) + DOMAIN.encode() in model


def register_for(options, model: bytes) -> bool:
    """`register` where the serialized `model` uses the operators; returns whether it did.
    Sessions of portable graphs never build the library (a few seconds, once per cache)."""
    if not uses_operators(model):
        return False
    register(options)
    return True
