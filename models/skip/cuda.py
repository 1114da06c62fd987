"""Block-skipping inference on the GPU: the Triton kernels of `models.skip.triton_kernels`.

`TritonSkipNetwork(model)` has the call contract of `models.skip.cpu.SkipNetwork`:
x (B, D) in, `SkipOutput` out, the logits equal to the dense masked forward
(`GatedNetwork.eval()`) up to the precision of `dtype` (fp32 accumulation throughout). Per
gated layer the gater runs in full with plain torch ops in the model's own precision (so the
gates are the reference's), a gate whose value is 0 is off, and only the (example, block)
pairs that run are computed; a dense layer or the read-out after a gated layer reads, per
example, only the weight rows of the blocks that example computed. A gated layer reads all
of its input units, as the compute report counts (`models.compute`).

Two paths, chosen by batch size (`GEMV_MAX_BATCH`):
- B <= 4, GEMV (`models.skip.triton_gemv`): at batch 1 a layer is memory bound and a forward is a
  handful of microsecond kernels, so the work is cut into as few launches as possible. A
  gated layer with binary units is three kernels: the gater's hidden layer, then its logits
  with the gate, the report's counts and the list of active (example, block) pairs in one
  kernel, then the main path over that list only. Non-binary units (their values need the
  estimator's own function) take their gates from torch and only the list from a kernel.
  The consumer adds each pair's partial product into its example's fp32 row with atomics.
  With a handful of examples each reads its own blocks' weights; shared ones hit L2.
- B > 4, grouped GEMM (`models.skip.triton_kernels`): pairs sorted by block into tiles of
  16 / 32 / 64 examples (by batch), so a block's weights are read once per tile and
  multiplied on tensor cores. The consumer of a gated layer adds each pair's partial product
  into its example's row with fp32 atomics; an example with at least `dense_from` of a
  layer's blocks on is routed dense instead: all its blocks are computed (gates applied
  after, so off blocks are exact zeros) and the consumer reads its whole row in one tiled
  product, no atomics. `computed_blocks` reports that, so the compute report counts what
  ran. The default `GROUPED_DENSE_FROM` = 1/3 is where an fp32 atomic per pair and output
  (~4x the 128 multiply-adds of a 128-unit block's partial product, an estimate) makes the
  sparse consumer cost as much as computing the example densely; the GEMV path routes
  dense only when asked to (`dense_from`).

Batch route (eager only, B >= `BATCH_ROUTE_MIN_BATCH`): after a gated layer's gate stage
the host reads how many (example, block) pairs are on (one sync, tens of microseconds against
forwards of a fraction of a millisecond and up at these batches). From `BATCH_DENSE_FROM` of
the batch's pairs on, the layer and its consumer run as torch's GEMMs (cuBLAS) over the whole
batch, the gate values applied to the blocks' outputs, so off blocks are exact zeros, and
`computed_blocks` says every block ran. Per-example routing cannot get there: it decides on
the device, so its dense examples still go through Triton's grouped GEMM, ~2x slower than
cuBLAS from batch 256 (0.47x dense at 4096 and 100 % on an H200). The default 1/4: on an
H200 at batch 4096 the route runs 100 % in 2.21 against 3.58 ms and 25 % in 2.19 against
2.37 ms without it (`python -m benchmarks.skip --device cuda`, `triton` against
`triton-no-batch-route`). A CUDA graph cannot sync, so a forward captured
as one (`CudaGraphSkipNetwork`) stays on the per-example routes.

Pair lists and counts are built on the device by the gate kernels (atomics reserve the
slots, cumsums rank within a program) and read by the kernels from device memory, which
derive their tiles from them: no host sync anywhere, and no torch bookkeeping between the
kernels (it was ~60 small launches, most of the time at batch 256 on an H100), so a whole
forward can be captured as a CUDA graph (`CudaGraphSkipNetwork`, per batch-size bucket;
eager on CPU). On CPU tensors the kernels run in Triton's interpreter, which needs
`TRITON_INTERPRET=1` set before triton is imported; that is how CI tests them.

Letters: B examples, D input units of a layer, K blocks of S units, K_in blocks of S_in units
of the gated layer a consumer reads, N output units, G gated layers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..gated_network import ACTIVATION_FUNCTIONS, GatedLayer, GatedNetwork
from . import triton_gemv as tg
from . import triton_kernels as tk
from .output import SkipOutput
from .plan import plan_layers
from .routing import (
    BATCH_DENSE_FROM,
    BATCH_ROUTE_MIN_BATCH,
    GEMV_MAX_BATCH,
    GROUPED_DENSE_FROM,
    SMALL_DENSE_WEIGHTS,
)

PATHS = ("auto", "gemv", "grouped")
L2_RESIDENT_BYTES = 16 << 20  # a gated layer's input beyond this is cast before gathers


def _block_m(batch: int) -> int:
    """Rows per grouped tile: small tiles while blocks have few examples each."""
    return 16 if batch <= 32 else 32 if batch <= 128 else 64


@dataclass
class _Step:
    kind: str  # "gated", "dense" (reads a dense input) or "read" (reads a gated layer)
    activation: str
    weight: Tensor  # gated: (K*S, D); dense: (N, D); read: (K_in*S_in, N) = W.T, contiguous
    bias: Tensor  # (N,) fp32
    layer: GatedLayer | None = None  # gated: the gater, threshold and estimator
    blocks: int = 0  # gated: K; read: K_in
    block_size: int = 0  # gated: S; read: S_in
    logits: bool = False  # the read-out: fp32 out
    bias_main: Tensor | None = None  # the bias in the main path's dtype (torch.addmm)
    small: bool = False  # a dense layer small enough for a row GEMV kernel (read-outs)
    # gated: the gater's layers as fp32 (out, in) weights and biases; hidden absent if M = 0
    gater_hidden: tuple[Tensor, Tensor] | None = None
    gater_out: tuple[Tensor, Tensor] | None = None


class TritonSkipNetwork:
    """A GatedNetwork's block-skipping forward in Triton kernels; see the module docstring.

    dtype: the main path's precision (bf16, fp16, or fp32); gaters keep the model's.
    path: "auto" (by batch size), or force "gemv" / "grouped" (tests, benchmarks).
    dense_from: route an example dense at a gated layer from this fraction of its blocks on;
    None = the path's default (GEMV: never; grouped: GROUPED_DENSE_FROM).
    batch_dense_from: run a gated layer of an eager batch of at least BATCH_ROUTE_MIN_BATCH
    examples as torch GEMMs from this fraction of the batch's (example, block) pairs on
    (math.inf: never).
    """

    def __init__(self, model: GatedNetwork, dtype: torch.dtype = torch.bfloat16, *,
                 path: str = "auto", dense_from: float | None = None,
                 batch_dense_from: float = BATCH_DENSE_FROM) -> None:
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if dense_from is not None and not dense_from > 0:
            raise ValueError(f"dense_from must be > 0, got {dense_from}")
        if not batch_dense_from > 0:
            raise ValueError(f"batch_dense_from must be > 0, got {batch_dense_from}")
        if dtype not in (torch.bfloat16, torch.float16, torch.float32):
            raise ValueError(f"dtype must be bf16, fp16 or fp32, got {dtype}")
        self.model = model.eval()
        self.device = model.readout.weight.device
        if self.device.type == "cpu" and not tk.interpreting():
            raise RuntimeError("TritonSkipNetwork on CPU runs Triton's interpreter: set "
                               "TRITON_INTERPRET=1 before triton is imported, or use CUDA")
        if self.device.type not in ("cpu", "cuda"):
            raise RuntimeError(f"TritonSkipNetwork runs on CUDA (or CPU interpreted), not "
                               f"{self.device.type}")
        self.dtype, self.path, self.dense_from = dtype, path, dense_from
        self.batch_dense_from = batch_dense_from
        self.steps: list[_Step] = []
        for planned in plan_layers(model):
            weight = planned.linear.weight.detach()
            bias = planned.linear.bias.detach().float().contiguous()
            activation, layer = planned.activation, planned.gated
            if layer is not None:
                cfg = layer.config
                self.steps.append(_Step("gated", activation, weight.to(dtype).contiguous(),
                                        bias, layer, cfg.blocks, cfg.block_size,
                                        bias_main=bias.to(dtype),
                                        gater_hidden=_fp32(layer.gater.hidden),
                                        gater_out=_fp32(layer.gater.out)))
                continue
            source = planned.reads_blocks_of
            if source is None:
                step = _Step("dense", activation, weight.to(dtype).contiguous(), bias,
                             bias_main=bias.to(dtype))
                step.small = weight.numel() <= SMALL_DENSE_WEIGHTS
            else:
                step = _Step("read", activation, weight.T.to(dtype).contiguous(), bias,
                             blocks=source.blocks, block_size=source.block_size,
                             bias_main=bias.to(dtype))
            step.logits = planned.readout
            self.steps.append(step)
        # Completion counters of the kernels whose last program finishes a stage (two per
        # gated layer, `models.skip.triton_gemv`): each resets its own, so one forward at a time
        # per network (as the CUDA graphs and the service's batcher run them).
        self._done = torch.zeros(2 * len(model.gated_layers), dtype=torch.int32,
                                 device=self.device)

    @torch.no_grad()
    @staticmethod
    def reads_all_gated_inputs(batch: int) -> bool:
        """A gated layer after a gated layer reads all of its input units, at any batch."""
        return True

    @staticmethod
    def gaters_read_all_inputs(batch: int) -> bool:
        """Every gater reads all of its input units."""
        return True

    def __call__(self, x: Tensor) -> SkipOutput:
        if x.dim() != 2 or x.shape[1] != self.model.config.input_size:
            raise ValueError(f"x must be (B, {self.model.config.input_size}), got "
                             f"{tuple(x.shape)}")
        batch = x.shape[0]
        gemv = self.path == "gemv" or (self.path == "auto" and batch <= GEMV_MAX_BATCH)
        dense_from = (self.dense_from if self.dense_from is not None
                      else math.inf if gemv else GROUPED_DENSE_FROM)
        if batch == 0 or not any(step.kind == "gated" for step in self.steps):
            return self._grouped(x, math.inf)  # nothing to skip: plain products
        if gemv:
            return self._small_batch(x, dense_from)
        return self._grouped(x, dense_from)

    def _small_batch(self, x: Tensor, dense_from: float) -> SkipOutput:
        """The GEMV path (`models.skip.triton_gemv`): per gated layer a gate stage that lists the
        active pairs, the main path over the list, and a consumer that adds into fp32 rows
        (and runs a small dense layer after it, such as the read-out, at its end)."""
        batch, device = x.shape[0], x.device
        gated = [step for step in self.steps if step.kind == "gated"]
        fused = [self._fused_gater(step, dense_from) for step in gated]
        # (2, B, G) int64 active / computed blocks, then the G pair-list lengths as int32:
        # fused gaters store them, the others add to them (then one memset for all).
        alloc = torch.empty if all(fused) else torch.zeros
        counters = alloc(2 * batch * len(gated) + len(gated), dtype=torch.int64, device=device)
        counts = counters[:2 * batch * len(gated)].view(2, batch, len(gated))
        totals = counters[2 * batch * len(gated):].view(torch.int32)
        h = x.contiguous()  # the main path's input, in any float dtype: the kernels convert
        pending = "linear"  # an activation not yet applied to h (the consumer's, in fp32)
        gates: list[Tensor] = []
        done = set()  # steps already run by the kernel of the step before them
        for i, step in enumerate(self.steps):
            if i in done:
                continue
            following = self.steps[i + 1] if i + 1 < len(self.steps) else None
            if step.kind == "dense":
                out = torch.empty(batch, step.weight.shape[0], device=device,
                                  dtype=torch.float32 if step.logits else self.dtype)
                tg.rows(h, step.weight, step.bias, out, step.activation, pending)
                h, pending = out, "linear"
                continue
            # a gated layer, and the consumer after it when there is one
            if pending != "linear":  # a gated layer's gater and main path read h as is
                h = ACTIVATION_FUNCTIONS[pending](h).to(self.dtype)
                pending = "linear"
            g = len(gates)
            values, pairs, total = self._gate_stage(step, g, h, dense_from, fused[g],
                                                    totals[g:g + 1], counts[0, :, g],
                                                    counts[1, :, g])
            gates.append(values)
            # Blocks that do not run stay unwritten; a gated layer next reads all units.
            out = (torch.zeros if following.kind == "gated" else torch.empty)(
                batch, step.blocks * step.block_size, dtype=self.dtype, device=device)
            if following.kind != "read":
                tg.pair_blocks(h, step.weight, step.bias, out, values, pairs, total,
                               step.block_size, step.activation)
                h = out
                continue
            out32 = torch.empty(batch, following.weight.shape[1], dtype=torch.float32,
                                device=device)  # the consumer adds into its bias
            tg.pair_blocks(h, step.weight, step.bias, out, values, pairs, total,
                           step.block_size, step.activation, out32, following.bias)
            done.add(i + 1)
            h, pending = out32, following.activation
            finish, after = None, (self.steps[i + 2] if i + 2 < len(self.steps) else None)
            if (after is not None and after.kind == "dense"
                    and tg.can_finish(*after.weight.shape)):
                final = torch.empty(batch, after.weight.shape[0], device=device,
                                    dtype=torch.float32 if after.logits else self.dtype)
                finish = (after.weight, after.bias, final, pending, after.activation,
                          self._done[2 * g + 1:2 * g + 2])
                done.add(i + 2)
            tg.pair_reads(out, following.weight, out32, pairs, total, following.blocks,
                          following.block_size, finish)
            if finish is not None:
                h, pending = final, "linear"
        if pending != "linear":
            h = ACTIVATION_FUNCTIONS[pending](h)
        return _skip_output(h.float(), counts[0], counts[1], gates)

    @staticmethod
    def _fused_gater(step: _Step, dense_from: float) -> bool:
        """Whether a gated layer's gater runs as one launch (`triton_gemv.hidden_gates`)."""
        return (step.layer.estimator.binary and not math.isfinite(dense_from)
                and step.gater_hidden is not None
                and tg.can_fuse_gater(step.blocks, step.gater_hidden[0].shape[0]))

    def _gate_stage(self, step: _Step, g: int, h: Tensor, dense_from: float, fused: bool,
                    total: Tensor, active: Tensor, computed: Tensor
                    ) -> tuple[Tensor, Tensor, Tensor]:
        """Gate values (B, K) fp32 and the list of pairs to compute with its length, for
        step, the network's g-th gated layer."""
        layer, batch, k = step.layer, h.shape[0], step.blocks
        pairs = torch.empty(batch * k, dtype=torch.int32, device=h.device)
        tau = layer.threshold.float().reshape(1)
        if fused:
            values = torch.empty(batch, k, dtype=torch.float32, device=h.device)
            tg.hidden_gates(h, step.gater_hidden, step.gater_out, tau, values, pairs, total,
                            active, computed, self._done[2 * g:2 * g + 1])
            return values, pairs, total
        if layer.estimator.binary and not math.isfinite(dense_from):
            values = torch.empty(batch, k, dtype=torch.float32, device=h.device)
            a = h
            if step.gater_hidden is not None:
                a = torch.empty(batch, step.gater_hidden[0].shape[0], dtype=torch.float32,
                                device=h.device)
                tg.rows(h, *step.gater_hidden, a, "tanh")
            tg.gates(values, pairs, total, active, computed, a, *step.gater_out, tau)
            return values, pairs, total
        # The estimator's own function for non-binary units, as the reference computes it.
        logits = layer.gater(h.to(layer.gater.out.weight.dtype))  # (B, K)
        values = layer.estimator.gate_values(logits, logits > layer.threshold).float()
        run = values != 0
        if math.isfinite(dense_from):
            run |= (run.sum(-1, keepdim=True) >= dense_from * k)
        tg.gates(values.contiguous(), pairs, total, active, computed,
                 run=run.to(torch.int8))
        return values, pairs, total

    def _grouped(self, x: Tensor, dense_from: float) -> SkipOutput:
        """The grouped-GEMM path (`models.skip.triton_kernels`): per gated layer a gate stage that
        lists each block's examples, the blocks over those lists on tensor cores, and a
        consumer that adds each pair's partial product into fp32 rows (whole rows for the
        examples routed dense). Also any network without a gated layer."""
        batch, device = x.shape[0], x.device
        block_m = _block_m(batch)
        gated = [step for step in self.steps if step.kind == "gated"]
        # One memset for each gated layer's per-block pair counts (K) and dense count (1),
        # int32, and the hidden sums of its gater (B x M fp32, added into by `hidden_sums`).
        hidden = [batch * step.gater_hidden[0].shape[0] if self._fused_gate_rows(step) else 0
                  for step in gated]
        list_counts = sum(step.blocks + 1 for step in gated)
        zeroed = torch.zeros(list_counts + sum(hidden), dtype=torch.int32, device=device)
        sums = zeroed[list_counts:].view(torch.float32)
        counts64 = torch.empty(2, batch, len(gated), dtype=torch.int64, device=device)
        route = math.isfinite(dense_from)
        h = x.contiguous()  # any float dtype: the kernels cast tiles to the weights' dtype
        pending = "linear"  # an activation not yet applied to h (the consumer's, in fp32)
        gates: list[Tensor] = []
        done, offset, sums_offset = set(), 0, 0
        for i, step in enumerate(self.steps):
            if i in done:
                continue
            if step.kind == "dense":
                h = self._dense(step, h, pending)
                pending = "linear"
                continue
            if pending != "linear":
                h = ACTIVATION_FUNCTIONS[pending](h)
                pending = "linear"
            following = self.steps[i + 1]
            g, k, s = len(gates), step.blocks, step.block_size
            counts = zeroed[offset:offset + k]
            dense_count = zeroed[offset + k:offset + k + 1]
            offset += k + 1
            lists = torch.empty(k, batch, dtype=torch.int32, device=device)
            dense = torch.empty(batch, dtype=torch.int32, device=device)
            hidden_sums = sums[sums_offset:sums_offset + hidden[g]]
            sums_offset += hidden[g]
            values = self._gate_lists(step, h, dense_from, lists, counts, dense, dense_count,
                                      counts64[0, :, g], counts64[1, :, g], hidden_sums)
            gates.append(values)
            if self._batch_dense(h, counts64[0, :, g], k):
                counts64[1, :, g].fill_(k)  # every block of every example runs
                h = self._dense_gated(step, h, values)
                if following.kind == "read":
                    done.add(i + 1)
                    h = torch.addmm(following.bias_main, h, following.weight)
                    pending = following.activation
                continue
            if h.numel() * h.element_size() > L2_RESIDENT_BYTES:
                # Each example's row is gathered once per block it has on: from memory once
                # it outgrows L2, so gather it in the main path's (narrower) dtype.
                h = h.to(self.dtype)
            # Blocks that do not run stay unwritten; a gated layer next reads all units.
            out = (torch.zeros if following.kind == "gated" else torch.empty)(
                batch, k * s, dtype=self.dtype, device=device)
            out32 = None
            if following.kind == "read":  # the consumer adds into its bias
                out32 = torch.empty(batch, following.weight.shape[1], dtype=torch.float32,
                                    device=device)
            tk.grouped_blocks(h, step.weight, step.bias, out, lists, counts, dense,
                              dense_count, values, s, step.activation, block_m, k,
                              init=out32, init_src=following.bias)
            h = out
            if out32 is None:
                continue
            done.add(i + 1)
            if route:  # examples routed dense: whole rows, one tiled product, no atomics
                width = following.weight.shape[1]
                tk.grouped_blocks(out, following.weight.T, following.bias, out32, lists[:0],
                                  counts[:0], dense, dense_count, None, width, "linear",
                                  block_m, 1, gated=False)
            tk.scatter_read_blocks(out, following.weight, out32, lists, counts,
                                   following.block_size, block_m)
            h, pending = out32, following.activation
        if pending != "linear":
            h = ACTIVATION_FUNCTIONS[pending](h)
        if gates:
            return _skip_output(h.float(), counts64[0], counts64[1], gates)
        zeros = torch.zeros(batch, 0, dtype=torch.int64, device=device)
        return _skip_output(h.float(), zeros, zeros.clone(), gates)

    def _batch_dense(self, h: Tensor, active: Tensor, blocks: int) -> bool:
        """Whether this gated layer takes the batch route (see the module docstring):
        `active` (B,) holds each example's blocks on; reading its sum syncs with the host."""
        batch = h.shape[0]
        if batch < BATCH_ROUTE_MIN_BATCH or not math.isfinite(self.batch_dense_from):
            return False
        if h.is_cuda and torch.cuda.is_current_stream_capturing():
            return False  # a graph being captured cannot read the count
        return int(active.sum()) >= self.batch_dense_from * batch * blocks

    def _dense_gated(self, step: _Step, h: Tensor, values: Tensor) -> Tensor:
        """A gated layer over the whole batch as one torch GEMM, each block's outputs times
        its gate value (B, K): the dense masked forward, in the main path's dtype, an off
        block's outputs exactly 0 even where they overflowed (inf * 0 is NaN)."""
        out = torch.addmm(step.bias_main, h.to(self.dtype), step.weight.T)
        if step.activation != "linear":
            getattr(torch, f"{step.activation}_")(out)  # in place: one pass less at 4096
        blocks = out.view(out.shape[0], step.blocks, step.block_size)
        blocks.mul_(values.to(self.dtype).unsqueeze(-1))
        blocks.masked_fill_((values == 0).unsqueeze(-1), 0.0)
        return out

    def _dense(self, step: _Step, h: Tensor, pending: str) -> Tensor:
        """A dense layer reading a dense input (or a consumer's fp32 rows, whose activation
        is `pending`). A small one (a read-out) is a row GEMV kernel that reads those rows
        as they are (torch's fp32 GEMM with 2 outputs took 88 µs at 4096 rows on an H100,
        a bf16 cast first 32 µs); the others torch's GEMM in the main path's dtype."""
        if step.small:
            out = torch.empty(h.shape[0], step.weight.shape[0], device=h.device,
                              dtype=torch.float32 if step.logits else self.dtype)
            tg.rows(h, step.weight, step.bias, out, step.activation, pending)
            return out
        h = ACTIVATION_FUNCTIONS[pending](h).to(self.dtype)
        return ACTIVATION_FUNCTIONS[step.activation](
            torch.addmm(step.bias_main, h, step.weight.T))

    @staticmethod
    def _fused_gate_rows(step: _Step) -> bool:
        """Whether a gated layer's gater runs in the gate kernels (binary units, a hidden
        layer of at most FUSED_GATER_MAX_HIDDEN units), not in torch."""
        return (step.layer.estimator.binary and step.gater_hidden is not None
                and step.gater_hidden[0].shape[0] <= tk.FUSED_GATER_MAX_HIDDEN)

    def _gate_lists(self, step: _Step, h: Tensor, dense_from: float, lists: Tensor,
                    counts: Tensor, dense: Tensor, dense_count: Tensor, active: Tensor,
                    computed: Tensor, hidden_sums: Tensor) -> Tensor:
        """The gate stage at larger batches (`triton_kernels.gate_lists`): gate values (B, K)
        fp32, with the block lists, the dense list and the counts filled in."""
        layer, batch, k = step.layer, h.shape[0], step.blocks
        dense_from_k = dense_from * k
        if self._fused_gate_rows(step):
            values = torch.empty(batch, k, dtype=torch.float32, device=h.device)
            tk.gate_lists(values, lists, counts, dense, dense_count, active, computed,
                          dense_from_k, h, step.gater_hidden, step.gater_out,
                          layer.threshold.float().reshape(1),
                          hidden_sums.view(batch, step.gater_hidden[0].shape[0]))
            return values
        # The estimator's own function for non-binary units, as the reference computes it.
        logits = layer.gater(h.to(layer.gater.out.weight.dtype))  # (B, K)
        values = layer.estimator.gate_values(logits, logits > layer.threshold).float()
        values = values.contiguous()
        tk.gate_lists(values, lists, counts, dense, dense_count, active, computed,
                      dense_from_k)
        return values


