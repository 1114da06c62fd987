"""What each onnxruntime thread setting of the all-on route costs the forwards that follow it.

    python -m benchmarks.all_on_sessions --json docs/performance/all-on-sessions.json

A batch with every gate on may run as one onnxruntime run of the dense network
(`models.skip.all_on_graph`). Its session's threads either wait without spinning (`quiet`),
spin between runs (`spinning`, onnxruntime's default), or spin within a run and stop at its end
(`spinning, stopped after each run`: `session.force_spinning_stop`). For the layer of
`benchmarks.cases` with every gate on, at `--batch`, in `--rounds` rounds, each setting in turn:
the dense run `--calls` times back to back (its median), then the C kernels' forward of the same
batch `--after` times right after it (each one's time): what traffic that leaves the all-on
route pays while the all-on session's threads still hold the cores. Last, one more dense run
and `--idle-ms` of sleep, and the process's CPU time over that sleep (`idle_cpu_ms`): how long
the setting's threads keep a core busy once the traffic stops.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from models.skip.all_on_graph import THREAD_SETTINGS

from .cases import batch_input, layer_model, set_density
from .run_record import write_rows_if_asked
from .timing import clock_calls

# The third is the route's own setting, so the benchmark times what the engine runs.
SETTINGS = {"quiet": {"session.intra_op.allow_spinning": "0"},
            "spinning": {"session.intra_op.allow_spinning": "1"},
            "spinning, stopped after each run": THREAD_SETTINGS}


def idle_cpu_ms(run_once, idle_s: float) -> float:
    """The process's CPU milliseconds over `idle_s` of sleep right after `run_once()`."""
    run_once()
    start = time.process_time()
    time.sleep(idle_s)
    return (time.process_time() - start) * 1e3


def run(batch: int, rounds: int, calls: int, after: int, seed: int,
        idle_ms: float = 100.0) -> list[dict]:
    from models.skip.cpu import SkipNetwork, _AllOn
    from models.skip.onnx_export import INPUT_NAME, export_all_on_onnx, ort_session

    torch.manual_seed(seed)
    model = layer_model()
    x = batch_input(model, batch, seed)
    set_density(model, x, 1.0)
    engine = SkipNetwork(model)
    x = x.numpy()
    data = export_all_on_onnx(model).SerializeToString()
    sessions = {name: ort_session(data, torch.get_num_threads(), entries)
                for name, entries in SETTINGS.items()}

    def kernels():
        return engine._layers(x, False, _AllOn(dense=False))

    rows = []
    for index in range(rounds):
        for name, graph in sessions.items():
            def dense_run(g=graph):
                return g.run(None, {INPUT_NAME: x})

            dense = clock_calls(dense_run, calls)
            following = clock_calls(kernels, after)
            clock_calls(kernels, calls)  # the kernels' own steady run, then the idle spell
            idle = idle_cpu_ms(dense_run, idle_ms / 1e3)
            rows.append({"round": index + 1, "setting": name, "batch": batch,
                         "dense_ms": statistics.median(dense[calls // 4:]),
                         "kernels_after_ms": following, "idle_ms": idle_ms,
                         "idle_cpu_ms": idle})
    return rows


def show(rows: list[dict]) -> None:
    print(f"{'setting':<34} {'dense ms':>12} {'kernels right after, ms (each forward)':>40} "
          f"{'CPU ms while idle':>18}")
    for name in SETTINGS:
        mine = [row for row in rows if row["setting"] == name]
        dense = [row["dense_ms"] for row in mine]
        after = [value for row in mine for value in row["kernels_after_ms"]]
        idle = [row["idle_cpu_ms"] for row in mine]
        print(f"{name:<34} {min(dense):>5.2f}-{max(dense):<6.2f} "
              f"{min(after):>19.2f}-{max(after):<20.2f} {min(idle):>8.1f}-{max(idle):.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.all_on_sessions",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20, help="dense runs back to back")
    parser.add_argument("--after", type=int, default=4, help="kernel forwards right after")
    parser.add_argument("--idle-ms", type=float, default=100.0,
                        help="the sleep after one more dense run, over which the process's CPU "
                             "time is read")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if min(args.batch, args.rounds, args.calls, args.after) < 1:
        parser.error("--batch, --rounds, --calls and --after must be at least 1")
    if not args.idle_ms >= 0:
        parser.error("--idle-ms must be >= 0")
    rows = run(args.batch, args.rounds, args.calls, args.after, args.seed, args.idle_ms)
    show(rows)
    write_rows_if_asked(args.json, rows, batch=args.batch, calls=args.calls, after=args.after,
                        idle_ms=args.idle_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
