"""The checkout A/B benchmark imports another commit's engine beside this one's and times both."""

import sys
from types import SimpleNamespace

import pytest
import torch

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


def test_each_engine_is_timed_on_the_inputs_in_turn(monkeypatch):
    seen = {"base": [], "this": []}

    def recording(name):
        class Engine:
            def __init__(self, model):
                pass

            def __call__(self, x):
                seen[name].append(float(x.sum()))
                return SimpleNamespace(logits=torch.zeros(1))
        return Engine

    def three_calls_each(fns, **_):
        for fn in fns.values():
            for _ in range(3):
                fn()
        return {name: 1.0 for name in fns}

    import models.skip.cpu

    monkeypatch.setattr(models.skip.cpu, "SkipNetwork", recording("this"))
    monkeypatch.setattr(checkout_ab, "median_ms", three_calls_each)
    rows = checkout_ab.rows(SimpleNamespace(SkipNetwork=recording("base")), [LAYER_CASE], [1],
                            [0.1], warmup=1, repeats=3, seed=0, inputs=3)
    assert rows[0]["inputs"] == 3
    for calls in seen.values():  # the check on the first input, then the three in turn
        assert len(calls) == 4 and calls[1:] == [calls[0], *calls[2:]]
        assert len(set(calls[1:])) == 3


def test_both_engines_get_a_network_of_the_estimator_asked_for(monkeypatch):
    estimators = []

    class Engine:
        def __init__(self, model):
            estimators.append(model.config.estimator)

        def __call__(self, x):
            return SimpleNamespace(logits=torch.zeros(1))

    import models.skip.cpu

    monkeypatch.setattr(models.skip.cpu, "SkipNetwork", Engine)
    monkeypatch.setattr(checkout_ab, "median_ms", lambda fns, **_: {name: 1.0 for name in fns})
    rows = checkout_ab.rows(SimpleNamespace(SkipNetwork=Engine), [LAYER_CASE], [1], [0.1],
                            warmup=1, repeats=1, seed=0, estimator="sts")
    assert estimators == ["sts", "sts"] and rows[0]["estimator"] == "sts"


def test_each_round_settles_for_the_time_asked(monkeypatch):
    """The settle time reaches the timing rounds (in seconds) and the rows; a negative one is
    refused."""
    asked = []

    class Engine:
        def __init__(self, model):
            pass

        def __call__(self, x):
            return SimpleNamespace(logits=torch.zeros(1))

    import models.skip.cpu

    monkeypatch.setattr(models.skip.cpu, "SkipNetwork", Engine)
    monkeypatch.setattr(checkout_ab, "median_ms", lambda fns, **k: asked.append(
        k["settle_s"]) or {name: 1.0 for name in fns})
    rows = checkout_ab.rows(SimpleNamespace(SkipNetwork=Engine), [LAYER_CASE], [1], [0.1],
                            warmup=1, repeats=1, seed=0, settle_ms=25.0)
    assert asked == [0.025] and rows[0]["settle_ms"] == 25.0
    with pytest.raises(SystemExit):
        checkout_ab.main(["--base", "HEAD", "--settle-ms", "-1"])
