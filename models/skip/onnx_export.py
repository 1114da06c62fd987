"""Export a gated network to ONNX with block skipping inside the graph.

`export_onnx(model)` builds the graph with `onnx.helper` straight from the weights (tracing
data-dependent skipping through torch.onnx bakes in the shapes of the example it saw). The graph
takes `x` (batch, D) float32, batch dynamic, and returns

    logits           (batch, C) float32
    active_blocks    (batch, G) int64   gates on per example and gated layer
    computed_blocks  (batch, G) int64   blocks the graph computed per example and gated layer

so a server can build compute reports from ORT alone
(`models.compute.compute_reports(config, active_blocks, computed_blocks)`; with
`gated_reads_all_inputs=True` where a gated layer reads a gated layer and the batch is larger
than 1, since the graph reads the batch's union of input blocks there). Each gated layer's
threshold is the initializer `layers.<i>.threshold` (float32 scalar, logit space).

Semantics: those of `GatedNetwork.eval()` (the dense masked reference) and of
`models.skip.cpu.SkipNetwork`: gate k is on where its gater logit exceeds the layer's
threshold, its value comes from the estimator (`Estimator.gate_values`), an off block is not
computed, and the layer reading a gated layer's output reads only the weight rows of the
computed input blocks.

How skipping survives export. Per gated layer the graph runs the gater in full, then takes the
union of the blocks on in any example of the batch (the gates on counted per block, then
NonZero), gathers those blocks' weight rows (Gather by block from weights stored (K, S, D)) and
runs one product over them for the whole batch, setting each example's off blocks to exactly
zero (a Where on its gate values: an off block's inf times 0 would be NaN). Every reader of
the layer's output (the next layer's main path and gater, or the read-out) gathers only those
blocks' rows of its weight (stored (K_in, S_in, N)). At batch 1 the
union is the example's own blocks: the graph runs exactly the active blocks. When the union
covers more than `DENSE_FALLBACK_FRACTION` of a layer's blocks, If nodes switch to the dense
masked product on the stored weights instead: ONNX has no views, so a Gather copies what it
selects, and past that point the copies cost more than the rows they save. `computed_blocks`
reports which ran (the union size, or K, for every example of the batch).

Large batches: with independent per-example gates the union is soon every block, so a chain
of gated layers (each reading the one before, the first a whole input) and the layer that reads
the last one (a dense layer or the read-out) has a third branch, `models.skip.onnx_grouped`: each
(example, block) pair on is computed, sorted by block, MoE style; a layer read by a gated layer
puts its pairs' rows back in place (zeros elsewhere) for the next one's gater and pairs, and
each example sums its own pairs' products in the final reading layer. An If takes it from
`GROUPED_FROM_BATCH` examples while at most `GROUPED_MAX_FRACTION` of the first layer's
(example, block) pairs are on; inside it, a later layer whose own pairs exceed that fraction is
computed densely instead (masked by its gates). `computed_blocks` is then each example's own
count (or every block, for a layer computed densely); a later layer of the chain reads its
input whole (zeros included), which the reports count with `gated_reads_all_inputs=True`. On
sparsegate's operators each pair of a later layer reads only the input blocks its example
computed in the layer before, as the CPU engine does; such a graph with no union path says so
in its metadata (`GATED_READS_KEY` "computed"), and its reports count exactly those reads.

Where the grouped branch takes every batch (`grouped=(1, 1.0)`) the graph has no If and no
union path for such a chain: the branch alone. With `custom_ops=True` the branch's layers are
nodes of sparsegate's onnxruntime operators (`models.skip.onnx_ops`: each pair computed once on
the CPU engine's kernels, no gathers, no padding), grouped at every batch size by default
(`OPERATORS_GROUPED_FROM_BATCH`, `OPERATORS_GROUPED_MAX_FRACTION`); such a graph runs only in an
onnxruntime that has registered them.

ORT details the layout relies on: the dense branch's 2-D weight is a Reshape of the blocked
initializer, which ORT's constant folding (on by default) turns into a constant; with graph
optimisations off, that Reshape copies the weight on every dense-branch run. A weight read by
two Gemm nodes in different If branches is prepacked for neither (measured 2x slower at batch
8), so every weight feeds exactly one Gemm. ScatterND with reduction="add" is racy in ORT 1.32
with 2 threads (wrong sums where indices repeat), so no graph here adds by scatter.

Alternatives measured on the layer 1024 -> 64 x 64 relu -> 1024 (ORT 1.32, 2-core AMD
EPYC shared with other jobs; speed-up over the dense graph, medians of interleaved runs; the
machine's memory bandwidth varied by 4x during the day, so take the figures as ranges):
- union + Gather by block (this module; `python -m benchmarks.onnx_cases`): batch 1 at 10 %
  8.8x (1 thread) and 10.9x (2 threads), 3.6x when every skipping call follows a dense one
  (cold caches); at 5 % 13-15x, at 25 % 2.6-2.9x; at 50 % 0.3x and at 100 % 0.1x without the
  fallback (copying every weight), 0.9-1x with it. Batch 8 at 10 % (union 57 %): 0.5-0.7x
  without the fallback, 0.95x with it. Batches 64 and 256: the union is ~100 %, the fallback
  runs: 0.92-1x. The whole `blocks` model (two gated layers), batch 1 at 10 %: 5.4-6.6x.
- Gather by row (weights kept 2-D, unit indices): 20-30 % slower than by block at batch 1.
- Compress instead of NonZero + Gather: slower at every density (ORT's Compress kernel).
- Grouping examples by block with a capacity (MoE style): built as the grouped branch above,
  for large batches only: 0.1-0.4x at batch 1-8. Its scatter-add form is
  the racy ScatterND above. A Loop over active blocks would carry a full-size state per iteration
  (ONNX values are immutable), copying (B, N) floats once per block.

`export_dense_onnx(model)` is the baseline the benchmark compares against: the same network run
densely (every block, no gater), `x` -> `logits`.

`verify_onnx` runs onnxruntime against torch and raises ExportError on a mismatch;
`export_to_artifact` does both and writes model.onnx into the artifact folder with its metadata
under "onnx" in config.json.

Letters: B examples, D input units of a layer, K blocks, S units per block, N output units,
n blocks selected (union over the batch), G gated layers, C classes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from models.artifact import (
    ArtifactError,
    artifact_path,
    list_versions,
    read_artifact,
    read_extra_file,
    write_artifact,
)
from models.estimators import Estimator
from models.gated_artifact import load_gated_network
from models.gated_network import GatedNetwork

from . import onnx_ops
from .onnx_graph import ExportError, Graph, apply_activation, blocked, times_gate
from .onnx_grouped import (
    grouped_condition,
    grouped_layer,
    grouped_layer_and_reader,
    masked_layer,
    masked_reader,
    operator_layer,
    operator_layer_and_reader,
)
from .onnx_runtime import GATED_READS_KEY
from .plan import PlannedLayer, plan_layers
from .routing import (
    DENSE_FALLBACK_FRACTION,
    GROUPED_FROM_BATCH,
    GROUPED_MAX_FRACTION,
    OPERATORS_GROUPED_FROM_BATCH,
    OPERATORS_GROUPED_MAX_FRACTION,
)

ONNX_FILE = "model.onnx"
INPUT_NAME = "x"
OUTPUT_NAMES = ("logits", "active_blocks", "computed_blocks")
DEFAULT_OPSET = 18
MIN_OPSET = 18  # ReduceMax takes its axes as an input from 18 on; every op here exists there
# Verification: |ORT - torch| <= RTOL * max(1, max |torch logit|), elementwise over the logits.
RTOL = 1e-4
# A gate whose torch logit lies this close to the threshold (relative) may flip between torch
# and ORT, whose sums differ in the last bits; such examples are not compared.
TIE_RTOL = 1e-5


@dataclass
class _Full:
    """Every unit of the layer's input is present: (B, width)."""

    name: str
    width: int


