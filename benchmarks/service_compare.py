"""Headline figures of several `benchmarks.service` runs side by side, one row per run: to
compare runs of two commits made alternately on the same machine.

    python -m benchmarks.service_compare before-1.json after-1.json before-2.json after-2.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("default client p50", "overhead p50", "wide-10 p50", "wide-10 vs dense",
           "default batched req/s", "batching gain", "wide-10 batched req/s", "batching gain")


def headline(rows: list[dict]) -> tuple[list[str], dict[str, str]]:
    """The figures of COLUMNS, then each backend row's client p50 keyed "model on backend"."""
    kind = {}
    for row in rows:
        kind.setdefault(row["kind"], []).append(row)
    latency, skip = kind["latency"][0], kind["skip_vs_dense"][0]
    throughput = {row["model"]: row for row in kind["throughput"]}
    default, wide = throughput[latency["model"]], throughput[skip["model"]]
    cells = [f"{latency['client_p50_ms']:.2f} ms", f"{latency['overhead_p50_ms']:.2f} ms",
             f"{skip['skip_p50_ms']:.2f} ms", f"{skip['speedup']:.2f}x",
             f"{default['batching_rps']:.0f}", f"{default['ratio']:.2f}x",
             f"{wide['batching_rps']:.0f}", f"{wide['ratio']:.2f}x"]
    backends = {f"{row['model']} on {row['backend']}": f"{row['client_p50_ms']:.2f} ms"
                for row in kind.get("backend", [])}
    return cells, backends


def table(files: list[Path]) -> str:
    runs = [(path.stem, *headline(json.loads(path.read_text())["rows"])) for path in files]
    backend_columns = sorted({key for _, _, backends in runs for key in backends})
    header = ["run", *COLUMNS, *(f"{key} p50" for key in backend_columns)]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for name, cells, backends in runs:
        lines.append("| " + " | ".join([name, *cells, *(backends.get(key, "-")
                                                        for key in backend_columns)]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="JSON written by benchmarks.service")
    print(table(parser.parse_args().files))


if __name__ == "__main__":
    main()
