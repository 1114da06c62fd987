"""The CPU engine's forward right after another, after a pause, and after a pause it was told of.

    python -m benchmarks.forward_after_pause --json runs/bench/forward-after-pause.json

A server's forwards come after pauses: between one request and the next, and while a request's
body is read and decoded. The kernels' pool workers spin briefly after a product, then sleep
(models/skip/csrc/thread_pool.h); a forward after a longer pause wakes them as it starts, and
its first products run before they are awake. `SkipNetwork.expect_forward`, which the server
calls once a request's body is read, keeps them spinning until the forward instead.

For the `blocks` model (784 -> 2 gated layers of 64 blocks x 64 -> 10, random weights,
thresholds at `--density` of blocks, as `benchmarks.peer` serves it) at batches 1 and 32, on 16
inputs in turn, each forward timed alone: back to back; after a `--pause-ms` sleep; and after
the same sleep begun with `expect_forward` (the sleeps off the clock). Medians of `--repeats`
forwards per variant, the variants in alternating rounds (`benchmarks.timing`). Prints a table
and writes the rows as JSON.
"""

from __future__ import annotations

import itertools
import time

import torch

from models.gated_config import preset
from models.gated_network import GatedNetwork
from models.skip.cpu import SkipNetwork

from .cases import set_density
from .run_record import timing_parser, write_rows_if_asked
from .timing import median_ms

BATCHES = (1, 32)
INPUTS = 16
VARIANTS = ("back_to_back", "after_pause", "after_pause_expected")
# What the server gives expect_forward (service.inference.FORWARD_WITHIN_S).
EXPECTED_WITHIN_S = 0.005


def network(seed: int, density: float) -> tuple[SkipNetwork, torch.Tensor]:
    torch.manual_seed(seed)
    model = GatedNetwork(preset("blocks")).eval()
    x = torch.randn(INPUTS * max(BATCHES), 784, generator=torch.Generator().manual_seed(seed))
    set_density(model, x, density)
    skip = SkipNetwork(model)
    if skip.native is None:
        raise SystemExit("no C compiler built the kernels (see models/skip/c_kernels.py)")
    return skip, x


def rows(warmup: int, repeats: int, rounds: int, seed: int, density: float, pause_ms: float,
         batches=BATCHES) -> list[dict]:
    skip, x = network(seed, density)

    def pause(told: bool) -> None:
        if told:
            skip.expect_forward(EXPECTED_WITHIN_S)
        time.sleep(pause_ms / 1e3)

    out = []
    for batch in batches:
        inputs = itertools.cycle([x[i * batch:(i + 1) * batch] for i in range(INPUTS)])
        medians = median_ms(dict.fromkeys(VARIANTS, lambda: skip(next(inputs))),  # noqa: B023
                            warmup=warmup, repeats=repeats, rounds=rounds,
                            before={"after_pause": lambda: pause(False),
                                    "after_pause_expected": lambda: pause(True)})
        out.append({"batch": batch, "density": density, "pause_ms": pause_ms,
                    "threads": skip.threads, **{f"{v}_ms": m for v, m in medians.items()},
                    "pause_cost": medians["after_pause"] / medians["back_to_back"],
                    "expected_pause_cost": (medians["after_pause_expected"]
                                            / medians["back_to_back"])})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = timing_parser(__doc__, warmup=5, repeats=300)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--pause-ms", type=float, default=1.0)
    args = parser.parse_args(argv)
    results = rows(args.warmup, args.repeats, args.rounds, args.seed, args.density,
                   args.pause_ms)
    print(f"{'batch':>5} {'back to back ms':>15} {'after pause ms':>14} "
          f"{'pause expected ms':>17}")
    for r in results:
        print(f"{r['batch']:>5} {r['back_to_back_ms']:>15.3f} {r['after_pause_ms']:>14.3f} "
              f"{r['after_pause_expected_ms']:>17.3f}")
    write_rows_if_asked(args.json, results, warmup=args.warmup, repeats=args.repeats,
                   rounds=args.rounds)


if __name__ == "__main__":
    main()
