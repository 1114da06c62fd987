"""Stochastic times smooth (paper, section 3.2, Eq. 11-13).

p = sigm(a), b ~ Bernoulli(sqrt(p)), h = b * sqrt(p). The binary part b is held constant and the
gradient flows through the smooth part sqrt(p), so E[h] = p and dh/da = b * d sqrt(p) / da.
Biased for the Bernoulli objective (its unit takes values {0, sqrt(p)}, not {0, 1}).

The paper's appendix adds noise to the sigmoid's input while training STS gaters; we offer it as
centred Beta(alpha, beta) noise, scaled: a + scale * (B - alpha / (alpha + beta)). Integer shape
parameters are sampled exactly from uniform order statistics (the alpha-th smallest of
alpha + beta - 1 uniforms is Beta(alpha, beta)), which keeps draws reproducible from a
`torch.Generator`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config_checks import shown_value
from .base import Estimator, bernoulli_draw, check_positive

MAX_BETA_UNIFORMS = 1024


def beta_integer_draw(shape: torch.Size, alpha: int, beta: int, like: Tensor,
                      generator: torch.Generator | None) -> Tensor:
    """Beta(alpha, beta) for positive integers, as an order statistic of uniforms."""
    n = alpha + beta - 1
    u = torch.rand((*shape, n), dtype=like.dtype, device=like.device, generator=generator)
    return u.sort(dim=-1).values[..., alpha - 1]


def sqrt_sigmoid(logits: Tensor) -> Tensor:
    """sqrt(sigm(a)) as exp(logsigm(a) / 2): autograd through sigmoid then sqrt gives
    0 * inf = NaN once sigm(a) underflows to 0, though the true derivative is finite."""
    return torch.exp(0.5 * torch.nn.functional.logsigmoid(logits))


class StochasticTimesSmooth(Estimator):
    name = "sts"
    family = "stochastic-times-smooth"
    unbiased = False
    binary = False
    summary = "stochastic times smooth: h = b sqrt(p), b ~ Bernoulli(sqrt(p))"

    def __init__(self, num_units: int, *, beta_noise: tuple[int, int] | list[int] | None = None,
                 beta_noise_scale: float = 1.0) -> None:
        if beta_noise is not None:
            # alpha + beta - 1 uniforms are drawn per unit and draw: bounded, so an edited
            # config cannot make training allocate without limit.
            ok = (isinstance(beta_noise, (tuple, list)) and len(beta_noise) == 2
                  and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                          for v in beta_noise)
                  and sum(beta_noise) - 1 <= MAX_BETA_UNIFORMS)
            if not ok:
                raise ValueError(f"beta_noise must be two positive integers (alpha, beta) with "
                                 f"alpha + beta - 1 <= {MAX_BETA_UNIFORMS}, got "
                                 f"{shown_value(beta_noise)}")
            beta_noise = [int(beta_noise[0]), int(beta_noise[1])]
        super().__init__(num_units, beta_noise=beta_noise, beta_noise_scale=beta_noise_scale)
        self.beta_noise = beta_noise
        self.beta_noise_scale = check_positive("beta_noise_scale", beta_noise_scale)

    def smooth(self, logits: Tensor) -> Tensor:
        return sqrt_sigmoid(logits)

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.beta_noise is not None:
            alpha, beta = self.beta_noise
            noise = beta_integer_draw(logits.shape, alpha, beta, logits, generator)
            logits = logits + self.beta_noise_scale * (noise - alpha / (alpha + beta))
        smooth = sqrt_sigmoid(logits)
        b = bernoulli_draw(smooth.detach(), generator)  # held constant in backprop
        return b * smooth
