"""Compile every Triton kernel variant the GPU path launches for an H100 (sm_90), without a
GPU: Triton's compiler and ptxas run on the CPU. Catches what the interpreter cannot (types,
layouts, `tl.dot` shapes) and reports whether each GEMM's loads are software-pipelined.

    python -m tests.models.compile_kernels   # must run without TRITON_INTERPRET=1

Argument divisibility is declared as Triton's launcher would specialise it at the issue's
sizes (pointers, strides and widths multiples of 16).
"""

import os
import sys

import torch

from models.skip import triton_gemv as tg
from models.skip import triton_kernels as tk

if os.environ.get("TRITON_INTERPRET") == "1":
    raise SystemExit("run without TRITON_INTERPRET=1: this checks the compiled kernels")

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

TARGET = GPUTarget("cuda", 90, 32)
UNDIVISIBLE = {"stride_gb", "stride_ib", "K", "pair"}  # gate strides are K = any number


def compile_variant(fn, pointers: dict[str, str], constexprs: dict) -> dict:
    names = fn.arg_names
    signature = {n: pointers.get(n, "constexpr" if n in constexprs else "i32") for n in names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
             if n not in constexprs and n not in UNDIVISIBLE and not n.startswith("run")}
    warps = constexprs.get("LANES", 128) // 32  # the launch's num_warps
    compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=TARGET,
                              options={"num_warps": warps})
    ttgir = compiled.asm["ttgir"]
    return {"kernel": fn.__name__, **constexprs, "shared": compiled.metadata.shared,
            "pipelined": "async_copy_global_to_local" in ttgir, "wgmma": "warp_group_dot" in ttgir}


def _shape(tile: dict) -> dict:
    """A TILES entry's constexprs (num_warps is a launch option, not an argument)."""
    return {name: value for name, value in tile.items() if name != "num_warps"}


def variants(dtype: torch.dtype):
    k = tk.kernels()
    p = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32"}[dtype]
    precision = tk._precision(dtype)
    g = tg.kernels()
    tiles = tg.TILES
    for in_p, out_p, act in (("*fp32", "*fp32", 2), (p, p, 1), ("*fp32", "*fp32", 0)):
        # the gater's hidden layer; a dense layer; the read-out after a consumer's fp32 row
        yield g.rows_gemv, {"a_ptr": in_p, "w_ptr": "*fp32" if act == 2 else p,
                            "bias_ptr": "*fp32", "out_ptr": out_p}, {
            "IN_ACT": 1 if act == 0 else 0, "ACT": act, **_shape(tiles["rows"])}
    counters = {"pairs_ptr": "*i32", "total_ptr": "*i32", "active_ptr": "*i64",
                "computed_ptr": "*i64", "values_ptr": "*fp32"}
    yield g.gate_gemv, {"a_ptr": "*fp32", "w_ptr": "*fp32", "bias_ptr": "*fp32",
                        "tau_ptr": "*fp32", "run_ptr": "*fp32", **counters}, {
        "LOGITS": True, **_shape(tiles["gate"])}
    yield g.gate_gemv, {"a_ptr": "*fp32", "w_ptr": "*fp32", "bias_ptr": "*fp32",
                        "tau_ptr": "*fp32", "run_ptr": "*i8", **counters}, {
        "LOGITS": False, **_shape(tiles["gate"])}
    yield g.pair_gemv, {"x_ptr": "*fp32", "w_ptr": p, "bias_ptr": "*fp32", "out_ptr": p,
                        "values_ptr": "*fp32", "pairs_ptr": "*i32", "total_ptr": "*i32",
                        "init_ptr": "*fp32", "init_src_ptr": "*fp32"}, {
        "ACT": 1, "INIT": True, "INIT_CHUNK": tg.INIT_CHUNK, **_shape(tiles["pair"])}
    lanes = 32 * tiles["read"]["num_warps"]
    yield g.pair_read, {"h_ptr": p, "w_ptr": p, "out_ptr": "*fp32", "pairs_ptr": "*i32",
                        "total_ptr": "*i32", "wf_ptr": p, "bf_ptr": "*fp32",
                        "final_ptr": "*fp32", "done_ptr": "*i32"}, {
        **_shape(tiles["read"]), "FINISH": True, "IN_ACT": 1, "ACT": 0, "BLOCK_C": 2,
        "BLOCK_F": tg.FINISH_CHUNK, "LANES": lanes}
    yield g.hidden_gate, {"x_ptr": "*fp32", "w1_ptr": "*fp32", "b1_ptr": "*fp32",
                          "hid_ptr": "*fp32", "w2_ptr": "*fp32", "b2_ptr": "*fp32",
                          "tau_ptr": "*fp32", "done_ptr": "*i32", **counters}, {
        "LANES": 32 * tiles["rows"]["num_warps"], **_shape(tiles["rows"]), "BLOCK_G": 128,
        "BLOCK_H": 64}
    lists = {"lists_ptr": "*i32", "counts_ptr": "*i32"}
    yield k.hidden_sums, {"x_ptr": "*fp32", "w_ptr": "*fp32", "out_ptr": "*fp32"}, {
        "PRECISION": "tf32x3", "BLOCK_M": 32, "BLOCK_D": 64, "BLOCK_H": 64}
    yield k.gate_rows, {"x_ptr": "*fp32", "w1_ptr": "*fp32", "b1_ptr": "*fp32",
                        "w2_ptr": "*fp32", "b2_ptr": "*fp32", "tau_ptr": "*fp32",
                        "values_ptr": "*fp32", "dense_ptr": "*i32", "dense_count_ptr": "*i32",
                        "active_ptr": "*i64", "computed_ptr": "*i64", "dense_from_k": "fp32",
                        **lists}, {
        "LOGITS": True, "PRECISION": "tf32x3", "BLOCK_M": 32, "BLOCK_H": 64, "BLOCK_G": 128}
    grouped = {"x_ptr": "*fp32", "w_ptr": p, "bias_ptr": "*fp32", "out_ptr": p,
               "dense_ptr": "*i32", "dense_count_ptr": "*i32", "gate_ptr": "*fp32",
               "init_ptr": "*fp32", "init_src_ptr": "*fp32", **lists}
    for block_m in (16, 32, 64):  # tile sizes as tk.grouped_blocks picks them for S = 128
        yield k.grouped_gemm, grouped, {
            "ACT": 3, "GATED": True, "PRECISION": precision, "INIT": True, "BLOCK_M": block_m,
            "BLOCK_N": 64 if block_m == 16 else 128, "BLOCK_K": 64, "BLOCK_KP": 128,
            "INIT_CHUNK": 1024}
    yield k.grouped_gemm, {**grouped, "x_ptr": p, "out_ptr": "*fp32"}, {
        "ACT": 0, "GATED": False, "PRECISION": precision, "INIT": False, "BLOCK_M": 64,
        "BLOCK_N": 128, "BLOCK_K": 64, "BLOCK_KP": 1, "INIT_CHUNK": 1024}
    for block_m in (16, 64):
        yield k.scatter_gemm, {"h_ptr": p, "w_ptr": p, "out_ptr": "*fp32", **lists}, {
            "PRECISION": precision, "BLOCK_M": block_m, "BLOCK_N": 128, "BLOCK_K": 64,
            "BLOCK_KP": 128}


def main() -> int:
    dtypes = [torch.bfloat16, torch.float32] if "--all" in sys.argv else [torch.bfloat16]
    for dtype in dtypes:
        for fn, pointers, constexprs in variants(dtype):
            print(compile_variant(fn, pointers, constexprs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