@dataclass
class _Selection:
    """The blocks of a gated layer that the graph computes, for the whole batch."""

    dense: str  # (1,) bool: the dense masked fallback runs (every block), else the union path
    idx: str  # (n, 1) int64 block indices, ascending; every block under the fallback
    blocks: int  # K
    block_size: int  # S


@dataclass
class _Compact:
    """A gated layer's output, only the selected blocks: (B, n*S)."""

    name: str
    selection: _Selection


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).numpy()


def _linear(g: Graph, x: _Full | _Compact, weight: np.ndarray, bias: np.ndarray, hint: str,
            out: _Selection | None = None, activation: str = "linear",
            name: str | None = None) -> str:
    """act(x @ W.T + b), reading only what skipping allows; W is (N, D_in) as torch stores it.

    x compact: only the rows of W.T of the active input blocks are read. `out`: only the output
    rows of the selected output blocks are computed (a gated layer's main path). The activation
    sits inside each If branch, where ORT fuses it into the Gemm.
    """
    def gemm(s: Graph, a: str, w: str, b: str, trans_b: int) -> str:
        return apply_activation(s, s.op("Gemm", [a, w, b], hint, transB=trans_b), activation)

    def rows(s: Graph, blocked: str, idx: str, width: int | None, label: str) -> str:
        """The selected blocks' rows of a (K, S, ...) weight, as (n*S, width)."""
        picked = s.op("Gather", [blocked, idx], f"{hint}.{label}", axis=0)  # (n, 1, S, ...)
        return s.op("Reshape", [picked, s.ints(-1) if width is None else s.ints(-1, width)])

    if isinstance(x, _Full) and out is None:
        w, b = g.const(weight, f"{hint}.weight"), g.const(bias, f"{hint}.bias")
        pre = g.op("Gemm", [x.name, w, b], hint, transB=1)  # (B, N)
        return apply_activation(g, pre, activation, name)
    if isinstance(x, _Full):
        w3, w = blocked(g, weight, out.blocks, f"{hint}.weight")  # (K, S, D), (K*S, D)
        b3, b = blocked(g, bias, out.blocks, f"{hint}.bias")  # (K, S), (K*S,)

        def rows_only(s: Graph) -> str:  # the selected blocks' output rows
            ws = rows(s, w3, out.idx, weight.shape[1], "rows")  # (n*S, D)
            return gemm(s, x.name, ws, rows(s, b3, out.idx, None, "bias_rows"), 1)  # (B, n*S)

        return g.if_(out.dense, lambda s: gemm(s, x.name, w, b, 1), rows_only, hint, name)
    inp = x.selection
    if out is None:  # a dense layer, a gater or the read-out after a gated layer
        wt3, wt = blocked(g, np.ascontiguousarray(weight.T), inp.blocks,
                           f"{hint}.weight_t")  # (K_in, S_in, N), (D_in, N)
        b = g.const(bias, f"{hint}.bias")

        def input_rows(s: Graph) -> str:  # only the rows of the active input blocks
            ws = rows(s, wt3, inp.idx, weight.shape[0], "input_rows")  # (n*S_in, N)
            return gemm(s, x.name, ws, b, 0)  # (B, N)

        return g.if_(inp.dense, lambda s: gemm(s, x.name, wt, b, 0), input_rows, hint, name)
    # A gated layer after a gated layer: select output rows and input blocks.
    w3, w = blocked(g, weight, out.blocks, f"{hint}.weight")
    b3, b = blocked(g, bias, out.blocks, f"{hint}.bias")
    k_in, s_in = inp.blocks, inp.block_size

    def out_sparse(s: Graph) -> str:
        ws = rows(s, w3, out.idx, weight.shape[1], "rows")  # (n_out*S_out, D_in)
        bs = rows(s, b3, out.idx, None, "bias_rows")

        def both(t: Graph) -> str:
            w3_in = t.op("Reshape", [ws, t.ints(0, k_in, s_in)])  # (n_out*S_out, K_in, S_in)
            w4 = t.op("Gather", [w3_in, inp.idx], f"{hint}.input_blocks",
                      axis=1)  # (n_out*S_out, n_in, 1, S_in)
            # (n_out*S_out, n_in*S_in), spelt out: Reshape cannot infer a -1 when n_out is 0
            shape = t.op("Concat", [t.op("Shape", [ws], start=0, end=1),
                                    t.op("Shape", [x.name], start=1, end=2)], axis=0)
            return gemm(t, x.name, t.op("Reshape", [w4, shape]), bs, 1)

        return s.if_(inp.dense, lambda t: gemm(t, x.name, ws, bs, 1), both, hint)

    def out_dense(s: Graph) -> str:
        # The input is full width already, or (rarely: this layer's union is wide, the previous
        # one's narrow) is put back to full width. One Gemm reads W here: ORT prepacks a weight
        # that two Gemm nodes share in different branches for neither (measured: 2x slower).
        full = s.if_(inp.dense, lambda t: x.name, lambda t: _to_full(t, x), f"{hint}.input")
        return gemm(s, full, w, b, 1)

    return g.if_(out.dense, out_dense, out_sparse, hint, name)


