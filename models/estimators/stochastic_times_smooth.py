"""Stochastic times smooth (paper, section 3.2, Eq. 11-13).

p = sigm(a), b ~ Bernoulli(sqrt(p)), h = b * sqrt(p). The binary part b is held constant and the
gradient flows through the smooth part sqrt(p), so E[h] = p and dh/da = b * d sqrt(p) / da.
Biased for the Bernoulli objective (its unit takes values {0, sqrt(p)}, not {0, 1}).

A unit is non-zero with probability sqrt(p), not p: that is what a sparsity penalty must hold at
the target (`on_probability`), as the authors' code did (it applied the KL penalty to sqrt(p)).

The paper's STS gaters trained with Beta noise on the sigmoid's input. The authors' code
(github.com/nicholas-leonard/delicious, conditional_gater.py) drew B ~ Beta(alpha, beta) with
the mode (alpha - 1) / (alpha + beta - 2) at the target density rho, and added (B - 1/2) *
|logit(rho^2)| to the logits, keeping the noise's mean in the logits at test time. A constant in
the logits is the gater's output bias by another name, so we add the centred noise (B - E[B]) *
scale instead: the same network, with the bias holding the mean (`paper_beta_noise` gives the
settings). Non-integer alpha and beta are drawn by inverting Beta's distribution function,
tabulated once, so draws stay reproducible from a `torch.Generator`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..config_checks import finite_float, shown_value
from .base import Estimator, bernoulli_draw, check_positive

# The largest alpha or beta: the quantile table resolves Beta's spread down to a standard
# deviation of about 0.01 (Beta(1000, 1000)); the paper's noise has alpha ~ 5, beta ~ 40.
MAX_BETA_PARAMETER = 1000.0
# Points of the tabulated quantile function, and of the grid its distribution function is
# integrated on.
QUANTILE_POINTS = 4097
DENSITY_GRID_POINTS = 65537
# The beta the authors' final STS runs used (their alpha follows from it and the target).
PAPER_NOISE_BETA = 40.1


def paper_beta_noise(target_density: float, beta: float = PAPER_NOISE_BETA) -> dict:
    """STS settings for the paper's noise at `target_density` rho: Beta(alpha, beta) with its mode
    at rho, scaled by |logit(rho^2)| (the logit at which sqrt(sigm(a)) = rho)."""
    rho = target_density
    alpha = (rho * (beta - 2.0) + 1.0) / (1.0 - rho)
    scale = abs(math.log(rho**2 / (1.0 - rho**2)))
    return {"beta_noise": [alpha, beta], "beta_noise_scale": scale}


def beta_quantiles(alpha: float, beta: float, points: int = QUANTILE_POINTS) -> Tensor:
    """Beta(alpha, beta)'s quantile function at the probabilities (i + 1/2) / points, from its
    density integrated by the trapezoid rule on a fine grid (alpha, beta >= 1 keep the density
    finite, so the rule converges); float64, (points,)."""
    x = np.linspace(0.0, 1.0, DENSITY_GRID_POINTS)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_density = (alpha - 1.0) * np.log(x) + (beta - 1.0) * np.log1p(-x)
    # 0 * log(0) is 0 where a parameter is exactly 1; elsewhere log(0) is the density's zero.
    log_density = np.where(np.isnan(log_density), 0.0, log_density)
    density = np.exp(log_density - log_density.max())
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    cdf /= cdf[-1]
    probabilities = (np.arange(points) + 0.5) / points
    return torch.from_numpy(np.interp(probabilities, cdf, x))


def beta_draw(shape: torch.Size, quantiles: Tensor, like: Tensor,
              generator: torch.Generator | None) -> Tensor:
    """Beta draws shaped `shape` by inverse transform: u ~ U(0, 1) read through `quantiles`
    (`beta_quantiles`) with linear interpolation; the 1 / (2 * points) tails are clipped."""
    table = quantiles.to(device=like.device, dtype=like.dtype)
    u = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)
    position = (u * table.numel() - 0.5).clamp(0, table.numel() - 1)
    low = position.floor().long().clamp(max=table.numel() - 2)
    frac = position - low
    return table[low] * (1 - frac) + table[low + 1] * frac


def sqrt_sigmoid(logits: Tensor) -> Tensor:
    """sqrt(sigm(a)) as exp(logsigm(a) / 2): autograd through sigmoid then sqrt gives
    0 * inf = NaN once sigm(a) underflows to 0, though the true derivative is finite."""
    return torch.exp(0.5 * torch.nn.functional.logsigmoid(logits))


def _beta_parameters(value: object) -> list[float]:
    numbers = ([finite_float(v) for v in value]
               if isinstance(value, (tuple, list)) and len(value) == 2 else [None])
    if any(v is None or not 1.0 <= v <= MAX_BETA_PARAMETER for v in numbers):
        raise ValueError(f"beta_noise must be two numbers (alpha, beta), each from 1 to "
                         f"{MAX_BETA_PARAMETER:g}, got {shown_value(value)}")
    return numbers


class StochasticTimesSmooth(Estimator):
    name = "sts"
    family = "stochastic-times-smooth"
    unbiased = False
    binary = False
    summary = "stochastic times smooth: h = b sqrt(p), b ~ Bernoulli(sqrt(p))"

    def __init__(self, num_units: int, *,
                 beta_noise: tuple[float, float] | list[float] | None = None,
                 beta_noise_scale: float = 1.0) -> None:
        if beta_noise is not None:
            beta_noise = _beta_parameters(beta_noise)
        super().__init__(num_units, beta_noise=beta_noise, beta_noise_scale=beta_noise_scale)
        self.beta_noise = beta_noise
        self.beta_noise_scale = check_positive("beta_noise_scale", beta_noise_scale)
        if beta_noise is not None:
            alpha, beta = beta_noise
            self.noise_mean = alpha / (alpha + beta)
            # Not persistent: rebuilt from the settings, so artifacts hold weights only.
            self.register_buffer("noise_quantiles", beta_quantiles(alpha, beta),
                                 persistent=False)

    def on_probability(self, logits: Tensor) -> Tensor:
        """P(h != 0) = P(b = 1) = sqrt(sigm(a))."""
        return sqrt_sigmoid(logits)

    def smooth(self, logits: Tensor) -> Tensor:
        return sqrt_sigmoid(logits)

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.beta_noise is not None:
            noise = beta_draw(logits.shape, self.noise_quantiles, logits, generator)
            logits = logits + self.beta_noise_scale * (noise - self.noise_mean)
        smooth = sqrt_sigmoid(logits)
        b = bernoulli_draw(smooth.detach(), generator)  # held constant in backprop
        return b * smooth
