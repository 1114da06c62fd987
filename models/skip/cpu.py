"""Block-skipping inference on the CPU: blocks that are off are not computed.

`SkipNetwork(model)` is an inference view of a trained `GatedNetwork` (deterministic gates, the
calibrated thresholds), fp32; it copies the weights and thresholds when built, so build a new
one after changing the model. A model whose main-path weights are bfloat16 numbers
(`models.block_weights`, an artifact exported so) has the C kernels' panels packed in
bfloat16: the same values in half the bytes, summed in float32.

Per gated layer it runs the gater in full, then routes each example one of two ways, by its own
gate pattern and the batch size only (never by what its batch-mates' gates are):

- sparse (the example has fewer than `dense_from` of the layer's blocks on): its (example,
  block) pairs that are on are grouped by block, the way MoE kernels sort tokens by expert, and
  each block present runs one product over just the examples that need it. The layer that reads
  this output, if dense (a hidden dense layer or the read-out), reads for each example only the
  weight rows of that example's active input blocks, grouped the same way and summed into the
  example's output row (MoE's scatter-add).
- dense (at least `dense_from` of its blocks on): the example's whole layer is one row of a
  dense product, gates applied after, and the next layer reads all of its units. Computing a
  few more blocks in one large product is cheaper than many small ones; the report counts them.

Where the C kernels run the blocks, no example is routed dense: split over every thread, they
stream each weight once for the whole batch as fast as the dense products of some machines'
BLAS or faster. Where a batch has every gate of a layer on, that layer runs as one dense
product if that was measured faster on this machine for batches of its size (`_AllOn`); a
batch with every gate of every layer on then runs as one onnxruntime run of the dense network
(`models.skip.all_on_graph`) where onnxruntime is installed.
Without the kernels a lone example goes dense from 3/4 of its blocks on, and an example of a
batch from 0.4 (see `dense_fraction`).

A lone example (a batch of one, no example routed dense) whose network the C kernels run
whole (blocks a multiple of 64 units wide, gate values C computes: binary units, or those worth
their sigmoid, rectifier or sqrt-sigmoid gate) runs its whole forward in one C call
(`models.skip.lone_program`): the gaters, thresholds and products without a numpy call between
them, computing the blocks on and no others. Otherwise, under the default routing, it takes a
short path through each gated layer whose blocks the C kernels run (`SkipNetwork._lone_gated`):
the same products and result without the batch's bookkeeping (grouping pairs by block, routing
masks), which at batch 1 and 10 % of blocks cost as long as the kernels themselves.

A batch of two or more whose network the C kernels run the same way (and whose dense layers
reading whole rows are narrower than the panels: a class read-out) runs its whole forward in
one C call too (`models.skip.batch_program`), routed as above: the gaters over every row, the
pairs sorted by block, whole-row or per-tile products, examples with most blocks on widened
before a gated layer, the readers, the counts. Where a binary layer has every gate on and dense
products were measured faster (or not yet measured), it stops there and this module's path
runs the batch.

A gated layer that reads a gated layer reads, per example, only the input blocks that example
computed there: each (example, output block) pair sums one tile product per input block it
reads (`models/skip/csrc/block_kernels.c`, `tiles_from_blocks`; a numpy gather per example without
a compiler). The compute report counts exactly the products that run (`models.compute`); the
output equals the dense masked forward (`GatedNetwork.eval()`) up to float summation order.

The grouped products run in small C kernels compiled on first use (`models.skip.c_kernels`)
where a C compiler is found, otherwise through numpy's OpenBLAS (`models.skip.numpy_products`); the
large dense products run in torch. A read-out narrower than the kernels' 64-column panels (a few
classes) sums its pairs by one dot product per (pair, class) in C (`accumulate_narrow`).

Letters: B examples, D input units of a layer, K blocks, S units per block, N output units,
P (example, block) pairs that run sparse, G gated layers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .. import block_weights
from ..activations import ACTIVATIONS
from ..gated_network import GatedLayer, GatedNetwork
from . import c_kernels as native_kernels
from .all_on_graph import AllOnGraph
from .batch_program import BatchProgram
from .lone_program import LoneProgram
from .numpy_products import block_spans, chunk_spans, rows_times_blocks, use_one_blas_thread
from .output import SkipOutput
from .plan import PlannedLayer, plan_layers
from .program_stages import NEVER_WIDEN
from .routing import (
    DENSE_FROM_BATCH,
    DENSE_FROM_SINGLE,
    DENSE_PROBE_CALLS,
    DENSE_PROBE_MARGIN,
    DENSE_REPROBE_GROWTH,
    GATER_NATIVE_FROM_MACS,
    NATIVE_THREADS_FROM_MACS,
    TORCH_DENSE_FROM_MACS,
    WHOLE_BEFORE_GATED_FROM,
)

# A gater's first product runs in the kernels over spans of this many rows, so a batch's rows
# split between threads (a span is one chunk of work) in groups the micro-kernels take whole.
GATER_SPAN_ROWS = 16

# A consumer's partial products are summed into output rows a few thousand (pair, output)
# values at a time, so the buffer they pass through stays cache-sized (4 MB of float32).
PARTS_BUFFER_ELEMENTS = 1 << 20


# The network's activations in numpy and in torch, in place: the bookkeeping between products
# runs in numpy (a few times cheaper per call than torch's dispatch at these sizes); torch's
# form is applied right after a torch product, while its threads and output are still hot.
NUMPY_ACTIVATIONS = {name: a.numpy_ for name, a in ACTIVATIONS.items()}
TORCH_ACTIVATIONS_ = {name: a.torch_ for name, a in ACTIVATIONS.items()}


@dataclass
class _SparseRows:
    """A gated layer's output for the examples routed sparse, in pair form (sorted by block)."""

    examples: np.ndarray  # (P,) example of each pair
    spans: np.ndarray  # (G, 3) int64 (block, start, end): each block's slice of the pairs
    values: np.ndarray  # (P, S) the pairs' gated outputs
    dense_rows: np.ndarray  # (n,) examples routed dense at this layer
    on: np.ndarray  # (B, K) bool: gates on
    dense: np.ndarray  # (B,) bool: routed dense

    def reads(self) -> np.ndarray:
        """(B, K) uint8: the blocks a reader reads per example (all where routed dense)."""
        return np.where(self.dense[:, None], True, self.on).astype(np.uint8)