def _to_full(g: Graph, x: _Compact) -> str:
    """(B, n*S) -> (B, K*S) with zeros in the unselected blocks (rows are distinct, so the
    ScatterND has no duplicate indices)."""
    sel = x.selection
    xt = g.op("Transpose", [x.name])  # (n*S, B)
    batch = g.op("Slice", [g.op("Shape", [x.name]), g.ints(0), g.ints(1)])  # (1,)
    shape = g.op("Concat", [g.ints(sel.blocks * sel.block_size), batch], axis=0)
    zeros = g.op("ConstantOfShape", [shape], value=numpy_helper.from_array(
        np.zeros(1, np.float32)))  # (K*S, B)
    table = g.const(np.arange(sel.blocks * sel.block_size, dtype=np.int64).reshape(
        sel.blocks, sel.block_size), "units_of_blocks")
    rows = g.op("Reshape", [g.op("Gather", [table, sel.idx], axis=0), g.ints(-1, 1)])  # (n*S, 1)
    full = g.op("ScatterND", [zeros, rows, xt])  # (K*S, B)
    return g.op("Transpose", [full])  # (B, K*S)


def _gate_values(g: Graph, estimator: Estimator, logits: str, on: str, hint: str) -> str:
    """The ONNX form of `estimator.gate_values(logits, on)`: (B, K) float, zero where off."""
    if type(estimator).gate_values is not Estimator.gate_values:
        raise ExportError(f"estimator {estimator.name!r} overrides gate_values; its ONNX form is "
                          "not known")
    if estimator.binary:
        return g.op("Cast", [on], f"{hint}.gate_values", to=TensorProto.FLOAT)
    name = estimator.name
    if name in ("rectifier", "noisy-rectifier"):  # eval value = smooth = max(0, a)
        value = g.op("Relu", [logits])
    elif name in ("noisy-sigmoid", "dropout-sigmoid"):  # eval value = smooth = sigm(a)
        value = g.op("Sigmoid", [logits])
    elif name == "sts":  # sqrt(sigm(a)) as exp(logsigm(a) / 2), logsigm(a) = -softplus(-a)
        softplus = g.op("Softplus", [g.op("Neg", [logits])])
        value = g.op("Exp", [g.op("Mul", [softplus, g.scalar(-0.5, np.float32)])])
    elif name == "hard-concrete":
        value = _hard_concrete_mean(g, estimator, logits)
    else:
        raise ExportError(f"estimator {name!r} has no ONNX export of its gate values")
    return g.op("Where", [on, value, g.scalar(0.0, np.float32)], f"{hint}.gate_values")


def _hard_concrete_mean(g: Graph, estimator, logits: str) -> str:
    """E[h | a] by the estimator's own quadrature (models/estimators/relaxation.py)."""
    from models.estimators.relaxation import QUADRATURE_POINTS

    u = (torch.arange(QUADRATURE_POINTS, dtype=torch.float32) + 0.5) / QUADRATURE_POINTS
    noise = g.const((torch.log(u) - torch.log1p(-u)).numpy(), "hard_concrete.noise")  # (Q,)
    a = g.op("Unsqueeze", [logits, g.ints(-1)])  # (B, K, 1)
    s = g.op("Sigmoid", [g.op("Div", [g.op("Add", [a, noise]),
                                      g.scalar(estimator.temperature, np.float32)])])
    stretched = g.op("Add", [g.op("Mul", [s, g.scalar(estimator.zeta - estimator.gamma,
                                                      np.float32)]),
                             g.scalar(estimator.gamma, np.float32)])
    clipped = g.op("Clip", [stretched, g.scalar(0.0, np.float32), g.scalar(1.0, np.float32)])
    return g.op("ReduceMean", [clipped, g.ints(-1)], keepdims=0)  # (B, K)


@dataclass
class _Gates:
    """A gated layer's gate stage: its gater run in full over the batch."""

    on: str  # (B, K) bool
    values: str  # (B, K) float, 0 where off
    selection: _Selection | None  # the union path's blocks (all of them under the fallback)
    union: str | None  # (1,) int64 blocks on in some example (None: no union path)
    active: str  # (B, 1) int64 blocks on per example


def _gates(g: Graph, x: _Full | _Compact, step: PlannedLayer) -> tuple[str, str]:
    """The layer's gater over the batch: on (B, K) bool and values (B, K) float (0 where
    off)."""
    hint, layer = f"layers.{step.index}", step.gated
    gater = layer.gater
    h = x
    if gater.hidden is not None:
        h = _Full(_linear(g, x, _np(gater.hidden.weight), _np(gater.hidden.bias),
                          f"{hint}.gater.hidden", activation="tanh"), gater.hidden.out_features)
    logits = _linear(g, h, _np(gater.out.weight), _np(gater.out.bias),
                     f"{hint}.gater.out")  # (B, K)
    tau = g.named_const(np.array(float(layer.threshold), np.float32),
                        f"{hint}.threshold")  # one per layer, set by name
    on = g.op("Greater", [logits, tau], f"{hint}.on")  # (B, K)
    return on, _gate_values(g, layer.estimator, logits, on, hint)


