"""The gater benchmark times both routes of each gater's first product, checked equal, and
says which one the engine takes."""

import pytest

from benchmarks.gater_products import rows
from models.skip import c_kernels, routing


@pytest.mark.skipif(c_kernels.load() is None, reason="no C compiler built the kernels")
def test_rows_time_both_routes_and_name_the_chosen_one():
    out = rows(0, 2, 0, batches=(1, 64))
    assert [(r["gater_input"], r["batch"]) for r in out] == [(784, 1), (784, 64), (4096, 1),
                                                            (4096, 64)]
    for r in out:
        assert r["macs"] == r["batch"] * r["gater_input"] * r["gater_hidden"]
        assert r["numpy_us"] > 0 and r["native_us"] > 0
        assert r["chosen"] == ("native" if r["macs"] >= routing.GATER_NATIVE_FROM_MACS
                               else "numpy")
