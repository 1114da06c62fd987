"""Statistical properties of the estimators against exact gradients.

Fixed seeds throughout, so each test is deterministic; the tolerances are stated where used.
"""

import pytest
import torch

from models.estimators import ESTIMATORS, estimate_gradient, exact_gradient
from training.estimator_problems import (
    random_network_problem,
    sigmoid_belief_net_problem,
    toy_problem,
)

PROBLEMS = [
    toy_problem(0.45),
    random_network_problem(5, seed=11),
    random_network_problem(8, seed=12),
    sigmoid_belief_net_problem(seed=3, top=6),
]
UNBIASED = [name for name, cls in ESTIMATORS.items() if cls.unbiased]
SAMPLES = 6000


def z_scores(name, problem, seed, n=SAMPLES):
    g = torch.Generator().manual_seed(seed)
    logits = problem.logits.double()
    est = estimate_gradient(name, logits, problem.loss, n, g)
    exact = exact_gradient(logits, problem.loss)
    se = est.std(0) / n**0.5
    return (est.mean(0) - exact) / se, est


def test_the_paper_and_modern_unbiased_estimators_are_registered_as_unbiased():
    assert set(UNBIASED) == {"reinforce", "reinforce-nobaseline", "reinforce-mean", "rloo",
                             "disarm"}


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("name", UNBIASED)
def test_unbiased_estimators_match_the_exact_gradient_within_standard_error(name, problem):
    # Tolerance: every component within 4.5 standard errors (two-sided p ~ 7e-6 per component;
    # 5 estimators x 4 problems x <= 8 components keeps the family-wise false alarm rate < 0.1 %).
    z, _ = z_scores(name, problem, seed=2024)
    assert z.abs().max() < 4.5, f"{name} on {problem.name}: z = {z.tolist()}"


@pytest.mark.parametrize("name", ["st", "sts"])
def test_st_and_sts_are_measurably_biased_on_the_toy(name):
    # The toy at t = 0.45 is where the paper's biased estimators are known to fail: the mean
    # estimate must sit more than 10 standard errors from the exact gradient.
    z, _ = z_scores(name, toy_problem(0.45), seed=7)
    assert z.abs().max() > 10, f"{name}: z = {z.tolist()}"


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_minimum_variance_baseline_beats_no_baseline(problem):
    # Same problem, same number of draws; total variance must at least halve. Measured ratios
    # are far below that (between 0.0004 and 0.08 on these problems).
    _, with_baseline = z_scores("reinforce", problem, seed=5)
    _, without = z_scores("reinforce-nobaseline", problem, seed=5)
    ratio = with_baseline.var(0).sum() / without.var(0).sum()
    assert ratio < 0.5, f"variance ratio {float(ratio):.3f}"


def test_per_unit_baseline_is_no_worse_than_the_scalar_one():
    # Eq. 10 is the variance-minimising baseline per unit; the scalar moving average can only
    # match it. Allow 5 % sampling slack.
    problem = random_network_problem(8, seed=12)
    _, per_unit = z_scores("reinforce", problem, seed=9)
    _, scalar = z_scores("reinforce-mean", problem, seed=9)
    assert per_unit.var(0).sum() <= 1.05 * scalar.var(0).sum()


@pytest.mark.parametrize("name", ["reinforce", "reinforce-mean"])
@pytest.mark.parametrize("problem", PROBLEMS[1:3], ids=lambda p: p.name)
def test_learned_baselines_stay_unbiased_even_when_they_adapt_fast(name, problem):
    # With decay 0.5 the baseline is half made of the latest draw, so reading it after the
    # current draw updated it (a baseline that sees its own draw) would bias the estimate by
    # many standard errors. Same 4.5-sigma tolerance as above.
    g = torch.Generator().manual_seed(77)
    logits = problem.logits.double()
    est = estimate_gradient(name, logits, problem.loss, SAMPLES, g, settings={"decay": 0.5})
    z = (est.mean(0) - exact_gradient(logits, problem.loss)) / (est.std(0) / SAMPLES**0.5)
    assert z.abs().max() < 4.5, f"z = {z.tolist()}"