def _active(g: Graph, on: str, hint: str, name: str | None = None) -> str:
    """(B, 1) int64: blocks on per example."""
    return g.op("ReduceSum", [g.op("Cast", [on], to=TensorProto.INT64), g.ints(1)],
                f"{hint}.active", keepdims=1, name=name)


def _gate_stage(g: Graph, x: _Full | _Compact, step: PlannedLayer, dense_fallback: float,
                active_name: str | None) -> _Gates:
    """The gater over the batch and the union path's selection: the dense fallback runs where
    more than `dense_fallback` of the blocks are on in some example."""
    k, s = step.gated.config.blocks, step.gated.config.block_size
    cut = int(np.floor(dense_fallback * k + 1e-9))
    hint = f"layers.{step.index}"
    on, values = _gates(g, x, step)
    # Union over the batch: block k is needed if some example has it on. Counted from the
    # gates, not as the largest logit against the threshold: one example's NaN logit (its
    # activations overflowed) would make that largest logit NaN and take the block from every
    # other example of the batch.
    on_count = g.op("ReduceSum", [g.op("Cast", [on], to=TensorProto.INT64), g.ints(0)],
                    keepdims=0)  # (K,)
    needed = g.op("Greater", [on_count, g.scalar(0, np.int64)], f"{hint}.needed")  # (K,)
    count = g.op("ReduceSum", [g.op("Cast", [needed], to=TensorProto.INT64)],
                 f"{hint}.union", keepdims=1)  # (1,)
    dense = g.op("Greater", [count, g.ints(cut)], f"{hint}.dense")  # (1,)
    # Under the fallback every block is selected: NonZero of (needed or dense), no If needed.
    selected = g.op("Or", [needed, dense])  # (K,)
    idx = g.op("Transpose", [g.op("NonZero", [selected])], f"{hint}.blocks")  # (n, 1)
    return _Gates(on, values, _Selection(dense, idx, k, s), count,
                  _active(g, on, hint, active_name))


def _union_computed(g: Graph, gates: _Gates, name: str | None = None) -> str:
    """(B, 1): what the union path computes for every example (the union, or all blocks)."""
    sel = gates.selection
    per_batch = g.op("Where", [sel.dense, g.ints(sel.blocks), gates.union])  # (1,)
    return g.op("Expand", [per_batch, g.op("Shape", [gates.active])], name=name)


def _union_layer(g: Graph, x: _Full | _Compact, step: PlannedLayer, gates: _Gates) -> _Compact:
    """The gated layer on the union path: the selected blocks for the whole batch, each
    example's off blocks zeroed by its gate values (`times_gate`: exactly 0)."""
    sel, s = gates.selection, step.gated.config.block_size
    hint = f"layers.{step.index}"
    act = _linear(g, x, _np(step.linear.weight), _np(step.linear.bias), step.path,
                  out=sel, activation=step.activation)  # (B, n*S)
    binary = step.gated.estimator.binary
    if s == 1:
        flat = g.op("Reshape", [sel.idx, g.ints(-1)])  # (n,)
        gate = g.op("Gather", [gates.values, flat], f"{hint}.selected_gates", axis=1)  # (B, n)
        return _Compact(times_gate(g, act, gate, binary), sel)
    gate = g.op("Gather", [gates.values, sel.idx], f"{hint}.selected_gates",
                axis=1)  # (B, n, 1)
    # Shapes spelt out: Reshape cannot infer a -1 beside a batch of 0 rows, which the union path
    # gets where the grouped branch takes the batch. (Gathering a gate per unit instead, (B,
    # n*S), avoids the Reshape but was slower at batch 64-256: ORT gathers one float at a time
    # along axis 1.)
    flat_shape = g.op("Shape", [act])  # (2,): B, n*S
    n = g.op("Shape", [sel.idx], start=0, end=1)
    blocks = g.op("Reshape", [act, g.op("Concat", [g.op("Shape", [act], start=0, end=1), n,
                                                   g.ints(s)], axis=0)])  # (B, n, S)
    out = g.op("Reshape", [times_gate(g, blocks, gate, binary), flat_shape],
               f"{hint}.out")  # (B, n*S)
    return _Compact(out, sel)


def _main_blocked(g: Graph, step: PlannedLayer) -> tuple[str, str]:
    """The gated layer's weight (K, S, D) and bias (K, S) as stored by block."""
    k = step.gated.config.blocks
    return (blocked(g, _np(step.linear.weight), k, f"{step.path}.weight")[0],
            blocked(g, _np(step.linear.bias), k, f"{step.path}.bias")[0])


def _grouped_chain(s: Graph, x: _Full, batch: str, chain: list[PlannedLayer], gates: _Gates,
                   reader: PlannedLayer, reader_bias: str, max_fraction: float,
                   operators: bool) -> list[str]:
    """The grouped branch of `_grouped_or_union`, built into `s` (`batch`: B as (1,) int64):
    the reader's output (B, N), then the active and the computed blocks (B, 1) of each later
    layer of the chain. The first layer is grouped (the If's condition holds for its pairs);
    each later one is grouped where its own pairs are few enough, else computed densely:
    grouping a layer with most of its pairs on would copy its input once per block. With
    `operators` (sparsegate's onnxruntime operators) every layer is grouped: they copy
    nothing."""
    h, actives, computed, before = x.name, [], [], None
    for n, step in enumerate(chain):
        k = step.gated.config.blocks
        own = None
        if n:  # gates from the whole (zero-filled) output of the layer before
            on, values = _gates(s, _Full(h, chain[n - 1].gated.config.width), step)
            active = _active(s, on, f"layers.{step.index}.grouped")
            actives.append(active)
            if operators:  # its own blocks, a value of its own (a branch output is named once)
                computed.append(s.op("Identity", [active]))
            else:
                own = grouped_condition(s, batch, active, k, 1, max_fraction,
                                        f"layers.{step.index}.grouped")
                computed.append(s.op("Where", [own, active, s.ints(k)]))
        else:
            on, values = gates.on, gates.values
        reads = None
        if n == len(chain) - 1:
            reader_blocked, _ = blocked(s, np.ascontiguousarray(_np(reader.linear.weight).T), k,
                                        f"{reader.path}.weight_t")
            reads = (reader_blocked, reader_bias, reader.activation)
        h = _grouped_step(s, h, on, values, own, step, reads, operators, before)
        before = on if operators else None  # the operators computed exactly these blocks
    return [h, *actives, *computed]


