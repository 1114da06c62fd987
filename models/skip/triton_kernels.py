"""Triton kernels for the block-skipping forward on the GPU at larger batches (driven by
`models.skip.cuda`; the small-batch kernels are in `models.skip.triton_gemv`, which shares the
activation helper defined here).

Two kernels, each generic over "which weight rows, which input columns":

- `grouped_gemm` (large batches): the (example, block) pairs sorted by block, the way MoE
  kernels sort tokens by expert (ScatterMoE, vLLM's fused_moe), padded per block to whole
  tiles of BLOCK_M rows. A program takes a tile of one block's pairs, gathers their input rows
  by index straight into on-chip tiles, multiplies by that block's weight rows with `tl.dot`,
  and writes the outputs scattered back by index. Padding rows (-1) are masked; the grid is
  persistent and reads the number of tiles in use from device memory, so tiles beyond the
  pairs that exist are never visited and the host never waits for the count. With one
  "block" spanning all outputs and a list of example rows, the same kernel is the consumer
  of the examples routed dense (all blocks computed, every input unit read).
- `scatter_gemm` (large batches, consumer side of the examples routed sparse): the producer's
  pairs again sorted by (input) block; a program multiplies a tile of block j's pairs' rows
  of h by the consumer weight's rows for block j, (BM, S_in) @ (S_in, BN), and adds the
  partial products into the output rows with fp32 atomics (MoE's scatter-add): each example
  reads only the weight rows of its own active input blocks.

All accumulate in fp32 (bf16 / fp16 / fp32 inputs; fp32 products use IEEE dot, not TF32).

`triton` is imported inside `kernels()` only (design.md: models/ never needs triton to
import). `kernels()` binds `triton`, `tl` and the helpers as module globals, because Triton
resolves a kernel's names through its module's globals (the interpreter re-executes the
kernel's source there). Under `TRITON_INTERPRET=1`, set before triton is first imported, the
kernels run on CPU tensors with numpy: that is how the tests check them without a GPU.

Letters: B examples, D input units of a layer, K output blocks of S units, K_in input blocks of
S_in units (the gated layer a consumer reads), N output units, T tiles of pairs, BM / BN / BK
tile rows (examples) / output units / reduction units.
"""

import functools
import os
from types import SimpleNamespace

import torch

from ..activations import ACTIVATIONS

