"""Triton kernels of the GPU skip path at small batches (a handful of examples), where a
forward is memory bound and every kernel launch costs as much as a layer's useful work.

Measured on an H100 (benchmarks.cuda_profile, 4096 -> 128 x 128 -> 4096 at 10 %, batch 1): a
first design, one program per (example, block) pair looping over the reduction, read the
active weights at 0.6 TB/s, and the gater in torch plus the pair bookkeeping were ~25 small
kernels of 1.5-7 µs each, most of the forward. So here a gated layer is three kernels, a
consumer one, and every kernel is sized so that all its weight loads are in flight at once:

- `rows_gemv`: y[b, n] = act(in_act(a[b]) . W[n] + bias[n]) for a tile of outputs per program.
  The gater's hidden layer (tanh), and dense layers (whatever their input's dtype: no casts).
- `gate_gemv`: the gater's logits for a tile of blocks, then in the same program the gate
  (logit > threshold; binary units output 1), the gate values for the report, the example's
  count of active blocks, and the compaction: the tile's active (example, block) pairs are
  appended to one list (one atomic per program reserves their slots, a cumsum ranks them).
  With `LOGITS=False` it compacts gate values computed elsewhere (non-binary units, whose
  values torch computes as the reference does; dense routing).
- `pair_gemv`: the gated layer's main path over that list, persistent: item = (pair, tile of
  the block's rows), the weight rows read in BLOCK_K-wide slabs; output = act(...) * gate,
  exactly 0 where the gate is. Blocks that are off are never visited, but for an example
  routed dense, whose every block is listed. It also fills the consumer's fp32 output with its
  bias, since the consumer adds into it.
- `pair_read`: the consumer (a dense layer or the read-out after a gated layer), persistent
  over item = (pair, tile of outputs): h[b, block j] (S_in values) times the S_in weight rows
  of block j, added into out[b] with fp32 atomics. Each example reads only the rows of its
  own active blocks, and the items are independent loads, all in flight at once (a program
  per example and output tile looping over its blocks would be ~13 dependent loads deep).

The pair list's length stays on the device (the kernels read it), so a whole forward can be
captured as a CUDA graph. `triton` is imported inside `kernels()` only (see
`models.skip.triton_kernels`, whose activation helper these kernels share).

Letters: B examples, D input units, K blocks of S units, K_in blocks of S_in units of the
gated layer a consumer reads, N outputs, M gater hidden units, P pairs, BN / BK / BR tile
widths (outputs / reduction / rows of an input block).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import torch

from . import triton_kernels as tk

# Tile shapes and warps, chosen on an H100 for the layer 4096 -> 128 x 128 -> 4096, batch 1,
# 10 % density (`python -m benchmarks.cuda_tune`, each a whole forward under a CUDA graph).
TILES = {
    "rows": {"BLOCK_N": 1, "BLOCK_K": 4096, "num_warps": 8},
    "gate": {"BLOCK_N": 16, "BLOCK_K": 64, "num_warps": 4},
    "pair": {"BLOCK_N": 2, "BLOCK_K": 2048, "num_warps": 8},
    "read": {"BLOCK_R": 128, "BLOCK_N": 64, "num_warps": 4},
}
PROGRAMS_PER_SM = 4  # persistent grids: resident programs per SM
INIT_CHUNK = 1024  # elements of the consumer's output each program fills per step
FINISH_CHUNK = 2048  # input units per step of the dense layer a consumer's last program runs
FINISH_MAX_WEIGHTS = 1 << 16  # ... and its largest weight, C_pad x N (a read-out)
FUSED_GATER_MAX_WEIGHTS = 1 << 14  # largest K_pad x M_pad gater output layer held by one
# program (the benchmark layer's gater is 128 x 64; the paper's 2000 x 400 takes two launches)


@functools.cache
def kernels() -> SimpleNamespace:
    """Define the kernels (once); see `models.skip.triton_kernels.kernels`."""
    global triton, tl, _activate, _fill_broadcast, _row_dot, _last_program, _binary_gates
    import triton
    import triton.language as tl

    shared = tk.kernels()
    _activate, _fill_broadcast = shared.activate, shared.fill_broadcast

    @triton.jit
    def _row_dot(a_row, w_ptr, n, mask_n, stride_wn, D, IN_ACT: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """(BN,) fp32: in_act(a_row[:D]) . W[n, :D], products summed along BK lanes and
        reduced once at the end."""
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_K):
            d = d0 + tl.arange(0, BLOCK_K)  # (BK,)
            mask_d = d < D
            a = _activate(tl.load(a_row + d, mask=mask_d, other=0.0).to(tl.float32), IN_ACT)
            w = tl.load(w_ptr + n[:, None] * stride_wn + d[None, :],
                        mask=mask_n[:, None] & mask_d[None, :], other=0.0)  # (BN, BK)
            acc += w.to(tl.float32) * a[None, :]
        return tl.sum(acc, axis=1)

    @triton.jit
    def _last_program(done_ptr, LANES: tl.constexpr):
        """True in the one program of the grid that finishes last (and resets the counter).
        Every thread adds 1 with acquire-release semantics, so each thread's earlier writes
        are released, and the thread that reads the final count acquires all of them (an
        RMW chain extends every release sequence); LANES = threads per program."""
        old = tl.atomic_add(done_ptr + tl.zeros([LANES], tl.int32), 1, sem="acq_rel")
        last = tl.max(old, axis=0) == tl.num_programs(0) * LANES - 1
        if last:
            tl.store(done_ptr, 0)  # every increment of this launch is in: ready for the next
        return last

    @triton.jit
    def _binary_gates(k, on, mask_k, b, K, base, values_ptr, pairs_ptr, active_ptr,
                      computed_ptr, stride_cb):
        """Store example b's gate values (1 where on) over blocks k, append its active pairs
        to the list at `base`, store its counts. Returns the number appended."""
        tl.store(values_ptr + b * K + k, on.to(tl.float32), mask=mask_k)
        ones = on.to(tl.int32)
        count = tl.sum(ones, axis=0)
        rank = tl.cumsum(ones, axis=0) - ones
        tl.store(pairs_ptr + base + rank, b * K + k, mask=on)
        tl.store(active_ptr + b * stride_cb, count.to(tl.int64))
        tl.store(computed_ptr + b * stride_cb, count.to(tl.int64))
        return count

    @triton.jit
    def hidden_gate(x_ptr, stride_xb, w1_ptr, b1_ptr, hid_ptr, M, D,
                    w2_ptr, b2_ptr, tau_ptr, K, B,
                    values_ptr, pairs_ptr, total_ptr, active_ptr, computed_ptr, stride_cb,
                    done_ptr, LANES: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_H: tl.constexpr):
        """A gater input -> M tanh -> K with binary gates, in one launch: each program a
        tile of the hidden units of one example; the last program to finish computes every
        example's K logits from the M hidden units (a (K, M) tile: small gaters only), the
        gates, the counts and the pair list (no atomics: it sees every example)."""
        pid = tl.program_id(0)
        tiles_m = tl.cdiv(M, BLOCK_N)
        b = pid // tiles_m
        m = (pid % tiles_m) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,)
        mask_m = m < M
        y = _row_dot(x_ptr + b.to(tl.int64) * stride_xb, w1_ptr, m, mask_m, D, D, 0,
                     BLOCK_N, BLOCK_K)
        y = _activate(y + tl.load(b1_ptr + m, mask=mask_m, other=0.0), 2)  # tanh
        tl.store(hid_ptr + b * M + m, y, mask=mask_m)
        if _last_program(done_ptr, LANES):
            k = tl.arange(0, BLOCK_G)  # (KG,) every block
            mask_k = k < K
            j = tl.arange(0, BLOCK_H)  # (MH,) every hidden unit
            mask_j = j < M
            w2 = tl.load(w2_ptr + k[:, None] * M + j[None, :],
                         mask=mask_k[:, None] & mask_j[None, :], other=0.0)  # (KG, MH)
            b2 = tl.load(b2_ptr + k, mask=mask_k, other=0.0)
            tau = tl.load(tau_ptr)
            total = 0
            for e in range(0, B):
                h = tl.load(hid_ptr + e * M + j, mask=mask_j, other=0.0, cache_modifier=".cg")
                logit = tl.sum(w2 * h[None, :], axis=1) + b2  # (KG,)
                on = (logit > tau) & mask_k
                total += _binary_gates(k, on, mask_k, e, K, total, values_ptr, pairs_ptr,
                                       active_ptr, computed_ptr, stride_cb)
            tl.store(total_ptr, total)

    @triton.jit
    def rows_gemv(a_ptr, stride_ab, w_ptr, stride_wn, bias_ptr, out_ptr, stride_ob, D, N,
                  IN_ACT: tl.constexpr, ACT: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_K: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,)
        mask_n = n < N
        y = _row_dot(a_ptr + b * stride_ab, w_ptr, n, mask_n, stride_wn, D, IN_ACT,
                     BLOCK_N, BLOCK_K)
        y = _activate(y + tl.load(bias_ptr + n, mask=mask_n, other=0.0), ACT)
        tl.store(out_ptr + b * stride_ob + n, y.to(out_ptr.dtype.element_ty), mask=mask_n)

    @triton.jit
    def gate_gemv(a_ptr, stride_ab, w_ptr, stride_wn, bias_ptr, tau_ptr, D,
                  values_ptr, stride_vb,  # (B, K) fp32 gate values: written, or read
                  run_ptr,  # (B, K) int8 blocks to compute (LOGITS=False only)
                  pairs_ptr, total_ptr,  # (B * K,) int32 pair list b * K + k; (1,) its length
                  active_ptr, computed_ptr, stride_cb,  # (B, ...) int64 counts, += here
                  K, LOGITS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        b = tl.program_id(0)
        k = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,) blocks
        mask_k = k < K
        if LOGITS:  # binary units: on = logit > threshold, value 1
            logit = _row_dot(a_ptr + b.to(tl.int64) * stride_ab, w_ptr, k, mask_k, stride_wn,
                             D, 0, BLOCK_N, BLOCK_K)
            logit += tl.load(bias_ptr + k, mask=mask_k, other=0.0)
            on = (logit > tl.load(tau_ptr)) & mask_k
            tl.store(values_ptr + b * stride_vb + k, on.to(tl.float32), mask=mask_k)
            run = on
        else:
            value = tl.load(values_ptr + b * stride_vb + k, mask=mask_k, other=0.0)
            on = (value != 0.0) & mask_k
            run = (tl.load(run_ptr + b * K + k, mask=mask_k, other=0) != 0) & mask_k
        ones = run.to(tl.int32)
        count = tl.sum(ones, axis=0)
        base = tl.atomic_add(total_ptr, count)  # this tile's slots in the list
        rank = tl.cumsum(ones, axis=0) - ones  # (BN,) among the tile's pairs
        tl.store(pairs_ptr + base + rank, b * K + k, mask=run)
        tl.atomic_add(active_ptr + b * stride_cb, tl.sum(on.to(tl.int64), axis=0))
        tl.atomic_add(computed_ptr + b * stride_cb, count.to(tl.int64))

    @triton.jit
    def pair_gemv(x_ptr, stride_xb, w_ptr, stride_wn, bias_ptr, out_ptr, stride_ob,
                  values_ptr, stride_vb, pairs_ptr, total_ptr,
                  init_ptr, init_src_ptr, init_numel, init_width,  # consumer's out32 = bias
                  D, K, S, ACT: tl.constexpr, INIT: tl.constexpr, INIT_CHUNK: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        pid = tl.program_id(0)
        programs = tl.num_programs(0)
        if INIT:
            _fill_broadcast(init_ptr, init_src_ptr, init_numel, init_width, INIT_CHUNK)
        tiles_n = tl.cdiv(S, BLOCK_N)
        work = tl.load(total_ptr) * tiles_n
        for item in range(pid, work, programs):
            pair = tl.load(pairs_ptr + item // tiles_n)
            b = pair // K
            k = pair % K
            offs = (item % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,) within block
            mask_n = offs < S
            n = (k * S + offs).to(tl.int64)  # (BN,) output units
            h = _row_dot(x_ptr + b.to(tl.int64) * stride_xb, w_ptr, n, mask_n, stride_wn, D,
                         0, BLOCK_N, BLOCK_K)
            h = _activate(h + tl.load(bias_ptr + n, mask=mask_n, other=0.0), ACT)
            value = tl.load(values_ptr + b * stride_vb + k)
            h = tl.where(value != 0.0, h * value, 0.0)  # an off block adds 0, even inf or NaN
            tl.store(out_ptr + b.to(tl.int64) * stride_ob + n,
                     h.to(out_ptr.dtype.element_ty), mask=mask_n)

    @triton.jit
    def pair_read(h_ptr, stride_hb, w_ptr, out_ptr, stride_ob, pairs_ptr, total_ptr,
                  K_in, S_in, N,
                  # FINISH: the next (small) dense layer, by the last program to finish
                  wf_ptr, bf_ptr, final_ptr, stride_fb, C, B, done_ptr,
                  BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr, FINISH: tl.constexpr,
                  IN_ACT: tl.constexpr, ACT: tl.constexpr, BLOCK_C: tl.constexpr,
                  BLOCK_F: tl.constexpr, LANES: tl.constexpr):
        """w: Wc = W.T, (K_in * S_in, N) row-major: block j's rows are contiguous. With
        FINISH, final[b] = act(in_act(out[b]) @ Wf.T + bf) for every example, Wf (C, N)
        row-major: a read-out after this consumer costs no launch of its own."""
        tiles_n = tl.cdiv(N, BLOCK_N)
        work = tl.load(total_ptr) * tiles_n
        for item in range(tl.program_id(0), work, tl.num_programs(0)):
            pair = tl.load(pairs_ptr + item // tiles_n)
            b = (pair // K_in).to(tl.int64)
            j = pair % K_in
            n = (item % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,)
            mask_n = n < N
            acc = tl.zeros((BLOCK_R, BLOCK_N), dtype=tl.float32)
            for r0 in range(0, S_in, BLOCK_R):
                r = r0 + tl.arange(0, BLOCK_R)  # (BR,) units of block j
                mask_r = r < S_in
                d = (j * S_in + r).to(tl.int64)  # (BR,) input units
                hv = tl.load(h_ptr + b * stride_hb + d, mask=mask_r, other=0.0)
                w = tl.load(w_ptr + d[:, None] * N + n[None, :],
                            mask=mask_r[:, None] & mask_n[None, :], other=0.0)  # (BR, BN)
                acc += w.to(tl.float32) * hv.to(tl.float32)[:, None]
            tl.atomic_add(out_ptr + b * stride_ob + n, tl.sum(acc, axis=0), mask=mask_n,
                          sem="relaxed")
        if FINISH:  # noqa: SIM102 (a constexpr: `and` would run the counter's atomics anyway)
            if _last_program(done_ptr, LANES):
                c = tl.arange(0, BLOCK_C)
                mask_c = c < C
                for e in range(0, B):
                    acc_f = tl.zeros((BLOCK_C, BLOCK_F), dtype=tl.float32)
                    for d0 in range(0, N, BLOCK_F):
                        d = d0 + tl.arange(0, BLOCK_F)
                        mask_d = d < N
                        hv = tl.load(out_ptr + e * stride_ob + d, mask=mask_d, other=0.0,
                                     cache_modifier=".cg")
                        hv = tl.where(mask_d, _activate(hv, IN_ACT), 0.0)
                        w = tl.load(wf_ptr + c[:, None] * N + d[None, :],
                                    mask=mask_c[:, None] & mask_d[None, :], other=0.0)
                        acc_f += w.to(tl.float32) * hv[None, :]
                    y = tl.sum(acc_f, axis=1) + tl.load(bf_ptr + c, mask=mask_c, other=0.0)
                    tl.store(final_ptr + e * stride_fb + c,
                             _activate(y, ACT).to(final_ptr.dtype.element_ty), mask=mask_c)

    return SimpleNamespace(hidden_gate=hidden_gate, rows_gemv=rows_gemv, gate_gemv=gate_gemv,
                           pair_gemv=pair_gemv, pair_read=pair_read)


# ----------------------------------------------------------------------------------------
# Launchers: shapes in, grid launched. Tile widths are powers of two (tl.arange), clamped to
# the problem so that tiny test layers do not compile 2048-wide tiles.


def _fit(width: int, tile: int) -> int:
    return tk._pow2(width, 1, tile)


@functools.cache
def _programs(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count * PROGRAMS_PER_SM
    return 4


def rows(a, weight, bias, out, activation: str, in_activation: str = "linear") -> None:
    """out[b] = act(in_act(a[b]) @ weight.T + bias). a (B, D) any float dtype, unit stride;
    weight (N, D) row-major; bias (N,) fp32; out (B, N)."""
    batch, width = a.shape
    n_out = weight.shape[0]
    t = TILES["rows"]
    block_n, block_k = _fit(n_out, t["BLOCK_N"]), _fit(width, t["BLOCK_K"])
    kernels().rows_gemv[(batch, tk._cdiv(n_out, block_n))](
        a, a.stride(0), weight, weight.stride(0), bias, out, out.stride(0), width, n_out,
        IN_ACT=tk.ACTIVATION_CODES[in_activation], ACT=tk.ACTIVATION_CODES[activation],
        BLOCK_N=block_n, BLOCK_K=block_k, num_warps=t["num_warps"])


def gates(values, pairs, total, active, computed, a=None, weight=None, bias=None, tau=None,
          run=None) -> None:
    """The gate stage of one gated layer (see the module docstring). Either binary gates from
    logits (a (B, D) fp32 input, weight (K, D) fp32, bias (K,) fp32, tau a 1-element fp32
    threshold), written into values (B, K) fp32; or (run given) values already holding the
    gate values and run (B, K) int8 the blocks to compute. pairs (B*K,) int32 and total (1,)
    int32 are appended to; active / computed (B,) int64 views (same stride) are added to."""
    batch, blocks = values.shape
    t = TILES["gate"]
    block_n = _fit(blocks, t["BLOCK_N"])
    logits = run is None
    if logits:
        args = (a, a.stride(0), weight, weight.stride(0), bias, tau, a.shape[1])
    else:  # no logits: the pointers are never read
        args = (values, 0, values, 0, values, values, 1)
    kernels().gate_gemv[(batch, tk._cdiv(blocks, block_n))](
        *args, values, values.stride(0), values if logits else run, pairs, total, active,
        computed, active.stride(0), blocks, LOGITS=logits, BLOCK_N=block_n,
        BLOCK_K=_fit(args[-1], t["BLOCK_K"]), num_warps=t["num_warps"])


def pair_blocks(x, weight, bias, out, values, pairs, total, block_size: int, activation: str,
                init=None, init_src=None) -> None:
    """out[b, block k] = act(x[b] @ W_k.T + b_k) * values[b, k] for each listed pair (b, k);
    with init: init (B, N) fp32 := init_src (N,) broadcast, in the same launch."""
    width = x.shape[1]
    blocks = values.shape[1]
    t = TILES["pair"]
    block_n, block_k = _fit(block_size, t["BLOCK_N"]), _fit(width, t["BLOCK_K"])
    has_init = init is not None
    work_max = pairs.numel() * tk._cdiv(block_size, block_n)
    grid = (max(1, min(work_max, _programs(x.device))),)
    kernels().pair_gemv[grid](
        x, x.stride(0), weight, weight.stride(0), bias, out, out.stride(0),
        values, values.stride(0), pairs, total,
        init if has_init else out, init_src if has_init else bias,
        init.numel() if has_init else 0, init_src.numel() if has_init else 1,
        width, blocks, block_size, ACT=tk.ACTIVATION_CODES[activation], INIT=has_init,
        INIT_CHUNK=INIT_CHUNK, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=t["num_warps"])


def pair_reads(h, weight_by_input, out32, pairs, total, in_blocks: int, in_block_size: int,
               finish=None) -> None:
    """out32[b] += h[b, block j] @ Wc[block j] for each listed pair (b, j). h (B, K_in*S_in);
    weight_by_input (K_in*S_in, N) row-major; out32 (B, N) fp32. finish: (weight (C, N),
    bias (C,) fp32, out (B, C), in_activation, activation, done) to compute the next small
    dense layer from out32 in the same launch (`can_finish`)."""
    width = weight_by_input.shape[1]
    t = TILES["read"]
    block_r, block_n = _fit(in_block_size, t["BLOCK_R"]), _fit(width, t["BLOCK_N"])
    work_max = pairs.numel() * tk._cdiv(width, block_n)
    grid = (max(1, min(work_max, _programs(h.device))),)
    if finish is None:
        weight_f, bias_f, final, in_act, act, done = out32, out32, out32, "linear", "linear", \
            total
    else:
        weight_f, bias_f, final, in_act, act, done = finish
    classes = weight_f.shape[0] if finish is not None else 1
    kernels().pair_read[grid](
        h, h.stride(0), weight_by_input, out32, out32.stride(0), pairs, total, in_blocks,
        in_block_size, width, weight_f, bias_f, final, final.stride(0), classes, h.shape[0],
        done, BLOCK_R=block_r, BLOCK_N=block_n, FINISH=finish is not None,
        IN_ACT=tk.ACTIVATION_CODES[in_act], ACT=tk.ACTIVATION_CODES[act],
        BLOCK_C=_fit(classes, 1 << 30), BLOCK_F=_fit(width, FINISH_CHUNK),
        LANES=32 * t["num_warps"], num_warps=t["num_warps"])


def can_finish(classes: int, width: int) -> bool:
    """Whether a dense layer (classes, width) is small enough for one program to compute
    at the end of the consumer's launch (a read-out, typically)."""
    return tk._pow2(classes, 1, 1 << 30) * width <= FINISH_MAX_WEIGHTS