def _grouped_step(s: Graph, x: str, on: str, values: str, own: str | None, step: PlannedLayer,
                  reader: tuple[str, str, str] | None, operators: bool,
                  before: str | None = None) -> str:
    """One layer of a grouped chain over its whole input x: its whole output (B, K*S), or with
    `reader` (blocked weight, bias, activation) the reader's output (B, N). Grouped pair by
    pair (by sparsegate's operators with `operators`, each pair reading only the input blocks
    the layer before computed, `before` (B, J) bool, where that layer was grouped by them), or
    where `own` (a (1,) bool) is given, in an If on it, else densely."""
    k, act, hint = step.gated.config.blocks, step.activation, f"layers.{step.index}.grouped"
    w3, b3 = _main_blocked(s, step)

    def grouped_fn(t: Graph) -> str:
        if operators:
            return (operator_layer(t, x, on, values, w3, b3, act, before) if reader is None
                    else operator_layer_and_reader(t, x, on, values, w3, b3, act, *reader,
                                                   computed=before))
        if reader is None:
            return grouped_layer(t, x, on, values, w3, b3, act, k, hint)
        return grouped_layer_and_reader(t, x, on, values, w3, b3, act, *reader, k, hint)

    def masked_fn(t: Graph) -> str:
        full = masked_layer(t, x, values, w3, b3, act, step.gated.estimator.binary)
        return full if reader is None else masked_reader(t, full, k, *reader)

    return grouped_fn(s) if own is None else s.if_(own, grouped_fn, masked_fn, hint)


def _grouped_only(g: Graph, x: _Full, chain: list[PlannedLayer], gates: _Gates,
                  reader: PlannedLayer, computed_name: str | None, operators: bool
                  ) -> tuple[str, list[str], list[str]]:
    """`_grouped_or_union` where the grouped branch takes every batch (`grouped` from batch 1 at
    any fraction): the branch alone, no If and no union path, whose gathers would run for
    nothing."""
    batch = g.op("Shape", [x.name], start=0, end=1)  # (1,)
    bias = g.const(_np(reader.linear.bias), f"{reader.path}.bias")
    out, *counts = _grouped_chain(g, x, batch, chain, gates, reader, bias, 1.0, operators)
    later = len(chain) - 1
    if reader.readout:
        out = g.op("Identity", [out], name="logits")
    first = (g.op("Identity", [gates.active], name=computed_name) if computed_name
             else gates.active)  # (B, 1): each example its own blocks
    return out, counts[:later], [first, *counts[later:]]


def _grouped_or_union(g: Graph, x: _Full, chain: list[PlannedLayer], gates: _Gates,
                      reader: PlannedLayer, grouped: tuple[int, float], dense_fallback: float,
                      computed_name: str | None, operators: bool
                      ) -> tuple[str, list[str], list[str]]:
    """A chain of gated layers, each reading the one before (the first a whole input), and the
    dense layer (or read-out) reading the last, in an If: the grouped branch
    (`models.skip.onnx_grouped`) for large sparse batches, else the union path. `gates`: the
    first layer's gate stage over the whole batch; the If decides on its pairs. Returns the
    reader's output (B, N) (named "logits" where the reader is the read-out), the active blocks
    (B, 1) of the chain's later layers and the computed blocks (B, 1) of every layer of the
    chain (the first named `computed_name`)."""
    first = chain[0]
    hint = f"layers.{first.index}"
    batch = g.op("Shape", [x.name], start=0, end=1)  # (1,)
    cond = grouped_condition(g, batch, gates.active, first.gated.config.blocks, *grouped, hint)
    weight, bias = _np(reader.linear.weight), _np(reader.linear.bias)
    later = len(chain) - 1

    def grouped_branch(s: Graph) -> list[str]:
        return _grouped_chain(s, x, batch, chain, gates, reader,
                              s.const(bias, f"{reader.path}.bias"), grouped[1], operators)

    def no_rows(s: Graph) -> list[str]:  # (0, N), then (0, 1) twice per later layer
        empty = s.op("ConstantOfShape", [s.ints(0, 1)], value=numpy_helper.from_array(
            np.zeros(1, np.int64)))
        return [s.op("ConstantOfShape", [s.ints(0, weight.shape[0])]), *[empty] * (2 * later)]

    # The union path stays outside the If, over the batch's rows or none of them: nested in an
    # If branch, its dense fallback's Gemm lost its prepacked weight (much slower at batch 8).
    rows = g.op("Where", [cond, g.ints(0), batch])
    x_rows = g.op("Slice", [x.name, g.ints(0), rows, g.ints(0)], f"{hint}.union_rows")
    values = g.op("Slice", [gates.values, g.ints(0), rows, g.ints(0)])
    compact = _union_layer(g, _Full(x_rows, x.width), first,
                           dataclasses.replace(gates, values=values))
    union_active, union_computed = [], []
    for step in chain[1:]:
        stage = _gate_stage(g, compact, step, dense_fallback, None)
        compact = _union_layer(g, compact, step, stage)
        union_active.append(stage.active)
        union_computed.append(_union_computed(g, stage))
    union = _linear(g, compact, weight, bias, reader.path, activation=reader.activation)
    types = [TensorProto.FLOAT] + [TensorProto.INT64] * (2 * later)
    grouped_out = g.if_outputs(cond, grouped_branch, no_rows, types, f"{hint}.grouped_read")
    out = g.op("Concat", [union, grouped_out[0]], f"{hint}.read",
               name="logits" if reader.readout else None, axis=0)  # (B, N)
    computed = [g.op("Where", [cond, gates.active, _union_computed(g, gates)],
                     f"{hint}.computed", name=computed_name)]  # (B, 1): its own when grouped
    actives = []
    for step, mine, done, union_a, union_c in zip(
            chain[1:], grouped_out[1:1 + later], grouped_out[1 + later:], union_active,
            union_computed, strict=True):
        actives.append(g.op("Concat", [union_a, mine], f"layers.{step.index}.active", axis=0))
        computed.append(g.op("Concat", [union_c, done], f"layers.{step.index}.computed",
                             axis=0))
    return out, actives, computed


