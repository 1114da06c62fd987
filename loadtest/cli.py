"""`sparsegate-loadtest`: locust load tests of sparsegate servers.

`sweep`: latency and throughput against sparsity.

    sparsegate-loadtest sweep --model-repository model-repository --family blocks-st --prepare
    sparsegate-loadtest sweep --url http://lb:8080 --family blocks-st --users 1,8,32,64

Without --url it starts `sparsegate-serve` on the repository with the family's models; with
--url it targets a running server or load balancer (the models must be loaded there).
`--prepare` trains `<family>` (the `blocks` preset on --data) if the repository lacks it and
writes the missing density variants (`sparsegate-variants`; needs sparsegate's train extra).
Writes sweep.csv, sweep.json, sweep.png and report.md into --out; `--report FILE` also writes
the report there (with the plot beside it).

`soak`: one model under steady load for a long time.

    sparsegate-loadtest soak --model-repository model-repository [--model blocks-digits-st]
    sparsegate-loadtest soak --url http://127.0.0.1:8000 --pid 12345 --model blocks-digits-st

Locust headless for --seconds (600) at --users (32) on one model (--model, else the
repository's or server's first), with the server's default batching, sampling the server's
resident memory every --sample-seconds. Passes (exit 0) with no failed request, RSS growing
less than 10 % after --warmup-seconds (60), and the last window's p99 latency within 20 % of
the first's (windows of --window-seconds, 60). With --url, memory is measured only for a local
--pid. Writes soak.json, soak.png, summary.md and locust's files into --out (default
runs/soak/<time>).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from . import report, soak, sweep


def _section(command: str) -> str:
    """The part of the module docstring about one subcommand, for its --help."""
    text = __doc__[__doc__.index(f"`{command}`:"):]
    return text.split("\n\n`", 1)[0]


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
    s = _command_parser(sub, "sweep", "latency and throughput against density",
                        "target this server or load balancer")
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
    _soak_parser(sub)
    args = p.parse_args(argv)
    if args.command == "soak":
        problems = _soak_plan(args).problems()
        if problems:
            p.error("; ".join(problems))
        if args.pid is not None and args.url is None:
            p.error("--pid is for --url (with --model-repository the server's PID is known)")
        return args
    if args.seconds <= 0 or args.rate <= 0 or args.rate_users < 1:
        p.error("--seconds and --rate must be > 0 and --rate-users >= 1")
    if args.prepare and args.url:
        p.error("--prepare needs --model-repository (it writes models there)")
    return args


def _command_parser(sub, name: str, summary: str, url_help: str) -> argparse.ArgumentParser:
    """A subcommand that targets either a server it starts on a repository or one at a URL."""
    s = sub.add_parser(name, help=summary, description=_section(name),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--model-repository", type=Path, help="start a server on this")
    where.add_argument("--url", help=url_help)
    return s


def _soak_parser(sub) -> None:
    s = _command_parser(sub, "soak", "one model under steady load for a long time",
                        "target this running server")
    s.add_argument("--model", help="default: the repository's (or server's) first model")
    s.add_argument("--users", type=int, default=32, help="closed-loop users (default 32)")
    s.add_argument("--seconds", type=float, default=600.0, help="of load (default 600)")
    s.add_argument("--warmup-seconds", type=float, default=60.0,
                   help="memory growth is counted from the end of this (default 60)")
    s.add_argument("--window-seconds", type=float, default=60.0,
                   help="latency percentiles per window; first against last (default 60)")
    s.add_argument("--sample-seconds", type=float, default=5.0,
                   help="between memory samples and progress lines (default 5)")
    s.add_argument("--protocol", choices=["v1", "v2", "both"], default="v1")
    s.add_argument("--pid", type=int, help="with --url: the local server process to measure")
    s.add_argument("--server-args", default="", help="extra sparsegate-serve flags, quoted")
    s.add_argument("--max-p99-ratio", type=float, default=soak.Limits().p99_ratio,
                   help="the last window's p99 over the first's, at most (default %(default)g)")
    s.add_argument("--max-rss-growth", type=float, default=soak.Limits().rss_growth,
                   help="memory growth after the warm-up, as a fraction, below "
                        "(default %(default)g)")
    s.add_argument("--out", type=Path, default=None, help="default runs/soak/<time>")


def _soak_plan(args: argparse.Namespace) -> soak.Plan:
    return soak.Plan(args.users, args.seconds, args.warmup_seconds, args.window_seconds,
                     args.sample_seconds, args.protocol)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return _soak(args) if args.command == "soak" else _sweep(args)


def _soak(args: argparse.Namespace) -> int:
    plan = _soak_plan(args)
    out = args.out or Path("runs/soak") / time.strftime("%Y%m%d-%H%M%S")

    def log(message: str) -> None:
        print(f"  {message}", flush=True)

    try:
        with contextlib.ExitStack() as stack:
            if args.model_repository is not None:
                model = soak.repository_model(args.model_repository, args.model)
                server, url, output = stack.enter_context(
                    soak.serve(args.model_repository, model, args.server_args.split()))
                pid, where = server.pid, (f"sparsegate-serve on loopback "
                                          f"({args.server_args or 'defaults'})")
            else:
                server, url, pid, where = None, args.url.rstrip("/"), args.pid, args.url
                model = soak.server_model(url, args.model)
            print(f"soak: {model} at {url}, {plan.users} users for {plan.seconds:g} s "
                  f"(warm-up {plan.warmup_s:g} s, windows of {plan.window_s:g} s)", flush=True)
            limits = soak.Limits(rss_growth=args.max_rss_growth, p99_ratio=args.max_p99_ratio)
            result = soak.run(plan, url, model, out, pid, log, limits)
            if server is not None and server.poll() is not None:
                # Its failures are in the verdicts already; this says why.
                print(f"sparsegate-serve exited with {server.returncode} during the soak:\n"
                      + "".join(output)[-3000:], file=sys.stderr)
    except (RuntimeError, OSError, ValueError, httpx.HTTPError,
            subprocess.SubprocessError) as error:
        print(f"sparsegate-loadtest: {error}", file=sys.stderr)
        return 1
    result["config"].update(server=where, machine=f"{platform.machine()} {_cpu()}")
    paths = soak.write_outputs(result, out)
    print((out / "summary.md").read_text())
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0 if result["passed"] else 1


def _sweep(args: argparse.Namespace) -> int:
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
