"""Noise injection (paper, section 3.1): noise inside an otherwise differentiable unit.

Plain backprop through the noisy sample; no noise at evaluation. These units are not Bernoulli,
so none is unbiased for the Bernoulli objective; their pathwise gradient is unbiased for the
expectation over their own noise.
- `noisy-rectifier`: h = max(0, a + sigma z), z ~ N(0, 1). The paper's best noisy unit (sigma = 1).
  Exact zeros make it a natural gate; evaluation thresholds max(0, a).
- `noisy-sigmoid`: h = sigm(a + sigma z), additive noise before a sigmoid.
- `dropout-sigmoid`: h = sigm(a) m / keep, m ~ Bernoulli(keep): multiplicative, dropout-like.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Estimator, bernoulli_draw, check_positive, check_probability, normal_like


class Rectifier(Estimator):
    """The noise-free rectifier gate max(0, a): the paper's "baseline rectifier" held at a
    target density by the adaptive L1 penalty. Deterministic; its gradient is plain backprop."""

    name = "rectifier"
    family = "deterministic"
    unbiased = False
    binary = False
    default_threshold = 0.0
    sparsity_kind = "l1"
    summary = "noise-free rectifier max(0, a), sparse through the L1 penalty"

    def __init__(self, num_units: int) -> None:
        super().__init__(num_units)

    def smooth(self, logits: Tensor) -> Tensor:
        return torch.relu(logits)

    def logit_threshold(self, logit_tau: Tensor | float) -> Tensor | float:
        return max(logit_tau, 0.0) if isinstance(logit_tau, float) else logit_tau.clamp_min(0.0)

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.relu(logits)


class NoisyRectifier(Rectifier):
    name = "noisy-rectifier"
    family = "noise-injection"
    summary = "noisy rectifier: max(0, a + sigma z)"

    def __init__(self, num_units: int, *, sigma: float = 1.0) -> None:
        Estimator.__init__(self, num_units, sigma=sigma)
        self.sigma = check_positive("sigma", sigma)

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.relu(logits + self.sigma * normal_like(logits, generator))


class NoisySigmoid(Estimator):
    name = "noisy-sigmoid"
    family = "noise-injection"
    unbiased = False
    binary = False
    summary = "additive Gaussian noise before a sigmoid: sigm(a + sigma z)"

    def __init__(self, num_units: int, *, sigma: float = 1.0) -> None:
        super().__init__(num_units, sigma=sigma)
        self.sigma = check_positive("sigma", sigma)

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.sigmoid(logits + self.sigma * normal_like(logits, generator))


class DropoutSigmoid(Estimator):
    name = "dropout-sigmoid"
    family = "noise-injection"
    unbiased = False
    binary = False
    summary = "multiplicative (dropout) noise on a sigmoid: sigm(a) m / keep"

    def __init__(self, num_units: int, *, keep: float = 0.5) -> None:
        super().__init__(num_units, keep=keep)
        self.keep = check_probability("keep", keep)

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        p = torch.sigmoid(logits)
        mask = bernoulli_draw(torch.full_like(p.detach(), self.keep), generator)
        return p * mask / self.keep
