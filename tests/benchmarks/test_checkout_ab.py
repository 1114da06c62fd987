"""The checkout A/B benchmark imports another commit's engine beside this one's and times both."""

import sys

import pytest

from benchmarks import checkout_ab
from benchmarks.cases import LAYER_CASE


def test_the_base_commit_runs_beside_this_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # import_base prepends the unpacked tree
    base_cpu = checkout_ab.import_base("HEAD", tmp_path)
    assert base_cpu.__name__ == f"{checkout_ab.BASE_PACKAGE}.skip.cpu"
    assert str(tmp_path) in base_cpu.__file__  # not this checkout's module
    rows = checkout_ab.rows(base_cpu, [LAYER_CASE], [1], [0.1], warmup=1, repeats=2, seed=0)
    assert len(rows) == 1 and rows[0]["base_us"] > 0 and rows[0]["this_us"] > 0
    assert rows[0]["base_over_this"] == pytest.approx(rows[0]["base_us"] / rows[0]["this_us"])


def test_an_unknown_commit_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="git archive"):
        checkout_ab.import_base("no-such-revision", tmp_path)
