"""Choose the small-batch kernels' tile shapes (`models.skip.triton_gemv.TILES`) on a GPU.

    python -m benchmarks.cuda_tune --json runs/bench/tune.json

On the benchmark layer (`benchmarks.cuda_cases`: 4096 -> 128 x 128 -> 4096, bf16) at the given
batch and density, each candidate is a whole forward captured as a CUDA graph and replayed
(median of `--repeats` replays after warm-up, synchronised), checked against the eager fp32
reference first. The search is coordinate-wise: each kernel's candidates are tried with the
best found so far for the others, in the order the table lists them. The dense bf16 forward
of the same network, also as a graph, is timed in the same run for the ratio. The winner is
printed; copy it into TILES (with the machine it was measured on).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from benchmarks.cases import set_density
from benchmarks.cuda_cases import _graph, dense_forward, median_ms, relative_error
from benchmarks.skip import layer_model
from models.skip import triton_gemv as tg
from models.skip.cuda import CudaGraphSkipNetwork, TritonSkipNetwork

CANDIDATES = {
    "pair": [(4, 2048, 8), (2, 2048, 8), (1, 4096, 8), (2, 4096, 8), (8, 1024, 8),
             (4, 1024, 4), (8, 512, 4)],
    "read": [(128, 64, 4), (128, 128, 8), (128, 32, 4), (64, 128, 4), (32, 128, 4),
             (128, 256, 8)],
    "rows": [(2, 1024, 4), (1, 2048, 4), (1, 4096, 8), (4, 1024, 4), (4, 512, 4)],
    "gate": [(32, 64, 4), (16, 64, 4), (64, 64, 4), (128, 64, 8)],
}
FIELDS = {"pair": ("BLOCK_N", "BLOCK_K"), "read": ("BLOCK_R", "BLOCK_N"),
          "rows": ("BLOCK_N", "BLOCK_K"), "gate": ("BLOCK_N", "BLOCK_K")}
PROGRAMS = (2, 4, 8)


def _tiles(kernel: str, candidate: tuple[int, int, int]) -> dict:
    first, second = FIELDS[kernel]
    return {first: candidate[0], second: candidate[1], "num_warps": candidate[2]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cuda_tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.cuda_tune needs a CUDA device")
    torch.manual_seed(0)
    model = layer_model(4096, 128, 128, 4096).cuda()
    x = torch.randn(args.batch, 4096, device="cuda")
    set_density(model, x, args.density)
    with torch.no_grad():
        want = model(x).logits
    dense = dense_forward(model, torch.bfloat16, x)
    dense_ms = median_ms(_graph(dense).replay, args.warmup, args.repeats, "cuda")

    def time_current() -> float:
        graphed = CudaGraphSkipNetwork(TritonSkipNetwork(model, torch.bfloat16),
                                       buckets=(args.batch,))
        captured = graphed.captured(args.batch)
        captured.input.copy_(x)
        captured.replay()
        error = relative_error(captured.output.logits, want)
        if error > 3e-2:
            raise AssertionError(f"{tg.TILES} {tg.PROGRAMS_PER_SM}: relative error {error:.3g}")
        return median_ms(captured.replay, args.warmup, args.repeats, "cuda")

    rows = []
    best_ms = time_current()
    print(f"dense graph {dense_ms:.4f} ms; defaults {best_ms:.4f} ms "
          f"({dense_ms / best_ms:.2f}x)", flush=True)
    for kernel, candidates in CANDIDATES.items():
        best = copy.deepcopy(tg.TILES[kernel])
        for candidate in candidates:
            tg.TILES[kernel] = _tiles(kernel, candidate)
            ms = time_current()
            rows.append({"kernel": kernel, "tiles": dict(tg.TILES[kernel]), "ms": ms,
                         "speedup": dense_ms / ms})
            print(f"{kernel:>5} {candidate!s:>18} {ms:9.4f} ms {dense_ms / ms:6.2f}x", flush=True)
            if ms < best_ms:
                best_ms, best = ms, dict(tg.TILES[kernel])
        tg.TILES[kernel] = best
    best_programs = tg.PROGRAMS_PER_SM
    for programs in PROGRAMS:
        tg.PROGRAMS_PER_SM = programs
        tg._programs.cache_clear()
        ms = time_current()
        rows.append({"kernel": "programs_per_sm", "value": programs, "ms": ms,
                     "speedup": dense_ms / ms})
        print(f"programs/SM {programs:>9} {ms:9.4f} ms {dense_ms / ms:6.2f}x", flush=True)
        if ms < best_ms:
            best_ms, best_programs = ms, programs
    print(f"best {best_ms:.4f} ms ({dense_ms / best_ms:.2f}x): TILES = {tg.TILES}, "
          f"PROGRAMS_PER_SM = {best_programs}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "device": torch.cuda.get_device_name(), "batch": args.batch,
            "density": args.density, "dense_ms": dense_ms, "best_ms": best_ms,
            "tiles": tg.TILES, "programs_per_sm": best_programs, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
