"""Continuous relaxations of Bernoulli units, as modern libraries offer them.

- `gumbel-st`: binary Concrete / Gumbel-sigmoid with straight-through (Maddison et al. 2017,
  Jang et al. 2017). y = sigm((a + log u - log(1 - u)) / T); forward h = 1[y > 1/2], which is
  exactly a Bernoulli(sigm(a)) draw; backward through y. Biased; the temperature T trades bias
  (high T) against variance (low T).
- `hard-concrete`: the L0 gate of Louizos, Welling & Kingma 2018. A binary Concrete stretched to
  (gamma, zeta) and clipped to [0, 1], so exact zeros and ones have positive probability and the
  rest is differentiable. At evaluation the threshold applies to P(gate != 0) and an open gate
  outputs its mean value E[h | a].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..config_checks import finite_float, shown_value
from .base import Estimator, check_positive, uniform_like

QUADRATURE_POINTS = 64


def logistic_noise(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """log u - log(1 - u): the difference of two Gumbels, which is what a binary Concrete adds."""
    u = uniform_like(like, generator).clamp(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


class GumbelStraightThrough(Estimator):
    name = "gumbel-st"
    family = "relaxation"
    unbiased = False
    summary = "binary Concrete (Gumbel-sigmoid) with straight-through, temperature T"

    def __init__(self, num_units: int, *, temperature: float = 1.0) -> None:
        super().__init__(num_units, temperature=temperature)
        self.temperature = check_positive("temperature", temperature)

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        relaxed = torch.sigmoid((logits + logistic_noise(logits, generator)) / self.temperature)
        hard = (relaxed.detach() > 0.5).to(logits.dtype)
        return hard + (relaxed - relaxed.detach())


class HardConcrete(Estimator):
    name = "hard-concrete"
    family = "relaxation"
    unbiased = False
    binary = False
    summary = "hard concrete L0 gate (Louizos et al. 2018)"

    def __init__(self, num_units: int, *, temperature: float = 2 / 3, gamma: float = -0.1,
                 zeta: float = 1.1) -> None:
        super().__init__(num_units, temperature=temperature, gamma=gamma, zeta=zeta)
        self.temperature = check_positive("temperature", temperature)
        low, high = finite_float(gamma), finite_float(zeta)
        # The stretch width and the L0 shift are computed from these: both must be finite too,
        # or evaluation gives NaN gates (gamma = -1e308 with zeta = 1e308 overflows the width).
        ok = low is not None and high is not None and low < 0 and high > 1
        if ok:
            ratio = -low / high  # underflows to 0 for gamma = -1e-320, zeta = 1e10
            ok = math.isfinite(high - low) and ratio > 0 and math.isfinite(
                self.temperature * math.log(ratio))
        if not ok:
            raise ValueError(f"hard concrete needs finite gamma < 0 < 1 < zeta with a finite "
                             f"stretch, got gamma={shown_value(gamma)}, zeta={shown_value(zeta)}")
        self.gamma, self.zeta = low, high

    def _stretch(self, s: Tensor) -> Tensor:
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def smooth(self, logits: Tensor) -> Tensor:
        # Thresholded at evaluation: P(gate != 0), strictly monotone in the logit. Louizos et
        # al.'s clip(sigm(a)(zeta - gamma) + gamma, 0, 1) is flat at 0 below sigm(a) = 1/12,
        # where gates trained to be on 10 % of the time sit, so it cannot be calibrated.
        return self.probability_nonzero(logits)

    def eval_value(self, logits: Tensor) -> Tensor:
        """E[h | a]: the training gate's mean over its logistic noise, by a fixed quadrature
        at the noise's quantiles (deterministic, and non-zero where the gate can be on)."""
        u = (torch.arange(QUADRATURE_POINTS, dtype=logits.dtype, device=logits.device)
             + 0.5) / QUADRATURE_POINTS  # (Q,)
        noise = torch.log(u) - torch.log1p(-u)
        s = torch.sigmoid((logits.unsqueeze(-1) + noise) / self.temperature)  # (..., Q)
        return self._stretch(s).mean(-1)

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        s = torch.sigmoid((logits + logistic_noise(logits, generator)) / self.temperature)
        return self._stretch(s)

    def on_probability(self, logits: Tensor) -> Tensor:
        return self.probability_nonzero(logits)

    def probability_nonzero(self, logits: Tensor) -> Tensor:
        """P(h != 0): the differentiable L0 norm term of Louizos et al. (Eq. 12)."""
        shift = self.temperature * math.log(-self.gamma / self.zeta)
        return torch.sigmoid(logits - shift)