# A gated layer's output where every example was routed dense: readers take the dense branch.
_ALL_DENSE = _SparseRows(np.zeros(0, np.int64), np.zeros((0, 3), np.int64),
                         np.zeros((0, 0), np.float32), np.zeros(0, np.int64),
                         np.zeros((0, 0), bool), np.zeros(0, bool))


@dataclass
class _AllOn:
    """A batch's route for gated layers whose gates are all on (binary units), where the C
    kernels run the blocks. The kernels stream the weights faster than some machines' dense
    BLAS (the AMD EPYC's MKL, which takes slow paths there) and slower than others' (an Intel
    Xeon's oneDNN), so it is measured, not guessed: the first batch of a size range (a power
    of two to the next) with some layer all on is run both ways (`SkipNetwork._dense_pays`),
    and the faster way kept for that range. `seen`: a layer had every gate on."""

    dense: bool
    seen: bool = False


def _output(logits: np.ndarray, counts: np.ndarray, gates: list[np.ndarray],
            as_torch: bool) -> SkipOutput:
    """A C forward's results as the engine returns them: counts (2, B, G) are the blocks on,
    then computed. Its gaters after a gated layer read only the blocks computed there."""
    if as_torch:
        return SkipOutput(torch.from_numpy(logits), torch.from_numpy(counts[0]),
                          torch.from_numpy(counts[1]), [torch.from_numpy(g) for g in gates],
                          gaters_read_all_inputs=False)
    return SkipOutput(logits, counts[0], counts[1], gates, gaters_read_all_inputs=False)


def _a_power_of(base: int, n: int) -> bool:
    """Whether n (>= 1) is base ** k for some k >= 0."""
    while n > 1 and n % base == 0:
        n //= base
    return n == 1


def _gate(units: np.ndarray, values: np.ndarray) -> np.ndarray:
    """units (..., S) *= their blocks' gate values (...), in place, the units of a block whose
    gate is off set to exactly 0: an off block adds nothing to its example even where a route
    computed it anyway and its units overflowed (inf x 0 is NaN), so an example's answer does
    not depend on its route, nor so on its batch mates."""
    np.multiply(units, values[..., None], out=units)
    off = values == 0
    if off.any():
        units[off] = 0.0
    return units


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# A lone example's routes in its _SparseRows: `dense` (every block computed or not) and
# `dense_rows` (read whole by a dense reader or not).
_ONE_TRUE, _ONE_FALSE = _read_only(np.ones(1, bool)), _read_only(np.zeros(1, bool))
_ROW_0, _NO_ROWS = _read_only(np.zeros(1, np.int64)), _read_only(np.zeros(0, np.int64))


def _numpy(t: Tensor) -> np.ndarray:
    if t.dtype == torch.float32 and not t.requires_grad and t.is_contiguous():
        return t.numpy()  # the usual input: a view, without three no-op torch calls
    return t.detach().to(torch.float32).contiguous().numpy()


