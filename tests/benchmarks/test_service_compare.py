"""The side-by-side table of service benchmark runs."""

import json

from benchmarks.service_compare import table


def run(tmp_path, name: str, scale: float):
    rows = [
        {"kind": "latency", "model": "paper-st", "client_p50_ms": 4.0 * scale,
         "overhead_p50_ms": 2.0 * scale},
        {"kind": "skip_vs_dense", "model": "wide-10", "skip_p50_ms": 5.0 * scale,
         "speedup": 4.5 / scale},
        {"kind": "throughput", "model": "paper-st", "batching_rps": 800 / scale, "ratio": 2.5},
        {"kind": "throughput", "model": "wide-10", "batching_rps": 400 / scale, "ratio": 2.0},
        {"kind": "backend", "model": "wide-10", "backend": "torch", "client_p50_ms": 4.5 * scale},
    ]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"rows": rows}))
    return path


def test_one_row_per_run_with_its_own_figures(tmp_path):
    lines = table([run(tmp_path, "before", 1.0), run(tmp_path, "after", 2.0)]).splitlines()
    assert len(lines) == 4 and lines[0].endswith("| wide-10 on torch p50 |")
    assert lines[2] == ("| before | 4.00 ms | 2.00 ms | 5.00 ms | 4.50x | 800 | 2.50x | 400 | "
                        "2.00x | 4.50 ms |")
    assert lines[3].startswith("| after | 8.00 ms | 4.00 ms | 10.00 ms | 2.25x | 400 |")
