"""Triton kernels for the block-skipping forward on the GPU at larger batches (driven by
`models.gpu_skip`; the small-batch kernels are in `models.triton_gemv`, which shares the
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

ACTIVATION_CODES = {"linear": 0, "relu": 1, "tanh": 2, "sigmoid": 3}
PROGRAMS_PER_SM = 2  # persistent grids: enough resident programs to hide latency, no more


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def kernels() -> SimpleNamespace:
    """Define the kernels (once): imports triton, which must be installed (`sparsegate[gpu]`)."""
    global triton, tl, _activate, _accumulate_rows
    import triton
    import triton.language as tl

    if interpreting() and type(tl.sum).__name__ != "InterpretedFunction":
        raise RuntimeError("TRITON_INTERPRET=1 was set after triton was imported; set it "
                           "before anything imports triton")

    @triton.jit
    def _activate(h, ACT: tl.constexpr):
        """The main path's activation, element-wise in fp32 (codes: ACTIVATION_CODES)."""
        if ACT == 1:
            h = tl.maximum(h, 0.0)
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
            a = tl.load(x_ptr + rows[:, None] * stride_xb + d[None, :],
                        mask=valid[:, None] & mask_d[None, :], other=0.0)  # (BM, BK)
            w = tl.load(w_ptr + n[None, :] * stride_wn + d[:, None] * stride_wd,
                        mask=mask_d[:, None] & mask_n[None, :], other=0.0)  # (BK, BN)
            acc = tl.dot(a, w, acc, input_precision=PRECISION)  # (BM, BN) fp32
        return acc

    @triton.jit
    def grouped_gemm(
        x_ptr, stride_xb,  # (B, D) layer input
        w_ptr, stride_wn, stride_wd,  # W[n, d]
        bias_ptr,  # (K * S,) fp32
        out_ptr, stride_ob,  # (B, K * S) output
        rows_ptr,  # (T_max * BM,) int32: example of each tile row, -1 = padding
        tile_block_ptr,  # (T_max,) int32: the block each tile belongs to
        num_tiles_ptr,  # (1,) int32: tiles in use, read here so the host never syncs
        gate_ptr, stride_gb,  # (B, K) fp32 gate values (GATED)
        D, S,
        ACT: tl.constexpr, GATED: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        tiles_n = tl.cdiv(S, BLOCK_N)
        work = tl.load(num_tiles_ptr) * tiles_n
        # Persistent: consecutive items share a tile of rows (then a block's next tile), so
        # gathered rows and the block's weight rows are reused from L2.
        for item in range(tl.program_id(0), work, tl.num_programs(0)):
            tile = item // tiles_n
            offs_n = (item % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,)
            mask_n = offs_n < S
            block = tl.load(tile_block_ptr + tile)
            n = (block * S + offs_n).to(tl.int64)  # (BN,)
            rows = tl.load(rows_ptr + tile * BLOCK_M + tl.arange(0, BLOCK_M))  # (BM,)
            valid = rows >= 0
            rows = tl.where(valid, rows, 0).to(tl.int64)
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)  # (BM, BN)
            acc = _accumulate_rows(acc, x_ptr, rows, valid, stride_xb, w_ptr, n, mask_n,
                                   stride_wn, stride_wd, D, BLOCK_K, PRECISION)
            acc += tl.load(bias_ptr + n, mask=mask_n, other=0.0)[None, :]
            acc = _activate(acc, ACT)
            if GATED:
                acc *= tl.load(gate_ptr + rows * stride_gb + block, mask=valid,
                               other=0.0)[:, None]
            tl.store(out_ptr + rows[:, None] * stride_ob + n[None, :],
                     acc.to(out_ptr.dtype.element_ty), mask=valid[:, None] & mask_n[None, :])

    @triton.jit
    def scatter_gemm(
        h_ptr, stride_hb,  # (B, K_in * S_in) the gated layer's output
        w_ptr, stride_wn, stride_wd,  # Wc[d, n] = W[n, d], each input block's rows contiguous
        out_ptr, stride_ob,  # (B, N) fp32, holding the bias already
        rows_ptr, tile_block_ptr, num_tiles_ptr,  # pairs sorted by input block, as above
        N, S_in,
        PRECISION: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        tiles_n = tl.cdiv(N, BLOCK_N)
        work = tl.load(num_tiles_ptr) * tiles_n
        for item in range(tl.program_id(0), work, tl.num_programs(0)):
            tile = item // tiles_n
            n = (item % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,)
            mask_n = n < N
            block = tl.load(tile_block_ptr + tile)  # input block j of these pairs
            rows = tl.load(rows_ptr + tile * BLOCK_M + tl.arange(0, BLOCK_M))  # (BM,)
            valid = rows >= 0
            rows = tl.where(valid, rows, 0).to(tl.int64)
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

    return SimpleNamespace(activate=_activate, grouped_gemm=grouped_gemm,
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


def grouped_blocks(x, weight, bias, out, tiles, gates, block_size: int, activation: str,
                   gated: bool = True) -> None:
    """Rows of examples times block weights, tile by tile: for each tile of `tiles` (a
    `PairTiles`), out[rows, block] = act(x[rows] @ W_block.T + b_block) (* gates[rows, block]).

    x (B, D); weight W[n, d] given as any 2-D strided view, (K*S, D) logically; bias (K*S,)
    fp32; out (B, K*S); gates (B, K) fp32 or None.
    """
    width = x.shape[1]
    # Small tiles of rows (small batch): split a block's units over two programs, for more
    # programs streaming weights; large ones: whole 128-unit blocks per tensor-core tile.
    block_n = _pow2(block_size, 16, 64 if tiles.block_m == 16 else 128)
    block_k = _pow2(width, 16, 64)
    work_max = tiles.max_tiles * _cdiv(block_size, block_n)
    grid = (max(1, min(work_max, _programs(x.device))),)
    kernels().grouped_gemm[grid](
        x, x.stride(0), weight, weight.stride(0), weight.stride(1), bias, out, out.stride(0),
        tiles.rows, tiles.tile_block, tiles.num_tiles,
        gates if gated else bias, gates.stride(0) if gated else 0,
        width, block_size,
        ACT=ACTIVATION_CODES[activation], GATED=gated, PRECISION=_precision(x.dtype),
        BLOCK_M=tiles.block_m, BLOCK_N=block_n, BLOCK_K=block_k)


def scatter_read_blocks(h, weight_by_input, out32, tiles, in_block_size: int) -> None:
    """Consumer of a gated layer, pairs sorted by input block (`tiles`): out32[b] +=
    h[b, j] @ Wc[j] for each pair (b, j), with fp32 atomics. out32 (B, N) fp32."""
    width = weight_by_input.shape[1]
    block_n = _pow2(width, 16, 128)
    block_k = _pow2(in_block_size, 16, 64)
    work_max = tiles.max_tiles * _cdiv(width, block_n)
    grid = (max(1, min(work_max, _programs(h.device))),)
    kernels().scatter_gemm[grid](
        h, h.stride(0), weight_by_input, weight_by_input.stride(1),
        weight_by_input.stride(0), out32, out32.stride(0),
        tiles.rows, tiles.tile_block, tiles.num_tiles, width, in_block_size,
        PRECISION=_precision(h.dtype),
        BLOCK_M=tiles.block_m, BLOCK_N=block_n, BLOCK_K=block_k)
