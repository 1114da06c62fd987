"""Markdown tables of a skip benchmark run, for docs/performance.md.

    python -m benchmarks.skip_report docs/performance/skip-cpu.json            # print
    python -m benchmarks.skip_report docs/performance/skip-cpu.json --update docs/performance.md

`--update` replaces what lies between `<!-- skip-tables:NAME:begin -->` and
`<!-- skip-tables:NAME:end -->` (NAME: the JSON file's stem) with freshly rendered tables, so
the figures in the document are always the ones of the run it names.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def render(payload: dict) -> str:
    rows = payload["rows"]
    info = payload.get("machine", {})
    lines = [f"Machine: {info.get('processor', '?')}, {info.get('cpu_threads', '?')} torch "
             f"threads, torch {info.get('torch', '?')}"
             + (f", GPU {info['gpu']}" if info.get("gpu") else "")
             + f"; median of {payload.get('repeats', '?')} calls after "
             f"{payload.get('warmup', '?')} warm-up calls"
             + (", the device synchronised before each clock read." if _gpu_only(rows)
                else ", in alternating rounds."), ""]
    for device, backend, case in sorted({(r["device"], r["backend"], r["case"]) for r in rows}):
        mine = [r for r in rows if (r["device"], r["backend"], r["case"]) == (device, backend,
                                                                               case)]
        densities = sorted({r["density"] for r in mine}, reverse=True)
        batches = sorted({r["batch"] for r in mine})
        lines += [f"**{device} / {backend} / `{case}`**: speed-up over dense "
                  "(dense ms / skip ms)", "",
                  "| batch | " + " | ".join(f"density {d:g}" for d in densities) + " |",
                  "|---:|" + "---:|" * len(densities)]
        for batch in batches:
            cells = []
            for density in densities:
                row = next((r for r in mine if r["batch"] == batch and r["density"] == density),
                           None)
                cells.append("" if row is None else
                             f"{row['speedup']:.2f}x ({row['dense_ms']:.3g} / "
                             f"{row['skip_ms']:.3g})")
            lines.append(f"| {batch} | " + " | ".join(cells) + " |")
        lines.append("")
        if all("speedup_vs_best" in r for r in mine):
            lines += _against_best(case, mine, batches, densities)
    return "\n".join(lines)


def _against_best(case: str, rows: list[dict], batches, densities) -> list[str]:
    """The CPU engine against the strongest dense implementation of each batch (each read
    through its own interface, `benchmarks.cpu_cases`), and its rate of multiply-adds as a
    fraction of that implementation's; a cell read against another implementation than its
    batch's first names it."""
    lines = [f"**cpu / torch / `{case}` against the best dense**: speed-up (the skip path's "
             "G multiply-adds per second as a fraction of the dense one's)", "",
             "| batch | best dense | " + " | ".join(f"density {d:g}" for d in densities)
             + " |", "|---:|---|" + "---:|" * len(densities)]
    for batch in batches:
        mine = {r["density"]: r for r in rows if r["batch"] == batch}
        first = next(iter(mine.values()))
        best = (f"{first['best_dense']} {first['best_dense_ms']:.3g} ms, "
                f"{first['dense_gmacs']:.3g} G/s")
        cells = ["" if (r := mine.get(d)) is None else
                 f"{r['speedup_vs_best']:.2f}x ({r['skip_rate_vs_dense']:.2f})"
                 + ("" if r["best_dense"] == first["best_dense"] else
                    f" vs {r['best_dense']} {r['best_dense_ms']:.3g} ms")
                 for d in densities]
        lines.append(f"| {batch} | {best} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _gpu_only(rows: list[dict]) -> bool:
    return bool(rows) and all(r["device"] == "cuda" for r in rows)


def update(document: Path, name: str, tables: str) -> None:
    text = document.read_text()
    pattern = re.compile(rf"(<!-- skip-tables:{re.escape(name)}:begin -->\n).*?"
                         rf"(<!-- skip-tables:{re.escape(name)}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{document}: no <!-- skip-tables:{name}:begin/end --> markers")
    document.write_text(pattern.sub(lambda m: m.group(1) + tables + "\n" + m.group(2), text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.skip_report",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=Path)
    parser.add_argument("--update", type=Path, help="rewrite the tables in this Markdown file")
    args = parser.parse_args(argv)
    tables = render(json.loads(args.json.read_text()))
    if args.update:
        update(args.update, args.json.stem, tables)
    else:
        print(tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
