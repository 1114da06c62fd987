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

import sys
import tempfile
from pathlib import Path

from models.skip.onnx_export import export_dense_onnx, export_onnx

from .checkout_ab import ab_parser, cells, import_base
from .onnx_cases import THREADS, _model, _session, check_logits, density_cells, fastest_ms
from .run_record import write_rows


def rows(base_export, cases, batches, densities, warmup: int, repeats: int, seed: int,
         progress=None) -> list[dict]:
    out = []
    for case in cases:
        model = _model(case, seed)
        dense = export_dense_onnx(model).SerializeToString()
        for batch, density, x, want in density_cells(model, batches, densities, seed):
            feed = {"x": x.numpy()}
            graphs = {"base": base_export.export_onnx(model).SerializeToString(),
                      "this": export_onnx(model).SerializeToString(), "dense": dense}
            sessions = {(name, t): _session(graph, t) for name, graph in graphs.items()
                        for t in THREADS}
            for name in ("base", "this"):
                check_logits(sessions[(name, 1)].run(None, feed)[0], want,
                             f"{name}, {case}, batch {batch}")
            best = fastest_ms(sessions, dict.fromkeys(graphs, feed), warmup=warmup,
                              repeats=repeats, rounds=max(1, repeats // 20))
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
    args = ab_parser("python -m benchmarks.onnx_checkout_ab", __doc__, batches="64,256",
                     densities="0.1", warmup=10, repeats=200,
                     repeats_help="calls per graph, setting and cell, in rounds of 20"
                     ).parse_args(argv)
    cases, batches, densities = cells(args)
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