def _fp32(linear: torch.nn.Linear | None) -> tuple[Tensor, Tensor] | None:
    """A linear layer's weight (out, in) and bias as contiguous fp32, for the gate kernels."""
    if linear is None:
        return None
    return (linear.weight.detach().float().contiguous(),
            linear.bias.detach().float().contiguous())


def _skip_output(logits: Tensor, active: Tensor, computed: Tensor,
                 gates: list[Tensor]) -> SkipOutput:
    """A SkipOutput; this path's gated layers read all the units of a gated layer before them
    (its reports count that)."""
    return SkipOutput(logits=logits, active_blocks=active, computed_blocks=computed,
                      gates=gates, gated_reads_all_inputs=True)


@dataclass
class CapturedForward:
    """One CUDA graph of a forward at a fixed batch size: write `input`, `replay()`, read
    `output` (both are the graph's own buffers, overwritten by the next replay)."""

    input: Tensor  # (B, D) fp32
    output: SkipOutput
    graph: torch.cuda.CUDAGraph

    def replay(self) -> None:
        self.graph.replay()


class CudaGraphSkipNetwork:
    """Replays CUDA graphs of a `TritonSkipNetwork`: one per batch-size bucket, captured on
    first use. A batch is padded with zero rows to the smallest bucket that holds it (their
    outputs are dropped); larger batches, and CPU tensors, run eagerly. At small batches a
    forward is a few dozen launches of microsecond kernels, so launch overhead is most of its
    time; a graph replays them all in one launch."""

    def __init__(self, skip: TritonSkipNetwork, buckets: tuple[int, ...] = (1, 2, 4, 8, 16)
                 ) -> None:
        if not buckets or min(buckets) < 1:
            raise ValueError(f"buckets must be positive batch sizes, got {buckets}")
        self.skip = skip
        self.buckets = tuple(sorted(set(buckets)))
        self._captured: dict[int, CapturedForward] = {}

    @staticmethod
    def reads_all_gated_inputs(batch: int) -> bool:
        return TritonSkipNetwork.reads_all_gated_inputs(batch)

    @staticmethod
    def gaters_read_all_inputs(batch: int) -> bool:
        return TritonSkipNetwork.gaters_read_all_inputs(batch)

    def __call__(self, x: Tensor) -> SkipOutput:
        batch = x.shape[0] if x.dim() == 2 else 0
        bucket = next((b for b in self.buckets if b >= batch), None)
        if not x.is_cuda or bucket is None or batch == 0:
            return self.skip(x)
        if x.shape[1] != self.skip.model.config.input_size:
            return self.skip(x)  # raises the eager path's shape error
        captured = self.captured(bucket)
        captured.input[:batch].copy_(x)
        captured.input[batch:].zero_()
        captured.replay()
        out = captured.output
        fields = {f.name: getattr(out, f.name) for f in dataclasses.fields(SkipOutput)}
        return SkipOutput(**{name: ([g[:batch].clone() for g in value] if name == "gates"
                                    else value[:batch].clone() if isinstance(value, Tensor)
                                    else value)
                             for name, value in fields.items()})

    def captured(self, batch: int) -> CapturedForward:
        """The graph for exactly `batch` examples, captured on first use."""
        if batch not in self._captured:
            device = self.skip.device
            static = torch.zeros(batch, self.skip.model.config.input_size, device=device)
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):  # compile the kernels before capture
                for _ in range(2):
                    self.skip(static)
            torch.cuda.current_stream(device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                output = self.skip(static)
            self._captured[batch] = CapturedForward(static, output, graph)
        return self._captured[batch]
