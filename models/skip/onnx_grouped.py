"""The grouped branch of the skipping graph: gated layers and the layer reading the last of them,
computed per (example, block) pair, for large batches (`models.skip.onnx_export` builds it in an
If).

At batch 64-256 with independent per-example gates the union of the batch's blocks is nearly
all of them, so the union path cannot skip; this branch sorts the work by block instead, the
way mixture-of-experts layers sort tokens by expert:

1. Per block k, the examples with gate k on, in example order, padded to the batch's largest
   count C (TopK over a score that is B - e for an on example e and 0 for an off one).
2. Their input rows gathered, (K, C, D), and one batched MatMul with the blocked weight
   first, (K, S, D) @ (K, D, C) (ORT packs a batched MatMul's second operand per block: C
   rows cost less to pack than the weight), then the activation.
3. The reading layer's product per pair, (K, N, S) @ (K, S, C + 1), the weight first again,
   over the activations and one zero column: (K, N, C + 1), each pair's partial output a
   column. One 2-D transpose of its (K*N, C + 1) view makes them the rows of a table, row
   c*K + k for block k's c-th example and rows C*K on zeros (a 3-D transpose to (K, C, N),
   then a zero row appended, copies more and took ORT longer:
   `docs/history/onnx-grouped-weighted-sum/`).
4. Per example, its own pairs' partial rows weighted by their gate values and summed: its on
   blocks listed (TopK, padded to the largest count per example M, the padding pointing at a
   zero row), their rows gathered, (B, M, N), and one batched MatMul with the gate values
   (B, 1, M), 0 on padding. The gate values act here rather than on the (K, S, C)
   activations, as the reading layer is linear in them. No scatter-add: ORT 1.32's ScatterND
   with reduction="add" gives wrong sums where indices repeat on two threads.

A gated layer read by another gated layer stops after step 2: `grouped_layer` puts each pair's
row back in its example's place (one Gather from the pairs' rows plus a zero row), giving the
whole (B, K*S) output, zeros in off blocks, that the next layer's gater and pairs read. Where
that next layer has most of its pairs on, `masked_layer` (and `masked_reader`) compute it
densely instead. Each example computes exactly its own blocks (the reports count them per
example), at the cost of padding to C and M and of the gathers. Measured on the
layer 1024 -> 64 x 64 -> 1024 and the `blocks` model (two gated layers in a chain; ORT 1.32,
2 cores; `python -m benchmarks.onnx_grouped_crossover`): see docs/performance.md. It
loses to the dense product below ~32 examples (the gathers and the per-block products of a few
rows) and from ~30 % of pairs on; the If runs it only in between (`GROUPED_FROM_BATCH`,
`GROUPED_MAX_FRACTION`).

Letters: B examples, D inputs of the gated layer, K blocks of S units, N outputs of the
reading layer, C and M the paddings above.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..activations import ACTIVATIONS
from . import onnx_ops
from .onnx_graph import Graph, apply_activation, times_gate


def grouped_condition(g: Graph, batch: str, active: str, blocks: int, from_batch: int,
                      max_fraction: float, hint: str) -> str:
    """A (1,) bool: the batch (its size `batch`, (1,) int64) has at least `from_batch`
    examples and at most `max_fraction` of its (example, block) pairs on (`active`, (B, 1)
    int64 blocks on per example). Integer arithmetic: a few nodes, run at every batch size."""
    big = g.op("GreaterOrEqual", [batch, g.ints(from_batch)])
    pairs = g.op("ReduceSum", [active], keepdims=0)  # ()
    # pairs <= max_fraction * B * K, exactly: pairs * den <= B * num with max_fraction * K as
    # the fraction num / den (den a power of ten).
    num, den = round(max_fraction * blocks * 1000), 1000
    sparse = g.op("LessOrEqual", [g.op("Mul", [pairs, g.scalar(den, np.int64)]),
                                  g.op("Mul", [batch, g.ints(num)])])
    return g.op("And", [big, sparse], f"{hint}.grouped")


def _grouped_blocks(s: Graph, x: str, on: str, values: str, main_blocked: str,
                    main_bias_blocked: str, activation: str, hint: str
                    ) -> tuple[str, str, str, str]:
    """Steps 1-2: the gated layer's blocks over their own examples. Returns the activations
    with the examples last, (K, S, C) (padding columns hold an off example's), the gate
    values of those columns (K, C) (0 on padding), the padding C (1,) int64 and the gates as
    float (B, K).

    The blocked weight is the product's first operand, the gathered rows (transposed) its
    second: ORT's batched MatMul packs its second operand afresh for every block, and a
    block's C rows cost far less to pack than its D x S weight (the layer at batch 64 and
    10 %: 1.8-2.2x its dense graph this way, 1.5-1.8x with the weight second, in the
    best-dense runs of docs/performance.md)."""
    onf = s.op("Cast", [on], f"{hint}.on_float", to=TensorProto.FLOAT)  # (B, K)
    # 1. Each block's examples, in example order, padded to C.
    capacity = s.op("Cast", [s.op("ReduceMax", [s.op("ReduceSum", [onf, s.ints(0)],
                                                     keepdims=0)], keepdims=1)],
                    f"{hint}.capacity", to=TensorProto.INT64)  # (1,) C
    batch = s.op("Cast", [s.op("Shape", [x], start=0, end=1)], to=TensorProto.FLOAT)  # (1,)
    countdown = s.op("Range", [s.op("Squeeze", [batch]), s.scalar(0.0, np.float32),
                               s.scalar(-1.0, np.float32)])  # (B,) B, B-1, ..., 1
    score = s.op("Mul", [onf, s.op("Unsqueeze", [countdown, s.ints(1)])])  # (B, K)
    _, examples = s.op("TopK", [s.op("Transpose", [score]), capacity], f"{hint}.examples",
                       outputs=2, axis=1, largest=1, sorted=1)  # (K, C)
    gates = s.op("GatherElements", [s.op("Transpose", [values]), examples],
                 axis=1)  # (K, C): 0 on padding rows (their gates are off)
    # 2. The gated layer's blocks over their examples: (K, S, D) @ (K, D, C).
    rows = s.op("Gather", [x, examples], f"{hint}.rows", axis=0)  # (K, C, D)
    pre = s.op("MatMul", [main_blocked, s.op("Transpose", [rows], perm=[0, 2, 1])])
    bias = s.op("Unsqueeze", [main_bias_blocked, s.ints(-1)])  # (K, S, 1)
    hidden = apply_activation(s, s.op("Add", [pre, bias]), activation)  # (K, S, C)
    return hidden, gates, capacity, onf


def _pair_table(s: Graph, per_pair: str, hint: str) -> str:
    """(K, C, W) per-pair rows as a (K*C + 1, W) table whose last row is zeros, for padding
    to point at."""
    width = s.op("Shape", [per_pair], start=2, end=3)  # (1,) W
    flat = s.op("Reshape", [per_pair, s.op("Concat", [s.ints(-1), width], axis=0)])
    zero = s.op("ConstantOfShape", [s.op("Concat", [s.ints(1), width], axis=0)])  # (1, W)
    return s.op("Concat", [flat, zero], f"{hint}.partials", axis=0)


def _pair_rows(s: Graph, on: str, onf: str, capacity: str, blocks: int, hint: str,
               by_column: bool = False) -> str:
    """(B, K) int64: where example e's pair with block k sits in a table of pair rows, with
    c e's rank among block k's examples: row k*C + c (`_pair_table`), or with `by_column`
    row c*K + k (the reading layer's table); where the gate is off, row K*C, zeros in both."""
    rank = s.op("Cast", [s.op("CumSum", [onf, s.scalar(0, np.int64)], exclusive=1)],
                to=TensorProto.INT64)  # (B, K)
    block_ids = s.const(np.arange(blocks, dtype=np.int64).reshape(1, blocks),
                        f"{hint}.block_ids")
    position = (s.op("Add", [s.op("Mul", [rank, s.ints(blocks)]), block_ids]) if by_column
                else s.op("Add", [s.op("Mul", [block_ids, capacity]), rank]))  # (B, K)
    padding = s.op("Mul", [capacity, s.ints(blocks)])  # (1,) the zero row
    return s.op("Where", [on, position, padding])


def grouped_layer(s: Graph, x: str, on: str, values: str, main_blocked: str,
                  main_bias_blocked: str, activation: str, blocks: int, hint: str) -> str:
    """The gated layer's whole output (B, K*S), zeros in each example's off blocks, computed
    pair by pair (steps 1-2), each pair's row then put in its place by one Gather: for a gated
    layer read by a gated layer, whose own pairs are grouped by its blocks again."""
    hidden, gates, capacity, onf = _grouped_blocks(s, x, on, values, main_blocked,
                                                   main_bias_blocked, activation, hint)
    hidden = s.op("Mul", [hidden, s.op("Unsqueeze", [gates, s.ints(1)])])  # 0 on padding
    table = _pair_table(s, s.op("Transpose", [hidden], perm=[0, 2, 1]), hint)  # (K*C + 1, S)
    picked = s.op("Gather", [table, _pair_rows(s, on, onf, capacity, blocks, hint)],
                  axis=0)  # (B, K, S)
    return s.op("Flatten", [picked], f"{hint}.full", axis=1)  # (B, K*S)


def grouped_layer_and_reader(s: Graph, x: str, on: str, values: str, main_blocked: str,
                             main_bias_blocked: str, activation: str, reader_blocked: str,
                             reader_bias: str, reader_activation: str, blocks: int,
                             hint: str) -> str:
    """The reading layer's output (B, N), after its activation, built into branch `s`.

    x (B, D) the gated layer's whole input; on (B, K) bool and values (B, K) float its gates;
    main_blocked (K, S, D) and main_bias_blocked (K, S) its weight and bias as stored by block;
    reader_blocked (K, S, N) the reading layer's weight, transposed and stored by block;
    reader_bias (N,)."""
    hidden, _, capacity, onf = _grouped_blocks(s, x, on, values, main_blocked,
                                               main_bias_blocked, activation, hint)
    # 3. The reading layer's product per pair, (K, N, S) @ (K, S, C + 1) (the weight first, as
    # above; a zero column after the C), its columns made the rows of a ((C + 1)*K, N) table.
    reader_first = s.op("Transpose", [reader_blocked], perm=[0, 2, 1])  # (K, N, S), folded
    zero_column = s.op("Pad", [hidden, s.ints(0, 0, 0, 0, 0, 1)])  # (K, S, C + 1)
    partial = s.op("MatMul", [reader_first, zero_column], f"{hint}.partial")  # (K, N, C + 1)
    width = s.op("Shape", [partial], start=1, end=2)  # (1,) N
    columns = s.op("Transpose", [s.op("Reshape", [partial, s.op(
        "Concat", [s.ints(-1), s.op("Add", [capacity, s.ints(1)])], axis=0)])])  # (C + 1, K*N)
    table = s.op("Reshape", [columns, s.op("Concat", [s.ints(-1), width], axis=0)],
                 f"{hint}.partials")  # ((C + 1)*K, N), rows C*K on zeros
    # 4. Each example's pairs, its on blocks first (TopK, padded to M with a zero row: a row of
    # another example's weighted by 0 would still carry its inf or NaN), weighted and summed.
    position = _pair_rows(s, on, onf, capacity, blocks, hint, by_column=True)  # (B, K)
    per_example = s.op("Cast", [s.op("ReduceMax", [s.op("ReduceSum", [onf, s.ints(1)],
                                                        keepdims=0)], keepdims=1)],
                       to=TensorProto.INT64)  # (1,) M
    countdown_k = s.const(np.arange(blocks, 0, -1, dtype=np.float32).reshape(1, blocks),
                          f"{hint}.block_countdown")
    _, mine = s.op("TopK", [s.op("Mul", [onf, countdown_k]), per_example], outputs=2, axis=1,
                   largest=1, sorted=1)  # (B, M): the example's on blocks first
    rows = s.op("Gather", [table, s.op("GatherElements", [position, mine], axis=1)],
                axis=0)  # (B, M, N)
    weights = s.op("Unsqueeze", [s.op("GatherElements", [values, mine], axis=1),
                                 s.ints(1)])  # (B, 1, M): 0 where padding picked an off block
    summed = s.op("Squeeze", [s.op("MatMul", [weights, rows]), s.ints(1)])  # (B, N)
    return apply_activation(s, s.op("Add", [summed, reader_bias], f"{hint}.read"),
                            reader_activation)


def masked_layer(s: Graph, x: str, values: str, main_blocked: str, main_bias_blocked: str,
                 activation: str, binary: bool) -> str:
    """The gated layer's whole output (B, K*S) computed densely, each example's off blocks
    zeroed by its gate values (`times_gate`: exactly 0; `binary`: they are 0 or 1): a later
    layer of a grouped chain whose own pairs are too many for grouping. The blocked weight
    (K, S, D) is the first operand of the product, which ORT does not pack, so the union
    path's Gemm keeps its prepacked copy of the 2-D view."""
    pre = s.op("MatMul", [main_blocked, s.op("Transpose", [x])])  # (K, S, B)
    pre = s.op("Add", [pre, s.op("Unsqueeze", [main_bias_blocked, s.ints(-1)])])
    out = s.op("Transpose", [apply_activation(s, pre, activation)], perm=[2, 0, 1])  # (B, K, S)
    out = times_gate(s, out, s.op("Unsqueeze", [values, s.ints(-1)]), binary)
    return s.op("Flatten", [out], axis=1)  # (B, K*S)


def masked_reader(s: Graph, x: str, blocks: int, reader_blocked: str, reader_bias: str,
                  reader_activation: str) -> str:
    """The reading layer's output (B, N) over a whole gated output x (B, K*S): per block
    (K, B, S) @ (K, S, N), summed over blocks (the blocked weight, unpacked, as above)."""
    per_block = s.op("Transpose", [s.op("Reshape", [x, s.ints(0, blocks, -1)])],
                     perm=[1, 0, 2])  # (K, B, S)
    summed = s.op("ReduceSum", [s.op("MatMul", [per_block, reader_blocked]), s.ints(0)],
                  keepdims=0)  # (B, N)
    return apply_activation(s, s.op("Add", [summed, reader_bias]), reader_activation)


def operator_layer(s: Graph, x: str, on: str, values: str, main_blocked: str,
                   main_bias_blocked: str, activation: str, computed: str | None = None) -> str:
    """`grouped_layer` as one node of sparsegate's onnxruntime operators
    (`models.skip.onnx_ops`): each pair on computed once, no padding, no copies. `computed`:
    where x is a gated layer's output, the blocks (B, J) bool that layer computed, so each pair
    multiplies only those of its example's input blocks."""
    return s.op(onnx_ops.GROUPED_BLOCKS,
                [x, on, values, main_blocked, main_bias_blocked, *([computed] if computed else [])],
                "grouped_blocks", domain=onnx_ops.DOMAIN, activation=ACTIVATIONS[activation].code)


def operator_layer_and_reader(s: Graph, x: str, on: str, values: str, main_blocked: str,
                              main_bias_blocked: str, activation: str, reader_blocked: str,
                              reader_bias: str, reader_activation: str,
                              computed: str | None = None) -> str:
    """`grouped_layer_and_reader` as one node of sparsegate's onnxruntime operators
    (`computed` as in `operator_layer`)."""
    return s.op(onnx_ops.GROUPED_BLOCKS_READ,
                [x, on, values, main_blocked, main_bias_blocked, reader_blocked, reader_bias,
                 *([computed] if computed else [])],
                "grouped_read", domain=onnx_ops.DOMAIN, activation=ACTIVATIONS[activation].code,
                reader_activation=ACTIVATIONS[reader_activation].code)