ACTIVATION_CODES = {name: a.code for name, a in ACTIVATIONS.items()}
PROGRAMS_PER_SM = 2  # persistent grids: enough resident programs to hide latency, no more
FUSED_GATER_MAX_HIDDEN = 256  # gate_rows holds a (32, M) tile of gater hidden units
GATER_SPLIT = 512  # inputs per program of the gater's hidden layer (hidden_sums)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def kernels() -> SimpleNamespace:
    """Define the kernels (once): imports triton, which must be installed (`sparsegate[gpu]`)."""
    global triton, tl, _activate, _accumulate_rows, _list_tiles, _list_rows, _gates_on, \
        _fill_broadcast
    import triton
    import triton.language as tl

    if interpreting() and type(tl.sum).__name__ != "InterpretedFunction":
        raise RuntimeError("TRITON_INTERPRET=1 was set after triton was imported; set it "
                           "before anything imports triton")

    @triton.jit
    def _activate(h, ACT: tl.constexpr):
        """The main path's activation, element-wise in fp32 (codes: ACTIVATION_CODES)."""
        if ACT == 1:
            h = tl.maximum(h, 0.0, propagate_nan=tl.PropagateNan.ALL)  # NaN stays, as in torch
        elif ACT == 2:
            h = 2.0 * tl.sigmoid(2.0 * h) - 1.0  # tanh, from sigmoid (no tl.tanh everywhere)
        elif ACT == 3:
            h = tl.sigmoid(h)
        return h

    @triton.jit
    def _accumulate_rows(acc, x_ptr, rows, valid, stride_xb, w_ptr, n, mask_n, stride_wn,
                         stride_wd, width, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
        """acc += x[rows, :width] @ W[n, :width].T: input rows gathered by index into the
        on-chip tile (no gathered copy in memory), BLOCK_K columns at a time."""
        for d0 in range(0, width, BLOCK_K):
            d = d0 + tl.arange(0, BLOCK_K)  # (BK,)
            mask_d = d < width
            w = tl.load(w_ptr + n[None, :] * stride_wn + d[:, None] * stride_wd,
                        mask=mask_d[:, None] & mask_n[None, :], other=0.0)  # (BK, BN)
            a = tl.load(x_ptr + rows[:, None] * stride_xb + d[None, :],
                        mask=valid[:, None] & mask_d[None, :],
                        other=0.0).to(w.dtype)  # (BM, BK), as W's dtype for the MMA
            acc = tl.dot(a, w, acc, input_precision=PRECISION)  # (BM, BN) fp32
        return acc

    @triton.jit
    def _fill_broadcast(out_ptr, src_ptr, numel, width, CHUNK: tl.constexpr):
        """out[:numel] = src[i % width], spread over the grid's programs: a consumer's fp32
        rows set to its bias by the launch before it (which the consumer adds into)."""
        programs = tl.num_programs(0)
        for i0 in range(tl.program_id(0) * CHUNK, numel, programs * CHUNK):
            i = i0 + tl.arange(0, CHUNK)
            mask = i < numel
            tl.store(out_ptr + i, tl.load(src_ptr + i % width, mask=mask), mask=mask)

    @triton.jit
    def _list_tiles(counts_ptr, K, BLOCK_M: tl.constexpr, BLOCK_KP: tl.constexpr):
        """Per-block pair counts (KP,), tiles of BLOCK_M rows per block, their running end,
        and the total: where each block's tiles lie in a flat tile index."""
        k = tl.arange(0, BLOCK_KP)
        counts = tl.load(counts_ptr + k, mask=k < K, other=0)
        tiles = (counts + BLOCK_M - 1) // BLOCK_M
        end = tl.cumsum(tiles, axis=0)
        return k, counts, tiles, end, tl.sum(tiles, axis=0)

    @triton.jit
    def _list_rows(tile, k, counts, tiles, end, lists_ptr, stride_list,
                   BLOCK_M: tl.constexpr):
        """Block, example rows (BM,) and validity of flat tile `tile` of the block lists."""
        block = tl.sum((end <= tile).to(tl.int32), axis=0)  # first block ending past tile
        first = tl.sum(tl.where(k == block, end - tiles, 0), axis=0)
        count = tl.sum(tl.where(k == block, counts, 0), axis=0)
        i = (tile - first) * BLOCK_M + tl.arange(0, BLOCK_M)
        valid = i < count
        rows = tl.load(lists_ptr + block.to(tl.int64) * stride_list + i, mask=valid, other=0)
        return block, rows, valid

    @triton.jit
    def hidden_sums(x_ptr, stride_xb, w_ptr, out_ptr, B, D, M, SPLIT,
                    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
                    BLOCK_H: tl.constexpr):
        """out[b, :M] += x[b, chunk] @ W[:M, chunk].T for this program's tile of examples and
        chunk of SPLIT inputs (fp32 atomics into a zeroed buffer): the gater's hidden layer
        split over many programs, since a few hundred examples make only a few row tiles."""
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        mask_r = rows < B
        rows64 = rows.to(tl.int64)
        h = tl.arange(0, BLOCK_H)
        mask_h = h < M
        start = tl.program_id(1) * SPLIT
        acc = tl.zeros((BLOCK_M, BLOCK_H), dtype=tl.float32)
        for d0 in range(start, tl.minimum(start + SPLIT, D), BLOCK_D):
            d = d0 + tl.arange(0, BLOCK_D)
            mask_d = d < D
            a = tl.load(x_ptr + rows64[:, None] * stride_xb + d[None, :],
                        mask=mask_r[:, None] & mask_d[None, :], other=0.0)
            w = tl.load(w_ptr + h[None, :] * D + d[:, None],
                        mask=mask_d[:, None] & mask_h[None, :], other=0.0)  # (BD, BH)
            acc = tl.dot(a.to(tl.float32), w, acc, input_precision=PRECISION)
        tl.atomic_add(out_ptr + rows64[:, None] * M + h[None, :], acc,
                      mask=mask_r[:, None] & mask_h[None, :], sem="relaxed")

    @triton.jit
    def gate_rows(
        x_ptr, stride_xb, w1_ptr, b1_ptr, w2_ptr, b2_ptr, tau_ptr, D, M,  # LOGITS: x_ptr the
        # (B, M) hidden sums, b1 / w2 / b2 the gater's, D unused
        values_ptr, stride_vb, B, K,  # (B, K) fp32 gate values: written (LOGITS) or read
        lists_ptr, counts_ptr, stride_list,  # (K, B) int32 examples per block, (K,) counts
        dense_ptr, dense_count_ptr,  # (B,) int32 examples routed dense, (1,) their count
        active_ptr, computed_ptr, stride_cb,  # (B,) int64 views, stored
        dense_from_k,  # route an example dense from this many blocks on (inf: never)
        LOGITS: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
        BLOCK_H: tl.constexpr, BLOCK_G: tl.constexpr,
    ):
        """The gate stage of a gated layer at larger batches, for a tile of examples: the
        gater's output layer (tanh of the hidden sums -> K, binary units: on = logit >
        threshold) on tensor cores with fp32-accurate products (tf32x3), or gate values
        given; the per-example counts and dense routing; then every sparse pair appended
        to its block's list (one atomic per block and program reserves the slots, a cumsum
        ranks the rows) and every dense example to the dense list. Replaces ~40 torch ops
        of sorting and bookkeeping."""
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,)
        mask_r = rows < B
        rows64 = rows.to(tl.int64)
        hid = tl.zeros((BLOCK_M, BLOCK_H), dtype=tl.float32)
        if LOGITS:  # the hidden units' sums come from `hidden_sums` (x_ptr: (B, M) fp32)
            h = tl.arange(0, BLOCK_H)
            mask_h = h < M
            hid = tl.load(x_ptr + rows64[:, None] * stride_xb + h[None, :],
                          mask=mask_r[:, None] & mask_h[None, :], other=0.0)
            hid = _activate(hid + tl.load(b1_ptr + h, mask=mask_h, other=0.0)[None, :], 2)
        count = tl.zeros((BLOCK_M,), dtype=tl.int32)
        for k0 in range(0, K, BLOCK_G):  # pass 1: blocks on per example
            kk = k0 + tl.arange(0, BLOCK_G)
            on = _gates_on(hid, rows64, mask_r, kk, K, M, w2_ptr, b2_ptr, tau_ptr,
                           values_ptr, stride_vb, LOGITS, PRECISION, BLOCK_H)
            count += tl.sum(on.to(tl.int32), axis=1)
        dense = (count.to(tl.float32) >= dense_from_k) & mask_r
        tl.store(active_ptr + rows64 * stride_cb, count.to(tl.int64), mask=mask_r)
        tl.store(computed_ptr + rows64 * stride_cb, tl.where(dense, K, count).to(tl.int64),
                 mask=mask_r)
        ones = dense.to(tl.int32)
        first = tl.atomic_add(dense_count_ptr, tl.sum(ones, axis=0))
        tl.store(dense_ptr + first + tl.cumsum(ones, axis=0) - ones, rows, mask=dense)
        for k0 in range(0, K, BLOCK_G):  # pass 2: values and the block lists
            kk = k0 + tl.arange(0, BLOCK_G)
            mask_k = kk < K
            on = _gates_on(hid, rows64, mask_r, kk, K, M, w2_ptr, b2_ptr, tau_ptr,
                           values_ptr, stride_vb, LOGITS, PRECISION, BLOCK_H)
            if LOGITS:
                tl.store(values_ptr + rows64[:, None] * stride_vb + kk[None, :],
                         on.to(tl.float32), mask=mask_r[:, None] & mask_k[None, :])
            sparse = (on & ~dense[:, None]).to(tl.int32)  # (BM, BG)
            base = tl.atomic_add(counts_ptr + kk, tl.sum(sparse, axis=0), mask=mask_k)  # (BG,)
            slot = base[None, :] + tl.cumsum(sparse, axis=0) - sparse
            tl.store(lists_ptr + kk[None, :].to(tl.int64) * stride_list + slot,
                     rows[:, None] + tl.zeros_like(slot), mask=sparse != 0)

    @triton.jit
    def _gates_on(hid, rows64, mask_r, kk, K, M, w2_ptr, b2_ptr, tau_ptr, values_ptr,
                  stride_vb, LOGITS: tl.constexpr, PRECISION: tl.constexpr,
                  BLOCK_H: tl.constexpr):
        """(BM, BG) gates on for blocks kk: from the hidden units (LOGITS) or the values."""
        mask_k = kk < K
        mask = mask_r[:, None] & mask_k[None, :]
        if LOGITS:
            h = tl.arange(0, BLOCK_H)
            w = tl.load(w2_ptr + kk[None, :] * M + h[:, None],
                        mask=(h < M)[:, None] & mask_k[None, :], other=0.0)  # (BH, BG)
            logit = tl.dot(hid, w, input_precision=PRECISION)
            logit += tl.load(b2_ptr + kk, mask=mask_k, other=0.0)[None, :]
            on = (logit > tl.load(tau_ptr)) & mask
        else:
            value = tl.load(values_ptr + rows64[:, None] * stride_vb + kk[None, :], mask=mask,
                            other=0.0)
            on = (value != 0.0) & mask
        return on

    @triton.jit
    def grouped_gemm(
        x_ptr, stride_xb,  # (B, D) layer input (any float dtype: tiles cast to W's)
        w_ptr, stride_wn, stride_wd,  # W[n, d]
        bias_ptr,  # (K * S,) fp32
        out_ptr, stride_ob,  # (B, K * S) output
        lists_ptr, counts_ptr, K_lists, stride_list,  # sparse pairs: examples per block
        dense_ptr, dense_count_ptr, K_dense,  # examples computing all K_dense blocks
        gate_ptr, stride_gb,  # (B, K) fp32 gate values (GATED)
        init_ptr, init_src_ptr, init_numel, init_width,  # INIT: consumer's out32 = bias
        D, S,
        ACT: tl.constexpr, GATED: tl.constexpr, PRECISION: tl.constexpr, INIT: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        BLOCK_KP: tl.constexpr, INIT_CHUNK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        programs = tl.num_programs(0)
        if INIT:
            _fill_broadcast(init_ptr, init_src_ptr, init_numel, init_width, INIT_CHUNK)
        k, counts, tiles, end, sparse_tiles = _list_tiles(counts_ptr, K_lists, BLOCK_M,
                                                          BLOCK_KP)
        dense_rows = tl.load(dense_count_ptr)
        tiles_n = tl.cdiv(S, BLOCK_N)
        work = (sparse_tiles + tl.cdiv(dense_rows, BLOCK_M) * K_dense) * tiles_n
        # Persistent: consecutive items share a tile of rows (then a block's next tile), so
        # gathered rows and the block's weight rows are reused from L2.
        for item in range(pid, work, programs):
            tile = item // tiles_n
            offs_n = (item % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,)
            mask_n = offs_n < S
            if tile < sparse_tiles:
                block, rows, valid = _list_rows(tile, k, counts, tiles, end, lists_ptr,
                                                stride_list, BLOCK_M)
            else:  # a tile of the dense examples, one block of them
                t = tile - sparse_tiles
                block = t % K_dense
                i = (t // K_dense) * BLOCK_M + tl.arange(0, BLOCK_M)
                valid = i < dense_rows
                rows = tl.load(dense_ptr + i, mask=valid, other=0)
            rows = rows.to(tl.int64)
            n = (block * S + offs_n).to(tl.int64)  # (BN,)
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)  # (BM, BN)
            acc = _accumulate_rows(acc, x_ptr, rows, valid, stride_xb, w_ptr, n, mask_n,
                                   stride_wn, stride_wd, D, BLOCK_K, PRECISION)
            acc += tl.load(bias_ptr + n, mask=mask_n, other=0.0)[None, :]
            acc = _activate(acc, ACT)
            if GATED:  # exactly 0 for an off block of an example routed dense, even inf or NaN
                gate = tl.load(gate_ptr + rows * stride_gb + block, mask=valid,
                               other=0.0)[:, None]
                acc = tl.where(gate != 0.0, acc * gate, 0.0)
            tl.store(out_ptr + rows[:, None] * stride_ob + n[None, :],
                     acc.to(out_ptr.dtype.element_ty), mask=valid[:, None] & mask_n[None, :])

    @triton.jit
    def scatter_gemm(
        h_ptr, stride_hb,  # (B, K_in * S_in) the gated layer's output
        w_ptr, stride_wn, stride_wd,  # Wc[d, n] = W[n, d], each input block's rows contiguous
        out_ptr, stride_ob,  # (B, N) fp32, holding the bias already
        lists_ptr, counts_ptr, K_lists, stride_list,  # sparse pairs by input block, as above
        N, S_in,
        PRECISION: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        BLOCK_KP: tl.constexpr,
    ):
        k, counts, tiles, end, sparse_tiles = _list_tiles(counts_ptr, K_lists, BLOCK_M,
                                                          BLOCK_KP)
        tiles_n = tl.cdiv(N, BLOCK_N)
        for item in range(tl.program_id(0), sparse_tiles * tiles_n, tl.num_programs(0)):
            tile = item // tiles_n
            n = (item % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,)
            mask_n = n < N
            block, rows, valid = _list_rows(tile, k, counts, tiles, end, lists_ptr,
                                            stride_list, BLOCK_M)  # input block j
            rows = rows.to(tl.int64)
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)  # (BM, BN)
            # h[rows, j*S_in:(j+1)*S_in] @ Wc[j*S_in:(j+1)*S_in, n]: offset both pointers to
            # block j and reduce over its S_in units only.
            offset = (block * S_in).to(tl.int64)
            acc = _accumulate_rows(acc, h_ptr + offset, rows, valid, stride_hb,
                                   w_ptr + offset * stride_wd, n, mask_n, stride_wn,
                                   stride_wd, S_in, BLOCK_K, PRECISION)
            # relaxed: the adds need no ordering among themselves, only the kernel's end
            tl.atomic_add(out_ptr + rows[:, None] * stride_ob + n[None, :], acc,
                          mask=valid[:, None] & mask_n[None, :], sem="relaxed")

    return SimpleNamespace(activate=_activate, fill_broadcast=_fill_broadcast,
                           hidden_sums=hidden_sums, gate_rows=gate_rows,
                           grouped_gemm=grouped_gemm,
                           scatter_gemm=scatter_gemm)


