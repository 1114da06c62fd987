"""Gradient estimators for stochastic binary and hard gating units.

`ESTIMATORS` maps each name to its class; `make_estimator(name, K, **settings)` builds one;
`estimate_gradient` and `exact_gradient` are the stable API for measuring them.
"""

from .base import FAMILIES, Estimator, validate_logits
from .gradients import binary_states, estimate_gradient, exact_expectation, exact_gradient
from .registry import ESTIMATORS, estimator_class, make_estimator

__all__ = [
    "ESTIMATORS",
    "FAMILIES",
    "Estimator",
    "binary_states",
    "estimate_gradient",
    "estimator_class",
    "exact_expectation",
    "exact_gradient",
    "make_estimator",
    "validate_logits",
]