class _Linear:
    """A linear map in the layouts the skipping forward reads: (N, D) for torch's dense
    products; for a gated layer (K, D, S), each block's matrix contiguous; for a consumer of a
    gated layer's output (K_in, S_in, N), each input block's rows contiguous. Where the C
    kernels run a product, its weights are also packed in their panels, once, here."""

    def __init__(self, linear: torch.nn.Linear, out_blocks: int = 0, in_blocks: int = 0,
                 native: native_kernels.NativeKernels | None = None,
                 precision: str = "float32"):
        self.weight = linear.weight.detach().to(torch.float32)  # (N, D)
        self.bias_tensor = linear.bias.detach().to(torch.float32).clone()  # (N,)
        self.bias = self.bias_tensor.numpy()
        n, d = self.weight.shape
        self.transposed = _numpy(self.weight.T)  # (D, N)
        self.out_blocks = out_blocks
        by_out_block = (_numpy(self.weight.view(out_blocks, n // out_blocks, d)  # (K, D, S)
                               .transpose(1, 2)) if out_blocks else None)
        packed = native is not None and out_blocks and native_kernels.supports(n // out_blocks)
        self.out_panels = native.pack(by_out_block, precision) if packed else None
        # Only numpy's products read (K, D, S): where the kernels run them, the panels are the
        # one copy kept.
        self.by_out_block = None if packed else by_out_block
        self.by_in_block = (self.transposed.reshape(in_blocks, d // in_blocks, n)
                            if in_blocks else None)  # (K_in, S_in, N), a view
        self.in_panels = (native.pack(self.by_in_block, precision)
                          if native and in_blocks and native_kernels.supports(n) else None)
        # A reader narrower than the panels (a class read-out): each output column's rows of
        # each input block contiguous, (K_in, N, S_in), for the kernels' dot products.
        self.in_columns = (np.ascontiguousarray(self.by_in_block.transpose(0, 2, 1))
                           if native and in_blocks and self.in_panels is None
                           and native_kernels.supports(d // in_blocks) else None)

    def dense(self, x: np.ndarray, activation: str = "linear") -> np.ndarray:
        """activation(x @ W.T + b) for full rows, (B, N). A large product of several rows
        goes to torch (multi-threaded); a small one (a narrow read-out) stays in numpy on this
        thread, so torch's OpenMP workers are not left spinning against the grouped products'
        threads. A single row does at any size: torch's product of one row (MKL's, on two
        threads) streams the weights more slowly than OpenBLAS's on one."""
        if x.shape[0] > 1 and x.shape[0] * self.weight.numel() >= TORCH_DENSE_FROM_MACS:
            out = torch.addmm(self.bias_tensor, torch.from_numpy(x), self.weight.T)
            return TORCH_ACTIVATIONS_[activation](out).numpy()
        out = np.dot(x, self.transposed)
        out += self.bias
        return NUMPY_ACTIVATIONS[activation](out)


class _Gater:
    """A gater's logits, its first product (the wide one, over the layer's whole input) in
    the C kernels where they take its width and it has GATER_NATIVE_FROM_MACS multiply-adds,
    split over the kernels' threads by rows, and otherwise in numpy on one BLAS thread; the
    narrow second product in numpy. A torch product here would leave torch's OpenMP workers
    spinning on the other cores just when the grouped products that follow want them
    (measured: it cancelled the second thread's gain).
    At batch 64 the `blocks` model's second gater alone is 16.8 M multiply-adds, a third of
    what its 10 % forward runs."""

    def __init__(self, layer: GatedLayer, native: native_kernels.NativeKernels | None) -> None:
        gater = layer.gater
        self.hidden = ((_numpy(gater.hidden.weight.T), _numpy(gater.hidden.bias))
                       if gater.hidden is not None else None)
        self.out = (_numpy(gater.out.weight.T), _numpy(gater.out.bias))
        # The first product's weight (D, M): the hidden layer's, or the output's without one.
        self.first = self.hidden[0] if self.hidden is not None else self.out[0]
        self.native = native if native is not None and native_kernels.supports(
            self.first.shape[1]) else None
        # The first product as one block of the kernels' panels, (1, D, M).
        self.panels = self.native.pack(self.first[None]) if self.native is not None else None
        # The hidden layer's product (M, K) as one block of panels, which a batch's C forward
        # (models.skip.batch_program) runs in the kernels.
        self.out_panels = (self.native.pack(self.out[0][None])
                           if self.native is not None and self.hidden is not None
                           and native_kernels.supports(self.out[0].shape[1]) else None)
        self.native_from = GATER_NATIVE_FROM_MACS  # multiply-adds; a benchmark moves it
        # Read once, like the weights: reading a torch scalar costs ~40 us with cold caches.
        self.threshold = float(layer.threshold)

    def _first(self, x: np.ndarray, threads_for) -> np.ndarray:
        """x @ self.first (B, M), by the kernels where they run it: the rows cut into spans of
        GATER_SPAN_ROWS, which the kernels' pool shares out between threads."""
        macs = x.shape[0] * self.first.size
        if self.native is None or macs < self.native_from:
            return np.dot(x, self.first)
        batch = x.shape[0]
        starts = np.arange(0, batch, GATER_SPAN_ROWS, dtype=np.int64)
        spans = np.zeros((starts.size, 3), dtype=np.int64)
        spans[:, 1] = starts
        spans[:, 2] = np.minimum(starts + GATER_SPAN_ROWS, batch)
        out = np.empty((batch, self.first.shape[1]), dtype=np.float32)
        self.native.rows_times_blocks(np.ascontiguousarray(x), np.arange(batch, dtype=np.int64),
                                      self.panels, spans, out, threads_for(macs))
        return out

    def __call__(self, x: np.ndarray, threads_for) -> np.ndarray:
        """The logits (B, K); `threads_for(macs)`: the threads a product of that many
        multiply-adds runs on."""
        logits = self._first(x, threads_for)  # (B, K) without a hidden layer
        if self.hidden is not None:
            h = logits  # (B, M)
            h += self.hidden[1]
            logits = np.dot(np.tanh(h, out=h), self.out[0])  # (B, K)
        logits += self.out[1]
        return logits


@dataclass
class _Stage:
    """One layer of the plan with the CPU engine's copies of its weights."""

    plan: PlannedLayer
    linear: _Linear
    gater: _Gater | None
    # A gated layer whose dense reader is narrower than the kernels' panels (a class read-out,
    # whose pairs are summed by dot products): examples with every block on are read as
    # whole rows.
    whole_rows_read: bool
    # A gated layer whose blocks the C kernels run: a lone example takes the short path
    # (`SkipNetwork._lone_gated`).
    lone_native: bool
    # (K, 3) int64 rows (0, p, p + 1): a lone example's spans, one pair per block, once its
    # blocks are written into the first column.
    lone_spans: np.ndarray | None = None
    # Whether the gated layer's units are binary (every gate on is worth 1): read once, like
    # the weights; through torch's module attributes it costs microseconds a forward.
    binary: bool = False

    @classmethod
    def of(cls, step: PlannedLayer, native, precision: str) -> _Stage:
        gated = step.gated
        linear = _Linear(step.linear, gated.config.blocks if gated is not None else 0,
                         step.reads_blocks_of.blocks
                         if gated is None and step.reads_blocks_of is not None else 0,
                         native, precision)
        whole = (gated is not None and step.reader_width is not None and native is not None
                 and not native_kernels.supports(step.reader_width))
        lone = (gated is not None and native is not None
                and native_kernels.supports(gated.config.block_size))
        spans = None
        if lone:
            spans = np.zeros((gated.config.blocks, 3), dtype=np.int64)
            spans[:, 1] = np.arange(gated.config.blocks)
            spans[:, 2] = spans[:, 1] + 1
        return cls(step, linear, _Gater(gated, native) if gated is not None else None, whole, lone,
                   spans, gated is not None and gated.estimator.binary)


class SkipNetwork:
    def __init__(self, model: GatedNetwork, *, dense_from: float | None = None,
                 threads: int | None = None, native: bool = True) -> None:
        """`dense_from`: route an example dense at a gated layer from this fraction of its
        blocks on (> 1: never; by default DENSE_FROM_SINGLE for one example, and for more as
        `dense_fraction` says). `threads`: threads for the grouped products (default torch's
        intra-op thread count). `native`: use the C kernels where they build (False: numpy
        only)."""
        if dense_from is not None and not dense_from > 0.0:  # NaN refused too
            raise ValueError(f"dense_from must be > 0 (a fraction of blocks, > 1 for never), "
                             f"got {dense_from}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.model = model.eval()
        self.dense_from = dense_from
        self.threads = threads or torch.get_num_threads()
        self.native = native_kernels.load() if native else None
        self._held_awake = False  # expect_forward holds the kernels' workers awake
        # batch size's bit length -> whether layers with every gate on run dense (`_AllOn`)
        self._dense_when_all_on: dict[int, bool] = {}
        # batch size's bit length -> each way's fastest forward over every measurement of it
        # (dense: True, the kernels: False), in seconds
        self._probe_fastest: dict[int, dict[bool, float]] = {}
        # batch size's bit length -> batches of it with a layer all on so far
        self._all_on_batches: dict[int, int] = {}
        # batch size bit lengths whose last batch had a layer with every gate on
        self._last_all_on: set[int] = set()
        use_one_blas_thread()  # see models.skip.numpy_products
        # The panels' precision: the model's main-path weights', so packing them loses nothing.
        self.block_weights = block_weights.precision_of(model)
        stages = [_Stage.of(step, self.native, self.block_weights)
                  for step in plan_layers(model)]
        *self._stages, readout = stages
        self._readout = readout.linear
        # A lone example's whole forward in one C call, where the network is one it runs and
        # no example is routed dense (it computes the blocks on, never more).
        self._lone = (LoneProgram.of(self.native, stages, self.threads, NATIVE_THREADS_FROM_MACS)
                      if dense_from is None or dense_from > 1.0 else None)
        # A batch's whole forward in one C call, where the network is one it runs.
        self._batch = (BatchProgram.of(self.native, stages, self.threads,
                                       NATIVE_THREADS_FROM_MACS,
                                       WHOLE_BEFORE_GATED_FROM if dense_from is None
                                       else NEVER_WIDEN)
                       if dense_from is None or dense_from > 1.0 else None)
        self._gated_layers = len(model.gated_layers)
        self._blocks = tuple(layer.config.blocks for layer in model.gated_layers)  # K per layer
        # A batch with every gate on as one onnxruntime run of the dense network, where dense
        # pays (see `_AllOn`).
        self._all_on_graph = (AllOnGraph.make(model, self.threads)
                              if dense_from is None else None)
        # Whether the C kernels can run every gated layer's blocks (their column tile divides
        # the block size): the default routing of batches depends on it.
        self._native_blocks = self.native is not None and all(
            native_kernels.supports(layer.config.block_size) for layer in model.gated_layers)

    def _use_native(self, columns: int) -> bool:
        """The C kernels run every grouped product they can (their column tile divides the
        output), even at one row per block: a numpy call per block costs more than the kernel's
        pass over that block's weight (`python -m benchmarks.skip --device cpu`)."""
        return self.native is not None and native_kernels.supports(columns)

    def _native_threads(self, macs: int) -> int:
        """Threads for a C grouped product: a small one gains nothing from a second."""
        return self.threads if macs >= NATIVE_THREADS_FROM_MACS else 1

    def weight_panels(self) -> list[np.ndarray]:
        """The packed panels of the main path's products, in forward order: the weights a
        forward with every block on for some example streams in full (gaters and a read-out
        narrower than the panels aside)."""
        return [panels.array for stage in self._stages
                for panels in (stage.linear.out_panels, stage.linear.in_panels)
                if panels is not None]

    def all_on_route(self, batch: int) -> str | None:
        """How a batch of `batch` examples whose gated layers have every gate on runs now, as
        last measured for its size range (`_AllOn`): "dense" (onnxruntime's run of the dense
        network, or torch's products without it), "kernels", or None where none was measured
        (no such batch yet, or a lone example, which always runs in the kernels)."""
        dense = self._dense_when_all_on.get(batch.bit_length())
        return None if dense is None or batch == 1 else ("dense" if dense else "kernels")

    def dense_fraction(self, batch: int) -> float:
        """The fraction of a layer's blocks from which an example is computed densely (inf:
        never). Where the C kernels run every gated layer's blocks, no example is: on every
        thread they stream the weights faster than a dense product of the same rows."""
        if self.dense_from is not None:
            return self.dense_from
        if self._native_blocks:
            return math.inf
        return DENSE_FROM_SINGLE if batch == 1 else DENSE_FROM_BATCH

    def _route(self, stage: _Stage, batch: int) -> tuple[float, bool]:
        """The fraction of the layer's blocks from which an example computes them all, and
        whether it does so as pairs in the C kernels rather than in one dense product. Before
        a gated layer, a batch's examples with most blocks on compute them all as pairs (never
        torch's product: its OpenMP workers, left spinning, slow the C kernels that follow),
        so the next layer reads their whole rows (WHOLE_BEFORE_GATED_FROM)."""
        fraction = self.dense_fraction(batch)
        if self.dense_from is None and math.isinf(fraction) and stage.plan.read_by_gated:
            return WHOLE_BEFORE_GATED_FROM, True
        return fraction, False

    @staticmethod
    def reads_all_gated_inputs(batch: int) -> bool:
        """A gated layer after a gated layer reads, per example, only the input blocks that
        example computed."""
        return False

    def gaters_read_all_inputs(self, batch: int) -> bool:
        """Whether a gater after a gated layer reads all of its input units: not where a batch
        of this size runs in C (`models.skip.lone_program`, `models.skip.batch_program`), whose
        gaters read only the blocks computed before them. A batch's C forward may hand a layer
        with every gate on to the dense route, where there is nothing to skip."""
        return (self._lone is None) if batch == 1 else (self._batch is None)

    def expect_forward(self, within_s: float) -> None:
        """A forward is coming within about `within_s` seconds (a server has read a request's
        body and is decoding it): keep the kernels' workers awake until then, rather than
        waking them as it starts. The forward lets them rest again at its end."""
        if self.native is not None and self.threads > 1:
            self.native.keep_awake(within_s)
            self._held_awake = True

    def __call__(self, x: Tensor) -> SkipOutput:
        self._check_shape(tuple(x.shape))
        return self._released(_numpy(x), as_torch=True)

    def forward_numpy(self, x: np.ndarray) -> SkipOutput:
        """The same forward of a (B, D) array, its logits, counts and gates left as numpy
        arrays: for callers that hold numpy, such as the server, which would otherwise convert
        its input to a tensor and every output back."""
        self._check_shape(x.shape)
        return self._released(np.ascontiguousarray(x, dtype=np.float32), as_torch=False)

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 2 or shape[1] != self.model.config.input_size:
            raise ValueError(f"x must be (B, {self.model.config.input_size}), got {shape}")

    def _released(self, x: np.ndarray, as_torch: bool) -> SkipOutput:
        """The forward, then the pool's workers let sleep if `expect_forward` held them."""
        try:
            return self._forward(x, as_torch)
        finally:
            if self._held_awake:
                self._held_awake = False
                self.native.keep_awake(0)

    def _forward(self, x: np.ndarray, as_torch: bool) -> SkipOutput:
        if x.shape[0] == 1 and self._lone is not None:
            return _output(*self._lone.run(x), as_torch)
        measured = self._native_blocks and self.dense_from is None
        # Where the kernels run every layer's blocks, whether a layer with every gate on runs
        # as one dense product is measured for the batch's size range (see `_AllOn`).
        size = x.shape[0].bit_length()
        dense = self._dense_when_all_on.get(size) if measured else False
        if dense and size in self._last_all_on:
            # After a batch of this size range with a layer all on where dense pays, the next
            # is taken to be one too and goes straight to the dense route: a C forward
            # stopped at that layer would leave the kernels' workers spinning against the
            # dense products' threads.
            out = self._all_on(x, as_torch)
            if out is not None:
                return out
        elif x.shape[0] > 1 and self._batch is not None:
            # It stops at a layer with every gate on unless the kernels were measured faster
            # there; the dense route or the Python path below then runs the batch.
            ran = self._batch.run(x, stop_all_on=dense is not False)
            if ran is not None:
                # Run through, it had a layer all on only where the kernels were chosen.
                self._count_all_on(size, dense is False and self._some_layer_all_on(ran[1]))
                return _output(*ran, as_torch)
            if dense:
                out = self._all_on(x, as_torch)
                if out is not None:
                    return out
        if not measured:
            return self._layers(x, as_torch, _AllOn(dense=False))
        all_on = _AllOn(dense=bool(dense))
        out = self._layers(x, as_torch, all_on)
        self._count_all_on(size, all_on.seen)
        if dense is None and all_on.seen:
            self._dense_when_all_on[size] = self._dense_pays(x, as_torch)
        return out

    def _all_on(self, x: np.ndarray, as_torch: bool) -> SkipOutput | None:
        """The batch as one onnxruntime run of the dense network (`AllOnGraph`) where every
        gate of every layer is on, else None (and the next batch of its size range is not
        taken to be all on)."""
        out = self._all_on_graph_output(x, as_torch)
        self._count_all_on(x.shape[0].bit_length(), out is not None)
        return out

    def _count_all_on(self, size: int, all_on: bool) -> None:
        """Record whether the last batch of size range `size` had a layer with every gate on
        (`_last_all_on`). After DENSE_REPROBE_GROWTH such batches, then its square and so on,
        the range's route is forgotten, so the next one measures it again (`_dense_pays`)."""
        if not all_on:
            self._last_all_on.discard(size)
            return
        self._last_all_on.add(size)
        seen = self._all_on_batches[size] = self._all_on_batches.get(size, 0) + 1
        if seen > 1 and _a_power_of(DENSE_REPROBE_GROWTH, seen):
            self._dense_when_all_on.pop(size, None)

    def _some_layer_all_on(self, counts: np.ndarray) -> bool:
        """Whether a C forward's blocks on (counts[0], (B, G)) had every gate of a layer on."""
        return bool((counts[0] == self._blocks).all(axis=0).any())

    def _all_on_graph_output(self, x: np.ndarray, as_torch: bool) -> SkipOutput | None:
        """`AllOnGraph`'s run of x as the engine's output, or None; the traffic not recorded
        (the measurement's forwards are not traffic)."""
        logits = self._all_on_graph.run(x) if self._all_on_graph is not None else None
        if logits is None:
            return None
        counts = np.empty((2, x.shape[0], len(self._blocks)), dtype=np.int64)
        counts[...] = self._blocks
        return _output(logits, counts,
                       [np.ones((x.shape[0], k), np.float32) for k in self._blocks], as_torch)

    def _dense_pays(self, x: np.ndarray, as_torch: bool) -> bool:
        """Whether this batch's forward runs faster with its layers whose gates are all on
        computed as dense products (`_time_both_ways`): dense where its fastest is under
        DENSE_PROBE_MARGIN of the kernels' fastest (the fastest, as load elsewhere only ever
        adds time), each way's fastest taken over every measurement of the batch's size range
        so far (`_judge`)."""
        return self._judge(x.shape[0].bit_length(), self._time_both_ways(x, as_torch))

    def _time_both_ways(self, x: np.ndarray, as_torch: bool) -> dict[bool, list[float]]:
        """Seconds of x's forward, dense (True) and on the kernels (False): DENSE_PROBE_CALLS
        rounds, each timing one forward each way after an untimed one the same way (as in a
        run of such batches: a forward right after the other way's finds that way's threads
        still spinning against its own, and could choose the slower way)."""
        def forward(dense: bool) -> None:
            if not (dense and self._all_on_graph_output(x, as_torch)):
                self._layers(x, as_torch, _AllOn(dense=dense))

        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(DENSE_PROBE_CALLS):
            for dense in times:
                forward(dense)
                start = time.perf_counter()
                forward(dense)
                times[dense].append(time.perf_counter() - start)
        return times

    def _judge(self, size: int, times: dict[bool, list[float]]) -> bool:
        """Whether size range `size` runs its all-on layers dense, given a new measurement
        `times` and those before it: a burst of load through one measurement that slowed one
        way more than the other is outvoted by the next (`_count_all_on` says when)."""
        fastest = self._probe_fastest.setdefault(size, {True: math.inf, False: math.inf})
        for dense, seconds in times.items():
            fastest[dense] = min(fastest[dense], *seconds)
        return fastest[True] < DENSE_PROBE_MARGIN * fastest[False]

    def _layers(self, x: np.ndarray, as_torch: bool, all_on: _AllOn) -> SkipOutput:
        sparse: _SparseRows | None = None  # set right after a gated layer
        # The per-example block counts are written into these as each gater decides, while
        # numpy's code is still in cache: after the large products every numpy or torch call
        # costs tens of microseconds (see the module's measurements), so none is left for the
        # end. The tensors share the arrays' memory.
        counts = np.empty((2, x.shape[0], self._gated_layers), dtype=np.int64)
        active, computed = ((torch.from_numpy(counts[0]), torch.from_numpy(counts[1]))
                            if as_torch else (counts[0], counts[1]))
        gates = []
        lone = x.shape[0] == 1 and self.dense_from is None
        if self.native is not None and self.threads > 1:
            # A forward after a pause (a server's next request) finds the pool's workers
            # asleep: wake them now, so they are spinning by the first split product.
            self.native.nudge()
        for stage in self._stages:
            if stage.plan.gated is None:
                x = self._read(stage.linear, x, sparse, stage.plan.activation)
                sparse = None
            elif lone and stage.lone_native:
                x, sparse, values = self._lone_gated(stage, x, sparse,
                                                     counts[:, :, len(gates)], as_torch)
                gates.append(values)
            else:
                x, sparse, values = self._gated(stage, x, sparse, counts[:, :, len(gates)],
                                                as_torch, all_on)
                gates.append(values)
        logits = self._read(self._readout, x, sparse)
        return SkipOutput(torch.from_numpy(logits) if as_torch else logits, active, computed,
                          gates)

    def _gated(self, stage: _Stage, x: np.ndarray,
               previous: _SparseRows | None, counts: np.ndarray, as_torch: bool,
               all_on: _AllOn | None = None
               ) -> tuple[np.ndarray, _SparseRows, Tensor | np.ndarray]:
        """One gated layer: the gater in full, then each example's blocks, sparse or dense.
        `previous`: the output of the gated layer before, if this one reads one; an example
        it routed sparse is read only in the input blocks it computed. `counts` (2, B) is
        filled with the blocks on and the blocks computed per example. The gate values come
        back as a tensor with `as_torch`, else as an array. `all_on`: whether a layer with
        every gate on runs as a dense product, and where it says so that one did."""
        layer, linear = stage.plan.gated, stage.linear
        k, s = layer.config.blocks, layer.config.block_size
        act = NUMPY_ACTIVATIONS[layer.config.activation]
        partial = previous is not None and previous is not _ALL_DENSE  # some inputs part-read
        gate_values, values, on = self._gates(stage, x, as_torch)
        fraction, all_as_pairs = self._route(stage, x.shape[0])
        every_gate_on = stage.binary and bool(on.all())
        # A dense product reads every input unit: where the layer before skipped some
        # example's blocks, the kernels' tiles read less, and this layer stays with them.
        whole_inputs = every_gate_on and (not partial or bool(previous.reads().all()))
        if whole_inputs and all_on is not None:
            all_on.seen = True
        if every_gate_on and (
                (not partial and not all_as_pairs and fraction <= 1.0)
                or (whole_inputs and all_on is not None and all_on.dense)):
            # Every gate on and worth 1: the plain dense layer. After a large product each
            # numpy call here starts with cold caches (~40 us apiece on this project's CPU),
            # so this commonest dense case makes as few as it can.
            counts[...] = k
            return linear.dense(x, layer.config.activation), _ALL_DENSE, gate_values
        count = on.sum(-1, out=counts[0])  # (B,)
        dense = count >= fraction * k  # (B,) routed dense: every block computed
        counts[1] = np.where(dense, k, count)  # blocks computed (B,)
        if not partial and not all_as_pairs and dense.all():  # one product, gated in place
            out = linear.dense(x, layer.config.activation)  # (B, K * S)
            _gate(out.reshape(-1, k, s), values)
            return out, _ALL_DENSE, gate_values
        # Examples routed dense that read their whole input run as rows of one dense product;
        # every other (example, block) to compute is a pair: the blocks on of an example
        # routed sparse, and all blocks of one routed dense whose input is read in part.
        reads = previous.reads() if partial else None  # (B, K_in)
        part_read_dense = (dense if all_as_pairs else dense & ~reads.all(-1) if partial
                           else None)  # (B,) routed dense but computed as pairs
        dense_rows = np.flatnonzero(dense if part_read_dense is None
                                    else dense & ~part_read_dense)  # (n,)
        # A dense reader reads an example routed dense whole, and one with every block on too
        # where it is narrower than the kernels' panels (a class read-out): one product over
        # its row, rather than a dot product per pair and column (or, without the kernels, a
        # numpy product per block). Every block computed means every row read, so the report
        # stays exact.
        read_whole = dense | (count == k) if stage.whole_rows_read else dense
        # The whole output (B, K, S) is built only for a reader of it: a gated layer (its
        # gater reads every unit) or a dense one reading some rows whole. A dense reader of
        # pairs alone gets a (B, 0) stand-in that says the batch size.
        whole_out = stage.plan.read_by_gated or bool(read_whole.any())
        out = np.zeros((x.shape[0], k, s) if whole_out else (x.shape[0], 0, s),
                       dtype=np.float32)
        if dense_rows.size:
            h = linear.dense(x[dense_rows], layer.config.activation).reshape(-1, k, s)
            out[dense_rows] = _gate(h, values[dense_rows])
        wanted = on & ~dense[:, None]  # (B, K)
        forced = part_read_dense is not None and bool(part_read_dense.any())
        if forced:  # every block of these rows, off ones too
            wanted |= part_read_dense[:, None]
        blocks, examples = np.nonzero(wanted.T)  # pairs sorted by block, then example
        examples = np.ascontiguousarray(examples, dtype=np.int64)  # nonzero gives strided views
        spans = block_spans(blocks, k)
        pairs = np.empty((examples.size, s), dtype=np.float32)  # (P, S)
        if examples.size:
            if partial:
                self._pairs_from_inputs(linear, x, reads, examples, blocks, spans, pairs)
            else:
                self._pairs_from_rows(linear, x, examples, spans, pairs)
            pairs += linear.bias.reshape(k, s)[blocks]
            act(pairs)
            if forced or not stage.binary:  # else every pair's gate is on, worth 1
                _gate(pairs, values[examples, blocks])
            if whole_out:
                out[examples, blocks] = pairs
        if examples.size and read_whole[examples].any():  # it reads the others' pairs only
            kept = ~read_whole[examples]
            examples, blocks, pairs = examples[kept], blocks[kept], pairs[kept]
            spans = block_spans(blocks, k)
        return (out.reshape(x.shape[0], -1),
                _SparseRows(examples, spans, pairs, np.flatnonzero(read_whole), on, dense),
                gate_values)

    def _lone_gated(self, stage: _Stage, x: np.ndarray, previous: _SparseRows | None,
                    counts: np.ndarray, as_torch: bool
                    ) -> tuple[np.ndarray, _SparseRows, Tensor | np.ndarray]:
        """`_gated` for a lone example where the C kernels run the layer: the same products
        and the same result, with the batch's bookkeeping left out. At batch 1 the kernels
        take about a third of a 10 % layer's time, and each numpy call between them a few
        microseconds more (`python -m benchmarks.skip --device cpu --batches 1`)."""
        layer, linear = stage.plan.gated, stage.linear
        k, s = layer.config.blocks, layer.config.block_size
        gate_values, values, on = self._gates(stage, x, as_torch)
        blocks = np.flatnonzero(on[0])  # (P,) ascending: the pairs sorted by block
        counts[0] = blocks.size
        # Before a gated layer, most blocks on computes them all (see `_route`), so the next
        # layer reads the whole row; a reader narrower than the kernels' panels reads it whole
        # with every block on (see `_Stage.whole_rows_read`).
        whole = stage.plan.read_by_gated and blocks.size >= WHOLE_BEFORE_GATED_FROM * k
        read_whole = whole or (stage.whole_rows_read and blocks.size == k)
        if whole:
            blocks = np.arange(k)
        counts[1] = blocks.size
        examples = np.zeros(blocks.size, dtype=np.int64)
        spans = stage.lone_spans[:blocks.size].copy()  # (P, 3): a block per pair
        spans[:, 0] = blocks
        pairs = np.empty((blocks.size, s), dtype=np.float32)  # (P, S)
        if blocks.size:
            reads = (previous.reads() if previous is not None and previous is not _ALL_DENSE
                     else None)
            if reads is None or reads.all():
                self._pairs_from_rows(linear, x, examples, spans, pairs)
            else:
                self._pairs_from_blocks(linear, x, reads, examples, blocks, spans, pairs)
            pairs += linear.bias.reshape(k, s)[blocks]
            NUMPY_ACTIVATIONS[layer.config.activation](pairs)
            if whole or not stage.binary:  # a binary gate on is worth 1
                _gate(pairs, values[0, blocks])
        out = np.zeros((k, s), dtype=np.float32)  # the next layer reads it (gated) or not
        out[blocks] = pairs
        dense = _ONE_TRUE if whole else _ONE_FALSE
        if read_whole:  # a dense reader reads the whole row, none of the pairs
            return (out.reshape(1, k * s),
                    _SparseRows(examples[:0], spans[:0], pairs[:0], _ROW_0, on, dense),
                    gate_values)
        return (out.reshape(1, k * s), _SparseRows(examples, spans, pairs, _NO_ROWS, on, dense),
                gate_values)

    def _pairs_from_rows(self, linear: _Linear, x: np.ndarray, examples: np.ndarray,
                         spans: np.ndarray, pairs: np.ndarray) -> None:
        """pairs[p] = x[example] @ W[block] for whole input rows."""
        if self._use_native(pairs.shape[1]):
            self.native.rows_times_blocks(
                np.ascontiguousarray(x), examples, linear.out_panels, spans, pairs,
                self._native_threads(pairs.size * x.shape[1]))
        else:
            rows_times_blocks(x[examples], linear.by_out_block, spans.tolist(), pairs,
                              self.threads)

    def _pairs_from_inputs(self, linear: _Linear, x: np.ndarray, reads: np.ndarray,
                           examples: np.ndarray, blocks: np.ndarray,
                           spans: np.ndarray, pairs: np.ndarray) -> None:
        """The pairs of a gated layer that reads a gated layer. A pair whose example reads its
        whole input (routed dense there, or every block on) runs as a whole row: that kernel
        keeps six rows per pass over a weight tile, the per-tile one four, one input block at
        a time, and with every block on at batches 64-256 the two-layer model ran 0.8x dense
        per tile against ~1x by rows (`docs/performance.md`)."""
        whole = reads.all(-1)[examples]  # (P,)
        if whole.all():
            self._pairs_from_rows(linear, x, examples, spans, pairs)
            return
        if not whole.any():
            self._pairs_from_blocks(linear, x, reads, examples, blocks, spans, pairs)
            return
        for subset in (whole, ~whole):  # each subset stays sorted by block
            chosen = np.flatnonzero(subset)
            sub_examples, sub_blocks = examples[chosen], blocks[chosen]
            sub_spans = block_spans(sub_blocks, linear.out_blocks)
            part = np.empty((chosen.size, pairs.shape[1]), dtype=np.float32)
            if subset is whole:
                self._pairs_from_rows(linear, x, sub_examples, sub_spans, part)
            else:
                self._pairs_from_blocks(linear, x, reads, sub_examples, sub_blocks, sub_spans,
                                        part)
            pairs[chosen] = part

    def _pairs_from_blocks(self, linear: _Linear, x: np.ndarray, reads: np.ndarray,
                           examples: np.ndarray, blocks: np.ndarray,
                           spans: np.ndarray, pairs: np.ndarray) -> None:
        """pairs[p] = sum over the input blocks j its example reads of x[example, block j] @
        W[block][rows of block j]: one tile product per (input block, output block) the
        example has, instead of a product over its whole input."""
        k_in = reads.shape[1]
        if self.native is not None and native_kernels.supports(pairs.shape[1]):
            macs = int(reads[examples].sum()) * (x.shape[1] // k_in) * pairs.shape[1]
            self.native.tiles_from_blocks(
                np.ascontiguousarray(x), reads, examples, linear.out_panels, spans, pairs,
                self._native_threads(macs))
            return
        # numpy: per example, its output blocks' rows of its input blocks, gathered.
        s_in = x.shape[1] // k_in
        tiles = linear.by_out_block.reshape(linear.by_out_block.shape[0], k_in, s_in, -1)
        order = np.argsort(examples, kind="stable")  # pairs of one example together
        bounds = np.flatnonzero(np.diff(examples[order])) + 1
        for group in np.split(order, bounds):
            e = examples[group[0]]
            read = np.flatnonzero(reads[e])  # (r,)
            inputs = x[e].reshape(k_in, s_in)[read]  # (r, S_in)
            pairs[group] = np.einsum("ri,krio->ko", inputs, tiles[blocks[group]][:, read])

    def _gates(self, stage: _Stage, x: np.ndarray, as_torch: bool
               ) -> tuple[Tensor | np.ndarray, np.ndarray, np.ndarray]:
        """The gater in full, then the gate values (B, K) as a tensor (with `as_torch`; else
        the array again) and an array, and which are on: a gate whose value is 0 multiplies
        nothing, so its block is skipped. Binary gates' values are their on/off pattern, made
        here in numpy (a torch call costs several times more at these sizes)."""
        layer, gater = stage.plan.gated, stage.gater
        logits = gater(x, self._native_threads)  # (B, K)
        if stage.binary:
            on = logits > gater.threshold
            values = on.astype(np.float32)
            return (torch.from_numpy(values) if as_torch else values), values, on
        logits_tensor = torch.from_numpy(logits)
        with torch.no_grad():  # the only torch call here on anything a module made
            gate_values = layer.estimator.gate_values(logits_tensor,
                                                      logits_tensor > gater.threshold)
        values = gate_values.numpy()
        return (gate_values if as_torch else values), values, values != 0

    def _read(self, linear: _Linear, x: np.ndarray, sparse: _SparseRows | None,
              activation: str = "linear") -> np.ndarray:
        """activation(x @ W.T + b). After a gated layer, an example routed sparse reads only
        its own active input blocks: one product per input block over the pairs that have it
        on, added into the examples' output rows; one routed dense reads all of x's units."""
        if (sparse is None or sparse is _ALL_DENSE
                or sparse.dense_rows.size == x.shape[0]):  # every example read whole
            return linear.dense(x, activation)
        out = np.empty((x.shape[0], linear.bias.shape[0]), dtype=np.float32)  # (B, N)
        out[:] = linear.bias
        if sparse.dense_rows.size:
            out[sparse.dense_rows] = linear.dense(x[sparse.dense_rows])
        if len(sparse.spans):
            self._accumulate_pairs(linear, sparse, out)
        return NUMPY_ACTIVATIONS[activation](out)

    def _accumulate_pairs(self, linear: _Linear, sparse: _SparseRows, out: np.ndarray) -> None:
        """out[example] += pair values @ that input block's rows of W.T, for every pair."""
        if self.native is not None and linear.in_columns is not None:
            self.native.accumulate_narrow(np.ascontiguousarray(sparse.values), sparse.examples,
                                          linear.in_columns, sparse.spans, out)
            return
        if self._use_native(out.shape[1]):
            self.native.accumulate_blocks_times_rows(
                np.ascontiguousarray(sparse.values), sparse.examples, linear.in_panels,
                sparse.spans, out,
                self._native_threads(sparse.values.size * out.shape[1]))
            return
        if out.shape[0] == 1:  # one pair per block: its blocks' rows of W.T, gathered
            rows = linear.by_in_block[sparse.spans[:, 0]]  # (P, S_in, N)
            out[0] += np.dot(sparse.values.reshape(-1), rows.reshape(-1, out.shape[1]))
            return
        out_rows = torch.from_numpy(out)
        examples = torch.from_numpy(sparse.examples)
        chunks = list(chunk_spans(sparse.spans.tolist(),
                                  max(1, PARTS_BUFFER_ELEMENTS // out.shape[1])))
        buffer = np.empty((max((end - start for start, end, _ in chunks), default=0),
                           out.shape[1]), dtype=np.float32)
        for start, end, spans in chunks:
            parts = buffer[:end - start]  # (pairs of this chunk, N)
            rows_times_blocks(sparse.values[start:end], linear.by_in_block, spans, parts,
                              self.threads)
            out_rows.index_add_(0, examples[start:end], torch.from_numpy(parts))
