"""The skip benchmark runs and writes rows with the documented fields."""

import json

from benchmarks.skip import main

FIELDS = {"device", "backend", "case", "batch", "density", "dense_ms", "skip_ms", "speedup"}


def test_benchmark_writes_every_row(tmp_path):
    out = tmp_path / "skip.json"
    assert main(["--json", str(out), "--warmup", "0", "--repeats", "1"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 4 * 5
    assert all(set(r) >= FIELDS and r["speedup"] > 0 for r in rows)
    # The realised density follows the requested one (quantile thresholds, 64 blocks).
    assert all(abs(r["realised_density"] - r["density"]) < 0.05 for r in rows if r["batch"] > 8)