def _dense_layer(g: Graph, x: _Full | _Compact, step: PlannedLayer,
                 name: str | None = None) -> _Full:
    """A layer that is not gated (or the read-out, named `name`), reading what skipping
    allows of its input."""
    return _Full(_linear(g, x, _np(step.linear.weight), _np(step.linear.bias), step.path,
                         activation=step.activation, name=name), step.linear.out_features)


def _finish(g: Graph, inputs, outputs, opset: int, name: str, operators: bool = False,
            metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    ir_version = helper.find_min_ir_version_for(opsets)  # onnx knows only its own domains
    if operators:
        opsets.append(helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.DOMAIN_VERSION))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="sparsegate",
                              ir_version=ir_version)
    helper.set_model_props(model, metadata or {})
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"the exported graph does not check: {err}") from err
    return model


def check_opset(opset: int) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= newest:
        raise ExportError(f"opset must be an integer from {MIN_OPSET} to {newest} (onnx "
                          f"{onnx.__version__}), got {opset!r}")


def _input_info(model: GatedNetwork) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                         ["batch", model.config.input_size])


def export_onnx(model: GatedNetwork, opset: int = DEFAULT_OPSET, *,
                dense_fallback: float = DENSE_FALLBACK_FRACTION,
                grouped: tuple[int, float] | str | None = "default",
                custom_ops: bool = False) -> onnx.ModelProto:
    """The skipping graph of `model` (deterministic gates at its current thresholds).

    `dense_fallback`: a gated layer runs dense masked when more than this fraction of its blocks
    is on somewhere in the batch; 1.0 always takes the union path, a negative value never does
    (the tests run both paths through the same builder). `grouped`: (from batch, max fraction
    of pairs on) for the grouped branch of a gated layer whose reader is not gated (None: no
    such branch; (1, 1.0): always, where it applies; "default": `default_grouped`).
    `custom_ops`: the grouped branch runs on sparsegate's onnxruntime operators
    (`models.skip.onnx_ops`), so the graph runs only where they are registered.
    """
    check_opset(opset)
    if grouped == "default":
        grouped = default_grouped(custom_ops)
    if custom_ops and grouped is None:
        raise ExportError("the operators compute the grouped branch: custom_ops needs one")
    g = Graph()
    x: _Full | _Compact = _Full(INPUT_NAME, model.config.input_size)
    num_gated = len(model.gated_layers)
    actives, computed = [], []
    plan = plan_layers(model)  # the read-out last, never gated
    # Where the grouped branch takes every batch: no union path (`_grouped_only`).
    always = grouped is not None and grouped[0] <= 1 and grouped[1] >= 1.0
    with torch.no_grad():
        i = 0
        while i < len(plan):
            step = plan[i]
            if step.gated is None:
                x = _dense_layer(g, x, step, "logits" if step.readout else None)
                i += 1
                continue
            # One gated layer: its counts are the graph's outputs, no Concat.
            name = "active_blocks" if num_gated == 1 else None
            computed_name = "computed_blocks" if num_gated == 1 else None
            end = i + 1  # past the chain of gated layers from here, each reading the one before
            while plan[end - 1].read_by_gated:
                end += 1
            if always and isinstance(x, _Full):  # no union path: the gater alone
                on, values = _gates(g, x, step)
                gates = _Gates(on, values, None, None, _active(g, on, f"layers.{step.index}", name))
            else:
                gates = _gate_stage(g, x, step, dense_fallback, name)
            actives.append(gates.active)
            if grouped is not None and isinstance(x, _Full):
                # The layer after the chain (or the read-out) reads only what the chain
                # computes: the grouped branch can compute all of it, pair by pair.
                reader = plan[end]
                if always:
                    y, later_active, done = _grouped_only(g, x, plan[i:end], gates, reader,
                                                          computed_name, custom_ops)
                else:
                    y, later_active, done = _grouped_or_union(
                        g, x, plan[i:end], gates, reader, grouped, dense_fallback,
                        computed_name, custom_ops)
                x = _Full(y, reader.linear.out_features)
                actives.extend(later_active)
                computed.extend(done)
                i = end + 1  # past the reader
                continue
            x = _union_layer(g, x, step, gates)
            computed.append(_union_computed(g, gates, computed_name))
            i += 1
    if num_gated > 1:
        g.op("Concat", actives, name="active_blocks", axis=1)  # (B, G)
        g.op("Concat", computed, name="computed_blocks", axis=1)  # (B, G)
    elif not num_gated:  # (B, 0) twice
        batch = g.op("Slice", [g.op("Shape", [INPUT_NAME]), g.ints(0), g.ints(1)])
        shape = g.op("Concat", [batch, g.ints(0)], axis=0)
        for output in ("active_blocks", "computed_blocks"):
            g.op("ConstantOfShape", [shape], name=output,
                 value=numpy_helper.from_array(np.zeros(1, np.int64)))
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                      ["batch", model.config.num_classes]),
        helper.make_tensor_value_info("active_blocks", TensorProto.INT64, ["batch", num_gated]),
        helper.make_tensor_value_info("computed_blocks", TensorProto.INT64, ["batch", num_gated]),
    ]
    # On sparsegate's operators with the grouped branch alone, a gated layer after a gated
    # layer reads each example's own computed input blocks, as the engine does; otherwise a
    # batch's union of them, or all (`models.skip.onnx_runtime` prices the reads from this).
    reads = "computed" if custom_ops and always else "union"
    return _finish(g, [_input_info(model)], outputs, opset, "sparsegate_skip", custom_ops,
                   {GATED_READS_KEY: reads})


