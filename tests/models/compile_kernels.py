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

from models import triton_kernels as tk

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
    compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=TARGET,
                              options={"num_warps": 4})
    ttgir = compiled.asm["ttgir"]
    return {"kernel": fn.__name__, **constexprs, "shared": compiled.metadata.shared,
            "pipelined": "async_copy_global_to_local" in ttgir, "wgmma": "warp_group_dot" in ttgir}


def variants(dtype: torch.dtype):
    k = tk.kernels()
    p = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32"}[dtype]
    precision = tk._precision(dtype)
    yield k.gather_gemv, {"x_ptr": p, "w_ptr": p, "bias_ptr": "*fp32", "out_ptr": p,
                          "run_ptr": "*i8", "gate_ptr": "*fp32", "in_idx_ptr": "*i8",
                          "in_cnt_ptr": "*i8"}, {
        "ACT": 1, "GATED": True, "SPARSE_IN": False, "BLOCK_N": 8, "BLOCK_K": 512}
    yield k.gather_gemv, {"x_ptr": p, "w_ptr": p, "bias_ptr": "*fp32", "out_ptr": "*fp32",
                          "run_ptr": "*i32", "gate_ptr": "*fp32", "in_idx_ptr": "*i32",
                          "in_cnt_ptr": "*i32"}, {
        "ACT": 2, "GATED": False, "SPARSE_IN": True, "BLOCK_N": 32, "BLOCK_K": 128}
    grouped = {"x_ptr": p, "w_ptr": p, "bias_ptr": "*fp32", "out_ptr": p, "rows_ptr": "*i32",
               "tile_block_ptr": "*i32", "num_tiles_ptr": "*i32", "gate_ptr": "*fp32"}
    for block_m in (16, 32, 64):  # tile sizes as tk.grouped_blocks picks them for S = 128
        yield k.grouped_gemm, grouped, {"ACT": 3, "GATED": True, "PRECISION": precision,
                                        "BLOCK_M": block_m, "BLOCK_N": 64 if block_m == 16
                                        else 128, "BLOCK_K": 64}
    yield k.grouped_gemm, {**grouped, "out_ptr": "*fp32"}, {
        "ACT": 0, "GATED": False, "PRECISION": precision, "BLOCK_M": 64, "BLOCK_N": 128,
        "BLOCK_K": 64}
    for block_m in (16, 64):
        yield k.scatter_gemm, {"h_ptr": p, "w_ptr": p, "out_ptr": "*fp32", "rows_ptr": "*i32",
                               "tile_block_ptr": "*i32", "num_tiles_ptr": "*i32"}, {
            "PRECISION": precision, "BLOCK_M": block_m, "BLOCK_N": 128, "BLOCK_K": 64}


def main() -> int:
    dtypes = [torch.bfloat16, torch.float32] if "--all" in sys.argv else [torch.bfloat16]
    for dtype in dtypes:
        for fn, pointers, constexprs in variants(dtype):
            print(compile_variant(fn, pointers, constexprs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
