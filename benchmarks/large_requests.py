"""What running large requests in parts costs them, and what it buys everyone else.

    python -m benchmarks.large_requests --json docs/performance/large-requests.json

The server runs a request of more than `--max-forward-examples` examples as several forwards,
with the requests that arrived meanwhile run between them (`service.batching`). This starts
`sparsegate-serve` with `benchmarks.hostile_bodies`' model (the paper preset at 64 inputs, 10 %
of blocks) once per `--limits` value in turn, over `--runs` rounds (a limit of at least
`--max-instances` runs the largest requests whole), and measures for `--seconds` each, with the
clients of `benchmarks.hostile_load`:

- `unloaded`: a one-example client and a health prober alone (the small client's p50);
- `alone`: one client sending the largest valid request (`--max-instances` full examples, v1
  JSON) back to back, nothing else: its requests per second, what the parts cost it;
- `shared`: the same large client beside the one-example client and the prober: the small
  client's p50 (and its ratio to its unloaded p50 in the same round) and the large client's
  requests per second.

Prints one row per limit with each figure's range over the runs, and writes every round as
JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .hostile_bodies import INPUT_SIZE, MODEL, build_repository
from .hostile_load import attacks, measure
from .run_record import write_rows_if_asked
from .server_process import ServerProcess


def largest_valid(max_body_bytes: int, max_instances: int):
    """`benchmarks.hostile_load`'s largest valid request for these limits."""
    found = [a for a in attacks(MODEL, INPUT_SIZE, max_body_bytes, max_instances)
             if a.name == "largest valid"]
    if not found:
        raise SystemExit(f"{max_instances} full examples do not fit a body of "
                         f"{max_body_bytes} bytes: raise --max-body-bytes")
    return found[0]


def round_at(root: str, limit: int, large, args: argparse.Namespace) -> dict:
    server_args = ["--max-body-bytes", str(args.max_body_bytes),
                   "--max-instances", str(args.max_instances),
                   "--max-forward-examples", str(limit),
                   "--max-batch-size", str(min(64, limit))]
    with ServerProcess(root, *server_args) as server:
        port, pid = server.port, server.process.pid
        measure(port, MODEL, INPUT_SIZE, 1.0)  # warm-up
        unloaded = measure(port, MODEL, INPUT_SIZE, args.seconds, server_pid=pid)
        alone = measure(port, MODEL, INPUT_SIZE, args.seconds, large, pid, clients=False)
        shared = measure(port, MODEL, INPUT_SIZE, args.seconds, large, pid)
    return {"max_forward_examples": limit, "max_instances": args.max_instances,
            "unloaded_p50_ms": unloaded["infer_p50_ms"],
            "alone_large_per_s": alone["attack_answers"].get("200", 0) / args.seconds,
            "shared_large_per_s": shared["attack_answers"].get("200", 0) / args.seconds,
            "shared_small_p50_ms": shared["infer_p50_ms"],
            "shared_small_p99_ms": shared["infer_p99_ms"],
            "shared_small_p50_ratio": shared["infer_p50_ms"] / unloaded["infer_p50_ms"],
            "shared_health_p99_ms": shared["health_p99_ms"],
            "refused": {status: count for phase in (alone, shared)
                        for status, count in phase["attack_answers"].items()
                        if status != "200"}}


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    large = largest_valid(args.max_body_bytes, args.max_instances)
    with tempfile.TemporaryDirectory(prefix="sparsegate-large-") as root:
        build_repository(Path(root))
        for run_index in range(args.runs):
            for limit in args.limits:
                print(f"run {run_index + 1}, --max-forward-examples {limit} ...", flush=True)
                rows.append({"run": run_index + 1, **round_at(root, limit, large, args)})
    return rows


def spread(values: list[float], digits: int) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if round(low, digits) == round(high, digits) else \
        f"{low:.{digits}f}-{high:.{digits}f}"


def show(rows: list[dict]) -> None:
    print(f"{'limit':>6} {'alone, large/s':>15} {'shared, large/s':>16} "
          f"{'small p50 ms':>13} {'x unloaded':>11} {'small p99 ms':>13}")
    for limit in dict.fromkeys(row["max_forward_examples"] for row in rows):
        mine = [row for row in rows if row["max_forward_examples"] == limit]
        print(f"{limit:>6} {spread([r['alone_large_per_s'] for r in mine], 1):>15} "
              f"{spread([r['shared_large_per_s'] for r in mine], 1):>16} "
              f"{spread([r['shared_small_p50_ms'] for r in mine], 1):>13} "
              f"{spread([r['shared_small_p50_ratio'] for r in mine], 2):>11} "
              f"{spread([r['shared_small_p99_ms'] for r in mine], 1):>13}")
    if any(row["refused"] for row in rows):
        print("some large requests were not answered 200: see the JSON's `refused`")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.large_requests",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limits", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1024, 256, 64],
                        help="--max-forward-examples values, comma-separated (default "
                             "1024,256,64)")
    parser.add_argument("--runs", type=int, default=2, help="rounds over the limits (default 2)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase (default 5)")
    parser.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024,
                        help="the server's body limit (default 8 MiB)")
    parser.add_argument("--max-instances", type=int, default=1024,
                        help="the server's examples per request, and the large client's "
                             "(default 1024)")
    parser.add_argument("--json", type=Path, help="write the rounds here")
    args = parser.parse_args(argv)
    if not args.limits or min(args.limits) < 1 or args.runs < 1:
        parser.error("--limits must be positive numbers and --runs at least 1")
    rows = run(args)
    show(rows)
    write_rows_if_asked(args.json, rows, seconds=args.seconds,
                        max_body_bytes=args.max_body_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
