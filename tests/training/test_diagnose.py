"""sparsegate-diagnose end to end on a tiny budget, and its statistics on known cases."""

import json

import pytest

from training.diagnose import main
from training.estimator_diagnostics import chi2_survival, diagnose
from training.estimator_problems import builtin_problems, problem_by_name


def test_writes_json_markdown_and_plot(tmp_path):
    out = tmp_path / "diag"
    code = main(["--out", str(out), "--replicates", "40", "--budget", "4", "--no-progress",
                 "--estimators", "reinforce,st,disarm", "--problems", "toy-t0.45,sbn-2layer-s0"])
    assert code == 0
    payload = json.loads((out / "diagnostics.json").read_text())
    rows = payload["results"]
    assert len(rows) == 6
    assert {"estimator", "problem", "relative_bias", "p_value", "variance", "mse",
            "cosine"} <= set(rows[0])
    assert all(r["loss_evaluations"] == 4 and r["replicates"] == 40 for r in rows)
    table = (out / "estimators.md").read_text()
    assert "### toy-t0.45" in table and "| disarm | yes |" in table
    assert (out / "estimators.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_names_exit_with_the_valid_ones(tmp_path):
    with pytest.raises(SystemExit, match="valid: reinforce"):
        main(["--out", str(tmp_path), "--estimators", "bogus", "--no-progress"])
    with pytest.raises(SystemExit, match="unknown problem"):
        main(["--out", str(tmp_path), "--problems", "bogus", "--no-progress"])


def test_budget_must_fit_every_estimator():
    with pytest.raises(ValueError, match="not a multiple"):
        diagnose("disarm", problem_by_name("toy-t0.45"), replicates=10, budget=3)


def test_the_report_tells_biased_from_unbiased():
    toy = problem_by_name("toy-t0.45")
    unbiased = diagnose("reinforce", toy, replicates=500, budget=4, seed=1)
    biased = diagnose("st", toy, replicates=500, budget=4, seed=1)
    assert unbiased.p_value > 1e-3 and biased.p_value < 1e-6
    assert biased.relative_bias > 10 * unbiased.relative_bias
    assert unbiased.mse == pytest.approx(unbiased.variance + unbiased.bias_norm**2, rel=0.01)


def test_chi2_survival_matches_known_values():
    assert chi2_survival(0.0, 3) == pytest.approx(1.0)
    assert chi2_survival(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-6)
    assert chi2_survival(18.307038053275146, 10) == pytest.approx(0.05, rel=1e-6)


def test_problem_k_stays_within_the_exact_limit():
    assert all(p.logits.shape[0] <= 12 for p in builtin_problems())
