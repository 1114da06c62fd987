"""The kernel-threads benchmark runs end to end and writes a row per product and block count,
with the multiply-adds each product runs."""

import json

import pytest

from benchmarks.kernel_threads import BLOCK_SIZE, D_IN, D_OUT, main
from models.skip import c_kernels


@pytest.mark.skipif(c_kernels.load() is None, reason="no C compiler built the kernels")
def test_benchmark_writes_a_row_per_product_and_block_count(tmp_path):
    out = tmp_path / "threads.json"
    main(["--json", str(out), "--warmup", "1", "--repeats", "3"])
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    assert [(r["product"], r["blocks_on"]) for r in rows] == [
        (product, on) for on in (1, 7, 16, 32, 64)
        for product in ("rows_times_blocks", "accumulate_blocks_times_rows")]
    for r in rows:
        width = D_IN if r["product"] == "rows_times_blocks" else D_OUT
        assert r["macs"] == r["blocks_on"] * BLOCK_SIZE * width
        assert r["one_thread_us"] > 0 and r["split_us"] > 0
        assert r["speedup"] == r["one_thread_us"] / r["split_us"]
    assert payload["machine"]["cpu_kernel_set"] == c_kernels.load().kernel_set