# ----------------------------------------------------------------------------------------
# Launchers: shapes in, tile sizes chosen, grid launched. Plain torch on the host side.


def _pow2(n: int, low: int, high: int) -> int:
    """The power of two >= n, clamped to [low, high] (tl.arange needs powers of two)."""
    return max(low, min(high, 1 << max(0, int(n) - 1).bit_length()))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"  # only fp32 x fp32 reads it


@functools.cache
def _programs(device: torch.device) -> int:
    """Programs of a persistent grid: a few per SM on CUDA; any number works interpreted."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count * PROGRAMS_PER_SM
    return 4


def gate_lists(values, lists, counts, dense, dense_count, active, computed, dense_from_k,
               x=None, hidden=None, out=None, tau=None, hidden_buffer=None) -> None:
    """The gate stage at larger batches (`hidden_sums`, then `gate_rows`). With x: binary
    gates from the gater (hidden, out: (weight, bias) fp32 of its two layers; tau: 1-element
    threshold; hidden_buffer: zeroed (B, M) fp32) written into values (B, K) fp32; without:
    values holds the gate values. lists (K, B) int32 and counts (K,) int32 (zeroed) get
    each block's sparse pairs; dense (B,) int32 and dense_count (1,) int32 (zeroed) the
    examples routed dense; active / computed (B,) int64 views (same stride) are stored."""
    batch, blocks = values.shape
    logits = x is not None
    precision = "ieee" if interpreting() else "tf32x3"  # fp32-accurate products
    block_m = 32
    if logits:
        width, units = x.shape[1], hidden[0].shape[0]
        block_h = _pow2(units, 16, 1 << 30)
        split = GATER_SPLIT
        kernels().hidden_sums[(_cdiv(batch, block_m), _cdiv(width, split))](
            x, x.stride(0), hidden[0], hidden_buffer, batch, width, units, split,
            PRECISION=precision, BLOCK_M=block_m, BLOCK_D=_pow2(width, 16, 64),
            BLOCK_H=block_h)
        args = (hidden_buffer, hidden_buffer.stride(0), hidden[0], hidden[1], out[0], out[1],
                tau, width, units)
    else:
        block_h = 16
        args = (values, 0, values, values, values, values, values, 1, 1)
    kernels().gate_rows[(_cdiv(batch, block_m),)](
        *args, values, values.stride(0), batch, blocks, lists, counts, lists.stride(0),
        dense, dense_count, active, computed, active.stride(0), float(dense_from_k),
        LOGITS=logits, PRECISION=precision, BLOCK_M=block_m, BLOCK_H=block_h,
        BLOCK_G=_pow2(blocks, 16, 128))


def grouped_blocks(x, weight, bias, out, lists, counts, dense, dense_count, gates,
                   block_size: int, activation: str, block_m: int, dense_blocks: int,
                   gated: bool = True, init=None, init_src=None) -> None:
    """Rows of examples times block weights, tile by tile: for each block k's listed
    examples (lists (K, B), counts (K,)) and each dense example (dense, dense_count) times
    each of `dense_blocks` blocks, out[rows, block] = act(x[rows] @ W_block.T + b_block)
    (* gates[rows, block]); with init: init (B, N) fp32 := init_src broadcast, first.

    x (B, D) any float dtype; weight W[n, d] given as any 2-D strided view, (K*S, D)
    logically; bias (K*S,) fp32; out (B, K*S); gates (B, K) fp32 or None.
    """
    batch, width = x.shape
    # Small tiles of rows (small batch): split a block's units over two programs, for more
    # programs streaming weights; large ones: whole 128-unit blocks per tensor-core tile.
    block_n = _pow2(block_size, 16, 64 if block_m == 16 else 128)
    block_k = _pow2(width, 16, 64)
    lists_k = counts.numel()
    max_tiles = (lists_k + dense_blocks) * _cdiv(batch, block_m)
    grid = (max(1, min(max_tiles * _cdiv(block_size, block_n), _programs(x.device))),)
    has_init = init is not None
    kernels().grouped_gemm[grid](
        x, x.stride(0), weight, weight.stride(0), weight.stride(1), bias, out, out.stride(0),
        lists, counts, lists_k, lists.stride(0), dense, dense_count, dense_blocks,
        gates if gated else bias, gates.stride(0) if gated else 0,
        init if has_init else out, init_src if has_init else bias,
        init.numel() if has_init else 0, init_src.numel() if has_init else 1,
        width, block_size,
        ACT=ACTIVATION_CODES[activation], GATED=gated, PRECISION=_precision(weight.dtype),
        INIT=has_init, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        BLOCK_KP=_pow2(lists_k, 1, 1 << 30), INIT_CHUNK=1024)


def scatter_read_blocks(h, weight_by_input, out32, lists, counts, in_block_size: int,
                        block_m: int) -> None:
    """Consumer of a gated layer, pairs listed by input block (lists (K_in, B), counts):
    out32[b] += h[b, j] @ Wc[j] for each listed pair (b, j), with fp32 atomics. out32 (B, N)
    fp32."""
    batch = h.shape[0]
    width = weight_by_input.shape[1]
    block_n = _pow2(width, 16, 128)
    block_k = _pow2(in_block_size, 16, 64)
    lists_k = counts.numel()
    work_max = lists_k * _cdiv(batch, block_m) * _cdiv(width, block_n)
    grid = (max(1, min(work_max, _programs(h.device))),)
    kernels().scatter_gemm[grid](
        h, h.stride(0), weight_by_input, weight_by_input.stride(1),
        weight_by_input.stride(0), out32, out32.stride(0),
        lists, counts, lists_k, lists.stride(0), width, in_block_size,
        PRECISION=_precision(h.dtype),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        BLOCK_KP=_pow2(lists_k, 1, 1 << 30))