def default_grouped(custom_ops: bool) -> tuple[int, float]:
    """Where the grouped branch runs by default: (from batch, max fraction of pairs on)."""
    return ((OPERATORS_GROUPED_FROM_BATCH, OPERATORS_GROUPED_MAX_FRACTION) if custom_ops
            else (GROUPED_FROM_BATCH, GROUPED_MAX_FRACTION))


def export_dense_onnx(model: GatedNetwork, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The same network run densely: every block, no gater, no gate values (the cost baseline
    of the benchmark; its logits are not the gated model's). `x` -> `logits`."""
    check_opset(opset)
    g = Graph()
    x = _Full(INPUT_NAME, model.config.input_size)
    with torch.no_grad():
        for step in plan_layers(model):
            x = _dense_layer(g, x, step, "logits" if step.readout else None)
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                        ["batch", model.config.num_classes])
    return _finish(g, [_input_info(model)], [out], opset, "sparsegate_dense")


def export_all_on_onnx(model: GatedNetwork, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The network for a batch whose gates are all on: every block computed, each gated
    layer's gater run over the output of the layers before it, `x` -> `logits` and
    `gates_off` (G,) int64, the gates off in each gated layer over the batch. Where every
    count is 0 the logits are the gated network's (its units binary: a gate on is worth 1);
    elsewhere the caller discards them (a gater after a layer with gates off read units the
    network zeroes)."""
    check_opset(opset)
    if not model.gated_layers or not all(layer.estimator.binary
                                         for layer in model.gated_layers):
        raise ExportError("an all-on graph needs gated layers of binary units")
    g = Graph()
    x = _Full(INPUT_NAME, model.config.input_size)
    offs = []
    with torch.no_grad():
        for step in plan_layers(model):
            if step.gated is not None:
                on, _ = _gates(g, x, step)
                off = g.op("ReduceSum", [g.op("Cast", [g.op("Not", [on])], to=TensorProto.INT64)],
                           f"layers.{step.index}.gates_off", keepdims=0)  # ()
                offs.append(g.op("Reshape", [off, g.ints(1)]))
            x = _dense_layer(g, x, step, "logits" if step.readout else None)
    g.op("Concat", offs, axis=0, name="gates_off")
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                             ["batch", model.config.num_classes]),
               helper.make_tensor_value_info("gates_off", TensorProto.INT64, [len(offs)])]
    return _finish(g, [_input_info(model)], outputs, opset, "sparsegate_all_on")


# --- verification -----------------------------------------------------------------------------


def ort_session(model: onnx.ModelProto | bytes, threads: int | None = None,
                config: dict[str, str] | None = None):
    """A CPU onnxruntime session (quiet), `threads` intra-op threads (None: ORT's default),
    `config` its session configuration entries (e.g. "session.intra_op.allow_spinning"),
    with sparsegate's operators where the graph uses them."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    data = model if isinstance(model, bytes) else model.SerializeToString()
    onnx_ops.register_for(options, data)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def reference(model: GatedNetwork, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                              list[torch.Tensor]]:
    """Torch logits (dense masked forward), active blocks (B, G) and each gated layer's logit
    margins |logit - threshold| (B, K)."""
    model = model.eval()
    out = model(x)
    layers = model.gated_layers
    active = [(t.logits > layer.threshold).sum(-1) for t, layer in
              zip(out.traces, layers, strict=True)]
    margins = [(t.logits - layer.threshold).abs() / layer.threshold.abs().clamp_min(1.0)
               for t, layer in zip(out.traces, layers, strict=True)]
    active = torch.stack(active, -1) if active else torch.zeros(x.shape[0], 0, dtype=torch.int64)
    return out.logits, active, margins


def verify_onnx(model: GatedNetwork, onnx_model: onnx.ModelProto | bytes,
                batches: list[torch.Tensor]) -> dict[str, Any]:
    """Run the graph in onnxruntime on each batch and compare with torch; raise ExportError on
    a mismatch: logits beyond RTOL * max(1, max |torch logit| over all batches), active blocks
    not equal, or computed blocks that are neither one count per layer for the whole batch nor
    each example's own, covering every example's active blocks. Examples with a gate logit
    within TIE_RTOL of its threshold are left out (a legitimate flip). Returns what was
    measured."""
    try:
        session = ort_session(onnx_model)
    except Exception as err:  # onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime cannot load the exported graph: {err}") from err
    references = [reference(model, x.to(torch.float32)) for x in batches]
    scale = max([1.0, *(float(r[0].abs().max()) for r in references if r[0].numel())])
    tolerance = RTOL * scale
    blocks = torch.tensor([layer.config.blocks for layer in model.gated_layers])
    worst, compared, ties = 0.0, 0, 0
    for x, (logits, active, margins) in zip(batches, references, strict=True):
        try:
            got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.to(torch.float32).numpy()})
        except Exception as err:
            raise ExportError(f"onnxruntime failed on a batch of {x.shape[0]}: {err}") from err
        got_logits, got_active, got_computed = (torch.from_numpy(a) for a in got)
        if got_logits.shape != logits.shape or not torch.isfinite(got_logits).all():
            raise ExportError(f"onnxruntime's logits are not finite or have shape "
                              f"{tuple(got_logits.shape)}, not {tuple(logits.shape)}")
        # Per gated layer: one count for the whole batch (the union path), or each example's
        # own (the grouped branch, checked against its active blocks below).
        uniform = (got_computed == got_computed[:1]).all(0) | (got_computed == got_active).all(0)
        if got_computed.shape != active.shape or not (
                uniform.all() and (got_computed <= blocks).all()):
            raise ExportError(f"onnxruntime's computed blocks are neither one count per gated "
                              f"layer for the batch nor each example's active blocks: "
                              f"{got_computed.tolist()}")
        keep = torch.ones(x.shape[0], dtype=torch.bool)
        for margin in margins:
            keep &= (margin > TIE_RTOL).all(-1)
        ties += int((~keep).sum())
        if not keep.any():
            continue
        if not (torch.equal(got_active[keep], active[keep])
                and (got_computed[keep] >= active[keep]).all()):
            raise ExportError(f"onnxruntime's active (or computed) blocks differ from torch's "
                              f"on a batch of {x.shape[0]}")
        worst = max(worst, float((got_logits[keep] - logits[keep]).abs().max()))
        compared += int(keep.sum())
        if worst > tolerance:
            raise ExportError(f"onnxruntime's logits differ from torch's by {worst:.3g} "
                              f"(tolerance {tolerance:.3g}) on a batch of {x.shape[0]}")
    if compared == 0:
        raise ExportError("no example could be compared (every one sits on a threshold)")
    return {"max_abs_diff": worst, "tolerance": tolerance, "relative_tolerance": RTOL,
            "examples": compared, "ties_skipped": ties}


def verification_batches(model: GatedNetwork, real: torch.Tensor | None = None,
                         seed: int = 0) -> list[torch.Tensor]:
    """Batches that exercise the graph: whole batches (wide unions: the dense fallback, or the
    grouped branch where few pairs are on) and single examples (the union path), random normal
    and uniform [0, 1) inputs, plus real inputs where given."""
    gen = torch.Generator().manual_seed(seed)
    d = model.config.input_size
    pools = [torch.randn(64, d, generator=gen), torch.rand(64, d, generator=gen)]
    if real is not None and real.numel():
        pools.append(real[:256].to(torch.float32))
    batches = list(pools)
    for pool in pools:
        batches += [pool[i:i + 1] for i in range(8)] + [pool[8:11]]
    return batches


# --- artifacts --------------------------------------------------------------------------------


def resolve_version(repository: str | Path, name: str, version: str | int | None) -> str:
    """The version folder name to export; the latest published one when `version` is None."""
    if version is None:
        versions = list_versions(repository, name)
        if not versions:
            raise ArtifactError(f"{Path(repository) / name}: no published version of model "
                                f"{name!r} in {repository}")
        return versions[-1]
    folder = artifact_path(repository, name, version)
    if not folder.is_dir():
        known = list_versions(repository, name)
        raise ArtifactError(f"{folder}: model {name!r} has no version {folder.name} (published: "
                            f"{', '.join(known) or 'none'})")
    return folder.name


def export_to_artifact(repository: str | Path, name: str, version: str | int | None = None,
                       opset: int = DEFAULT_OPSET, *, real: torch.Tensor | None = None,
                       real_note: str = "none given", serve_with: str | None = None,
                       custom_ops: bool = False) -> tuple[Path, dict[str, Any]]:
    """Export the artifact's network to model.onnx, verify it against torch (on random inputs,
    and on `real` ones where given, described by `real_note`), and rewrite the version
    atomically with the file and its metadata (config.json "onnx"); config, weights and other
    extra files are kept. Returns the folder and the metadata. `training.onnx_export` passes
    the test inputs of the data set the artifact was trained on. `serve_with` records the
    backend ("onnxruntime" or "torch") that a server left on `--backend auto` serves this
    version with (config.json "serving"). `custom_ops`: the grouped branch runs on
    sparsegate's onnxruntime operators (`export_onnx`); the metadata says so under
    "operators", and a server registers them before loading the graph."""
    import onnxruntime as ort

    check_opset(opset)
    version = resolve_version(repository, name, version)
    folder = artifact_path(repository, name, version)
    config, tensors = read_artifact(folder)
    model, _ = load_gated_network(folder, config=config)
    extras = {}
    for file_name in config.get("extra_files") or {}:
        if file_name != ONNX_FILE:
            extras[file_name] = read_extra_file(folder, file_name)
    graph = export_onnx(model, opset, custom_ops=custom_ops)
    data = graph.SerializeToString()
    from_batch, max_fraction = default_grouped(custom_ops)
    measured = verify_onnx(model, data, verification_batches(model, real))
    metadata = {
        "file": ONNX_FILE,
        "opset": opset,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": ort.__version__,
        # Lists, not objects: config.json is written with sorted keys, the order matters here.
        "inputs": [{"name": INPUT_NAME, "dtype": "float32",
                    "shape": ["batch", model.config.input_size]}],
        "outputs": [
            {"name": "logits", "dtype": "float32", "shape": ["batch", model.config.num_classes]},
            {"name": "active_blocks", "dtype": "int64",
             "shape": ["batch", len(model.gated_layers)]},
            {"name": "computed_blocks", "dtype": "int64",
             "shape": ["batch", len(model.gated_layers)]},
        ],
        "skipping": {
            "strategy": "union of the batch's active blocks gathered (NonZero + Gather); dense "
                        "masked fallback (If) above the fraction; for a gated layer read by a "
                        "layer that is not gated, a grouped branch (If) computing each "
                        "(example, block) pair on, from the batch size and below the fraction "
                        "of pairs on",
            "dense_fallback_fraction": DENSE_FALLBACK_FRACTION,
            "grouped_from_batch": from_batch,
            "grouped_max_fraction": max_fraction,
            "computed_blocks": "blocks of each gated layer computed, per example: the union of "
                               "the batch's active blocks (the example's own at batch 1), all "
                               "of them under the fallback, or the example's own under the "
                               "grouped branch",
            # what a gated layer after a gated layer reads (the graph's own metadata entry)
            "gated_reads": {p.key: p.value for p in graph.metadata_props}.get(GATED_READS_KEY),
        },
        "verification": {**measured, "inputs": f"random normal and uniform; real: {real_note}",
                         "reference": "GatedNetwork.eval() (dense masked)"},
        "operators": ({"domain": onnx_ops.DOMAIN, "version": onnx_ops.DOMAIN_VERSION,
                       "runs_in": "onnxruntime with models.skip.onnx_ops registered"}
                      if custom_ops else None),
    }
    json.dumps(metadata, allow_nan=False)
    stored = {key: value for key, value in config.items() if key != "onnx"}
    stored["onnx"] = metadata
    if serve_with is not None:  # the backend a server left on "auto" serves this version with
        stored["serving"] = {**(stored.get("serving") or {}), "backend": serve_with}
    folder = write_artifact(repository, name, version, stored, tensors,
                            extra_files={**extras, ONNX_FILE: data}, overwrite=True)
    return folder, metadata
