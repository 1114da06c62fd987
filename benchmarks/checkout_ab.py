"""The CPU skipping forward of another commit against this checkout's, in one process.

    python -m benchmarks.checkout_ab --base 5f75da6 --json runs/bench/ab.json

On a shared machine the time of the same forward moves by a third from one minute to the next,
more than most changes to it, so two checkouts timed one after the other cannot be compared.
This runs both in one process instead: the `models` package of `--base` (from `git archive`)
is imported under another name beside this checkout's, each case's network is built once and
handed to both engines, and their forwards are timed in alternating rounds
(`benchmarks.timing`), so a burst of load elsewhere lands on both. Each cell first checks that
the two give the same logits. The C kernels of each side are built from its own sources.

Cases are those of `benchmarks.skip` (the layer and the `blocks` model; `--estimator` gives
their gates another estimator than straight-through's binary units), at `--batches` and
`--densities`, each engine timed on one input again and again or, with `--inputs N`, on N
inputs in turn (other blocks each call, read from further away). Prints a table (base and this
checkout in microseconds, base / this) and writes the rows as JSON, with the route each engine
chose for a batch whose gates are all on (`SkipNetwork.all_on_route`).

Each round first calls its engine off the clock for `--settle-ms` (SETTLE_MS by default): worker
threads an engine leaves spinning after its last call (onnxruntime's spin on for about 40 ms
unless told to stop, `python -m benchmarks.all_on_sessions`) would otherwise run into the other
engine's timed calls and charge one engine's spinning to the other.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

from .cases import LAYER_CASE, MODEL_CASE, batch_input, layer_model, set_density, whole_model
from .run_record import write_rows
from .timing import median_ms

# Milliseconds each round calls its engine off the clock first (see the module docstring).
SETTLE_MS = 60.0

ROOT = Path(__file__).resolve().parent.parent
BASE_PACKAGE = "sparsegate_base_models"


def import_base(revision: str, into: Path, module: str = "skip.cpu"):
    """The `models` package of `revision`, unpacked under `into` as BASE_PACKAGE; returns its
    `module` (default `skip.cpu`). Its modules import each other relatively, so they stay
    within it."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision,
                              "models"], capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {revision}: {archive.stderr.decode().strip()}")
    tar_path = into / "base.tar"
    tar_path.write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    (into / "models").rename(into / BASE_PACKAGE)
    sys.path.insert(0, str(into))
    for name in [n for n in sys.modules if n.split(".")[0] == BASE_PACKAGE]:
        del sys.modules[name]  # an earlier call's revision: import this one afresh
    return importlib.import_module(f"{BASE_PACKAGE}.{module}")


def rows(base_cpu, cases, batches, densities, warmup: int, repeats: int, seed: int,
         progress=None, inputs: int = 1, estimator: str = "st",
         settle_ms: float = SETTLE_MS) -> list[dict]:
    from models.skip.cpu import SkipNetwork

    out = []
    for case in cases:
        torch.manual_seed(seed)
        model = (layer_model(estimator=estimator) if case == LAYER_CASE
                 else whole_model(seed, estimator))
        for batch in batches:
            x = batch_input(model, batch, seed)
            # Other inputs turn on other blocks, whose weights a lone example then reads from
            # further away than the cache that one input's blocks stay in.
            xs = [x] + [batch_input(model, batch, seed, index=i) for i in range(1, inputs)]
            for density in densities:
                set_density(model, x, density)
                engines = {"base": base_cpu.SkipNetwork(model), "this": SkipNetwork(model)}
                torch.testing.assert_close(engines["base"](x).logits, engines["this"](x).logits,
                                           atol=1e-4, rtol=1e-4)
                turns = {name: itertools.cycle(xs) for name in engines}
                times = median_ms({name: (lambda e=engine, t=turns[name]: e(next(t)))
                                   for name, engine in engines.items()},
                                  warmup=warmup, repeats=repeats,
                                  rounds=max(1, repeats // 25), settle_s=settle_ms / 1e3)
                out.append({"case": case, "batch": batch, "density": density, "inputs": inputs,
                            "estimator": estimator, "settle_ms": settle_ms,
                            "base_us": times["base"] * 1e3, "this_us": times["this"] * 1e3,
                            "base_over_this": times["base"] / times["this"],
                            # where every gate is on, the route each engine chose (None: none
                            # measured, or a base without the method)
                            **{f"{name}_all_on_route": getattr(engine, "all_on_route",
                                                               lambda batch: None)(batch)
                               for name, engine in engines.items()}})
                if progress:
                    progress(out[-1])
    return out


def ab_parser(prog: str, description: str, *, batches: str, densities: str, warmup: int,
              repeats: int, repeats_help: str) -> argparse.ArgumentParser:
    """An A/B benchmark's command line: --base, the cells (--cases, --batches, --densities,
    read by `cells`), --warmup, --repeats, --seed and --json."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--cases", default="layer,model", help="layer, model (comma-separated)")
    parser.add_argument("--batches", default=batches)
    parser.add_argument("--densities", default=densities)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--repeats", type=int, default=repeats, help=repeats_help)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    return parser


def cells(args: argparse.Namespace) -> tuple[list[str], list[int], list[float]]:
    """The cases, batches and densities an `ab_parser` command line asks for."""
    names = {"layer": LAYER_CASE, "model": MODEL_CASE}
    try:
        cases = [names[name] for name in args.cases.split(",")]
    except KeyError as error:
        raise SystemExit(f"unknown case {error}; use layer or model") from None
    return (cases, [int(b) for b in args.batches.split(",")],
            [float(d) for d in args.densities.split(",")])


def main(argv: list[str] | None = None) -> None:
    parser = ab_parser("python -m benchmarks.checkout_ab", __doc__, batches="1,64",
                       densities="0.1,1.0", warmup=20, repeats=1000,
                       repeats_help="calls per engine and cell, in rounds of 25")
    parser.add_argument("--inputs", type=int, default=1,
                        help="inputs each engine is timed on in turn (1: one, again and again)")
    parser.add_argument("--estimator", default="st",
                        help="the networks' gate estimator (default st: binary units)")
    parser.add_argument("--settle-ms", type=float, default=SETTLE_MS,
                        help="how long each round first calls its engine off the clock "
                             f"(default {SETTLE_MS:g}; 0: none)")
    args = parser.parse_args(argv)
    if not args.settle_ms >= 0:
        parser.error("--settle-ms must be >= 0")
    cases, batches, densities = cells(args)
    print(f"{'case':>30} {'batch':>5} {'density':>7} {'base us':>9} {'this us':>9} base/this")

    def show(r: dict) -> None:
        print(f"{r['case']:>30} {r['batch']:>5} {r['density']:>7.2f} {r['base_us']:>9.1f} "
              f"{r['this_us']:>9.1f} {r['base_over_this']:>9.2f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="sparsegate-ab-") as tmp:
        base_cpu = import_base(args.base, Path(tmp))
        results = rows(base_cpu, cases, batches, densities, args.warmup, args.repeats,
                       args.seed, show, args.inputs, args.estimator, args.settle_ms)
    if args.json:
        write_rows(args.json, results, base=args.base, warmup=args.warmup,
                   repeats=args.repeats, inputs=args.inputs, estimator=args.estimator,
                   settle_ms=args.settle_ms)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
