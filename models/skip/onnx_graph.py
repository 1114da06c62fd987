"""Building ONNX graphs with `onnx.helper`: named nodes, shared constants, If branches.

`Graph` collects the nodes of a graph or of an If branch; branches share the root's
initializers and name counter, so they refer to the root's constants and no name is defined
twice. Used by `models.skip.onnx_export` (the skipping graph) and `models.skip.onnx_grouped` (its
grouped branch for large batches).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..activations import ACTIVATIONS


class ExportError(RuntimeError):
    """The graph could not be built, or onnxruntime disagreed with torch."""


# --- graph building ---------------------------------------------------------------------------


class Graph:
    """Nodes of one (sub)graph; constants and fresh names are shared with the root graph, so
    If branches refer to the root's initializers and no name is defined twice."""

    def __init__(self, root: Graph | None = None) -> None:
        self.root = root or self
        self.nodes: list[onnx.NodeProto] = []
        self.produced: set[str] = set()
        if root is None:
            self.initializers: list[onnx.TensorProto] = []
            self._counts: dict[str, int] = {}
            self._small: dict[tuple, str] = {}
            self._blocked: dict[str, tuple[str, str]] = {}

    def fresh(self, hint: str) -> str:
        counts = self.root._counts
        counts[hint] = counts.get(hint, -1) + 1
        return hint if counts[hint] == 0 else f"{hint}__{counts[hint]}"

    def const(self, array: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        # np.array, not np.ascontiguousarray: that makes a 0-d array 1-d
        self.root.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def named_const(self, array: np.ndarray, name: str) -> str:
        """An initializer named exactly `name`, made at the first call; later calls (from any
        branch) return it: a value that tools look up by name must exist once."""
        if name not in self.root._counts:
            self.const(array, name)
        return name

    def ints(self, *values: int) -> str:
        """A shared int64 vector constant (axes, shapes)."""
        return self._small_const(np.array(values, dtype=np.int64), "i64")

    def scalar(self, value: float | int | bool, dtype) -> str:
        return self._small_const(np.array(value, dtype=dtype), "scalar")

    def _small_const(self, array: np.ndarray, hint: str) -> str:
        key = (array.dtype.str, array.shape, array.tobytes())
        cache = self.root._small
        if key not in cache:
            cache[key] = self.const(array, hint)
        return cache[key]

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, outputs: int = 1,
           name: str | None = None, **attrs: Any) -> Any:
        """Add a node; its outputs get fresh names from `hint`, or exactly `name` (a graph
        output)."""
        names = [name] if name else [self.fresh(hint or op_type.lower()) for _ in range(outputs)]
        if name:
            self.root._counts[name] = self.root._counts.get(name, 0)
        self.nodes.append(helper.make_node(op_type, inputs, names, **attrs))
        self.produced.update(names)
        return names[0] if outputs == 1 else names

    def if_(self, cond: str, then_fn, else_fn, hint: str, name: str | None = None) -> str:
        """If(cond) with branches built by then_fn(graph) / else_fn(graph), each returning the
        name of its float output."""
        return self.if_outputs(cond, lambda s: [then_fn(s)], lambda s: [else_fn(s)],
                               [TensorProto.FLOAT], hint, [name])[0]

    def if_outputs(self, cond: str, then_fn, else_fn, types: list[int], hint: str,
                   names: list[str | None] | None = None) -> list[str]:
        """If(cond) with several outputs: each branch function returns a list of names, one
        per element type in `types`; `names` (optional) names the If's outputs."""
        branches = []
        for label, fn in (("then", then_fn), ("else", else_fn)):
            sub = Graph(self.root)
            infos = []
            for out, elem_type in zip(fn(sub), types, strict=True):
                if out not in sub.produced:  # a branch output must be computed inside it
                    out = sub.op("Identity", [out], f"{hint}_{label}")
                infos.append(helper.make_tensor_value_info(out, elem_type, None))
            branches.append(helper.make_graph(sub.nodes, self.fresh(f"{hint}_{label}"), [],
                                              infos))
        outs = []
        for name in names or [None] * len(types):
            if name:  # a graph output: its name is taken, as in `op`
                self.root._counts[name] = self.root._counts.get(name, 0)
            outs.append(name or self.fresh(hint))
        self.nodes.append(helper.make_node("If", [cond], outs, then_branch=branches[0],
                                           else_branch=branches[1]))
        self.produced.update(outs)
        return outs


ACTIVATION_OPS = {name: a.onnx_op for name, a in ACTIVATIONS.items() if a.onnx_op}


def apply_activation(g: Graph, x: str, activation: str, name: str | None = None) -> str:
    if activation == "linear":
        return g.op("Identity", [x], name=name) if name else x
    if activation not in ACTIVATION_OPS:
        raise ExportError(f"activation {activation!r} has no ONNX export")
    return g.op(ACTIVATION_OPS[activation], [x], name=name)


def times_gate(g: Graph, units: str, gate: str, binary: bool, name: str | None = None) -> str:
    """units * gate (broadcast), exactly 0 where the gate is 0: an off block that a path
    computes anyway (a batch's union of blocks, a dense product) must add nothing to its
    example even where its units overflowed (inf * 0 is NaN), so an example's answer does not
    depend on its batch mates. A binary gate (0 or 1) selects without the multiply."""
    on = g.op("Cast", [gate], to=TensorProto.BOOL)
    kept = units if binary else g.op("Mul", [units, gate])
    return g.op("Where", [on, kept, g.scalar(0.0, np.float32)], name=name)


def blocked(g: Graph, array: np.ndarray, blocks: int, hint: str) -> tuple[str, str]:
    """`array` (blocks * S, ...) stored once as (blocks, S, ...) for Gather by block (one copy
    of S contiguous rows per block), plus its 2-D view for the dense Gemm: a Reshape of the
    initializer, which ORT folds into a constant at load time."""
    cache = g.root._blocked
    if hint not in cache:  # once per weight: two copies would double the model file
        stored = g.const(array.reshape(blocks, -1, *array.shape[1:]), f"{hint}.blocked")
        flat = g.root.op("Reshape",
                         [stored, g.ints(*array.shape[:1], *([-1] * (array.ndim - 1)))], hint)
        cache[hint] = (stored, flat)
    return cache[hint]
