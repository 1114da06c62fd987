"""exact_gradient against closed forms and finite differences of the exact expectation."""

import pytest
import torch

from models.estimators import binary_states, exact_expectation, exact_gradient
from training.estimator_problems import builtin_problems, toy_problem


def test_binary_states_enumerates_every_vector_once():
    states = binary_states(5)
    assert states.shape == (32, 5)
    assert len({tuple(row.tolist()) for row in states}) == 32


@pytest.mark.parametrize("target", [0.45, 0.499, 0.2])
def test_toy_matches_closed_form(target):
    # For binary h, (h - t)^2 = h (1 - 2t) + t^2, so dE/da = sigm'(a) (1 - 2t) per unit.
    problem = toy_problem(target)
    p = torch.sigmoid(problem.logits.double())
    expected = p * (1 - p) * (1 - 2 * target)
    got = exact_gradient(problem.logits.double(), problem.loss)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("problem", builtin_problems(), ids=lambda p: p.name)
def test_matches_finite_differences_of_the_exact_expectation(problem):
    logits = problem.logits.double()
    grad = exact_gradient(logits, problem.loss)
    eps = 1e-6
    for k in range(logits.shape[0]):
        step = torch.zeros_like(logits)
        step[k] = eps
        numeric = (exact_expectation(logits + step, problem.loss)
                   - exact_expectation(logits - step, problem.loss)) / (2 * eps)
        assert float(grad[k]) == pytest.approx(float(numeric), rel=1e-5, abs=1e-9)


def test_refuses_more_than_twenty_units():
    with pytest.raises(ValueError, match="K > 20"):
        exact_gradient(torch.zeros(21), lambda h: h.sum(-1))


def test_keeps_the_dtype_of_the_logits():
    assert exact_gradient(torch.zeros(3), lambda h: h.sum(-1)).dtype == torch.float32
