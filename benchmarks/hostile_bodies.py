"""Does one client sending pathological bodies slow down everyone else?

    python -m benchmarks.hostile_bodies --json docs/performance/hostile-bodies.json

Starts `sparsegate-serve --model-repository <tmp>` (the `paper` preset at 64 inputs, random
weights, thresholds at 10 % density) on loopback and measures, for `--seconds` per phase, a
health prober and a well-behaved inference client, first alone ("unloaded"), then while one
attacker sends one kind of pathological body back to back, each just under the body limit
(`benchmarks.hostile_load` has the clients and the attacks).

The bounds the service promises under attack: health p99 within 100 ms, and the inference
client's p50 within 2x its unloaded value. Exit status 1 when a phase breaks them. `cores` is
the server's CPU use during the phase (cores busy on average).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from models.gated_artifact import save_gated_network
from models.gated_config import preset
from models.gated_network import GatedNetwork

from .cases import set_density
from .hostile_load import HEALTH_P99_BOUND_MS, INFER_P50_BOUND_RATIO, attacks, judge, measure
from .run_record import write_rows
from .server_process import ServerProcess

MODEL = "paper-64"
INPUT_SIZE = 64


def build_repository(root: Path, seed: int = 0) -> None:
    torch.manual_seed(seed)
    model = GatedNetwork(preset("paper", input_size=INPUT_SIZE)).eval()
    set_density(model, torch.rand(512, INPUT_SIZE), 0.1)
    save_gated_network(model, root, MODEL, 1)


def run(args: argparse.Namespace) -> list[dict]:
    names = [a.name for a in attacks(MODEL, INPUT_SIZE, args.max_body_bytes, args.max_instances)]
    if unknown := sorted(set(args.phases or ()) - set(names)):
        raise SystemExit(f"no attack named {', '.join(map(repr, unknown))}: the attacks are "
                         f"{', '.join(map(repr, names))}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sparsegate-hostile-") as tmp:
        build_repository(Path(tmp))
        server_args = ["--max-body-bytes", str(args.max_body_bytes),
                       "--max-instances", str(args.max_instances),
                       "--max-forward-examples", str(args.max_forward_examples)]
        with ServerProcess(tmp, *server_args) as server:
            pid = server.process.pid
            measure(server.port, MODEL, INPUT_SIZE, 1.0)  # warm-up
            print("unloaded ...", flush=True)
            rows.append(measure(server.port, MODEL, INPUT_SIZE, args.seconds, server_pid=pid))
            for attack in attacks(MODEL, INPUT_SIZE, args.max_body_bytes, args.max_instances):
                if args.phases and attack.name not in args.phases:
                    continue
                print(f"{attack.name} ...", flush=True)
                rows.append(measure(server.port, MODEL, INPUT_SIZE, args.seconds, attack, pid))
    judge(rows)
    return rows


def show(rows: list[dict]) -> None:
    print(f"{'phase':<20} {'health p50':>10} {'p99':>8} {'max':>8} {'infer p50':>10} "
          f"{'p99':>8} {'x unl.':>7} {'attacks':>8} {'cores':>6}  ok")
    for row in rows:
        answered = sum(row["attack_answers"].values())
        verdict = "yes" if row["within_bounds"] else "NO"
        if not row["bounded"]:
            verdict += " (health only)"
        print(f"{row['phase']:<20} {row['health_p50_ms']:>10.1f} {row['health_p99_ms']:>8.1f} "
              f"{row['health_max_ms']:>8.1f} {row['infer_p50_ms']:>10.1f} "
              f"{row['infer_p99_ms']:>8.1f} {row['infer_p50_ratio']:>7.2f} {answered:>8d} "
              f"{row['server_cores_busy']:>6.2f}  {verdict}")
    print(f"(ms; bounds: health p99 <= {HEALTH_P99_BOUND_MS:.0f} ms, inference p50 <= "
          f"{INFER_P50_BOUND_RATIO:.0f}x unloaded; attacks: attacker requests sent)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile_bodies",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase (default 5)")
    parser.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024,
                        help="the server's body limit; attack bodies fill it (default 8 MiB)")
    parser.add_argument("--max-instances", type=int, default=1024,
                        help="the server's examples per request (default 1024)")
    parser.add_argument("--max-forward-examples", type=int, default=256,
                        help="the server's examples per forward (default 256, the server's)")
    parser.add_argument("--phases", nargs="+", metavar="PHASE",
                        help="only these attacks, by name, e.g. 'largest valid' (default: all; "
                             "the unloaded phase always runs)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    rows = run(args)
    show(rows)
    if args.json:
        write_rows(args.json, rows, seconds=args.seconds, max_body_bytes=args.max_body_bytes,
                   max_instances=args.max_instances,
                   max_forward_examples=args.max_forward_examples)
        print(f"wrote {args.json}")
    return 0 if all(row["within_bounds"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
