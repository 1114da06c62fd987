"""Bias, variance, MSE and cosine of every estimator against exact gradients.

Fairness rule: every estimator gets the same number of loss evaluations per estimate (`budget`).
A single-draw estimator's estimate is the average of `budget` independent draws; a C-draw
estimator (rloo, disarm) averages budget / C of its own estimates.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from models.estimators import ESTIMATORS, estimate_gradient, exact_gradient, make_estimator

from .estimator_problems import Problem


@dataclass(frozen=True)
class EstimatorReport:
    estimator: str
    problem: str
    units: int
    claimed_unbiased: bool
    replicates: int
    loss_evaluations: int  # per estimate
    exact_norm: float
    bias_norm: float  # || mean - exact ||
    relative_bias: float  # bias_norm / exact_norm
    chi2: float  # sum_k ((mean_k - exact_k) / se_k)^2
    p_value: float  # chi-square test with K degrees of freedom that the mean equals exact
    max_abs_z: float
    variance: float  # trace of the covariance of one estimate
    mse: float  # E || estimate - exact ||^2
    cosine: float  # mean cosine similarity of one estimate with the exact gradient
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def chi2_survival(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X ~ chi-square(dof), via the regularised upper gamma function."""
    x = torch.tensor(statistic / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), x))


def replicate_estimates(estimator: str, problem: Problem, replicates: int, budget: int,
                        generator: torch.Generator) -> torch.Tensor:
    """(replicates, K) estimates, each costing `budget` loss evaluations."""
    # Diagnostics use each estimator's default settings.
    per = make_estimator(estimator, problem.logits.shape[0]).draws_per_estimate
    if budget % per:
        raise ValueError(f"budget {budget} is not a multiple of {estimator}'s {per} draws per "
                         "estimate")
    draws = budget // per
    logits = problem.logits.to(torch.float64)
    raw = estimate_gradient(estimator, logits, problem.loss, replicates * draws, generator)
    return raw.reshape(replicates, draws, -1).mean(1)  # (R, K)


def diagnose(estimator: str, problem: Problem, replicates: int = 2000, budget: int = 4,
             seed: int = 0) -> EstimatorReport:
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    exact = exact_gradient(problem.logits.to(torch.float64), problem.loss)  # (K,)
    est = replicate_estimates(estimator, problem, replicates, budget, generator)  # (R, K)
    mean = est.mean(0)
    var = est.var(0)  # (K,) per-component variance of one estimate
    se = (var / replicates).sqrt().clamp_min(1e-300)
    z = (mean - exact) / se
    chi2 = float(z.square().sum())
    exact_norm = float(exact.norm())
    bias_norm = float((mean - exact).norm())
    cos = torch.nn.functional.cosine_similarity(est, exact.expand_as(est), dim=-1, eps=1e-30)
    return EstimatorReport(
        estimator=estimator,
        problem=problem.name,
        units=int(exact.shape[0]),
        claimed_unbiased=ESTIMATORS[estimator].unbiased,
        replicates=replicates,
        loss_evaluations=budget,
        exact_norm=exact_norm,
        bias_norm=bias_norm,
        relative_bias=bias_norm / exact_norm if exact_norm > 0 else math.inf,
        chi2=chi2,
        p_value=chi2_survival(chi2, int(exact.shape[0])),
        max_abs_z=float(z.abs().max()),
        variance=float(var.sum()),
        mse=float((est - exact).square().sum(-1).mean()),
        cosine=float(cos.mean()),
        seconds=time.perf_counter() - start,
    )
