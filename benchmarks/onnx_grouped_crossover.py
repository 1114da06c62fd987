"""Where the skipping graph's grouped branch beats its other paths, by batch size and density.

    python -m benchmarks.onnx_grouped_crossover --json runs/bench/onnx-grouped-crossover.json

The exported graph chooses per batch, in an If, between the union path (the batch's union of
blocks gathered, or the dense masked product past `DENSE_FALLBACK_FRACTION`) and the grouped
branch (each example's own blocks, sorted by block; `models/skip/onnx_grouped.py`), from
`GROUPED_FROM_BATCH` examples while at most `GROUPED_MAX_FRACTION` of the pairs are on
(`models/skip/routing.py`). This times, on the cases of `benchmarks.onnx_cases` (gates set the
same way), three graphs of the same network: the grouped branch forced
(`export_onnx(grouped=(1, 1.0))`), the graph without it (`grouped=None`), and the network
exported densely; each at its faster of 1 and 2 intra-op threads, medians in alternating
rounds (`benchmarks.timing`). Each skipping graph's logits are first checked against torch. Prints
which is fastest per cell and writes the rows as JSON.

With `--custom-ops` the grouped branch is the one on sparsegate's onnxruntime operators
(`export_onnx(custom_ops=True, grouped=(1, 1.0))`, which has no union path at all), over
batches and densities from 1 to every block (`OPERATORS_GROUPED_FROM_BATCH`,
`OPERATORS_GROUPED_MAX_FRACTION`):

    python -m benchmarks.onnx_grouped_crossover --custom-ops \
        --json runs/bench/onnx-operators-crossover.json
"""

from __future__ import annotations

from models.skip.onnx_export import export_dense_onnx, export_onnx

from .cases import LAYER_CASE, MODEL_CASE
from .onnx_cases import THREADS, _model, _session, check_logits, density_cells, fastest_ms
from .run_record import timing_parser, write_rows_if_asked

BATCHES = (8, 16, 32, 48, 64, 128)
DENSITIES = (0.05, 0.1, 0.2, 0.3, 0.4)
OPERATOR_BATCHES = (1, 8, 32, 64, 256)
OPERATOR_DENSITIES = (0.1, 0.3, 0.6, 1.0)
GRAPHS = ("grouped", "union", "dense")


def rows(warmup: int, repeats: int, seed: int, batches=BATCHES, densities=DENSITIES,
         cases=(LAYER_CASE, MODEL_CASE), custom_ops: bool = False) -> list[dict]:
    out = []
    for case in cases:
        model = _model(case, seed)
        dense = {t: _session(export_dense_onnx(model).SerializeToString(), t)
                 for t in THREADS}
        for batch, density, x, want in density_cells(model, batches, densities, seed):
            feed = {"x": x.numpy()}
            sessions = {("dense", t): s for t, s in dense.items()}
            for graph, grouped in (("grouped", (1, 1.0)), ("union", None)):
                data = export_onnx(model, grouped=grouped, custom_ops=custom_ops and
                                   grouped is not None).SerializeToString()
                for t in THREADS:
                    sessions[graph, t] = _session(data, t)
            for (graph, _), session in sessions.items():
                if graph == "dense":  # every block, no gater: not the gated logits
                    continue
                check_logits(session.run(None, feed)[0], want, f"{case}, the {graph} "
                             f"graph at batch {batch}, density {density}")
            fastest = fastest_ms(sessions, dict.fromkeys(GRAPHS, feed), warmup=warmup,
                                 repeats=repeats)
            best = {graph: fastest[graph][0] for graph in GRAPHS}
            row = {"case": case, "batch": batch, "density": density,
                   "grouped_on": "sparsegate operators" if custom_ops else "onnx",
                   **{f"{graph}_ms": best[graph] for graph in GRAPHS},
                   "fastest": min(GRAPHS, key=best.get)}
            out.append(row)
            print(f"{case:<30} {batch:>5} {density:>7.2f} "
                  + " ".join(f"{best[g]:>9.3f}" for g in GRAPHS) + f"  {row['fastest']}",
                  flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = timing_parser(__doc__, warmup=5, repeats=40)
    parser.add_argument("--case", action="append", choices=[LAYER_CASE, MODEL_CASE],
                        help="only this case (repeatable; default: both)")
    parser.add_argument("--custom-ops", action="store_true",
                        help="the grouped branch on sparsegate's onnxruntime operators")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    print(f"{'case':<30} {'batch':>5} {'density':>7} "
          + " ".join(f"{g + ' ms':>9}" for g in GRAPHS) + "  fastest")
    sizes = ({"batches": OPERATOR_BATCHES, "densities": OPERATOR_DENSITIES} if args.custom_ops
             else {})
    result = rows(args.warmup, args.repeats, args.seed,
                  cases=tuple(args.case or (LAYER_CASE, MODEL_CASE)),
                  custom_ops=args.custom_ops, **sizes)
    write_rows_if_asked(args.json, result, onnxruntime=ort.__version__)


if __name__ == "__main__":
    main()
