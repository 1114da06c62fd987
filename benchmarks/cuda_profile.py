"""Where the GPU skip path's time goes: per-kernel device time of one forward, by name.

    python -m benchmarks.cuda_profile --batches 1,256,4096 --density 0.1

For each batch, the benchmark layer (`benchmarks.cuda_cases`) at one density: torch's profiler
records `--calls` eager forwards of `TritonSkipNetwork` after a warm-up, and the table lists
each kernel's total device time per forward (the gater's GEMMs, the pair sorting, the Triton
kernels), with the dense baseline's two GEMMs beside it. This is what decides which kernel
to work on; `benchmarks.cuda_cases` is what the speed-ups are read from.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.cases import set_density
from benchmarks.cuda_cases import dense_forward
from benchmarks.skip import layer_model
from models.skip.cuda import TritonSkipNetwork


def kernel_times(fn, calls: int) -> list[tuple[str, float, int]]:
    """(kernel name, device µs per call, launches per call), slowest first."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    totals: dict[str, list[float]] = {}
    for event in prof.events():
        if event.device_type.name != "CUDA":
            continue
        entry = totals.setdefault(event.name, [0.0, 0])
        entry[0] += event.device_time
        entry[1] += 1
    return sorted(((name[:70], us / calls, count // calls) for name, (us, count)
                   in totals.items()), key=lambda row: -row[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cuda_profile",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,256,4096")
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.cuda_profile needs a CUDA device")
    torch.manual_seed(0)
    model = layer_model(4096, 128, 128, 4096).cuda()
    skip = TritonSkipNetwork(model, torch.bfloat16)
    for batch in (int(b) for b in args.batches.split(",")):
        x = torch.randn(batch, 4096, device="cuda")
        set_density(model, x, args.density)
        for label, fn in (("dense", dense_forward(model, torch.bfloat16, x)),
                          ("skip", lambda x=x: skip(x))):
            rows = kernel_times(fn, args.calls)
            total = sum(us for _, us, _ in rows)
            print(f"\n== batch {batch}, density {args.density}, {label}: "
                  f"{total:.1f} µs of kernels per forward")
            for name, us, launches in rows[:14]:
                print(f"{us:10.1f} µs {launches:3d}x  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