def can_fuse_gater(blocks: int, hidden: int) -> bool:
    """Whether one program can hold the gater's (K, M) output weights (`hidden_gate`)."""
    return hidden > 0 and tk._pow2(blocks, 1, 1 << 30) * tk._pow2(hidden, 1, 1 << 30) <= \
        FUSED_GATER_MAX_WEIGHTS


def hidden_gates(x, hidden, out, tau, values, pairs, total, active, computed, done) -> None:
    """A gater with a hidden layer and binary units, in one launch (`hidden_gate`): hidden
    and out are the (weight, bias) fp32 pairs of its two layers; the rest as for `gates`,
    except that the counts and the list's length are stored, not added (no zeroing)."""
    batch, width = x.shape
    units = hidden[0].shape[0]
    blocks = values.shape[1]
    t = TILES["rows"]
    block_n, block_k = _fit(units, t["BLOCK_N"]), _fit(width, t["BLOCK_K"])
    hid = torch.empty(batch, units, dtype=torch.float32, device=x.device)
    kernels().hidden_gate[(batch * tk._cdiv(units, block_n),)](
        x, x.stride(0), hidden[0], hidden[1], hid, units, width, out[0], out[1], tau,
        blocks, batch, values, pairs, total, active, computed, active.stride(0), done,
        LANES=32 * t["num_warps"], BLOCK_N=block_n, BLOCK_K=block_k,
        BLOCK_G=_fit(blocks, 1 << 30), BLOCK_H=_fit(units, 1 << 30),
        num_warps=t["num_warps"])
