"""The portable skipping graph exported by another commit against this checkout's, in one
process.

    python -m benchmarks.onnx_checkout_ab --base 856f04e --json runs/bench/onnx-ab.json

As `benchmarks.checkout_ab` does for the CPU engine: the `models` package of `--base` is
imported under another name beside this checkout's, each case's network is built once and
exported by both (`export_onnx`, the graph `sparsegate-export` writes, with its default
paths), and the two graphs are timed in alternating rounds (`benchmarks.timing`) with the
network's dense graph (`export_dense_onnx`), each at 1 and 2 intra-op threads, so load
elsewhere on the machine lands on all of them. Each graph is reported at its faster setting;
each skipping graph's logits are first checked against torch. Cases, inputs and gates are those
of `benchmarks.onnx_cases`. Prints base, this checkout and the dense graph in milliseconds,
base / this and dense / this, and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from models.skip.onnx_export import export_dense_onnx, export_onnx

from .cases import LAYER_CASE, MODEL_CASE, batch_input, set_density
from .checkout_ab import import_base
from .onnx_cases import TOLERANCE, _model, _session
from .run_record import write_rows
from .timing import median_ms

THREADS = (1, 2)


def _checked(graph: bytes, feed: dict, want: np.ndarray, label: str) -> None:
    logits = _session(graph, 1).run(None, feed)[0]
    diff = float(np.abs(logits - want).max())
    if diff > TOLERANCE * max(1.0, float(np.abs(want).max())):
        raise RuntimeError(f"{label}: the graph's logits differ from torch's by {diff:.3g}")


def rows(base_export, cases, batches, densities, warmup: int, repeats: int, seed: int,
         progress=None) -> list[dict]:
    out = []
    for case in cases:
        model = _model(case, seed)
        dense = export_dense_onnx(model).SerializeToString()
        for batch in batches:
            x = batch_input(model, batch, seed)
            feed = {"x": x.numpy()}
            for density in densities:
                set_density(model, x, density)
                with torch.no_grad():
                    want = model(x).logits.numpy()
                graphs = {"base": base_export.export_onnx(model).SerializeToString(),
                          "this": export_onnx(model).SerializeToString(), "dense": dense}
                for name in ("base", "this"):
                    _checked(graphs[name], feed, want, f"{name}, {case}, batch {batch}")
                sessions = {(name, t): _session(graph, t) for name, graph in graphs.items()
                            for t in THREADS}
                timed = median_ms({key: (lambda s=s, f=feed: s.run(None, f))
                                   for key, s in sessions.items()},
                                  warmup=warmup, repeats=repeats,
                                  rounds=max(1, repeats // 20))
                best = {name: min((timed[(name, t)], t) for t in THREADS) for name in graphs}
                ms = {name: v[0] for name, v in best.items()}
                out.append({"case": case, "batch": batch, "density": density,
                            **{f"{name}_ms": ms[name] for name in graphs},
                            **{f"{name}_threads": best[name][1] for name in graphs},
                            "base_over_this": ms["base"] / ms["this"],
                            "dense_over_this": ms["dense"] / ms["this"],
                            "dense_over_base": ms["dense"] / ms["base"]})
                if progress:
                    progress(out[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.onnx_checkout_ab", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--cases", default="layer,model", help="layer, model (comma-separated)")
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--densities", default="0.1")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=200,
                        help="calls per graph, setting and cell, in rounds of 20")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    names = {"layer": LAYER_CASE, "model": MODEL_CASE}
    try:
        cases = [names[name] for name in args.cases.split(",")]
    except KeyError as error:
        raise SystemExit(f"unknown case {error}; use layer or model") from None
    batches = [int(b) for b in args.batches.split(",")]
    densities = [float(d) for d in args.densities.split(",")]
    print(f"{'case':>30} {'batch':>5} {'density':>7} {'base ms':>8} {'this ms':>8} "
          f"{'dense ms':>8} base/this dense/this")

    def show(r: dict) -> None:
        print(f"{r['case']:>30} {r['batch']:>5} {r['density']:>7.2f} {r['base_ms']:>8.3f} "
              f"{r['this_ms']:>8.3f} {r['dense_ms']:>8.3f} {r['base_over_this']:>9.2f} "
              f"{r['dense_over_this']:>10.2f}", flush=True)

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="sparsegate-onnx-ab-") as tmp:
        base_export = import_base(args.base, Path(tmp), "skip.onnx_export")
        results = rows(base_export, cases, batches, densities, args.warmup, args.repeats,
                       args.seed, show)
    if args.json:
        write_rows(args.json, results, base=args.base, warmup=args.warmup,
                   repeats=args.repeats, onnxruntime=ort.__version__)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
