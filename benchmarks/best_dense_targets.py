"""The CPU targets against the fastest dense implementation, read in every run and their median.

    python -m benchmarks.best_dense_targets docs/performance/skip-cpu-best-dense.json \
        docs/performance/skip-cpu-best-dense-repeat{1,2,3}.json --update docs/performance.md

Each run is a `benchmarks.skip --device cpu` JSON holding the torch rows' `speedup_vs_best`
(the skipping forward against the fastest dense implementation timed in that run) and the
onnxruntime rows' `speedup` (the skipping graph against its own dense graph; the
onnxruntime-ops rows' for the graph on sparsegate's operators, where the runs timed it).
Prints (or, with `--update`, writes between `<!-- skip-tables:best-dense-targets:begin -->` and
`<!-- skip-tables:best-dense-targets:end -->`, through `benchmarks.skip_report.update`) one row
per target: its figure in each run, their median, and whether it is met in every run, in some,
or in none. A run without the target's cell is a
mistake in the command, refused.

Runs made with `--block-weights bfloat16` (every torch row says so) are read against the same
lines, torch's targets only (the ONNX graph takes float32), into
`skip-tables:best-dense-targets-bfloat16`; runs of both precisions together are refused.
`--machine NAME` writes runs of another machine into a table of its own (`...-NAME`).
`--every-cell` prints instead, for every cell the runs timed, the same figure in each run and
its median: the README's table quotes those medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from .cases import LAYER_CASE, MODEL_CASE
from .skip_report import update

# (label, backend, case, batch, density, field, at least)
TARGETS = (
    ("layer, 10 %, batch 1", "torch", LAYER_CASE, 1, 0.1, "speedup_vs_best", 6.0),
    ("layer, 10 %, batch 64", "torch", LAYER_CASE, 64, 0.1, "speedup_vs_best", 5.0),
    ("layer, 10 %, batch 256", "torch", LAYER_CASE, 256, 0.1, "speedup_vs_best", 5.0),
    ("layer, 100 %, batch 1", "torch", LAYER_CASE, 1, 1.0, "speedup_vs_best", 0.9),
    ("layer, 100 %, batch 64", "torch", LAYER_CASE, 64, 1.0, "speedup_vs_best", 0.9),
    ("layer, 100 %, batch 256", "torch", LAYER_CASE, 256, 1.0, "speedup_vs_best", 0.9),
    ("`blocks` model, 10 %, batch 1", "torch", MODEL_CASE, 1, 0.1, "speedup_vs_best", 6.0),
    ("`blocks` model, 10 %, batch 64", "torch", MODEL_CASE, 64, 0.1, "speedup_vs_best", 6.0),
    ("onnxruntime's skipping graph, layer, 10 %, batch 64, against its dense graph",
     "onnxruntime", LAYER_CASE, 64, 0.1, "speedup", 3.0),
    ("onnxruntime's graph on sparsegate's operators, layer, 10 %, batch 64, against its "
     "dense graph", "onnxruntime-ops", LAYER_CASE, 64, 0.1, "speedup", 3.0),
)
NAME = "best-dense-targets"  # the document's section, as benchmarks.skip_report marks them
BEGIN, END = f"<!-- skip-tables:{NAME}:begin -->", f"<!-- skip-tables:{NAME}:end -->"


def precision_of(runs: list[dict]) -> str:
    """The main-path weights' precision every run's torch rows were timed in."""
    found = {row.get("block_weights", "float32") for run in runs for row in run["rows"]
             if row["backend"] == "torch"}
    if len(found) != 1:
        raise SystemExit(f"the runs mix main-path weight precisions {sorted(found)}: read each "
                         f"precision's runs on their own")
    return found.pop()


def figures(runs: list[dict]) -> list[tuple[str, float, list[float]]]:
    """(label, the line, each run's figure) per target (torch's only in bfloat16 runs; a
    backend no run timed is left out)."""
    out = []
    timed = {row["backend"] for run in runs for row in run["rows"]}
    backends = (("torch",) if precision_of(runs) == "bfloat16"
                else ("torch", "onnxruntime", "onnxruntime-ops"))
    for label, backend, case, batch, density, field, line in TARGETS:
        if backend not in backends or backend not in timed:
            continue
        out.append((label, line, cell_values(runs, backend, case, batch, density, field)))
    return out


def cell_values(runs: list[dict], backend: str, case: str, batch: int, density: float,
                field: str) -> list[float]:
    """`field` of the one (backend, case, batch, density) row of each run; a run without it
    is a mistake in the command, refused."""
    values = []
    for i, run in enumerate(runs):
        cell = [r for r in run["rows"] if (r["backend"], r["case"], r["batch"])
                == (backend, case, batch) and abs(r["density"] - density) < 1e-9]
        if len(cell) != 1 or field not in cell[0]:
            raise SystemExit(f"run {i + 1} has no {backend} {case} cell at batch {batch}, "
                             f"density {density:g} with {field}")
        values.append(float(cell[0][field]))
    return values


# The figure each backend's cells are read by: the one its targets are read by.
FIELDS = {backend: field for _, backend, _, _, _, field, _ in TARGETS}


def every_cell(runs: list[dict], names: list[str]) -> str:
    """A table of every (backend, case, batch, density) cell in the first run: its figure
    (`FIELDS`) in each run and the median. A later run without the cell is refused."""
    head = ["backend", "case", "batch", "density", *names, "median"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---:|---:|" + "---:|" * (len(names) + 1)]
    for row in runs[0]["rows"]:
        field = FIELDS.get(row["backend"])
        if field is None or field not in row:
            continue
        values = cell_values(runs, row["backend"], row["case"], row["batch"], row["density"],
                             field)
        lines.append(f"| {row['backend']} | {row['case']} | {row['batch']} | {row['density']:g} | "
                     + " | ".join(f"{v:.2f}x" for v in values)
                     + f" | {statistics.median(values):.2f}x |")
    return "\n".join(lines)


def render(runs: list[dict], names: list[str]) -> str:
    weights = ("fp32" if precision_of(runs) == "float32"
               else f"{precision_of(runs)} main-path weights")
    head = [f"target (CPU, {weights})", *names, "median", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(names) + 1) + "---|"]
    for label, line, values in figures(runs):
        met = sum(v >= line for v in values)
        median = statistics.median(values)
        missed = len(values) - met
        verdict = ("met in every run" if not missed else
                   f"**missed** in {missed} of {len(values)} runs"
                   + (", the median above the line" if median >= line else ""))
        lines.append(f"| {label}: ≥ {line:g}x | "
                     + " | ".join(f"{v:.2f}x" for v in values)
                     + f" | {median:.2f}x | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.best_dense_targets",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="benchmarks.skip JSON files")
    parser.add_argument("--update", type=Path, help="rewrite the table in this Markdown file")
    parser.add_argument("--machine", help="runs of another machine than the main table's: "
                        "their table is `best-dense-targets[-PRECISION]-MACHINE`")
    parser.add_argument("--every-cell", action="store_true",
                        help="print every cell's figure in each run and its median instead")
    args = parser.parse_args(argv)
    if args.every_cell and (args.update or args.machine):
        parser.error("--every-cell prints; it takes neither --update nor --machine")
    runs = [json.loads(path.read_text()) for path in args.runs]
    names = ["full run" if i == 0 else f"repeat {i}" for i in range(len(runs))]
    if args.every_cell:
        print(every_cell(runs, names))
        return 0
    table = render(runs, names)
    if args.update:
        precision = precision_of(runs)
        name = NAME if precision == "float32" else f"{NAME}-{precision}"
        update(args.update, f"{name}-{args.machine}" if args.machine else name, table)
        print(f"updated {args.update}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
