"""`sparsegate-loadtest sweep`: latency and throughput against sparsity, with locust.

    sparsegate-loadtest sweep --model-repository model-repository --family blocks-st --prepare
    sparsegate-loadtest sweep --url http://lb:8080 --family blocks-st --users 1,8,32,64

Without --url it starts `sparsegate-serve` on the repository with the family's models; with
--url it targets a running server or load balancer (the models must be loaded there).
`--prepare` trains `<family>` (the `blocks` preset on --data) if the repository lacks it and
writes the missing density variants (`sparsegate-variants`; needs sparsegate's train extra).
Writes sweep.csv, sweep.json, sweep.png and report.md into --out; `--report FILE` also writes
the report there (with the plot beside it).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from pathlib import Path

from . import report, sweep


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}"
                                         ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"values must be >= 1, got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sparsegate-loadtest", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="latency and throughput against density",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--model-repository", type=Path, help="start a server on this")
    where.add_argument("--url", help="target this server or load balancer")
    s.add_argument("--family", required=True, help="models are <family>-d<percent>")
    s.add_argument("--densities", type=_ints, default=[100, 50, 25, 10, 5],
                   help="percent of blocks on (default 100,50,25,10,5)")
    s.add_argument("--users", type=_ints, default=[1, 8, 32], help="closed-loop user counts")
    s.add_argument("--rate", type=float, default=50.0, help="fixed arrival rate, req/s")
    s.add_argument("--rate-users", type=int, default=16, help="users sharing --rate")
    s.add_argument("--seconds", type=float, default=20.0, help="per cell")
    s.add_argument("--protocol", choices=["v1", "v2", "both"], default="v1")
    s.add_argument("--prepare", action="store_true", help="train and calibrate missing models")
    s.add_argument("--data", default="digits", help="data set for --prepare")
    s.add_argument("--epochs", type=int, default=5, help="training epochs for --prepare")
    s.add_argument("--server-args", default="", help="extra sparsegate-serve flags, quoted")
    s.add_argument("--out", type=Path, default=None, help="default runs/loadtest/<time>")
    s.add_argument("--report", type=Path, help="also write the Markdown report here")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0 or args.rate_users < 1:
        p.error("--seconds and --rate must be > 0 and --rate-users >= 1")
    if args.prepare and args.url:
        p.error("--prepare needs --model-repository (it writes models there)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = sweep.Sweep(args.family, args.densities, args.users, args.rate, args.rate_users,
                       args.seconds, args.protocol)
    out = args.out or Path("runs/loadtest") / time.strftime("%Y%m%d-%H%M%S")
    server = None
    try:
        if args.model_repository is not None:
            if args.prepare:
                sweep.prepare_models(args.model_repository, plan, args.data, args.epochs)
            models = [plan.model(d) for d in plan.densities]
            server, url = sweep.start_server(args.model_repository, models,
                                             args.server_args.split())
            where = f"sparsegate-serve on loopback ({args.server_args or 'defaults'})"
        else:
            url, where = args.url.rstrip("/"), args.url
        cells = len(plan.densities) * (len(plan.users) + 1)
        print(f"sweep: {cells} cells of {plan.seconds:g} s against {url}", flush=True)
        rows = sweep.run(plan, url, out, log=lambda m: print(f"  {m}", flush=True))
    except (RuntimeError, OSError) as error:
        print(f"sparsegate-loadtest: {error}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.terminate()
            server.wait(60)
    meta = {"machine": f"{platform.machine()} {_cpu()}", "server": where,
            "seconds": plan.seconds, "protocol": plan.protocol, "family": plan.family,
            "inputs": "examples of the model's data set (loadtest.data)"}
    csv_path, json_path = report.write_tables(rows, out, meta)
    png = report.plot(rows, out / "sweep.png")
    text = report.markdown(rows, meta, png.name)
    (out / "report.md").write_text(text)
    print(text)
    print(f"wrote {csv_path}, {json_path}, {png}, {out / 'report.md'}")
    if args.report:
        png_copy = args.report.with_suffix(".png")
        args.report.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, png_copy)
        report.update_file(args.report, report.markdown(rows, meta, png_copy.name))
        print(f"wrote {args.report} and {png_copy}")
    return 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
